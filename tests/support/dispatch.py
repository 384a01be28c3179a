"""The dispatcher built as `serve` builds it, against the sandbox API server seeded with the
weather app and real Redis, with a clock the test moves: `make_bot`, `seeded`, the users and
the policy the dispatcher tests run under."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.app import ConsoleNotifier, Parts, Settings, build
from bot.chat.dispatch import Asker, Reply
from commands import parse
from sandbox.apiserver import SandboxApiServer
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
REQUESTER, SRE, OTHER_SRE, STRANGER = "U0REQ00001", "U0SRE00002", "U0SRE00003", "U0XXX00009"
POLICY = f"""
rules:
  - name: production
    namespace: "*"
    allow:
      set-weight: [{REQUESTER}]
      start: [{REQUESTER}]
      pause: [{REQUESTER}]
      rollback: [{REQUESTER}]
      approve: [{SRE}, {OTHER_SRE}]
    approvals:
      - count: 2
        from: [{SRE}, {OTHER_SRE}]
        above_weight: 25
"""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Bot:
    parts: Parts
    cluster: SandboxApiServer
    clock: Clock

    def say(self, text: str, user: str = REQUESTER, channel: str | None = "C1") -> list[Reply]:
        return self.parts.dispatcher.run(parse(text), Asker(user, channel), text=text)

    def weights(self) -> list[int]:
        vs = self.cluster.get_object("default", "virtualservices", "weather")
        assert vs is not None
        return [int(d["weight"]) for d in vs["spec"]["http"][0]["route"]]

    def trail(self) -> list[tuple[str, str]]:
        return [(e.action, e.actor) for e in self.parts.store.history("default", "weather")]


def seeded(cluster: SandboxApiServer) -> None:
    weather = [p for p in bundled_seed_paths() if p.name == "weather.yaml"]
    seed(cluster, load_yaml_documents(weather))
    cluster.clear_log()


@contextmanager
def make_bot(
    cluster: SandboxApiServer, api_client: Any, redis_url: str, **settings: Any
) -> Iterator[Bot]:
    """A bot built as `serve` builds it, with its card messages dropped; closed afterwards."""
    clock = Clock()
    parts = build(
        Settings(REDIS_URL=redis_url, **settings),
        clock=clock,
        kube_api=api_client,
        notifier=ConsoleNotifier(lambda _: None),
    )
    try:
        yield Bot(parts, cluster, clock)
    finally:
        parts.mesh.close()
