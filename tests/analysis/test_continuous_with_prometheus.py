"""Continuous analysis on real parts: the traffic simulator, a real Prometheus scraping it every
second, the sandbox API server, real Redis with a leader's fencing token, and the engine with
the sequential check. Steps are held for minutes; the analyst looks every second."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.health.analysis import SequentialCheck
from bot.health.client import PrometheusClient, Vector
from bot.mesh.kube import KubeMesh
from bot.rollout.analysis import Analyst
from bot.rollout.engine import Engine
from bot.rollout.model import Phase, Rollout, StepPlan
from bot.rollout.traffic import KubeTraffic
from bot.store.lease import LeaderLease
from bot.store.redis_store import RolloutStore, connect
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.prometheus import PrometheusServer
from sandbox.seeding import load_yaml_documents, seed
from sandbox.traffic import TrafficSimulator, VersionProfile
from tests.support.harness import seed_file, wait_until

from ..rollout.conftest import Recorder

WEATHER = seed_file("weather")
STEPS = StepPlan(weights=(20, 50, 100), interval_s=600)  # held far longer than the test runs
pytestmark = pytest.mark.slow


class CountingClient(PrometheusClient):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.asked: list[str] = []

    def query(self, promql: str, at: datetime | None = None) -> Vector:
        self.asked.append(promql)
        return super().query(promql, at)


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
        self.client: CountingClient = engine.health.client  # type: ignore[attr-defined]
        due = engine.store.due  # type: ignore[attr-defined]
        self.analyst = Analyst(engine, due, every=timedelta(seconds=1))

    def start(self) -> Rollout:
        return self.engine.start(
            namespace="default", vs="weather", to="v2", steps=STEPS, actor="U1", channel="C1"
        )

    def look_while_held(self, rollout_id: str, looks: int) -> list[str]:
        """Look once per scrape, as the scheduler's tick would; the outcomes of the looks."""
        outcomes = []
        for _ in range(looks):
            verdict = self.analyst.look(rollout_id)
            if verdict is None:
                break
            outcomes.append(verdict.outcome)
            self._next_scrape()
        return outcomes

    def _next_scrape(self) -> None:
        """Until Prometheus has scraped the simulator again, so the next look sees new data."""
        seen = self._last_scrape()
        wait_until(lambda: self._last_scrape() > seen, timeout=10, what="the next scrape")

    def _last_scrape(self) -> float:
        found = self.prometheus.query("max(timestamp(istio_requests_total))")
        return float(found[0]["value"][1]) if found else 0.0


@pytest.fixture
def rig(prometheus_server: PrometheusServer, redis_url: str) -> Iterator[Rig]:
    with SandboxApiServer() as cluster:
        seed(cluster, load_yaml_documents([WEATHER]))
        same = VersionProfile(error_rate=0.002, latency_ms=40)
        with TrafficSimulator(
            api=cluster.url,
            namespace="default",
            vs="weather",
            service="weather-service",
            rate=200.0,
            versions={"v1": same, "v2": same},
            seed=11,
        ) as simulator:
            prometheus_server.set_targets([simulator.target])
            prometheus_server.wait_for_series('istio_requests_total{destination_version="v2"}')
            mesh = KubeMesh(api_client_for(cluster.url))
            lease = LeaderLease(connect(redis_url), identity="the leader", ttl_ms=600_000)
            assert lease.try_acquire() is not None
            health = SequentialCheck(
                CountingClient(prometheus_server.url),
                service=lambda target: target.host or target.vs,
                min_window=timedelta(seconds=3),
            )
            notes = Recorder()
            engine = Engine(
                store=RolloutStore(connect(redis_url)),
                traffic=KubeTraffic(mesh),
                notifier=notes,
                clock=lambda: datetime.now(UTC),
                health=health,
                fencing=lambda: lease.token,
            )
            yield Rig(engine, simulator, notes, prometheus_server)
            mesh.close()


def test_a_canary_that_turns_bad_inside_a_step_is_rolled_back_before_the_step_ends(
    rig: Rig,
) -> None:
    started = rig.start()
    before = rig.look_while_held(started.id, 3)
    assert before and "fail" not in before
    rig.simulator.set_profile("v2", VersionProfile(error_rate=0.2, latency_ms=40))
    after = rig.look_while_held(started.id, 60)
    final = rig.engine.store.load(started.id)
    assert (final.phase, final.weight) == (Phase.FAILED, 0)
    assert {v.step for v in final.verdicts} == {0}  # judged, and rolled back, at 20 %
    assert final.reason.startswith("a failed health check at 20%: ")
    assert "sure it is worse" in final.verdicts[-1].summary
    # the judge's failure is final: the first failing look rolls back, whatever failure_limit
    assert STEPS.failure_limit > 1
    assert [v.outcome for v in final.verdicts] == ["fail"] and final.verdicts[-1].final
    assert after[-1:] == ["fail"] and after.count("fail") == 1
    assert "auto-rollback" in rig.notes.events()
    assert len(rig.client.asked) == 2 * (len(before) + len(after))  # two queries a look


def test_a_healthy_canary_is_looked_at_and_the_thread_hears_only_changes(rig: Rig) -> None:
    started = rig.start()
    outcomes = rig.look_while_held(started.id, 12)
    held = rig.engine.store.load(started.id)
    assert (held.phase, held.weight, held.step) == (Phase.PROGRESSING, 20, 0)
    assert "fail" not in outcomes and outcomes[-1] == "pass"
    changes = sum(a != b for a, b in itertools.pairwise(outcomes))
    posts = [m.text for _, m in rig.notes.messages if m.event == "analysis"]
    assert len(posts) == changes
    assert all(p.startswith("weather at 20%: now ") for p in posts)
    assert len(rig.client.asked) == 2 * len(outcomes)  # two queries a look, no more


def test_only_the_leader_looks(rig: Rig) -> None:
    started = rig.start()
    rig.engine.fencing = lambda: None
    asked = len(rig.client.asked)
    assert rig.analyst.look(started.id) is None
    assert len(rig.client.asked) == asked


def test_a_look_says_when_prometheus_last_scraped_the_canary_in_its_two_queries(
    rig: Rig,
) -> None:
    started = rig.start()
    rig._next_scrape()
    verdict = rig.analyst.look(started.id)
    assert verdict is not None and verdict.data_at is not None
    assert len(rig.client.asked) == 2  # the timestamp rides along: no third query
    newest = 'max(timestamp(istio_requests_total{destination_version="v2"}))'
    asked_then = PrometheusClient(rig.prometheus.url).query(newest, at=verdict.at)
    assert verdict.data_at.timestamp() == pytest.approx(next(iter(asked_then.values())))
    stable = 'max(timestamp(istio_requests_total{destination_version="v1"}))'
    assert verdict.data_at <= verdict.at and verdict.rows  # and the counts were still judged
    assert PrometheusClient(rig.prometheus.url).query(stable, at=verdict.at)
