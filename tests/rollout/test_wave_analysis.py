"""Continuous analysis on a wave's clusters, over real parts: `canary-bot serve` leading, two
sandbox API servers, real Redis, and a real Prometheus scraping the traffic simulator that
serves prod-eu's weather (prod-eu's own Prometheus; the bot has none of its own). Steps are
held for ten minutes; the leader looks at held steps every second."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import ClusterSettings, Server
from bot.rollout.model import Phase, Promote, Rollout, StepPlan
from bot.rollout.waves import Wave, WaveState
from bot.store.waves import WaveStore
from sandbox.apiserver import SandboxApiServer
from sandbox.prometheus import PrometheusServer
from sandbox.traffic import TrafficSimulator, VersionProfile
from tests.support.harness import wait_until
from tests.support.waves import leading_server, start_wave, wave_clusters, weights

from .conftest import Recorder

STEPS = StepPlan(weights=(20, 50, 100), interval_s=600)  # held far longer than the test runs
HEALTHY = VersionProfile(error_rate=0.002, latency_ms=40)
pytestmark = pytest.mark.slow


@pytest.fixture
def servers() -> Iterator[dict[str, SandboxApiServer]]:
    with wave_clusters() as servers:
        yield servers


@pytest.fixture
def simulator(
    servers: dict[str, SandboxApiServer], prometheus: PrometheusServer
) -> Iterator[TrafficSimulator]:
    """prod-eu's weather traffic, as its weights send it, scraped by its Prometheus."""
    with TrafficSimulator(
        api=servers["prod-eu"].url,
        namespace="default",
        vs="weather",
        service="weather-service",
        rate=200.0,
        versions={"v1": HEALTHY, "v2": HEALTHY},
        seed=11,
    ) as simulator:
        prometheus.set_targets([simulator.target])
        prometheus.wait_for_series('istio_requests_total{destination_version="v1"}')
        yield simulator


@pytest.fixture
def notes() -> Recorder:
    return Recorder()


@pytest.fixture
def server(
    servers: dict[str, SandboxApiServer],
    prometheus: PrometheusServer,
    redis_url: str,
    tmp_path: Path,
    notes: Recorder,
) -> Iterator[Server]:
    """The leader, with prod-eu judged by its own Prometheus and no PROMETHEUS_URL."""
    with leading_server(
        tmp_path,
        redis_url,
        servers,
        notes,
        home="canary-eu",
        cluster=lambda name, config: ClusterSettings(
            kubeconfig=config, prometheus_url=prometheus.url if name == "prod-eu" else None
        ),
        CANARY_ANALYSIS=1,
    ) as server:
        yield server


def test_a_wave_clusters_canary_that_turns_bad_inside_a_held_step_is_rolled_back_by_a_look(
    server: Server,
    servers: dict[str, SandboxApiServer],
    simulator: TrafficSimulator,
    prometheus: PrometheusServer,
    notes: Recorder,
) -> None:
    assert server.parts.waves is not None
    wave = start_wave(server.parts.waves, STEPS)
    book = WaveStore(server.parts.store.redis)
    first = server.parts.clusters["canary-eu"].engine
    first.act("default", "weather", Promote(actor="U1"))  # its hold is not waited out
    held = _held_on(server, book, wave, "prod-eu")
    prometheus.wait_for_series('istio_requests_total{destination_version="v2"}')
    simulator.set_profile("v2", VersionProfile(error_rate=0.3, latency_ms=40))
    prod = server.parts.clusters["prod-eu"].store
    wait_until(lambda: prod.load(held.id).settled, 90, "a look's rollback")
    final = prod.load(held.id)
    assert final.phase is Phase.FAILED
    assert final.weight == 0 and weights(servers["prod-eu"]) == [100, 0]
    assert final.reason.startswith("a failed health check at 20%: ")
    [verdict] = final.verdicts
    assert (verdict.outcome, verdict.step) == ("fail", 0)
    assert held.next_step_at is not None and verdict.at < held.next_step_at  # not yet due
    wait_until(lambda: book.load(wave.id).state is WaveState.HALTED, 10, "the wave's halt")
    assert book.load(wave.id).promoted == ("canary-eu",)
    assert weights(servers["canary-eu"]) == [100]  # promoted, and left so
    rolled_back = [m.text for _, m in notes.messages if m.event == "auto-rollback"]
    assert rolled_back and all(t.startswith("[prod-eu] ") for t in rolled_back)


def _held_on(server: Server, book: WaveStore, wave: Wave, cluster: str) -> Rollout:
    """The wave's rollout on `cluster` once its first step is live and held."""
    store = server.parts.clusters[cluster].store

    def held() -> Rollout | None:
        now = book.load(wave.id)
        if now.cluster != cluster or now.rollout is None:
            return None
        rollout = store.load(now.rollout)
        live = rollout.phase is Phase.PROGRESSING and rollout.weight == 20
        return rollout if live and not rollout.pending else None

    wait_until(held, 30, f"the wave's first step on {cluster}")
    found = held()
    assert found is not None
    return found
