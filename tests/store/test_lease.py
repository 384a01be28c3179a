"""The leader lease against a real redis-server: exclusive, fenced, renewable, releasable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from bot.store.lease import LeaderLease
from bot.store.redis_store import Keys, connect
from tests.support.harness import wait_until

KEYS = Keys()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(redis_url)
    yield client
    client.close()


def lease(client: redis.Redis, identity: str, ttl_ms: int = 5000) -> LeaderLease:
    return LeaderLease(client, identity=identity, ttl_ms=ttl_ms)


def test_only_one_identity_holds_the_lease(client: redis.Redis) -> None:
    a, b = lease(client, "replica-a"), lease(client, "replica-b")

    token = a.try_acquire()

    assert token == 1 and a.token == 1
    assert b.try_acquire() is None and b.token is None
    assert a.holder() == b.holder() == "replica-a"


def test_acquiring_again_extends_and_keeps_the_token(client: redis.Redis) -> None:
    a = lease(client, "replica-a", ttl_ms=10_000)
    first = a.try_acquire()
    client.pexpire(KEYS.leader, 100)

    assert a.try_acquire() == first
    assert client.pttl(KEYS.leader) > 9_000


def test_every_new_leader_gets_a_greater_token(client: redis.Redis) -> None:
    a, b = lease(client, "replica-a"), lease(client, "replica-b")
    tokens = []
    for leader in (a, b, a, b):
        token = leader.try_acquire()
        assert token is not None
        tokens.append(token)
        leader.release()

    assert tokens == sorted(set(tokens))


def test_renew_pushes_the_expiry_out(client: redis.Redis) -> None:
    a = lease(client, "replica-a", ttl_ms=10_000)
    a.try_acquire()
    client.pexpire(KEYS.leader, 100)

    assert a.renew() is True

    assert client.pttl(KEYS.leader) > 9_000
    assert a.token == 1


def test_renew_by_a_non_holder_fails_and_leaves_the_lease_alone(client: redis.Redis) -> None:
    a, b = lease(client, "replica-a"), lease(client, "replica-b")
    a.try_acquire()

    assert b.renew() is False
    assert b.token is None
    assert a.holder() == "replica-a" and a.token == 1


def test_release_by_a_non_holder_leaves_the_lease_alone(client: redis.Redis) -> None:
    a, b = lease(client, "replica-a"), lease(client, "replica-b")
    a.try_acquire()

    b.release()

    assert a.holder() == "replica-a"
    assert a.renew() is True


def test_release_lets_another_take_over_at_once(client: redis.Redis) -> None:
    a, b = lease(client, "replica-a"), lease(client, "replica-b")
    first = a.try_acquire()

    a.release()

    assert a.token is None and a.holder() is None
    second = b.try_acquire()
    assert first is not None and second is not None and second > first


def test_expiry_lets_another_take_over(client: redis.Redis) -> None:
    a, b = lease(client, "replica-a", ttl_ms=50), lease(client, "replica-b")
    first = a.try_acquire()

    wait_until(lambda: b.try_acquire() is not None, 2, "the lease to expire")

    second = b.token
    assert first is not None and second is not None and second > first
    assert a.renew() is False
    assert a.token is None
    assert a.holder() == "replica-b"


def test_the_token_lapses_locally_once_the_ttl_may_have_passed(client: redis.Redis) -> None:
    clock = FakeClock()
    a = LeaderLease(client, identity="replica-a", ttl_ms=5000, clock=clock)
    a.try_acquire()

    clock.now += 4.9
    assert a.token == 1
    clock.now += 0.2
    assert a.token is None  # Redis may have handed the lease on: stop writing

    assert a.renew() is True and a.token == 1


def test_a_prefix_keeps_two_bots_apart(client: redis.Redis) -> None:
    blue = LeaderLease(client, identity="replica-a", prefix="blue")
    green = LeaderLease(client, identity="replica-b", prefix="green")

    assert blue.try_acquire() == 1
    assert green.try_acquire() == 1
