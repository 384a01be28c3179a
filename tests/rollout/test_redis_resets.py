"""A Redis connection reset at any point of a scheduled step loses none of the step's effects:
the engine's store talks to a real Redis through a loopback proxy that sends an RST, and the
step is run once per store call, with the reset landing right before that call (the command
never reached Redis: the client sends it again) or while its reply is on the way back (it
ran, and its answer is lost: the client sends it again and must recognise its own write)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from bot.mesh.kube import KubeMesh
from bot.rollout.engine import Engine
from bot.rollout.model import Phase, StepDue, StepPlan
from bot.rollout.traffic import KubeTraffic
from bot.store.errors import StoreUnavailable
from bot.store.redis_store import RolloutStore, connect
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.seeding import load_yaml_documents, seed
from tests.support.faultproxy import FaultProxy
from tests.support.harness import seed_file

from .conftest import Clock, Recorder, live_weights

STEPS = StepPlan(weights=(10, 20, 100), interval_s=30)
LATENCY_S = 0.05  # each way through the proxy: a reply is on the wire for this long


class ResettingStore(RolloutStore):
    """The store, counting its calls; at call number `reset_at` every connection to Redis is
    reset, before the call is sent or (`in_flight`) while its reply is coming back."""

    def __init__(self, client: redis.Redis, proxy: FaultProxy) -> None:
        super().__init__(client)
        self.proxy, self.calls = proxy, 0
        self.reset_at: int | None = None
        self.in_flight = False

    def _tick(self) -> None:
        self.calls += 1
        if self.calls != self.reset_at:
            return
        if not self.in_flight:
            self.proxy.reset_all()
            return
        # the command reaches Redis after LATENCY_S; its reply, LATENCY_S later
        threading.Timer(1.5 * LATENCY_S, self.proxy.reset_all).start()

    def load(self, rollout_id: str) -> Any:
        self._tick()
        return super().load(rollout_id)

    def save(self, *args: Any, **kwargs: Any) -> Any:
        self._tick()
        return super().save(*args, **kwargs)

    def audit(self, **kwargs: Any) -> None:
        self._tick()
        super().audit(**kwargs)


@pytest.fixture
def proxy(redis_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(redis_url) as started:
        yield started


def run_step(
    proxy: FaultProxy, redis_url: str, reset_at: int | None, *, in_flight: bool
) -> tuple[ResettingStore, SandboxApiServer, Recorder, str]:
    """A fresh cluster and Redis, a rollout at 10%, then its first step with the reset."""
    redis.Redis.from_url(redis_url).flushdb()
    cluster = SandboxApiServer().start()
    seed(cluster, load_yaml_documents([seed_file("weather")]))
    store = ResettingStore(connect(proxy.url, timeout=1.0), proxy)
    notes, clock = Recorder(), Clock()
    with api_client_for(cluster.url) as api:
        mesh = KubeMesh(api, sleep=lambda _: None)
        engine = Engine(store=store, traffic=KubeTraffic(mesh), notifier=notes, clock=clock)
        rollout = engine.start(
            namespace="default", vs="weather", to=None, steps=STEPS, actor="U1", channel="C1"
        )
        clock.advance(STEPS.interval_s)
        proxy.set_latency(LATENCY_S)
        store.calls, store.reset_at, store.in_flight = 0, reset_at, in_flight
        engine.handle(rollout.id, StepDue(step=0))
        proxy.clear_faults()
        mesh.close()
    return store, cluster, notes, rollout.id


@pytest.mark.slow
@pytest.mark.parametrize("in_flight", [False, True], ids=["before-the-call", "reply-lost"])
def test_a_redis_reset_anywhere_in_a_step_loses_none_of_its_effects(
    proxy: FaultProxy, redis_url: str, in_flight: bool
) -> None:
    store, cluster, _, _ = run_step(proxy, redis_url, None, in_flight=False)
    calls = store.calls
    cluster.stop()
    assert calls >= 4, "a step loads, records its intent, its write, and audits"
    for reset_at in range(1, calls + 1):
        store, cluster, notes, rollout_id = run_step(
            proxy, redis_url, reset_at, in_flight=in_flight
        )
        try:
            where = f"reset at store call {reset_at} of {calls}"
            assert live_weights(cluster) == [80, 20], where
            record = RolloutStore(connect(redis_url)).load(rollout_id)
            assert (record.phase, record.weight, record.step) == (Phase.PROGRESSING, 20, 1), where
            assert record.writing is None and not record.pending, where
            trail = RolloutStore(connect(redis_url)).history("default", "weather")
            steps = [e.weight_after for e in trail if e.action == "step"]
            assert steps == [20], where  # audited once
            assert not [e for e in trail if "drift" in e.action], where
            assert "step" in notes.events(), where
        finally:
            cluster.stop()


def test_a_redis_that_never_answers_fails_a_command_with_a_clear_error_and_changes_nothing(
    proxy: FaultProxy, redis_url: str, cluster: SandboxApiServer
) -> None:
    """The bot's own store (its default deadline) against a Redis that takes the bytes and
    never answers: the command fails, saying what to check, instead of hanging the worker,
    and no traffic moves without a record."""
    redis.Redis.from_url(redis_url).flushdb()
    store = RolloutStore(connect(proxy.url))
    with api_client_for(cluster.url) as api:
        mesh = KubeMesh(api, sleep=lambda _: None)
        engine = Engine(store=store, traffic=KubeTraffic(mesh), notifier=Recorder(), clock=Clock())
        engine.start(
            namespace="default", vs="weather", to=None, steps=STEPS, actor="U1", channel="C1"
        )
        before = cluster.get_object("default", "virtualservices", "weather")
        proxy.black_hole()
        with pytest.raises(
            StoreUnavailable, match=r"did not answer in time.*check that Redis is up"
        ):
            engine.set_weight(
                namespace="default",
                vs="weather",
                to=None,
                weight=50,
                steps=STEPS,
                actor="U2",
                channel="C1",
            )
        proxy.clear_faults()
        mesh.close()
    assert cluster.get_object("default", "virtualservices", "weather") == before
