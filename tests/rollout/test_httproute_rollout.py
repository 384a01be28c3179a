"""A rollout on a Gateway API HTTPRoute (no VirtualService of that name; Argo Rollouts' two
Services as backendRefs, attached to a Service's waypoint as in Istio's ambient mode) through
the engine, real Redis and the sandbox API server: promoted, and rolled back, every write a
guarded JSON Patch of the HTTPRoute, each recorded and audited as a VirtualService's is."""

from __future__ import annotations

from typing import Any

import pytest

from bot.health.check import HealthCheck
from bot.health.client import PrometheusClient
from bot.health.promql import SERVICE_LABEL, Subject, selector
from bot.mesh.errors import Moved, PlanError
from bot.mesh.request import SplitRequest
from bot.rollout.engine import Engine
from bot.rollout.model import Phase, Rollback, StepDue, StepPlan
from bot.rollout.traffic import KubeTraffic
from sandbox.apiserver import SandboxApiServer
from sandbox.seeding import seed
from tests.support.services import services_with_pods

from .conftest import Clock

STEPS = StepPlan(weights=(10, 50, 100), interval_s=30)
EVERY_PATH = [{"path": {"type": "PathPrefix", "value": "/"}}]
ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "checkout", "namespace": "default"},
    "spec": {
        "parentRefs": [{"group": "", "kind": "Service", "name": "checkout", "port": 80}],
        "rules": [
            {
                "name": "testers",
                "matches": [{"headers": [{"name": "x-tester", "value": "yes"}]}],
                "backendRefs": [{"name": "checkout-canary", "port": 80}],
            },
            {
                "matches": EVERY_PATH,
                "backendRefs": [
                    {"name": "checkout-stable", "port": 80, "weight": 100},
                    {"name": "checkout-canary", "port": 80, "weight": 0},
                ],
            },
        ],
    },
}


@pytest.fixture
def demo(cluster: SandboxApiServer) -> SandboxApiServer:
    seed(cluster, [ROUTE, *services_with_pods("checkout-stable", "checkout-canary")])
    cluster.clear_log()
    return cluster


def live(cluster: SandboxApiServer) -> dict[str, Any]:
    found = cluster.get_object("default", "httproutes", "checkout")
    assert found is not None
    return found


def backends(cluster: SandboxApiServer) -> list[tuple[str, int]]:
    refs = live(cluster)["spec"]["rules"][1]["backendRefs"]
    return [(r["name"], r.get("weight", 1)) for r in refs]


def patches(cluster: SandboxApiServer) -> list[Any]:
    return [r for r in cluster.requests if r.method == "PATCH"]


def start(engine: Engine) -> str:
    return engine.start(
        namespace="default", vs="checkout", to=None, steps=STEPS, actor="U1", channel="C1"
    ).id


def test_an_httproute_rollout_walks_its_steps_and_promotes(
    engine: Engine, demo: SandboxApiServer, clock: Clock
) -> None:
    rollout_id = start(engine)
    target = engine.store.load(rollout_id).target
    assert (target.by, target.stable, target.canary) == (
        "host",
        "checkout-stable",
        "checkout-canary",
    )
    assert backends(demo) == [("checkout-stable", 90), ("checkout-canary", 10)]
    for _ in range(5):
        rollout = engine.store.load(rollout_id)
        if not rollout.active:
            break
        clock.advance(STEPS.interval_s)
        engine.handle(rollout_id, StepDue(step=rollout.step))
    assert engine.store.load(rollout_id).phase is Phase.PROMOTED
    assert backends(demo) == [("checkout-canary", 100)]
    assert live(demo)["spec"]["rules"][0] == ROUTE["spec"]["rules"][0]  # testers' rule as it was
    sent = patches(demo)
    assert sent and all("/apis/gateway.networking.k8s.io/v1/" in r.path for r in sent)
    assert all(r.json()[0]["path"] == "/metadata/resourceVersion" for r in sent)
    assert all(r.json()[0]["op"] == "test" for r in sent)
    history = engine.store.history("default", "checkout")
    assert [(e.action, e.weight_after) for e in history if e.weight_after is not None][:3] == [
        ("start", 10),
        ("step", 50),
        ("step", 100),
    ]


def test_an_httproute_rollout_rolls_back_to_the_stable_service(
    engine: Engine, demo: SandboxApiServer, clock: Clock
) -> None:
    rollout_id = start(engine)
    clock.advance(STEPS.interval_s)
    engine.handle(rollout_id, StepDue(step=0))
    assert backends(demo) == [("checkout-stable", 50), ("checkout-canary", 50)]
    done = engine.act("default", "checkout", Rollback(actor="U2"))
    assert done.phase is Phase.ROLLED_BACK
    assert backends(demo) == [("checkout-stable", 100), ("checkout-canary", 0)]
    assert engine.store.history("default", "checkout")[-1].weight_after == 0


def test_a_lost_rollout_on_an_httproute_is_found_by_its_annotation(
    engine: Engine, demo: SandboxApiServer
) -> None:
    start(engine)
    traffic = engine.traffic
    assert isinstance(traffic, KubeTraffic)
    [(name, last)] = traffic.canaries("default")
    assert (name, last.stable, last.canary, last.weights) == (
        "checkout",
        "checkout-stable",
        "checkout-canary",
        {1: 10},
    )


def test_the_health_check_asks_the_waypoint_for_the_two_services(
    engine: Engine, demo: SandboxApiServer
) -> None:
    """The route is attached to a Service: its ambient waypoint reports the requests, whatever
    the bot's own reporter setting (here the sidecars' `destination`)."""
    target = engine.store.load(start(engine)).target
    assert target.reporter == "waypoint"
    check = HealthCheck(PrometheusClient("http://127.0.0.1:9"), reporter="destination")
    subject: Subject = check.subject(target)
    assert (subject.version_label, subject.stable, subject.canary, subject.reporter) == (
        SERVICE_LABEL,
        "checkout-stable",
        "checkout-canary",
        "waypoint",
    )
    assert selector(subject) == (
        '{reporter="waypoint",destination_service_namespace="default",'
        'destination_service_name=~"checkout-stable|checkout-canary"}'
    )


def test_a_foreign_edit_between_plan_and_write_is_not_overwritten(
    engine: Engine, demo: SandboxApiServer
) -> None:
    traffic = engine.traffic
    assert isinstance(traffic, KubeTraffic)
    plan = traffic.mesh.plan(SplitRequest.build(vs="checkout", namespace="default", weight=10))
    edited = live(demo)
    edited["spec"]["rules"][1]["backendRefs"][0]["weight"] = 70
    edited["spec"]["rules"][1]["backendRefs"][1]["weight"] = 30
    seed(demo, [edited])
    with pytest.raises(Moved, match=r"HTTPRoute 'checkout' .* changed after the bot read it"):
        traffic.mesh.write(plan)
    assert backends(demo) == [("checkout-stable", 70), ("checkout-canary", 30)]


def test_names_that_say_nothing_are_refused_and_nothing_is_written(
    engine: Engine, demo: SandboxApiServer
) -> None:
    route = live(demo)
    for ref, name in zip(route["spec"]["rules"][1]["backendRefs"], ("ping", "pong"), strict=True):
        ref["name"] = name
    route["metadata"] = {"name": "ping", "namespace": "default"}
    seed(demo, [route])
    demo.clear_log()
    with pytest.raises(PlanError, match=r"say which is the canary: `/canary ping 10% to pong`$"):
        engine.start(namespace="default", vs="ping", to=None, steps=STEPS, actor="U1", channel="C1")
    assert [r.method for r in demo.requests if r.method != "GET"] == []
