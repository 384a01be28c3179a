"""The shell on a terminal: a `Shell` over the dispatcher built as `serve` builds it, against the
sandbox API server seeded with the weather app and real Redis, with what it printed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.app import Parts, Settings, build
from bot.chat.dispatch import Asker
from bot.chat.shell import Shell, ShellNotifier
from sandbox.apiserver import SandboxApiServer
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
REQUESTER, SRE, OTHER_SRE, STRANGER = "U0REQ00001", "U0SRE00002", "U0SRE00003", "U0XXX00009"


@dataclass
class Terminal:
    """A shell, what it printed (its own lines and the notifier's, in order) and the cluster."""

    shell: Shell
    out: list[str]
    parts: Parts
    cluster: SandboxApiServer

    def type(self, *lines: str) -> list[str]:
        """Type each line; what was printed for them."""
        start = len(self.out)
        for line in lines:
            self.shell.handle(line)
        return self.out[start:]

    def weights(self) -> list[int]:
        vs = self.cluster.get_object("default", "virtualservices", "weather")
        assert vs is not None
        return [int(d["weight"]) for d in vs["spec"]["http"][0]["route"]]


@contextmanager
def terminal(
    cluster: SandboxApiServer, api_client: Any, redis_url: str, **settings: Any
) -> Iterator[Terminal]:
    seed(
        cluster, load_yaml_documents([p for p in bundled_seed_paths() if p.name == "weather.yaml"])
    )
    cluster.clear_log()
    out: list[str] = []
    parts = build(
        Settings(REDIS_URL=redis_url, **settings),
        clock=lambda: T0,
        kube_api=api_client,
        notifier=ShellNotifier(out.append, lambda: T0),
    )
    try:
        yield Terminal(
            Shell(parts.dispatcher, Asker(REQUESTER, "C1"), out.append), out, parts, cluster
        )
    finally:
        parts.mesh.close()
