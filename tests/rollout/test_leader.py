"""Leader election between replicas over one real Redis: one leader, hand-over, expiry, loss.

Each replica is a `Leadership` over its own client and `LeaderLease`, as separate processes
would be. What the replicas are told (elected with a token, deposed) is recorded in one log in
the order it happened, and the tests wait on that log, never on a clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from bot.rollout.leader import Leadership
from bot.store.lease import LeaderLease
from bot.store.redis_store import Keys, connect
from sandbox.redis_server import RedisServer

WAIT_S = 30  # how long to wait for what must happen before calling it lost
LEADER_KEY = Keys().leader
Entry = tuple[str, str, int | None]  # ("elected" | "deposed", replica, token)


class Elections:
    """Every election and deposition across the replicas, in order."""

    def __init__(self) -> None:
        self.log: list[Entry] = []
        self._changed = threading.Condition()

    def record(self, entry: Entry) -> None:
        with self._changed:
            self.log.append(entry)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[Entry]], bool], what: str) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self.log), WAIT_S), (
                f"{what}; what happened: {self.log}"
            )

    def wait_elected(self, name: str, times: int = 1) -> int:
        """The token `name` got at its `times`-th election."""
        self.wait_for(lambda log: len(tokens_of(log, name)) >= times, f"{name} was not elected")
        return tokens_of(self.log, name)[times - 1]

    def wait_deposed(self, name: str) -> None:
        self.wait_for(lambda log: ("deposed", name, None) in log, f"{name} was not deposed")

    def tokens(self) -> list[int]:
        return [int(token) for kind, _, token in self.log if kind == "elected" and token]


def tokens_of(log: list[Entry], name: str) -> list[int]:
    return [int(t) for kind, who, t in log if kind == "elected" and who == name and t]


class WatchedLease(LeaderLease):
    """The lease, telling the test when it was refused (someone else holds it) and able to
    stall its renewals the way a paused process would."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = threading.Event()
        self.stall, self.stalled, self.unstall = (threading.Event() for _ in range(3))

    def try_acquire(self) -> int | None:
        token = super().try_acquire()
        if token is None:
            self.refused.set()
        return token

    def renew(self) -> bool:
        if self.stall.is_set():
            self.stalled.set()
            self.unstall.wait(WAIT_S)
        return super().renew()


class Replica:
    def __init__(self, url: str, name: str, elections: Elections, ttl_s: float) -> None:
        self.name, self.client = name, connect(url)
        self.lease = WatchedLease(self.client, identity=name, ttl_ms=int(ttl_s * 1000))
        self.leadership = Leadership(
            self.lease,
            ttl_s=ttl_s,
            on_elected=lambda token: elections.record(("elected", name, token)),
            on_deposed=lambda: elections.record(("deposed", name, None)),
        )
        self.started = self.stopped = False

    def start(self) -> Replica:
        self.leadership.start()
        self.started = True
        return self

    def stop(self) -> None:
        self.lease.unstall.set()
        if self.started and not self.stopped:
            self.leadership.stop()
        self.stopped = True
        self.client.close()


@pytest.fixture
def elections() -> Elections:
    return Elections()


@pytest.fixture
def replicas(redis_url: str, elections: Elections) -> Iterator[Callable[..., Replica]]:
    """Make replicas (`ttl_s` is their lease's TTL); each is stopped after the test."""
    made: list[Replica] = []

    def replica(name: str, ttl_s: float = 60.0) -> Replica:
        made.append(Replica(redis_url, name, elections, ttl_s))
        return made[-1]

    yield replica
    for each in made:
        each.stop()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    made = connect(redis_url)
    yield made
    made.close()


def test_exactly_one_of_two_replicas_is_elected(
    replicas: Callable[..., Replica], elections: Elections, client: redis.Redis
) -> None:
    a, b = replicas("replica-a").start(), replicas("replica-b").start()

    elections.wait_for(bool, "nobody was elected")
    [(kind, winner, token)] = elections.log
    loser = b if winner == a.name else a
    loser.lease.refused.clear()
    assert loser.lease.refused.wait(WAIT_S), "the other replica stopped asking"

    assert kind == "elected" and token is not None
    assert elections.log == [("elected", winner, token)]
    assert client.get(LEADER_KEY) == winner
    assert (a.leadership.leading, b.leadership.leading) == (winner == a.name, winner == b.name)


def test_the_other_replica_takes_over_at_once_when_the_leader_stops(
    replicas: Callable[..., Replica], elections: Elections, client: redis.Redis
) -> None:
    a = replicas("replica-a").start()  # a 60 s lease: only a hand-over passes it on in time
    first = elections.wait_elected("replica-a")
    b = replicas("replica-b").start()
    b.lease.refused.clear()
    assert b.lease.refused.wait(WAIT_S)

    a.stop()

    assert elections.log[:2] == [("elected", "replica-a", first), ("deposed", "replica-a", None)]
    assert client.get(LEADER_KEY) in (None, "replica-b")  # released, not left to expire
    second = elections.wait_elected("replica-b")
    assert second > first
    assert b.leadership.leading and not a.leadership.leading


def test_the_other_replica_takes_over_when_the_leaders_lease_expires_and_the_old_one_is_deposed(
    replicas: Callable[..., Replica], elections: Elections
) -> None:
    a = replicas("replica-a", ttl_s=0.6).start()
    first = elections.wait_elected("replica-a")
    b = replicas("replica-b", ttl_s=0.6).start()
    a.lease.stall.set()  # a stops renewing, as a paused process would
    assert a.lease.stalled.wait(WAIT_S)

    second = elections.wait_elected("replica-b")

    assert second > first
    assert a.lease.token is None and not a.leadership.leading  # past its own deadline
    assert ("deposed", "replica-a", None) not in elections.log  # it has not noticed yet
    a.lease.unstall.set()
    elections.wait_deposed("replica-a")
    assert tokens_of(elections.log, "replica-a") == [first]
    assert b.leadership.leading


@pytest.mark.parametrize(
    "take",
    [lambda c: c.delete(LEADER_KEY), lambda c: c.set(LEADER_KEY, "intruder", px=500)],
    ids=["deleted", "taken by another"],
)
def test_a_leader_whose_lease_is_gone_from_redis_is_deposed_then_elected_with_a_greater_token(
    replicas: Callable[..., Replica],
    elections: Elections,
    client: redis.Redis,
    take: Callable[[redis.Redis], object],
) -> None:
    replicas("replica-a", ttl_s=1.5).start()
    first = elections.wait_elected("replica-a")

    take(client)

    elections.wait_deposed("replica-a")
    second = elections.wait_elected("replica-a", times=2)
    assert second > first
    assert [kind for kind, _, _ in elections.log] == ["elected", "deposed", "elected"]


def test_fencing_tokens_strictly_increase_across_hand_overs(
    replicas: Callable[..., Replica], elections: Elections
) -> None:
    leader = replicas("replica-0").start()
    elections.wait_elected(leader.name)
    for n in range(1, 6):
        successor = replicas(f"replica-{n}").start()
        leader.stop()
        elections.wait_elected(successor.name)
        assert successor.lease.token == tokens_of(elections.log, successor.name)[0]
        leader = successor

    tokens = elections.tokens()
    assert len(tokens) == 6
    assert tokens == sorted(set(tokens))  # each greater than the one before


def test_a_replica_that_never_led_is_not_deposed_when_it_stops(
    replicas: Callable[..., Replica], elections: Elections
) -> None:
    replicas("replica-a").start()
    elections.wait_elected("replica-a")
    b = replicas("replica-b").start()
    assert b.lease.refused.wait(WAIT_S)

    b.stop()

    assert elections.log == [("elected", "replica-a", tokens_of(elections.log, "replica-a")[0])]


def test_a_leader_that_cannot_reach_redis_steps_down_when_its_lease_would_expire(
    replicas: Callable[..., Replica], elections: Elections, redis_server: RedisServer
) -> None:
    a = replicas("replica-a", ttl_s=1.0).start()
    elections.wait_elected("replica-a")

    redis_server.stop()
    try:
        elections.wait_deposed("replica-a")
        assert a.lease.token is None and not a.leadership.leading
    finally:
        redis_server.start()
