"""Health checks of a TCP service on real parts: Istio's tcp-echo traffic-shifting task in the
sandbox API server, the traffic simulator counting connections as Istio's TCP metrics do, a real
Prometheus, real Redis and the engine with the sequential check. A TCP rollout is judged on
failed connections (Envoy's response flags), one query a look, instead of waiting forever on
request metrics a TCP service never has."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from bot.health.analysis import SequentialCheck
from bot.health.client import PrometheusClient, Vector
from bot.mesh.kube import KubeMesh
from bot.rollout.analysis import Analyst
from bot.rollout.engine import Engine
from bot.rollout.model import Phase, Rollout, StepDue, StepPlan
from bot.rollout.traffic import KubeTraffic
from bot.store.lease import LeaderLease
from bot.store.redis_store import RolloutStore, connect
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.prometheus import PrometheusServer
from sandbox.seeding import seed
from sandbox.traffic import TrafficSimulator, VersionProfile
from tests.support.harness import wait_until
from tests.support.tcp_tls_shapes import TCP_DR, TCP_ECHO

from ..rollout.conftest import Recorder

NAMESPACE = TCP_ECHO["metadata"]["namespace"]
STEPS = StepPlan(weights=(20, 50, 100), interval_s=600)  # held far longer than the test runs
HEALTHY = VersionProfile(error_rate=0.002)
pytestmark = pytest.mark.slow


def deployment(version: str) -> dict[str, Any]:
    """tcp-echo's Deployment of `version`: seeded as its ready Pod."""
    labels = {"app": "tcp-echo", "version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"tcp-echo-{version}", "namespace": NAMESPACE},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": labels}}},
    }


class AskedClient(PrometheusClient):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.asked: list[str] = []

    def query(self, promql: str, at: datetime | None = None) -> Vector:
        self.asked.append(promql)
        return super().query(promql, at)


class Rig:
    def __init__(
        self, engine: Engine, simulator: TrafficSimulator, prometheus: PrometheusServer
    ) -> None:
        self.engine, self.simulator, self.prometheus = engine, simulator, prometheus
        self.client: AskedClient = engine.health.client  # type: ignore[attr-defined]
        due = engine.store.due  # type: ignore[attr-defined]
        self.analyst = Analyst(engine, due, every=timedelta(seconds=1))

    def start(self) -> Rollout:
        return self.engine.start(
            namespace=NAMESPACE, vs="tcp-echo", to="v2", steps=STEPS, actor="U1", channel="C1"
        )

    def looks(self, rollout_id: str, count: int) -> list[str]:
        """A look after each new scrape, until the rollout is no longer held."""
        outcomes = []
        for _ in range(count):
            verdict = self.analyst.look(rollout_id)
            if verdict is None:
                break
            outcomes.append(verdict.outcome)
            self._next_scrape()
        return outcomes

    def _next_scrape(self) -> None:
        seen = self._last_scrape()
        wait_until(lambda: self._last_scrape() > seen, timeout=10, what="the next scrape")

    def _last_scrape(self) -> float:
        found = self.prometheus.query("max(timestamp(istio_tcp_connections_closed_total))")
        return float(found[0]["value"][1]) if found else 0.0


@pytest.fixture
def rig(prometheus_server: PrometheusServer, redis_url: str) -> Iterator[Rig]:
    with SandboxApiServer() as cluster:
        seed(cluster, [TCP_ECHO, TCP_DR, *map(deployment, ("v1", "v2"))])
        with TrafficSimulator(
            api=cluster.url,
            namespace=NAMESPACE,
            vs="tcp-echo",
            service="tcp-echo",
            rate=200.0,
            versions={"v1": HEALTHY, "v2": HEALTHY},
            seed=5,
        ) as simulator:
            prometheus_server.set_targets([simulator.target])
            prometheus_server.wait_for_series(
                'istio_tcp_connections_closed_total{destination_version="v2"}'
            )
            mesh = KubeMesh(api_client_for(cluster.url))
            lease = LeaderLease(connect(redis_url), identity="the leader", ttl_ms=600_000)
            assert lease.try_acquire() is not None
            engine = Engine(
                store=RolloutStore(connect(redis_url)),
                traffic=KubeTraffic(mesh),
                notifier=Recorder(),
                clock=lambda: datetime.now(UTC),
                health=SequentialCheck(
                    AskedClient(prometheus_server.url),
                    service=lambda target: target.host or target.vs,
                    min_window=timedelta(seconds=3),
                ),
                fencing=lambda: lease.token,
            )
            yield Rig(engine, simulator, prometheus_server)
            mesh.close()


def test_a_tcp_canary_whose_connections_fail_is_rolled_back(rig: Rig) -> None:
    started = rig.start()
    assert started.target.protocol == "tcp"
    before = rig.looks(started.id, 3)
    assert before and "fail" not in before
    rig.simulator.set_profile("v2", VersionProfile(error_rate=0.3))
    rig.looks(started.id, 60)
    final = rig.engine.store.load(started.id)
    assert (final.phase, final.weight) == (Phase.FAILED, 0)
    assert "sure it is worse" in final.verdicts[-1].summary
    assert rig.client.asked  # one query a look, on the TCP metric only
    assert all("istio_tcp_connections_closed_total" in q for q in rig.client.asked)


def test_a_healthy_tcp_canary_passes_its_looks_instead_of_staying_inconclusive(rig: Rig) -> None:
    started = rig.start()
    outcomes = rig.looks(started.id, 6)
    assert outcomes.count("pass") >= 1 and "fail" not in outcomes
    assert rig.engine.store.load(started.id).phase is Phase.PROGRESSING
    assert len(rig.client.asked) == len(outcomes)


def test_a_healthy_tcp_canary_is_promoted_step_by_step_on_passing_checks(rig: Rig) -> None:
    """Each step's own check, when it falls due, judges the connections and passes."""
    started = rig.engine.start(
        namespace=NAMESPACE,
        vs="tcp-echo",
        to="v2",
        steps=StepPlan(weights=(50, 100), interval_s=4),
        actor="U1",
        channel="C1",
    )
    for _ in range(10):
        rollout = rig.engine.store.load(started.id)
        if rollout.phase is not Phase.PROGRESSING:
            break
        due = rollout.next_step_at
        assert due is not None
        wait_until(partial(_reached, due), timeout=10, what="the step falling due")
        rig.engine.handle(started.id, StepDue(step=rollout.step))
    final = rig.engine.store.load(started.id)
    assert (final.phase, final.weight) == (Phase.PROMOTED, 100), final.reason
    assert [v.outcome for v in final.verdicts][-2:] == ["pass", "pass"]
    assert all("istio_tcp_connections_closed_total" in q for q in rig.client.asked)


def _reached(moment: datetime) -> bool:
    return datetime.now(UTC) >= moment
