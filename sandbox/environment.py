"""The embedded playground: the sandbox API server seeded with the seed apps, and a real Redis."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.app import Settings
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import write_kubeconfig
from sandbox.redis_server import RedisServer
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, ready_pods_of, seed


@dataclass(frozen=True)
class Playground:
    settings: Settings
    api: SandboxApiServer
    redis: RedisServer


@contextmanager
def playground(**settings: object) -> Iterator[Playground]:
    """A cluster API and a Redis on loopback, and Settings pointing at both."""
    with (
        tempfile.TemporaryDirectory(prefix="canary-sandbox-") as work,
        SandboxApiServer() as api,
        RedisServer() as redis_server,
    ):
        seed(api, load_yaml_documents(bundled_seed_paths()))
        for deployment in _every_version(api):
            for pod in ready_pods_of(deployment):
                api.put_object(pod)
        kubeconfig = write_kubeconfig(Path(work) / "kubeconfig", api.url)
        fields = {
            "REDIS_URL": redis_server.url,
            "KUBECONFIG": str(kubeconfig),
            "CANARY_LEASE_TTL": 2.0,
            "CANARY_SCRAPE_INTERVAL": 1,  # the sandbox's Prometheus scrapes every second
            **settings,
        }
        yield Playground(Settings.model_validate(fields), api, redis_server)


def _every_version(api: SandboxApiServer) -> list[dict[str, object]]:
    """A one-pod Deployment for every subset the seeded DestinationRules name, and for the
    weather app's v3 (the demo's bad canary): every version the playground routes to runs."""
    labels = [
        dict(subset.get("labels") or {})
        for rule in api.list_objects("destinationrules")
        for subset in rule["spec"].get("subsets") or []
    ]
    labels.append({"app": "weather", "version": "v3"})
    return [
        {
            "kind": "Deployment",
            "metadata": {"name": "-".join(["playground", *map(str, found.values())])},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": found}}},
        }
        for found in labels
    ]
