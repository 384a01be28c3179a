from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.mesh.kube import KubeMesh
from bot.rollout.engine import Engine
from bot.rollout.model import Notify, Rollout
from bot.rollout.traffic import KubeTraffic
from bot.store.redis_store import RolloutStore, connect
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.seeding import load_yaml_documents, seed
from tests.support.harness import seed_file


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Recorder:
    """A notifier that keeps what it was told."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Notify]] = []

    def notify(self, rollout: Rollout, message: Notify) -> None:
        self.messages.append((rollout.id, message))

    def events(self) -> list[str]:
        return [m.event for _, m in self.messages]


@pytest.fixture
def cluster() -> Iterator[SandboxApiServer]:
    with SandboxApiServer() as server:
        seed(server, load_yaml_documents([seed_file("weather")]))
        server.clear_log()
        yield server


@pytest.fixture
def store(redis_url: str) -> RolloutStore:
    return RolloutStore(connect(redis_url))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def notes() -> Recorder:
    return Recorder()


@pytest.fixture
def engine(
    cluster: SandboxApiServer, store: RolloutStore, clock: Clock, notes: Recorder
) -> Iterator[Engine]:
    mesh = KubeMesh(api_client_for(cluster.url), sleep=lambda _: None)
    yield Engine(store=store, traffic=KubeTraffic(mesh), notifier=notes, clock=clock)
    mesh.close()


def canary_weights(cluster: SandboxApiServer) -> list[int]:
    """The canary weight of each PATCH that reached the VirtualService, in order. Fences
    (annotation-only writes that make sure an unconfirmed write can never land) change no
    traffic and are left out."""
    found = []
    for request in cluster.requests:
        if request.method == "PATCH" and request.succeeded and "virtualservices" in request.path:
            ops = request.json()
            if _fence(ops):
                continue
            weights = [op["value"] for op in ops if op["path"].endswith("/1/weight")]
            found.append(weights[0] if weights else None)
    return found


def live_weights(cluster: SandboxApiServer) -> list[int]:
    vs = cluster.get_object("default", "virtualservices", "weather")
    assert vs is not None
    return [d.get("weight", 100) for d in vs["spec"]["http"][0]["route"]]


def _fence(ops: list[dict[str, object]]) -> bool:
    changes = [op for op in ops if op["op"] != "test"]
    return bool(changes) and all(
        "fence" in str(op["path"]) + str(op.get("value")) for op in changes
    )
