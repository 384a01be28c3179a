"""The watchdog: work past its deadline turns /healthz red, so a wedged replica is restarted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.app import Server, Settings
from bot.ops.watchdog import Watchdog
from bot.rollout.scheduler import StepScheduler
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import write_kubeconfig
from sandbox.redis_server import RedisServer
from tests.support.harness import get


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_idle_is_healthy() -> None:
    clock = FakeClock()
    assert Watchdog(clock).healthy(clock()) == (True, "ok")


def test_work_past_its_deadline_is_named_until_it_finishes() -> None:
    clock = FakeClock()
    watchdog = Watchdog(clock)
    with watchdog.busy("step 2 of rollout r1"):
        clock.advance(60)
        assert watchdog.healthy(clock()) == (True, "ok")
        clock.advance(15)
        assert watchdog.healthy(clock()) == (
            False,
            "step 2 of rollout r1 has run 75 s, past its 60 s deadline",
        )
    assert watchdog.healthy(clock()) == (True, "ok")


def test_each_piece_of_work_may_have_its_own_deadline() -> None:
    clock = FakeClock()
    watchdog = Watchdog(clock, deadline_s=30)
    with watchdog.busy("resync"), watchdog.busy("chart", deadline_s=5):
        clock.advance(10)
        assert watchdog.healthy(clock()) == (False, "chart has run 10 s, past its 5 s deadline")
        clock.advance(25)
        ok, why = watchdog.healthy(clock())
        assert not ok
        assert why == (
            "resync has run 35 s, past its 30 s deadline; chart has run 35 s, past its 5 s deadline"
        )


def test_work_that_fails_is_no_longer_watched() -> None:
    clock = FakeClock()
    watchdog = Watchdog(clock)
    with pytest.raises(RuntimeError), watchdog.busy("step 1 of rollout r1"):
        raise RuntimeError("Prometheus hung up")
    clock.advance(3600)
    assert watchdog.healthy(clock()) == (True, "ok")


def test_two_runs_of_the_same_work_are_watched_apart() -> None:
    clock = FakeClock()
    watchdog = Watchdog(clock)
    with watchdog.busy("resync"):
        clock.advance(50)
        with watchdog.busy("resync"):
            pass
        clock.advance(20)
        assert watchdog.healthy(clock()) == (False, "resync has run 70 s, past its 60 s deadline")


def test_a_step_hung_in_the_scheduler_is_named_until_it_returns() -> None:
    clock = FakeClock()
    watchdog = Watchdog(clock)
    started, release = threading.Event(), threading.Event()

    def fire(rollout_id: str, step: int) -> None:
        started.set()
        release.wait(30)

    scheduler = StepScheduler(fire, workers=1, watchdog=watchdog)
    scheduler.resume()
    try:
        scheduler.schedule("r1", datetime.now(UTC), 3)
        assert started.wait(10), "the step never ran"
        clock.advance(61)
        assert watchdog.healthy(clock()) == (
            False,
            "step 3 of rollout r1 has run 61 s, past its 60 s deadline",
        )
    finally:
        release.set()
        scheduler.shutdown()
    assert watchdog.healthy(clock()) == (True, "ok")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> Iterator[Server]:
    with SandboxApiServer() as cluster, RedisServer(persist_dir=tmp_path / "redis") as redis:
        settings = Settings.model_validate(
            {
                "REDIS_URL": redis.url,
                "CANARY_HTTP_PORT": 0,
                "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", cluster.url)),
            }
        )
        bot = Server(settings, monotonic=clock)
        bot.start()
        try:
            yield bot
        finally:
            bot.stop()


def test_healthz_fails_while_work_is_stuck_and_recovers_when_it_ends(
    server: Server, clock: FakeClock
) -> None:
    assert server.http is not None
    assert server.scheduler.watchdog is server.watchdog
    healthz = server.http.url + "/healthz"
    # A deadline shorter than the resync's, so a resync running now is never the stuck one.
    with server.watchdog.busy("step 2 of rollout r1", deadline_s=5):
        assert get(healthz) == (200, "ok\n")
        clock.advance(6)
        assert get(healthz) == (503, "step 2 of rollout r1 has run 6 s, past its 5 s deadline\n")
    assert get(healthz) == (200, "ok\n")
