"""A host-based rollout (two Services, no subsets, as Argo Rollouts lays them out) through the
engine, real Redis and the sandbox API server: promoted, and rolled back."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from bot.health.check import HealthCheck
from bot.health.client import PrometheusClient
from bot.health.promql import SERVICE_LABEL
from bot.mesh.errors import PlanError
from bot.rollout.engine import Engine
from bot.rollout.model import Phase, Rollback, StepDue, StepPlan
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.seeding import seed
from tests.support.services import services_with_pods

from .conftest import Clock, Recorder

STEPS = StepPlan(weights=(10, 50, 100), interval_s=30)
VS: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "rollouts-demo", "namespace": "default"},
    "spec": {
        "hosts": ["rollouts-demo"],
        "http": [
            {
                "name": "primary",
                "route": [
                    {"destination": {"host": "rollouts-demo-stable"}, "weight": 100},
                    {"destination": {"host": "rollouts-demo-canary"}, "weight": 0},
                ],
            }
        ],
    },
}


@pytest.fixture
def demo(cluster: SandboxApiServer) -> SandboxApiServer:
    seed(cluster, [VS, *services_with_pods("rollouts-demo-stable", "rollouts-demo-canary")])
    cluster.clear_log()
    return cluster


def route(cluster: SandboxApiServer) -> list[tuple[str, int]]:
    vs = cluster.get_object("default", "virtualservices", "rollouts-demo")
    assert vs is not None
    return [
        (d["destination"]["host"], d.get("weight", 100)) for d in vs["spec"]["http"][0]["route"]
    ]


def guarded_patches(cluster: SandboxApiServer) -> list[bool]:
    """For each PATCH of a VirtualService: whether a test of its resourceVersion leads it."""
    firsts = [
        r.json()[0] for r in cluster.requests if r.method == "PATCH" and "virtualservices" in r.path
    ]
    return [(f["op"], f["path"]) == ("test", "/metadata/resourceVersion") for f in firsts]


def start(engine: Engine) -> str:
    return engine.start(
        namespace="default", vs="rollouts-demo", to=None, steps=STEPS, actor="U1", channel="C1"
    ).id


def test_a_host_based_rollout_walks_its_steps_and_promotes(
    engine: Engine, demo: SandboxApiServer, clock: Clock
) -> None:
    rollout_id = start(engine)
    target = engine.store.load(rollout_id).target
    assert (target.by, target.stable, target.canary) == (
        "host",
        "rollouts-demo-stable",
        "rollouts-demo-canary",
    )
    assert route(demo) == [("rollouts-demo-stable", 90), ("rollouts-demo-canary", 10)]
    for _ in range(5):
        rollout = engine.store.load(rollout_id)
        if not rollout.active:
            break
        clock.advance(STEPS.interval_s)
        engine.handle(rollout_id, StepDue(step=rollout.step))
    assert engine.store.load(rollout_id).phase is Phase.PROMOTED
    assert route(demo) == [("rollouts-demo-canary", 100)]
    assert guarded_patches(demo) and all(guarded_patches(demo))


def test_a_host_based_rollout_rolls_back_to_the_stable_service(
    engine: Engine, demo: SandboxApiServer, clock: Clock
) -> None:
    rollout_id = start(engine)
    clock.advance(STEPS.interval_s)
    engine.handle(rollout_id, StepDue(step=0))
    assert route(demo) == [("rollouts-demo-stable", 50), ("rollouts-demo-canary", 50)]
    done = engine.act("default", "rollouts-demo", Rollback(actor="U2"))
    assert done.phase is Phase.ROLLED_BACK
    assert route(demo) == [("rollouts-demo-stable", 100), ("rollouts-demo-canary", 0)]


def test_a_step_is_held_when_the_canary_services_pods_are_gone(
    engine: Engine, demo: SandboxApiServer, clock: Clock, notes: Recorder
) -> None:
    """The canary Service still selects `app: rollouts-demo-canary`, but no pod carries it: the
    step pauses at the live weight with the reason, and nothing is written."""
    rollout_id = start(engine)
    core = client.CoreV1Api(api_client_for(demo.url))
    for pod in core.list_namespaced_pod("default", label_selector="app=rollouts-demo-canary").items:
        core.delete_namespaced_pod(pod.metadata.name, "default", _preload_content=False)
    demo.clear_log()
    clock.advance(STEPS.interval_s)
    held = engine.handle(rollout_id, StepDue(step=0))
    assert (held.phase, held.weight) == (Phase.PAUSED, 10)
    assert "Service 'rollouts-demo-canary' selects no ready pods" in held.reason
    assert demo.writes() == []
    assert route(demo) == [("rollouts-demo-stable", 90), ("rollouts-demo-canary", 10)]
    assert any("selects no ready pods" in m.text for _, m in notes.messages)


def test_the_health_check_asks_for_the_two_services_by_name(
    engine: Engine, demo: SandboxApiServer
) -> None:
    target = engine.store.load(start(engine)).target
    subject = HealthCheck(PrometheusClient("http://127.0.0.1:9")).subject(target)
    assert (subject.version_label, subject.stable, subject.canary) == (
        SERVICE_LABEL,
        "rollouts-demo-stable",
        "rollouts-demo-canary",
    )


def test_names_that_say_nothing_are_refused_and_nothing_is_written(
    engine: Engine, demo: SandboxApiServer
) -> None:
    vs = demo.get_object("default", "virtualservices", "rollouts-demo")
    assert vs is not None
    for dest, host in zip(vs["spec"]["http"][0]["route"], ("ping", "pong"), strict=True):
        dest["destination"]["host"] = host
    vs["metadata"] = {"name": "ping", "namespace": "default"}
    seed(demo, [vs])
    demo.clear_log()
    with pytest.raises(PlanError, match=r"say which is the canary: `/canary ping 10% to pong`$"):
        engine.start(namespace="default", vs="ping", to=None, steps=STEPS, actor="U1", channel="C1")
    assert [r.method for r in demo.requests if r.method != "GET"] == []
    assert engine.store.active_for("default", "ping") is None
