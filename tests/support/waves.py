"""A running bot with a wave's clusters: two more sandbox API servers, each with weather at
100/0, named in CANARY_CLUSTERS; and what the tests read of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bot.app import ClusterSettings, Server, Settings
from bot.rollout.model import StepPlan
from bot.rollout.ports import Notifier
from bot.rollout.waves import Wave
from bot.service.waves import WaveRunner
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import write_kubeconfig
from sandbox.seeding import load_yaml_documents, seed
from tests.support.harness import Bot, running_bot, seed_file, wait_until

CLUSTERS = ("canary-eu", "prod-eu")


def start_wave(
    runner: WaveRunner | None, steps: StepPlan, clusters: tuple[str, ...] = CLUSTERS
) -> Wave:
    """weather's wave over `clusters` to its canary subset, started by U1 in C1."""
    assert runner is not None, "the bot has no clusters for waves"
    return runner.start(
        namespace="default",
        vs="weather",
        to=None,
        clusters=clusters,
        steps=steps,
        actor="U1",
        channel="C1",
    )


@contextmanager
def wave_clusters(names: tuple[str, ...] = CLUSTERS) -> Iterator[dict[str, SandboxApiServer]]:
    """The wave's clusters by name, each with weather at 100/0 and no request logged yet."""
    with ExitStack() as stack:
        servers = {name: stack.enter_context(SandboxApiServer()) for name in names}
        for server in servers.values():
            seed(server, load_yaml_documents([seed_file("weather")]))
            server.mutate(
                "default",
                "virtualservices",
                "weather",
                lambda vs: [
                    vs["spec"]["http"][0]["route"][0].update(weight=100),
                    vs["spec"]["http"][0]["route"][1].update(weight=0),
                ],
            )
            server.clear_log()
        yield servers


@contextmanager
def running_wave_bot(
    tmp_path: Path, redis_url: str, clusters: dict[str, SandboxApiServer], **extra: object
) -> Iterator[Bot]:
    """The running bot with `clusters` in CANARY_CLUSTERS (and `extra` settings)."""
    configs = {
        name: {"kubeconfig": str(write_kubeconfig(tmp_path / f"{name}.yaml", server.url))}
        for name, server in clusters.items()
    }
    with running_bot(tmp_path, redis_url, CANARY_CLUSTERS=configs, **extra) as bot:
        yield bot


def weights(server: SandboxApiServer) -> list[int]:
    """weather's route weights in `server`: [stable, canary]."""
    vs = server.get_object("default", "virtualservices", "weather")
    assert vs is not None
    return [d.get("weight", 100) for d in vs["spec"]["http"][0]["route"]]


@contextmanager
def leading_server(
    tmp_path: Path,
    redis_url: str,
    servers: dict[str, SandboxApiServer],
    notes: Notifier,
    *,
    home: str,
    cluster: Callable[[str, str], ClusterSettings] = lambda _name, config: ClusterSettings(
        kubeconfig=config
    ),
    **extra: Any,
) -> Iterator[Server]:
    """`canary-bot serve` with no HTTP, leading once its first resync is done: its own cluster
    is `servers[home]`, the wave's are CLUSTERS (each configured by `cluster(name, kubeconfig)`),
    its lease 2 s, and `extra` more settings by their environment name."""
    configs = {n: str(write_kubeconfig(tmp_path / f"{n}.yaml", s.url)) for n, s in servers.items()}
    settings = Settings(
        REDIS_URL=redis_url,
        KUBECONFIG=configs[home],
        CANARY_CLUSTERS={name: cluster(name, configs[name]) for name in CLUSTERS},
        CANARY_LEASE_TTL=2.0,
        **{"CANARY_SCRAPE_INTERVAL": 1, **extra},  # the sandbox's Prometheus: every second
    )
    server = Server(settings, notifier=notes, serve_http=False)
    server.start()
    try:
        wait_until(lambda: server.resyncs >= 1, 10, "the election")
        yield server
    finally:
        server.stop()
