"""The rollout store against a real redis-server: records, locks, indexes, audit, dedupe."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.rollout.model import (
    ApplyWeight,
    Audit,
    CancelSchedule,
    CheckHealth,
    Notify,
    Phase,
    Rollout,
    Schedule,
    StepPlan,
    Target,
    Verdict,
)
from bot.store.errors import (
    AlreadyActive,
    Fenced,
    RolloutFinished,
    RolloutNotFound,
    StoreError,
    StoreUnavailable,
    VersionConflict,
    mask_url,
)
from bot.store.lease import LeaderLease
from bot.store.redis_store import (
    TERMINAL_TTL_S,
    AuditEntry,
    Keys,
    RolloutStore,
    address_of,
    connect,
)
from sandbox.redis_server import RedisServer
from tests.support.harness import wait_until

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEYS = Keys()


def make_rollout(
    rollout_id: str = "r1", *, vs: str = "weather", namespace: str = "default", **changes: Any
) -> Rollout:
    fields: dict[str, Any] = {
        "id": rollout_id,
        "target": Target(namespace=namespace, vs=vs, stable="v1", canary="v2"),
        "steps": StepPlan(),
        "phase": Phase.PROGRESSING,
        "step": 0,
        "weight": 5,
        "started_by": "U-alice",
        "created_at": NOW,
        "updated_at": NOW,
        "next_step_at": NOW + timedelta(minutes=5),
    }
    return Rollout(**(fields | changes))


def finished(rollout: Rollout, phase: Phase = Phase.ROLLED_BACK) -> Rollout:
    return rollout.model_copy(update={"phase": phase, "next_step_at": None, "weight": 0})


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(redis_url)
    yield client
    client.close()


@pytest.fixture
def store(client: redis.Redis) -> RolloutStore:
    return RolloutStore(client)


# Records


def test_every_field_survives_create_and_load(store: RolloutStore) -> None:
    verdict = Verdict(
        outcome="fail",
        at=NOW,
        step=1,
        summary="p99 too high",
        figures={"p99_ms": 812.5, "stable_p99_ms": None},
    )
    rollout = make_rollout(
        target=Target(namespace="prod", vs="reviews", stable="v1", canary="v3", routes=("main",)),
        steps=StepPlan(weights=(10, 50, 100), interval_s=30, gates=(50,), failure_limit=3),
        phase=Phase.PAUSED,
        step=1,
        weight=50,
        channel="C123",
        verdicts=(verdict,),
        failures=1,
        inconclusive=2,
        reason="health check failed",
        pending=(
            ApplyWeight(weight=50, previous=10),
            Schedule(at=NOW + timedelta(seconds=30), step=2),
            CancelSchedule(),
            CheckHealth(step=1),
            Notify(event="paused", text="paused at 50%"),
            Audit(action="pause", actor="U-bob", weight_before=10, weight_after=50),
        ),
    )

    created = store.create(rollout)

    assert created == rollout.model_copy(update={"version": 1})
    assert store.load(rollout.id) == created


def test_load_of_an_unknown_id_says_not_found(store: RolloutStore) -> None:
    with pytest.raises(RolloutNotFound, match="no rollout nope"):
        store.load("nope")


def test_create_refuses_a_second_active_rollout_on_the_same_virtual_service(
    store: RolloutStore,
) -> None:
    store.create(make_rollout("r1", namespace="prod"))

    with pytest.raises(AlreadyActive) as refused:
        store.create(make_rollout("r2", namespace="prod", started_by="U-bob"))

    message = str(refused.value)
    assert refused.value.rollout_id == "r1"
    assert "r1" in message and "progressing" in message and "U-alice" in message
    assert "`/canary weather.prod status`" in message and "rollback" in message
    with pytest.raises(RolloutNotFound):
        store.load("r2")


def test_other_virtual_services_are_not_locked(store: RolloutStore) -> None:
    store.create(make_rollout("r1", vs="weather"))
    store.create(make_rollout("r2", vs="reviews"))
    store.create(make_rollout("r3", vs="weather", namespace="staging"))

    assert {r.id for r in store.list_active()} == {"r1", "r2", "r3"}


def test_a_finished_rollout_releases_the_lock(store: RolloutStore, client: redis.Redis) -> None:
    first = store.create(make_rollout("r1"))
    lock = KEYS.lock("default/weather")
    assert client.get(lock) == "r1"

    store.save(finished(first), expected_version=first.version)

    assert client.exists(lock) == 0
    assert store.create(make_rollout("r2")).version == 1
    assert client.get(lock) == "r2"


def test_finished_records_stay_readable_for_thirty_days(
    store: RolloutStore, client: redis.Redis
) -> None:
    first = store.create(make_rollout("r1"))
    store.save(finished(first, Phase.PROMOTED), expected_version=1)

    assert store.load("r1").phase is Phase.PROMOTED
    assert TERMINAL_TTL_S - 60 < client.ttl(KEYS.rollout("r1")) <= TERMINAL_TTL_S
    assert client.ttl(KEYS.rollout("r2")) == -2


def test_active_records_never_expire(store: RolloutStore, client: redis.Redis) -> None:
    store.create(make_rollout("r1"))

    assert client.ttl(KEYS.rollout("r1")) == -1


def test_an_id_cannot_be_created_twice(store: RolloutStore) -> None:
    first = store.create(make_rollout("r1"))
    store.save(finished(first), expected_version=1)

    with pytest.raises(VersionConflict, match="rollout id r1 is already taken"):
        store.create(make_rollout("r1"))
    assert store.load("r1").phase is Phase.ROLLED_BACK


def test_a_finished_rollout_with_nothing_left_to_do_cannot_be_created(
    store: RolloutStore,
) -> None:
    with pytest.raises(ValueError, match="there is nothing to do"):
        store.create(finished(make_rollout()))


def test_a_one_off_change_is_created_finished_and_holds_the_service_until_done(
    store: RolloutStore,
) -> None:
    one_off = finished(make_rollout()).model_copy(
        update={"pending": (Audit(action="mirror", actor="U1", weight_before=0, weight_after=0),)}
    )
    created = store.create(one_off)
    assert store.active_for("default", "weather") == created
    store.save(created.model_copy(update={"pending": ()}), expected_version=1)
    assert store.active_for("default", "weather") is None


def test_active_for_finds_the_lock_holder(store: RolloutStore) -> None:
    created = store.create(make_rollout("r1", namespace="prod"))

    assert store.active_for("prod", "weather") == created
    assert store.active_for("default", "weather") is None
    store.save(finished(created), expected_version=1)
    assert store.active_for("prod", "weather") is None


# Compare-and-set and fencing


def test_save_bumps_the_version(store: RolloutStore) -> None:
    created = store.create(make_rollout())

    saved = store.save(created.model_copy(update={"weight": 10, "step": 1}), expected_version=1)

    assert saved.version == 2
    assert store.load(created.id) == saved


def test_the_second_of_two_writers_gets_a_version_conflict(
    store: RolloutStore, client: redis.Redis
) -> None:
    store.create(make_rollout())
    mine, theirs = store.load("r1"), store.load("r1")
    paused = mine.model_copy(update={"phase": Phase.PAUSED, "next_step_at": None})
    saved = store.save(paused, expected_version=mine.version)

    with pytest.raises(VersionConflict, match="expected version 1, found version 2"):
        store.save(finished(theirs), expected_version=theirs.version)

    assert store.load("r1") == saved
    assert client.get(KEYS.lock("default/weather")) == "r1"
    assert [r.id for r in store.list_active()] == ["r1"]


def test_a_stale_fencing_token_is_refused(store: RolloutStore, client: redis.Redis) -> None:
    old_leader = LeaderLease(client, identity="replica-a")
    new_leader = LeaderLease(client, identity="replica-b")
    stale = old_leader.try_acquire()
    old_leader.release()
    current = new_leader.try_acquire()
    assert stale is not None and current is not None
    created = store.create(make_rollout())

    with pytest.raises(Fenced, match=f"fencing token {stale}, current {current}"):
        store.save(created.model_copy(update={"weight": 10}), expected_version=1, token=stale)

    assert store.load("r1") == created
    saved = store.save(created.model_copy(update={"weight": 10}), expected_version=1, token=current)
    assert saved.version == 2


def test_a_token_is_refused_when_no_leader_was_ever_elected(store: RolloutStore) -> None:
    created = store.create(make_rollout())

    with pytest.raises(Fenced, match="current None"):
        store.save(created, expected_version=1, token=1)


def test_saving_a_record_that_does_not_exist_is_a_conflict(store: RolloutStore) -> None:
    with pytest.raises(VersionConflict, match="found no record"):
        store.save(make_rollout(), expected_version=1)


def test_a_finished_rollout_cannot_be_reopened(store: RolloutStore, client: redis.Redis) -> None:
    created = store.create(make_rollout())
    done = store.save(finished(created), expected_version=1)

    with pytest.raises(RolloutFinished, match="start a new rollout"):
        store.save(created, expected_version=done.version)

    assert store.load("r1") == done
    assert store.list_active() == []
    assert client.exists(KEYS.lock("default/weather")) == 0


# The active and due indexes


def test_active_and_due_indexes_follow_the_phase(store: RolloutStore) -> None:
    early = store.create(make_rollout("early", vs="a", next_step_at=NOW))
    late = store.create(make_rollout("late", vs="b", next_step_at=NOW + timedelta(hours=1)))
    waiting = make_rollout("waiting", vs="c", phase=Phase.PENDING_APPROVAL, next_step_at=None)
    store.create(waiting)

    assert store.due(NOW) == [("early", NOW)]
    assert [i for i, _ in store.due(NOW + timedelta(hours=2))] == ["early", "late"]

    paused = store.save(
        early.model_copy(update={"phase": Phase.PAUSED, "next_step_at": None}), expected_version=1
    )
    assert store.due(NOW + timedelta(hours=2)) == [("late", NOW + timedelta(hours=1))]
    assert {r.id for r in store.list_active()} == {"early", "late", "waiting"}

    resumed_at = NOW + timedelta(minutes=1)
    store.save(
        paused.model_copy(update={"phase": Phase.PROGRESSING, "next_step_at": resumed_at}),
        expected_version=2,
    )
    assert store.due(resumed_at) == [("early", resumed_at)]

    store.save(finished(late, Phase.PROMOTED), expected_version=1)
    assert store.due(NOW + timedelta(days=1)) == [("early", resumed_at)]
    assert {r.id for r in store.list_active()} == {"early", "waiting"}


def test_list_active_is_oldest_first(store: RolloutStore) -> None:
    for minutes, rollout_id in ((3, "c"), (1, "a"), (2, "b")):
        store.create(
            make_rollout(rollout_id, vs=rollout_id, created_at=NOW + timedelta(minutes=minutes))
        )

    assert [r.id for r in store.list_active()] == ["a", "b", "c"]


def test_due_keeps_sub_second_times(store: RolloutStore) -> None:
    at = NOW + timedelta(seconds=30, microseconds=250_000)
    store.create(make_rollout(next_step_at=at))

    assert store.due(at) == [("r1", at)]
    assert store.due(at - timedelta(milliseconds=1)) == []


def test_round_trips_per_call(store: RolloutStore) -> None:
    calls: list[tuple[str, Callable[[], object]]] = [
        ("create", lambda: store.create(make_rollout())),
        ("save", lambda: store.save(make_rollout(weight=10), expected_version=1)),
        ("load", lambda: store.load("r1")),
        ("list_active", store.list_active),
        ("due", lambda: store.due(NOW)),
        ("active_for", lambda: store.active_for("default", "weather")),
        ("audit", lambda: store.audit(namespace="default", vs="weather", action="step",
                                      actor="bot", at=NOW, weight_before=5, weight_after=10)),
        ("history", lambda: store.history("default", "weather")),
        ("first_delivery", lambda: store.first_delivery("x")),
        ("ping", store.ping),
    ]  # fmt: skip
    counted = {}
    for name, call in calls:
        before = store.round_trips
        call()
        counted[name] = store.round_trips - before

    assert counted == {
        "create": 1,
        "save": 1,
        "load": 1,
        "list_active": 2,
        "due": 1,
        "active_for": 2,
        "audit": 1,
        "history": 1,
        "first_delivery": 1,
        "ping": 1,
    }


def test_an_unreadable_record_is_a_clear_store_error(
    store: RolloutStore, client: redis.Redis
) -> None:
    client.hset(KEYS.rollout("r1"), mapping={"version": 1, "json": '{"id": "r1"}'})

    with pytest.raises(StoreError, match="record of rollout r1 in Redis is not a valid rollout"):
        store.load("r1")


# Audit trail


def audit(store: RolloutStore, vs: str, action: str, **changes: Any) -> str:
    fields: dict[str, Any] = {
        "namespace": "prod",
        "vs": vs,
        "action": action,
        "actor": "U-alice",
        "at": NOW,
        "weight_before": 5,
        "weight_after": 10,
    }
    return store.audit(**(fields | changes))


def test_audit_entries_read_back_typed(store: RolloutStore) -> None:
    entry_id = audit(
        store,
        "weather",
        "step",
        rollout_id="r1",
        channel="C1",
        plan_hash="abc123",
        detail="5% → 10%",
    )

    assert store.history("prod", "weather") == [
        AuditEntry(
            id=entry_id,
            namespace="prod",
            vs="weather",
            action="step",
            actor="U-alice",
            at=NOW,
            weight_before=5,
            weight_after=10,
            rollout_id="r1",
            channel="C1",
            plan_hash="abc123",
            detail="5% → 10%",
        )
    ]


def test_audit_keeps_missing_weights_and_channel_as_none(store: RolloutStore) -> None:
    audit(store, "weather", "approve", weight_before=None, weight_after=None)

    (entry,) = store.global_history()
    assert (entry.weight_before, entry.weight_after, entry.channel) == (None, None, None)


def test_history_is_per_virtual_service_and_global_history_has_all(store: RolloutStore) -> None:
    audit(store, "weather", "start")
    audit(store, "reviews", "start")
    audit(store, "weather", "step")
    audit(store, "weather", "promote")

    assert [e.action for e in store.history("prod", "weather")] == ["start", "step", "promote"]
    assert [e.action for e in store.history("prod", "weather", count=2)] == ["step", "promote"]
    assert [e.action for e in store.history("prod", "reviews")] == ["start"]
    assert [(e.vs, e.action) for e in store.global_history(count=3)] == [
        ("reviews", "start"),
        ("weather", "step"),
        ("weather", "promote"),
    ]
    assert store.history("prod", "nothing") == []


@pytest.fixture
def small_stream_nodes(client: redis.Redis) -> Iterator[int]:
    """Tiny stream nodes, so approximate trimming (MAXLEN ~) shows after a few entries."""
    before = str(client.config_get("stream-node-max-entries")["stream-node-max-entries"])
    client.config_set("stream-node-max-entries", 2)
    yield 2
    client.config_set("stream-node-max-entries", before)


def test_audit_streams_are_capped(client: redis.Redis, small_stream_nodes: int) -> None:
    store = RolloutStore(client, audit_maxlen=5)

    for step in range(30):
        audit(store, "weather", f"step-{step}")

    for stream in (KEYS.audit("prod/weather"), KEYS.global_audit):
        assert 5 <= client.xlen(stream) <= 5 + small_stream_nodes
    assert store.history("prod", "weather", count=1)[0].action == "step-29"


# Dedupe and caches


def test_first_delivery_is_true_once_per_key(store: RolloutStore) -> None:
    assert store.first_delivery("action-1") is True
    assert store.first_delivery("action-1") is False
    assert store.first_delivery("action-2") is True


def test_a_delivery_key_is_forgotten_after_its_ttl(
    store: RolloutStore, client: redis.Redis
) -> None:
    store.first_delivery("retry-1", ttl_s=900)
    assert 890 < client.ttl(KEYS.seen("retry-1")) <= 900

    client.pexpire(KEYS.seen("retry-1"), 1)  # fast-forward to the end of the TTL
    wait_until(lambda: not client.exists(KEYS.seen("retry-1")), 2, "the key to expire")

    assert store.first_delivery("retry-1") is True


def test_cache_round_trip(store: RolloutStore, client: redis.Redis) -> None:
    assert store.cache_get("dr/prod/weather") is None

    store.cache_set("dr/prod/weather", '{"subsets": ["v1"]}', ttl_s=60)

    assert store.cache_get("dr/prod/weather") == '{"subsets": ["v1"]}'
    assert 50 < client.ttl(KEYS.cache("dr/prod/weather")) <= 60


def test_a_prefix_keeps_two_bots_apart(client: redis.Redis) -> None:
    blue, green = RolloutStore(client, prefix="blue"), RolloutStore(client, prefix="green")

    blue.create(make_rollout())
    green.create(make_rollout())

    assert [r.id for r in blue.list_active()] == [r.id for r in green.list_active()] == ["r1"]


# When Redis is away


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A private server this test may stop, so the shared one stays up."""
    with RedisServer() as server:
        yield server


def without_retries(url: str) -> redis.Redis:
    """A client that fails at once: connect()'s retries only add backoff to these tests."""
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), decode_responses=True)


STORE_CALLS: dict[str, Callable[[RolloutStore], object]] = {
    "ping": lambda s: s.ping(),
    "create": lambda s: s.create(make_rollout()),
    "save": lambda s: s.save(make_rollout(), expected_version=1),
    "load": lambda s: s.load("r1"),
    "list_active": lambda s: s.list_active(),
    "due": lambda s: s.due(NOW),
    "audit": lambda s: audit(s, "weather", "step"),
    "first_delivery": lambda s: s.first_delivery("k"),
}


def test_a_stopped_redis_is_store_unavailable_with_a_clear_message(
    own_redis: RedisServer,
) -> None:
    store = RolloutStore(connect(own_redis.url, timeout=0.5))
    store.ping()
    own_redis.stop()

    with pytest.raises(StoreUnavailable) as unavailable:
        store.load("r1")

    message = str(unavailable.value)
    assert f"Redis at redis://127.0.0.1:{own_redis.port}/0 cannot be reached" in message
    assert "ConnectionError" in message and "nothing was changed" in message
    assert "check REDIS_URL and that Redis is up" in message
    assert isinstance(unavailable.value.__cause__, redis.ConnectionError)


@pytest.mark.parametrize("call", STORE_CALLS.values(), ids=STORE_CALLS.keys())
def test_every_call_turns_redis_errors_into_store_unavailable(
    own_redis: RedisServer, call: Callable[[RolloutStore], object]
) -> None:
    client = without_retries(own_redis.url)
    own_redis.stop()

    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        call(RolloutStore(client))


def test_the_store_works_again_once_redis_is_back(own_redis: RedisServer) -> None:
    store = RolloutStore(connect(own_redis.url, timeout=0.5))
    store.ping()
    own_redis.stop()
    with pytest.raises(StoreUnavailable):
        store.ping()

    own_redis.start()

    store.create(make_rollout())
    assert store.load("r1").version == 1


def test_the_password_never_shows(own_redis: RedisServer) -> None:
    url = f"redis://admin:s3cret@127.0.0.1:{own_redis.port}/0"
    store = RolloutStore(without_retries(url))
    own_redis.stop()

    with pytest.raises(StoreUnavailable) as unavailable:
        store.ping()

    assert "s3cret" not in str(unavailable.value)
    assert "s3cret" not in repr(unavailable.value.where)


def test_a_wrong_password_is_named_as_such(own_redis: RedisServer) -> None:
    without_retries(own_redis.url).config_set("requirepass", "right")
    store = RolloutStore(without_retries(f"redis://:s3cret@127.0.0.1:{own_redis.port}/0"))

    with pytest.raises(StoreUnavailable, match="refused our credentials") as refused:
        store.ping()

    assert "check the user and password in REDIS_URL" in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_mask_url_hides_passwords() -> None:
    assert mask_url("redis://:pw@h:6380/1") == "redis://:***@h:6380/1"
    assert mask_url("rediss://me:pw@h/0") == "rediss://me:***@h/0"
    assert mask_url("unix:///run/redis.sock?db=0&password=pw") == (
        "unix:///run/redis.sock?db=0&password=***"
    )
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"


def test_lease_calls_are_store_unavailable_too(own_redis: RedisServer) -> None:
    lease = LeaderLease(without_retries(own_redis.url), identity="a")
    own_redis.stop()

    with pytest.raises(StoreUnavailable):
        lease.try_acquire()


# URLs


def test_a_unix_socket_url_works() -> None:
    with RedisServer(unix_socket=True) as server:
        client = connect(server.url)
        store = RolloutStore(client)

        store.create(make_rollout())

        assert store.load("r1").version == 1
        assert address_of(client) == server.url
        client.close()


def test_a_rediss_url_uses_tls() -> None:
    client = connect("rediss://:pw@cache.example:6380/2")

    assert address_of(client) == "rediss://cache.example:6380/2"
    assert client.connection_pool.connection_class is redis.SSLConnection


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (redis.ConnectionError("Connection refused"), "cannot be reached"),
        (redis.TimeoutError("Timeout reading from socket"), "may or may not have landed"),
        (redis.AuthenticationError("invalid password"), "refused our credentials"),
        (redis.ResponseError("READONLY replica"), "writable Redis primary"),
    ],
)
def test_store_unavailable_says_what_went_wrong(error: redis.RedisError, says: str) -> None:
    message = str(StoreUnavailable("redis://:pw@cache:6379/0", error))

    assert message.startswith("Redis at redis://:***@cache:6379/0 ")
    assert says in message and type(error).__name__ in message


def test_a_finished_rollout_with_effects_left_keeps_the_lock(
    store: RolloutStore, client: redis.Redis
) -> None:
    """A rollback whose traffic change has not run yet must not free the VirtualService."""
    first = store.create(make_rollout("r1"))
    pending = finished(first).model_copy(update={"pending": (ApplyWeight(weight=0, previous=5),)})
    saved = store.save(pending, expected_version=first.version)
    assert client.get(KEYS.lock("default/weather")) == "r1"
    assert [r.id for r in store.list_active()] == ["r1"]
    store.save(saved.model_copy(update={"pending": ()}), expected_version=saved.version)
    assert client.exists(KEYS.lock("default/weather")) == 0
    assert store.list_active() == []


def test_a_replayed_audit_effect_is_written_once(store: RolloutStore) -> None:
    first = audit(store, "weather", "step", effect_id="r1@3")
    again = audit(store, "weather", "step", effect_id="r1@3")
    audit(store, "weather", "step", effect_id="r1@4")
    assert first == again
    assert [e.action for e in store.history("prod", "weather")] == ["step", "step"]
    assert len(store.global_history()) == 2
