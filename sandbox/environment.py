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
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed


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
        kubeconfig = write_kubeconfig(Path(work) / "kubeconfig", api.url)
        fields = {
            "REDIS_URL": redis_server.url,
            "KUBECONFIG": str(kubeconfig),
            "CANARY_LEASE_TTL": 2.0,
            **settings,
        }
        yield Playground(Settings.model_validate(fields), api, redis_server)
