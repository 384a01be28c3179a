"""Every traffic change fenced, recorded, and reported as it happened: the engine against the
sandbox API server and a real Redis, with writers paused at the step boundary that matters."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bot.mesh.kube import KubeMesh
from bot.rollout.engine import Busy, Engine, Unrecorded
from bot.rollout.model import Audit, Notify, Phase, Resume, Rollback, StepDue, StepPlan
from bot.rollout.ports import Planned
from bot.rollout.traffic import KubeTraffic
from bot.store.errors import AlreadyActive, Fenced, VersionConflict
from bot.store.redis_store import RolloutStore, connect
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.redis_server import RedisServer

from .conftest import Clock, Recorder, canary_weights, live_weights

STEPS = StepPlan(weights=(10, 20, 30, 40, 100), interval_s=30)


class PausingTraffic(KubeTraffic):
    """The real adapter, with a pause right before a write is sent: the moment after its
    intent was recorded, where a replica frozen by SIGSTOP would sit."""

    def __init__(self, mesh: KubeMesh) -> None:
        super().__init__(mesh)
        self.armed = False
        self.reached = threading.Event()
        self.release = threading.Event()

    def write(self, planned: Planned) -> None:
        if self.armed:
            self.armed = False
            self.reached.set()
            self.release.wait(30)
        super().write(planned)


@pytest.fixture
def replica(
    cluster: SandboxApiServer, store: RolloutStore, clock: Clock, notes: Recorder
) -> Iterator[Engine]:
    """A second replica of the bot: its own adapter and engine, the same Redis and cluster."""
    mesh = KubeMesh(api_client_for(cluster.url), sleep=lambda _: None)
    yield Engine(store=store, traffic=KubeTraffic(mesh), notifier=notes, clock=clock)
    mesh.close()


@pytest.fixture
def paused(cluster: SandboxApiServer, store: RolloutStore, clock: Clock) -> Iterator[Engine]:
    mesh = KubeMesh(api_client_for(cluster.url), sleep=lambda _: None)
    yield Engine(store=store, traffic=PausingTraffic(mesh), notifier=Recorder(), clock=clock)
    mesh.close()


def start(engine: Engine) -> str:
    return engine.start(
        namespace="default", vs="weather", to=None, steps=STEPS, actor="U1", channel="C1"
    ).id


def patch_statuses(cluster: SandboxApiServer) -> list[int]:
    return [
        r.status for r in cluster.requests if r.method == "PATCH" and "virtualservices" in r.path
    ]


def test_a_writer_paused_after_recording_cannot_undo_an_operators_rollback(
    paused: Engine, replica: Engine, cluster: SandboxApiServer, store: RolloutStore
) -> None:
    rollout_id = start(replica)  # 10% is live already in the seed
    traffic = paused.traffic
    assert isinstance(traffic, PausingTraffic)
    traffic.armed = True
    with ThreadPoolExecutor(1) as pool:
        frozen = pool.submit(
            paused.set_weight,
            namespace="default",
            vs="weather",
            to=None,
            weight=30,
            steps=STEPS,
            actor="U2",
            channel="C1",
        )
        assert traffic.reached.wait(10)
        assert store.load(rollout_id).writing is not None  # its intent is on record
        rolled_back = replica.act("default", "weather", Rollback(actor="UONCALL"))
        assert rolled_back.phase is Phase.ROLLED_BACK and live_weights(cluster) == [100, 0]
        traffic.release.set()
        told = frozen.result(timeout=10)
    assert live_weights(cluster) == [100, 0]  # the late PATCH did not land
    assert 422 in patch_statuses(cluster)  # it was sent, and its test op failed
    assert told.phase is Phase.ROLLED_BACK and told.weight == 0  # what it returns is the truth
    final = store.load(rollout_id)
    assert (final.phase, final.weight, final.writing) == (Phase.ROLLED_BACK, 0, None)
    last = store.history("default", "weather")[-1]
    assert (last.action, last.weight_after) == ("rollback", 0)


def test_a_deposed_leader_resumed_after_the_takeover_cannot_take_its_step(
    paused: Engine,
    replica: Engine,
    cluster: SandboxApiServer,
    store: RolloutStore,
    clock: Clock,
) -> None:
    rollout_id = start(replica)
    store.redis.set("canary:leader:token", 1)
    traffic = paused.traffic
    assert isinstance(traffic, PausingTraffic)
    traffic.armed = True
    clock.advance(30)
    with ThreadPoolExecutor(1) as pool:
        frozen = pool.submit(paused.handle, rollout_id, StepDue(step=0), token=1)
        assert traffic.reached.wait(10)  # 20% recorded, about to be sent
        store.redis.set("canary:leader:token", 2)  # the lease moved on
        store.redis.delete("canary:mutex:default/weather")  # and the frozen holder's TTL ran out
        replica.fencing = lambda: 2
        taken_over = replica.recover(store.load(rollout_id))
        assert taken_over.weight == 20 and live_weights(cluster) == [80, 20]
        replica.handle(rollout_id, Rollback(actor="UONCALL"))
        traffic.release.set()
        with pytest.raises(Fenced):
            frozen.result(timeout=10)
    assert live_weights(cluster) == [100, 0]
    assert store.load(rollout_id).phase is Phase.ROLLED_BACK
    steps = [e.weight_after for e in store.history("default", "weather") if e.action == "step"]
    assert steps == [20]  # the step was taken once, by the new leader


def test_a_failed_step_is_not_a_step_taken_and_resume_retries_it(
    replica: Engine, cluster: SandboxApiServer, store: RolloutStore, clock: Clock
) -> None:
    rollout_id = start(replica)
    clock.advance(30)
    replica.handle(rollout_id, StepDue(step=0))  # 20% live
    cluster.fail_next(3, 500, method="PATCH", path_contains="virtualservices")
    clock.advance(30)
    paused = replica.handle(rollout_id, StepDue(step=1))
    assert (paused.phase, paused.weight, paused.step) == (Phase.PAUSED, 20, 1)
    assert "could not set 30%" in paused.reason and "the canary has 20%" in paused.reason
    assert live_weights(cluster) == [80, 20]
    replica.handle(rollout_id, Resume(actor="U1"))  # retries the step that failed
    replica.handle(rollout_id, StepDue(step=1))
    clock.advance(30)
    replica.handle(rollout_id, StepDue(step=2))
    assert [w for w in canary_weights(cluster) if w is not None] == [20, 30, 40]  # none skipped
    assert store.load(rollout_id).weight == 40
    assert "drift" not in [e.action for e in store.history("default", "weather")]


def test_a_change_refused_for_a_hand_edit_is_dropped_and_never_applied_later(
    replica: Engine, cluster: SandboxApiServer, store: RolloutStore, clock: Clock
) -> None:
    rollout_id = start(replica)
    cluster.after_next_get(
        "default",
        "virtualservices",
        "weather",
        lambda vs: [
            vs["spec"]["http"][0]["route"][0].update(weight=65),
            vs["spec"]["http"][0]["route"][1].update(weight=35),
        ],
    )
    refused = replica.set_weight(
        namespace="default",
        vs="weather",
        to=None,
        weight=25,
        steps=STEPS,
        actor="U2",
        channel="C1",
    )
    assert "someone else changed the canary's weights" in refused.reason
    assert refused.pending == () and refused.writing is None
    assert refused.weight == 35  # the record says what is live: the hand edit, not the 25%
    cluster.clear_log()
    clock.advance(60)
    replica.recover(store.load(rollout_id))  # what a crash recovery would find: nothing to do
    assert [r for r in cluster.requests if r.is_write] == []
    assert live_weights(cluster) == [65, 35]  # the hand edit stands


def test_concurrent_commands_on_two_replicas_each_get_the_truth(
    replica: Engine, cluster: SandboxApiServer, store: RolloutStore, clock: Clock
) -> None:
    other = Engine(
        store=store,
        traffic=KubeTraffic(KubeMesh(api_client_for(cluster.url), sleep=lambda _: None)),
        notifier=Recorder(),
        clock=clock,
    )
    start(replica)
    cluster.clear_log()
    barrier = threading.Barrier(20)

    def command(weight: int) -> tuple[int, Any]:
        engine = replica if weight % 2 else other
        barrier.wait()
        try:
            return weight, engine.set_weight(
                namespace="default",
                vs="weather",
                to=None,
                weight=weight,
                steps=STEPS,
                actor=f"U{weight}",
                channel="C1",
            )
        except Busy as e:
            return weight, e

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(command, range(11, 31)))
    told_live = {w for w, r in outcomes if not isinstance(r, Exception) and r.weight == w}
    patched = [w for w in canary_weights(cluster) if w is not None]
    audited = [
        e.weight_after for e in store.history("default", "weather") if e.action == "set-weight"
    ]
    assert sorted(patched) == sorted(told_live)  # told it went live exactly when it did
    assert sorted(audited) == sorted(patched)  # every live change audited exactly once
    assert store.load(store.active_for("default", "weather").id).weight == live_weights(cluster)[1]  # type: ignore[union-attr]


def test_zero_with_no_rollout_is_recorded_and_audited(
    replica: Engine, cluster: SandboxApiServer, store: RolloutStore
) -> None:
    done = replica.set_weight(
        namespace="default", vs="weather", to=None, weight=0, steps=STEPS, actor="U2", channel="C1"
    )
    assert (done.phase, done.weight, done.pending) == (Phase.APPLIED, 0, ())
    assert live_weights(cluster) == [100, 0]
    assert [(e.action, e.weight_after) for e in store.history("default", "weather")] == [
        ("set-weight", 0)
    ]
    assert store.active_for("default", "weather") is None  # the service is free again


def test_mirroring_with_no_rollout_is_recorded_and_audited(
    replica: Engine, cluster: SandboxApiServer, store: RolloutStore
) -> None:
    done = replica.set_mirror(
        namespace="default", vs="weather", to=None, mirror=20, actor="U2", channel="C1"
    )
    assert done.phase is Phase.APPLIED and done.pending == ()
    vs = cluster.get_object("default", "virtualservices", "weather")
    assert vs is not None and vs["spec"]["http"][0]["mirrorPercentage"] == {"value": 20.0}
    assert [e.action for e in store.history("default", "weather")] == ["mirror"]


def test_a_rollout_whose_record_redis_lost_is_taken_back_paused_with_a_rollback(
    replica: Engine, cluster: SandboxApiServer, store: RolloutStore, clock: Clock, notes: Recorder
) -> None:
    rollout_id = start(replica)
    clock.advance(30)
    replica.handle(rollout_id, StepDue(step=0))  # 20% live
    store.redis.flushdb()  # Redis restarted with nothing
    (adopted,) = replica.adopt_lost("default")
    assert (adopted.id, adopted.phase, adopted.weight, adopted.channel) == (
        rollout_id,
        Phase.PAUSED,
        20,
        "C1",
    )
    assert "lost its record" in adopted.reason
    assert ("adopted" in notes.events()) and replica.adopt_lost("default") == []
    replica.act("default", "weather", Rollback(actor="UONCALL"))  # the card's one tap
    assert live_weights(cluster) == [100, 0]


def test_a_save_sent_again_after_a_lost_reply_counts_once(
    replica: Engine, store: RolloutStore
) -> None:
    rollout = store.load(start(replica))
    changed = rollout.model_copy(update={"reason": "paused by U1"})
    first = store.save(changed, expected_version=rollout.version)
    again = store.save(changed, expected_version=rollout.version)  # the client's retry
    assert again == first and store.load(rollout.id).version == rollout.version + 1
    other = rollout.model_copy(update={"reason": "someone else"})
    with pytest.raises(VersionConflict):
        store.save(other, expected_version=rollout.version)


class RedisDiesAfterTheWrite(KubeTraffic):
    """The real adapter; Redis stops right after the PATCH has gone through."""

    def __init__(self, mesh: KubeMesh, redis_server: RedisServer) -> None:
        super().__init__(mesh)
        self.redis_server, self.armed = redis_server, False

    def write(self, planned: Planned) -> None:
        super().write(planned)
        if self.armed:
            self.armed = False
            self.redis_server.stop()


def test_a_change_that_went_live_as_redis_died_is_told_as_live_and_recorded_later(
    cluster: SandboxApiServer, clock: Clock, notes: Recorder, tmp_path: Path
) -> None:
    with (
        RedisServer(persist_dir=tmp_path) as redis_server,
        api_client_for(cluster.url) as api,
        connect(redis_server.url, timeout=0.5) as client,
    ):
        store = RolloutStore(client)
        traffic = RedisDiesAfterTheWrite(KubeMesh(api, sleep=lambda _: None), redis_server)
        # The per-service lease held when Redis died outlives the restart: kept short here.
        engine = Engine(store=store, traffic=traffic, notifier=notes, clock=clock, mutex=(300, 5.0))
        rollout_id = start(engine)
        traffic.armed = True
        with pytest.raises(Unrecorded, match="30% went live, but it could not be recorded"):
            engine.set_weight(
                namespace="default",
                vs="weather",
                to=None,
                weight=30,
                steps=STEPS,
                actor="U2",
                channel="C1",
            )
        assert live_weights(cluster) == [70, 30]
        redis_server.start()
        recovered = engine.recover(store.load(rollout_id))  # what the next resync does
        assert (recovered.weight, recovered.writing, recovered.pending) == (30, None, ())
        audited = [(e.action, e.actor, e.weight_after) for e in store.history("default", "weather")]
        assert audited[-1] == ("set-weight", "U2", 30)


def test_a_kubernetes_api_that_never_answers_does_not_wedge_a_step_or_a_rollback(
    cluster: SandboxApiServer, store: RolloutStore, clock: Clock, notes: Recorder
) -> None:
    with api_client_for(cluster.url) as api:
        mesh = KubeMesh(api, sleep=lambda _: None, timeout=(0.5, 0.5))
        engine = Engine(store=store, traffic=KubeTraffic(mesh), notifier=notes, clock=clock)
        rollout_id = start(engine)
        cluster.black_hole(method="PATCH", path_contains="virtualservices")
        clock.advance(30)
        stuck = engine.handle(rollout_id, StepDue(step=0))  # returns: every call has a deadline
        assert stuck.phase is Phase.PAUSED and "could not set 20%" in stuck.reason
        assert "cannot be reached" in stuck.reason and stuck.weight == 10
        cluster.clear_faults()
        back = engine.act("default", "weather", Rollback(actor="UONCALL"))
        assert (back.phase, back.weight, back.writing) == (Phase.ROLLED_BACK, 0, None)
        assert live_weights(cluster) == [100, 0]
        mesh.close()


def test_a_live_change_keeps_its_audit_entry_when_a_rollback_supersedes_its_bookkeeping(
    replica: Engine, cluster: SandboxApiServer, store: RolloutStore
) -> None:
    rollout = store.load(start(replica))
    # 30% went live; the process stopped before its notice and audit entry were written.
    owed = (
        Notify(event="set-weight", text="weather: 30%"),
        Audit(action="set-weight", actor="U2", weight_before=10, weight_after=30),
    )
    cluster.mutate(
        "default",
        "virtualservices",
        "weather",
        lambda vs: [
            vs["spec"]["http"][0]["route"][0].update(weight=70),
            vs["spec"]["http"][0]["route"][1].update(weight=30),
        ],
    )
    store.save(
        rollout.model_copy(update={"weight": 30, "pending": owed}),
        expected_version=rollout.version,
    )
    replica.act("default", "weather", Rollback(actor="UONCALL"))
    trail = [(e.action, e.actor, e.weight_after) for e in store.history("default", "weather")]
    assert trail[-2:] == [("set-weight", "U2", 30), ("rollback", "UONCALL", 0)]
    assert live_weights(cluster) == [100, 0]


def test_a_create_sent_again_after_a_lost_reply_counts_once(
    replica: Engine, store: RolloutStore
) -> None:
    rollout = store.load(start(replica))
    fresh = rollout.model_copy(
        update={
            "id": "r2",
            "target": rollout.target.model_copy(update={"vs": "climate"}),
            "version": 0,
        }
    )
    first = store.create(fresh)
    assert store.create(fresh) == first  # the client's retry of the same script
    with pytest.raises(AlreadyActive):
        store.create(fresh.model_copy(update={"id": "r3"}))


def test_a_start_planned_before_the_canary_took_all_traffic_records_what_is_live(
    replica: Engine, cluster: SandboxApiServer, store: RolloutStore
) -> None:
    """The service moved between the read the command was planned on and its write (here as
    a promotion leaves it: the canary alone): the write is refused at the API, the new plan is
    refused by the planner, and the record says what is live, not what was read first."""
    cluster.after_next_get(
        "default",
        "virtualservices",
        "weather",
        lambda vs: vs["spec"]["http"][0].update(
            route=[{"destination": vs["spec"]["http"][0]["route"][1]["destination"]}]
        ),
    )
    resolved = replica.resolve("default", "weather", to=None, channel="C1", weight=20)
    assert resolved.new and resolved.planned.live_weight == 10
    paused = replica.start(
        namespace="default",
        vs="weather",
        to=None,
        steps=STEPS,
        actor="U1",
        channel="C1",
        resolved=resolved,
    )
    assert paused.phase is Phase.PAUSED and paused.writing is None
    assert paused.weight == 100 == store.load(paused.id).weight
    assert "already takes all the traffic" in paused.reason
    assert "the canary has 100%" in paused.reason
    live = cluster.get_object("default", "virtualservices", "weather") or {}
    routes = live["spec"]["http"][0]["route"]
    assert [d["destination"]["subset"] for d in routes] == ["v2"]  # nothing written over it


def test_a_start_that_changes_nothing_is_checked_against_the_live_object_before_it_counts(
    replica: Engine, cluster: SandboxApiServer, store: RolloutStore
) -> None:
    """10% is live when the start is planned, so its first step writes nothing; a rollback
    lands before it is recorded. The start must not take the 10% read earlier as live."""
    cluster.after_next_get(
        "default",
        "virtualservices",
        "weather",
        lambda vs: [
            vs["spec"]["http"][0]["route"][0].update(weight=100),
            vs["spec"]["http"][0]["route"][1].update(weight=0),
        ],
    )
    resolved = replica.resolve("default", "weather", to=None, channel="C1", weight=10)
    assert resolved.planned.noop
    opened = replica.start(
        namespace="default",
        vs="weather",
        to=None,
        steps=STEPS,
        actor="U1",
        channel="C1",
        resolved=resolved,
    )
    assert opened.weight == 0 == store.load(opened.id).weight  # what is live, not what was read
    assert opened.phase is Phase.PAUSED
    assert "the canary has 0%" in opened.reason and "nothing was overwritten" in opened.reason
    assert live_weights(cluster) == [100, 0]  # nothing was written over the change


def test_a_step_is_held_while_the_canarys_pods_are_gone_and_resume_takes_it_once_they_are_back(
    replica: Engine, cluster: SandboxApiServer, store: RolloutStore, clock: Clock
) -> None:
    rollout_id = start(replica)  # 10% is live
    pods = [p["metadata"]["name"] for p in cluster.list_objects("pods", "default")]
    canary = [n for n in pods if n.startswith("weather-v2")]
    assert canary  # the seed's v2 Deployment runs
    for name in canary:
        cluster.mutate("default", "pods", name, lambda p: p["status"].update(phase="Failed"))
    clock.advance(30)
    held = replica.handle(rollout_id, StepDue(step=0))
    assert (held.phase, held.weight) == (Phase.PAUSED, 10)
    assert "subset 'v2' selects no ready pods (labels version=v2)" in held.reason
    assert live_weights(cluster) == [90, 10]  # nothing moved
    for name in canary:
        cluster.mutate("default", "pods", name, lambda p: p["status"].update(phase="Running"))
    replica.handle(rollout_id, Resume(actor="U1"))
    replica.handle(rollout_id, StepDue(step=0))
    assert store.load(rollout_id).weight == 20 and live_weights(cluster) == [80, 20]


class BlockingNotes(Recorder):
    """A notifier that holds the first `event` notice until released: a writer stopped in its
    bookkeeping, after its change went live and before its audit entry."""

    def __init__(self, event: str) -> None:
        super().__init__()
        self._event = event
        self.reached = threading.Event()
        self.release = threading.Event()

    def notify(self, rollout: Any, message: Notify) -> None:
        if message.event == self._event and not self.reached.is_set():
            self.reached.set()
            self.release.wait(30)
        super().notify(rollout, message)


def test_an_owed_audit_entry_carried_out_by_two_writers_is_logged_once_and_in_order(
    replica: Engine, cluster: SandboxApiServer, store: RolloutStore, clock: Clock
) -> None:
    rollout_id = start(replica)
    notes = BlockingNotes("set-weight")
    mesh = KubeMesh(api_client_for(cluster.url), sleep=lambda _: None)
    slow = Engine(store=store, traffic=KubeTraffic(mesh), notifier=notes, clock=clock)

    def set_weight() -> None:
        slow.set_weight(
            namespace="default",
            vs="weather",
            to=None,
            weight=30,
            steps=STEPS,
            actor="U2",
            channel="C1",
        )

    with ThreadPoolExecutor(1) as pool:
        human = pool.submit(set_weight)
        assert notes.reached.wait(30)  # 30% is live; its notice and audit entry are owed
        replica.act("default", "weather", Rollback(actor="UONCALL"))
        notes.release.set()
        human.result(30)
    mesh.close()
    trail = [(e.action, e.actor, e.weight_after) for e in store.history("default", "weather")]
    assert trail.count(("set-weight", "U2", 30)) == 1
    assert trail[-1] == ("rollback", "UONCALL", 0)
    assert live_weights(cluster) == [100, 0]
    assert store.load(rollout_id).phase is Phase.ROLLED_BACK
