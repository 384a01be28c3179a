"""More clusters on loopback, for a multi-cluster wave.

Each is a sandbox API server seeded with the weather app, v1 taking all its traffic, with its
own traffic simulator and its own Prometheus (a wave judges each cluster's canary on that
cluster's Prometheus). One kubeconfig has a context per cluster, named as the cluster, which is
what CANARY_CLUSTERS points at.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.app import ClusterSettings
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import kubeconfig_dict
from sandbox.prometheus import PrometheusServer
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed
from sandbox.traffic import TrafficSimulator, VersionProfile, route_weights

NAMESPACE, VS, SERVICE = "default", "weather", "weather-service"


@dataclass(frozen=True)
class SandboxCluster:
    name: str
    api: SandboxApiServer
    simulator: TrafficSimulator
    prometheus: PrometheusServer

    def weights(self) -> dict[str, float]:
        """Percent of weather's requests per version, by the VirtualService the API serves now."""
        vs = self.api.get_object(NAMESPACE, "virtualservices", VS)
        return {} if vs is None else route_weights(vs, SERVICE, NAMESPACE)


@dataclass(frozen=True)
class SandboxClusters:
    members: tuple[SandboxCluster, ...]
    kubeconfig: Path

    def settings(self) -> dict[str, ClusterSettings]:
        """CANARY_CLUSTERS for them: each its context in the kubeconfig, and its Prometheus."""
        return {
            c.name: ClusterSettings(
                kubeconfig=str(self.kubeconfig), context=c.name, prometheus_url=c.prometheus.url
            )
            for c in self.members
        }


@contextmanager
def sandbox_clusters(
    names: Sequence[str], *, versions: Mapping[str, VersionProfile], rate: float
) -> Iterator[SandboxClusters]:
    """The clusters `names`, each serving weather at `rate` requests a second."""
    with ExitStack() as stack:
        work = stack.enter_context(tempfile.TemporaryDirectory(prefix="canary-clusters-"))
        members = tuple(_cluster(stack, name, versions, rate) for name in names)
        kubeconfig = Path(work) / "kubeconfig"
        config = _kubeconfig({c.name: c.api.url for c in members})
        kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        yield SandboxClusters(members, kubeconfig)


def _cluster(
    stack: ExitStack, name: str, versions: Mapping[str, VersionProfile], rate: float
) -> SandboxCluster:
    api = stack.enter_context(SandboxApiServer())
    [weather] = [path for path in bundled_seed_paths() if path.stem == "weather"]
    seed(api, load_yaml_documents([weather]))
    api.mutate(NAMESPACE, "virtualservices", VS, _stable_only)
    simulator = stack.enter_context(
        TrafficSimulator(
            api=api.url, namespace=NAMESPACE, vs=VS, service=SERVICE, rate=rate, versions=versions
        )
    )
    prometheus = stack.enter_context(
        PrometheusServer(targets=[simulator.target], scrape_interval="1s")
    )
    stack.callback(simulator.stop)  # before its Prometheus: no scrape is cut off mid-answer
    return SandboxCluster(name, api, simulator, prometheus)


def _stable_only(vs: dict[str, Any]) -> None:
    """The seed's 90/10 made 100/0: the cluster has not started a canary of v2 yet."""
    stable, canary = vs["spec"]["http"][0]["route"]
    stable["weight"], canary["weight"] = 100, 0


def _kubeconfig(servers: Mapping[str, str]) -> dict[str, Any]:
    """One kubeconfig with a cluster and a context per name, each at its server's URL."""
    configs = [kubeconfig_dict(url, namespace=NAMESPACE, context=n) for n, url in servers.items()]
    merged = configs[0]
    merged["clusters"] = [c for config in configs for c in config["clusters"]]
    merged["contexts"] = [c for config in configs for c in config["contexts"]]
    return merged
