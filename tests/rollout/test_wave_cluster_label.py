"""A wave's clusters judged by ONE Prometheus that holds both clusters' series, told apart by a
`cluster` label (as Thanos or a federated Prometheus keeps them): each cluster's checks read
only their own. Real parts: `canary-bot serve` leading, two sandbox API servers, real Redis,
a real Prometheus scraping one traffic simulator per cluster, each target labelled with its
cluster. weather's canary (v2) is healthy on canary-eu and fails 30 % of its requests on
prod-eu; canary-eu carries ten times prod-eu's traffic, so a judge that read both clusters'
series together would see prod-eu's errors drowned in canary-eu's healthy requests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app import ClusterSettings, Server
from bot.rollout.model import Phase, Promote, Rollout, StepPlan, Target, Verdict
from bot.rollout.waves import Wave, WaveState
from bot.store.waves import WaveStore
from sandbox.apiserver import SandboxApiServer
from sandbox.prometheus import PrometheusServer
from sandbox.traffic import TrafficSimulator, VersionProfile
from tests.support.harness import wait_until
from tests.support.waves import CLUSTERS, leading_server, start_wave, wave_clusters, weights

from .conftest import Recorder

STEPS = StepPlan(weights=(20, 50, 100), interval_s=600)  # held far longer than the test runs
RATES = {"canary-eu": 1000.0, "prod-eu": 100.0}
HEALTHY = VersionProfile(error_rate=0.002, latency_ms=40)
PROFILES = {
    "canary-eu": {"v1": HEALTHY, "v2": VersionProfile(error_rate=0.0, latency_ms=40)},
    "prod-eu": {
        "v1": VersionProfile(error_rate=0.02, latency_ms=40),
        "v2": VersionProfile(error_rate=0.3, latency_ms=40),
    },
}
WEATHER = Target(
    namespace="default", vs="weather", stable="v1", canary="v2", host="weather-service"
)
pytestmark = pytest.mark.slow


@pytest.fixture
def servers() -> Iterator[dict[str, SandboxApiServer]]:
    with wave_clusters() as servers:
        yield servers


@pytest.fixture
def simulators(
    servers: dict[str, SandboxApiServer], prometheus: PrometheusServer
) -> Iterator[dict[str, TrafficSimulator]]:
    """Each cluster's weather traffic, as its own weights send it, scraped by the one
    Prometheus with `cluster="<name>"` on every series."""
    found = {
        name: TrafficSimulator(
            api=servers[name].url,
            namespace="default",
            vs="weather",
            service="weather-service",
            rate=RATES[name],
            versions=PROFILES[name],
            seed=11,
        ).start()
        for name in CLUSTERS
    }
    try:
        prometheus.set_targets(
            [s.target for s in found.values()],
            labels={s.target: {"cluster": name} for name, s in found.items()},
        )
        for name in CLUSTERS:
            prometheus.wait_for_series(
                f'istio_requests_total{{cluster="{name}",destination_version="v1"}}'
            )
        yield found
    finally:
        for simulator in found.values():
            simulator.stop()


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
    """The leader; both wave clusters judged by PROMETHEUS_URL, each by its cluster label."""
    with leading_server(
        tmp_path,
        redis_url,
        servers,
        notes,
        home="canary-eu",
        cluster=lambda name, config: ClusterSettings(
            kubeconfig=config, prometheus_labels={"cluster": name}
        ),
        PROMETHEUS_URL=prometheus.url,
        CANARY_ANALYSIS=1,
    ) as server:
        yield server


def test_each_clusters_judgement_reads_only_its_own_series(
    server: Server,
    servers: dict[str, SandboxApiServer],
    simulators: dict[str, TrafficSimulator],
    prometheus: PrometheusServer,
) -> None:
    """Both canaries take half their cluster's traffic at once: canary-eu's passes, prod-eu's
    fails, and each verdict counts its own cluster's requests."""
    for name in CLUSTERS:
        servers[name].mutate("default", "virtualservices", "weather", _half_to_v2)
        prometheus.wait_for_series(
            f'istio_requests_total{{cluster="{name}",destination_version="v2"}}'
        )
    rollout = _live_at_half()
    verdicts: dict[str, Verdict] = {}

    def judged(name: str, outcome: str) -> bool:
        health = server.parts.clusters[name].engine.health
        assert health is not None
        verdicts[name] = health.check(rollout, datetime.now(UTC))
        return verdicts[name].outcome == outcome

    wait_until(lambda: judged("canary-eu", "pass"), 60, "canary-eu's canary passing")
    wait_until(lambda: judged("prod-eu", "fail"), 60, "prod-eu's canary failing")
    eu, prod = verdicts["canary-eu"].figures, verdicts["prod-eu"].figures
    assert eu["canary_success_rate"] == 100.0  # none of prod-eu's errors
    prod_rate = prod["canary_success_rate"]
    assert prod_rate is not None and prod_rate < 80.0  # none of canary-eu's healthy requests
    assert eu["canary_requests"] and prod["canary_requests"]
    assert prod["canary_requests"] < eu["canary_requests"] / 2  # a tenth of the traffic


def test_a_wave_is_rolled_back_on_the_cluster_whose_series_are_bad(
    server: Server,
    servers: dict[str, SandboxApiServer],
    simulators: dict[str, TrafficSimulator],
    prometheus: PrometheusServer,
    notes: Recorder,
) -> None:
    assert server.parts.waves is not None
    wave = start_wave(server.parts.waves, STEPS)
    book = WaveStore(server.parts.store.redis)
    first = server.parts.clusters["canary-eu"]
    held = _live_on(server, book, wave, "canary-eu")
    prometheus.wait_for_series('istio_requests_total{cluster="canary-eu",destination_version="v2"}')
    health = first.engine.health
    assert health is not None
    wait_until(
        lambda: health.check(first.store.load(held.id), datetime.now(UTC)).outcome == "pass",
        60,
        "canary-eu's judgement of its held step",
    )
    assert first.store.load(held.id).phase is Phase.PROGRESSING  # no look failed it
    first.engine.act("default", "weather", Promote(actor="U1"))  # its hold is not waited out
    bad = _live_on(server, book, wave, "prod-eu")
    prod = server.parts.clusters["prod-eu"].store
    wait_until(lambda: prod.load(bad.id).settled, 90, "a look's rollback on prod-eu")
    final = prod.load(bad.id)
    assert final.phase is Phase.FAILED
    assert final.weight == 0 and weights(servers["prod-eu"]) == [100, 0]
    assert final.reason.startswith("a failed health check at 20%: ")
    [verdict] = final.verdicts
    assert (verdict.outcome, verdict.step) == ("fail", 0)
    assert bad.next_step_at is not None and verdict.at < bad.next_step_at  # not yet due
    wait_until(lambda: book.load(wave.id).state is WaveState.HALTED, 10, "the wave's halt")
    assert book.load(wave.id).promoted == ("canary-eu",)
    assert weights(servers["canary-eu"]) == [100]  # promoted, and left so
    rolled_back = [m.text for _, m in notes.messages if m.event == "auto-rollback"]
    assert rolled_back and all(t.startswith("[prod-eu] ") for t in rolled_back)


def _half_to_v2(vs: dict[str, object]) -> None:
    route = vs["spec"]["http"][0]["route"]  # type: ignore[index]
    route[0].update(weight=50)
    route[1].update(weight=50)


def _live_at_half() -> Rollout:
    """A rollout of weather whose step at 50 % went live a minute ago."""
    now = datetime.now(UTC)
    return Rollout(
        id="r1",
        target=WEATHER,
        steps=StepPlan(weights=(50, 100), interval_s=60),
        phase=Phase.PROGRESSING,
        step=0,
        weight=50,
        started_by="U1",
        created_at=now - timedelta(minutes=1),
        updated_at=now,
        next_step_at=now,
    )


def _live_on(server: Server, book: WaveStore, wave: Wave, cluster: str) -> Rollout:
    """The wave's rollout on `cluster` once its first step's weights are written."""
    store = server.parts.clusters[cluster].store

    def live() -> Rollout | None:
        now = book.load(wave.id)
        if now.cluster != cluster or now.rollout is None:
            return None
        rollout = store.load(now.rollout)
        written = rollout.weight == 20 and not rollout.pending
        return rollout if written and rollout.next_step_at is not None else None

    wait_until(live, 30, f"the wave's first step on {cluster}")
    found = live()
    assert found is not None
    return found
