"""`canary-bot serve` with two clusters in its settings: the leader's resync steps each
cluster's rollout and carries the wave from one cluster to the next (real time, 1 s steps)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import ClusterSettings, Server, Settings
from bot.rollout.model import Phase, StepPlan
from bot.rollout.waves import WaveState
from bot.store.waves import WaveStore
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import write_kubeconfig
from sandbox.seeding import load_yaml_documents, seed
from tests.support.harness import seed_file, wait_until

from .conftest import Recorder, live_weights

CLUSTERS = ("canary-eu", "prod-eu")


@pytest.fixture
def servers() -> Iterator[dict[str, SandboxApiServer]]:
    with SandboxApiServer() as first, SandboxApiServer() as second:
        for server in (first, second):
            seed(server, load_yaml_documents([seed_file("weather")]))
        yield dict(zip(CLUSTERS, (first, second), strict=True))


def test_the_clusters_are_read_from_the_environment_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CANARY_CLUSTERS", '{"canary-eu": {"context": "eu-1"}, "prod-eu": {}}')
    assert Settings().clusters == {
        "canary-eu": ClusterSettings(context="eu-1"),
        "prod-eu": ClusterSettings(),
    }
    monkeypatch.setenv("CANARY_CLUSTERS", '{"Prod EU": {}}')
    with pytest.raises(ValueError, match="cluster name 'Prod EU': use lowercase letters"):
        Settings()


def test_serve_carries_a_wave_over_two_clusters_to_the_end(
    servers: dict[str, SandboxApiServer], redis_url: str, tmp_path: Path
) -> None:
    configs = {n: write_kubeconfig(tmp_path / f"{n}.yaml", s.url) for n, s in servers.items()}
    clusters = {n: ClusterSettings(kubeconfig=str(p)) for n, p in configs.items()}
    settings = Settings(
        REDIS_URL=redis_url,
        KUBECONFIG=str(configs["canary-eu"]),
        CANARY_CLUSTERS=clusters,
        CANARY_LEASE_TTL=2.0,
    )
    notes = Recorder()
    server = Server(settings, notifier=notes, serve_http=False)
    server.start()
    try:
        wait_until(lambda: server.resyncs >= 1, 10, "the election")
        assert server.parts.waves is not None
        wave = server.parts.waves.start(
            namespace="default",
            vs="weather",
            to=None,
            clusters=CLUSTERS,
            steps=StepPlan(weights=(10, 50, 100), interval_s=1),
            actor="U1",
            channel="C1",
        )
        book = WaveStore(server.parts.store.redis)
        wait_until(lambda: book.load(wave.id).state is WaveState.DONE, 30, "the wave's end")
    finally:
        server.stop()
    assert [live_weights(s) for s in servers.values()] == [[100], [100]]
    for name, cluster in server.parts.clusters.items():
        [history] = {e.rollout_id for e in cluster.store.history("default", "weather")}
        assert cluster.store.load(history).phase is Phase.PROMOTED, name
    texts = [m.text for _, m in notes.messages]
    assert any(t.startswith("[prod-eu] ") for t in texts)
