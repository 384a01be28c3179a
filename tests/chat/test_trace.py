"""One `/canary weather 20%` reads the VirtualService once, plans once and writes once: the
policy decides on the very plan the engine then writes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.app import ConsoleNotifier, Settings, build
from bot.chat.dispatch import Asker
from bot.mesh.kube import KubeMesh
from bot.mesh.planner import TrafficPlan
from bot.mesh.request import SplitRequest
from commands import parse
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed

POLICY = """\
rules:
  - name: everyone
    namespace: "*"
    vs: "*"
    allow:
      all: [U0ALICE00]
"""


class CountingMesh(KubeMesh):
    plans = 0

    def plan(self, request: SplitRequest) -> TrafficPlan:
        type(self).plans += 1
        return super().plan(request)


@pytest.fixture
def cluster() -> Iterator[SandboxApiServer]:
    with SandboxApiServer() as server:
        weather = [p for p in bundled_seed_paths() if p.name == "weather.yaml"]
        seed(server, load_yaml_documents(weather))
        yield server


@pytest.mark.parametrize("active", [False, True], ids=["no rollout yet", "on a rollout"])
def test_a_weight_change_reads_once_plans_once_writes_once(
    cluster: SandboxApiServer, redis_url: str, tmp_path: object, active: bool
) -> None:
    policy = tmp_path / "policy.yaml"  # type: ignore[operator]
    policy.write_text(POLICY, encoding="utf-8")
    settings = Settings(REDIS_URL=redis_url, CANARY_POLICY_FILE=str(policy))
    mesh = CountingMesh(api_client_for(cluster.url), watch_destination_rules=True)
    parts = build(
        settings,
        clock=lambda: datetime(2026, 12, 1, 3, 0, tzinfo=UTC),
        mesh=mesh,
        notifier=ConsoleNotifier(lambda _: None),
    )
    asker = Asker("U0ALICE00", "C1")
    if active:
        assert parts.dispatcher.run(parse("weather 10%"), asker) == []
    mesh.destination_rules("default")  # the watch's first list, as a running bot has it
    cluster.clear_log()
    CountingMesh.plans = 0
    assert parts.dispatcher.run(parse("weather 20%"), asker) == []
    on_vs = [(r.method, r.status) for r in cluster.requests if "/virtualservices/" in r.path]
    assert on_vs == [("GET", 200), ("PATCH", 200)]
    assert CountingMesh.plans == 1
    vs = cluster.get_object("default", "virtualservices", "weather")
    assert vs is not None and vs["spec"]["http"][0]["route"][1]["weight"] == 20
    mesh.close()
