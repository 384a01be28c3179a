"""Health checks deciding real rollouts: the traffic simulator, a real Prometheus scraping it
every second, the sandbox API server, real Redis, and the engine with the Prometheus check."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.health.check import HealthCheck
from bot.health.client import PrometheusClient
from bot.mesh.kube import KubeMesh
from bot.rollout.engine import Engine
from bot.rollout.model import Phase, Rollout, StepDue, StepPlan
from bot.rollout.traffic import KubeTraffic
from bot.store.redis_store import RolloutStore, connect
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.prometheus import PrometheusServer
from sandbox.seeding import load_yaml_documents, seed
from sandbox.traffic import TrafficSimulator, VersionProfile
from tests.support.harness import seed_file, wait_until

from ..rollout.conftest import Recorder

WEATHER = seed_file("weather")
STEPS = StepPlan(weights=(20, 50, 100), interval_s=2)
WINDOW = timedelta(seconds=6)
pytestmark = pytest.mark.slow


class Rig:
    def __init__(
        self,
        engine: Engine,
        simulator: TrafficSimulator,
        notes: Recorder,
        prometheus: PrometheusServer,
    ) -> None:
        self.engine, self.simulator, self.notes = engine, simulator, notes
        self.prometheus = prometheus

    def start(self) -> str:
        return self.engine.start(
            namespace="default", vs="weather", to="v2", steps=STEPS, actor="U1", channel="C1"
        ).id

    def drive(self, rollout_id: str, limit: float = 40) -> Rollout:
        """Fire each step when it falls due, in real time, until the rollout stops moving."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            rollout = self.engine.store.load(rollout_id)
            if rollout.phase is not Phase.PROGRESSING:
                return rollout
            assert rollout.next_step_at is not None
            time.sleep(max(0.0, (rollout.next_step_at - datetime.now(UTC)).total_seconds()))
            self.engine.handle(rollout_id, StepDue(step=rollout.step))
        raise AssertionError("the rollout did not settle")

    def wait_for_errors_over_the_window(self, version: str) -> None:
        """Until Prometheus has a whole window of `version` with errors in it: a check made
        sooner judges the healthy traffic from before as well, and may pass."""
        since = time.time()
        query = f'istio_requests_total{{destination_version="{version}",response_code=~"5.."}}'
        self.prometheus.wait_for_series(query)
        wait_until(
            lambda: (
                time.time() - since > WINDOW.total_seconds()
                and self.prometheus.query(f"sum(increase({query}[{int(WINDOW.total_seconds())}s]))")
            ),
            timeout=30,
            what=f"a window of {version}'s errors in Prometheus",
        )

    def thread(self) -> list[str]:
        return [m.text for _, m in self.notes.messages if m.event == "health"]


@pytest.fixture
def rig(prometheus_server: PrometheusServer, redis_url: str) -> Iterator[Rig]:
    with SandboxApiServer() as cluster:
        seed(cluster, load_yaml_documents([WEATHER]))
        profiles = {"v1": VersionProfile(latency_ms=40), "v2": VersionProfile(latency_ms=40)}
        with TrafficSimulator(
            api=cluster.url,
            namespace="default",
            vs="weather",
            service="weather-service",
            rate=300.0,
            versions=profiles,
            seed=7,
        ) as simulator:
            prometheus_server.set_targets([simulator.target])
            prometheus_server.wait_for_series('istio_requests_total{destination_version="v2"}')
            mesh = KubeMesh(api_client_for(cluster.url))
            notes = Recorder()
            health = HealthCheck(
                PrometheusClient(prometheus_server.url),
                window=WINDOW,
                service=lambda target: target.host or target.vs,
            )
            engine = Engine(
                store=RolloutStore(connect(redis_url)),
                traffic=KubeTraffic(mesh),
                notifier=notes,
                clock=lambda: datetime.now(UTC),
                health=health,
            )
            yield Rig(engine, simulator, notes, prometheus_server)
            mesh.close()


def test_a_healthy_canary_is_promoted(rig: Rig) -> None:
    final = rig.drive(rig.start())
    assert final.phase is Phase.PROMOTED
    # each step promoted on a pass; a fixed threshold may cry wolf once on a few seconds of
    # real traffic (seen under load), and is then retried, as the judge's noise is
    outcomes = [v.outcome for v in final.verdicts]
    assert outcomes[-3:] == ["pass", "pass", "pass"] and outcomes.count("fail") <= 1, outcomes
    assert {v.step for v in final.verdicts if v.outcome == "pass"} == {0, 1, 2}
    assert all((v.figures["canary_requests"] or 0) >= 20 for v in final.verdicts)


def test_five_percent_errors_roll_back_after_the_failure_limit(rig: Rig) -> None:
    rig.simulator.set_profile("v2", VersionProfile(error_rate=0.05, latency_ms=40))
    rig.wait_for_errors_over_the_window("v2")
    final = rig.drive(rig.start())
    assert (final.phase, final.weight) == (Phase.FAILED, 0)
    assert [v.outcome for v in final.verdicts] == ["fail", "fail"]
    assert "2 failed health checks in a row" in final.reason
    assert len(rig.thread()) == 2 and all("success rate" in text for text in rig.thread())
    assert "below 99.0%" in final.verdicts[-1].summary


def test_a_canary_three_times_slower_is_rolled_back(rig: Rig) -> None:
    rig.simulator.set_profile("v2", VersionProfile(latency_ms=120))
    final = rig.drive(rig.start())
    assert final.phase is Phase.FAILED
    assert "p99" in final.verdicts[-1].summary
    ratio = (final.verdicts[-1].figures["canary_p99_ms"] or 0) / (
        final.verdicts[-1].figures["stable_p99_ms"] or 1
    )
    assert ratio > 1.2


def test_no_traffic_to_the_canary_pauses_and_never_promotes(rig: Rig) -> None:
    rig.engine.health = HealthCheck(
        PrometheusClient(rig.prometheus.url),
        window=WINDOW,
        service=lambda target: "climate-service",
    )  # no such series
    final = rig.drive(rig.start())
    assert final.phase is Phase.PAUSED and final.weight == 20
    assert [v.outcome for v in final.verdicts] == ["inconclusive"] * 3
    assert "a human should look" in final.reason


def test_prometheus_down_mid_rollout_pauses_and_promotes_nothing(rig: Rig) -> None:
    rollout_id = rig.start()
    rig.prometheus.stop()
    try:
        final = rig.drive(rollout_id)
    finally:
        rig.prometheus.start()
    assert final.phase is Phase.PAUSED and final.weight == 20
    assert {v.outcome for v in final.verdicts} == {"inconclusive"}
    assert "cannot be reached" in final.verdicts[-1].summary or "unreachable" in (
        final.verdicts[-1].summary.lower()
    )
