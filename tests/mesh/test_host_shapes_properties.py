"""Property tests: the planner's invariants over generated host-based VirtualServices (two
Services, no subsets), named as Argo Rollouts, Flagger or a user would name them."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.mesh.planner import plan_traffic
from bot.mesh.request import SplitRequest

from .conftest import NOW
from .invariants import assert_plan_invariants

PAIRS = (("app-stable", "app-canary"), ("app-primary", "app-canary"), ("app", "app-canary"))
port = st.one_of(st.none(), st.builds(lambda n: {"number": n}, st.integers(1, 65535)))
extras = st.fixed_dictionaries(
    {},
    optional={
        "retries": st.just({"attempts": 3, "perTryTimeout": "2s"}),
        "timeout": st.just("10s"),
        "headers": st.just({"request": {"set": {"x-env": "canary"}}}),
    },
)


def destination(name: str, fqdn: bool, port_: dict[str, int] | None) -> dict[str, Any]:
    dest: dict[str, Any] = {"host": f"{name}.prod.svc.cluster.local" if fqdn else name}
    if port_ is not None:
        dest["port"] = port_
    return dest


@st.composite
def virtual_service(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    stable, canary = draw(st.sampled_from(PAIRS))
    fqdn, p = draw(st.booleans()), draw(port)
    weight = draw(st.integers(0, 49))
    route = [{"destination": destination(stable, fqdn, p), "weight": 100 - weight}]
    if weight or draw(st.booleans()):
        route.append({"destination": destination(canary, fqdn, p), "weight": weight})
    primary = {**draw(extras), "route": route}
    if draw(st.booleans()):
        primary["name"] = "primary"
    testers = {
        "match": [{"headers": {"x-canary": {"exact": "1"}}}],
        "route": [{"destination": destination(canary, fqdn, p)}],
    }
    http = [testers, primary] if draw(st.booleans()) else [primary]
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "app", "namespace": "prod", "resourceVersion": "7"},
        "spec": {"hosts": ["app"], "http": http},
    }
    return vs, stable, canary


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=virtual_service(),
    weight=st.integers(0, 100),
    mirror=st.one_of(st.none(), st.integers(0, 100)),
)
def test_invariants_hold_for_generated_host_based_virtual_services(
    shape: tuple[dict[str, Any], str, str], weight: int, mirror: int | None
) -> None:
    vs, stable, canary = shape
    original = copy.deepcopy(vs)
    request = SplitRequest.build(
        vs="app", namespace="prod", weight=weight, to=canary, mirror=mirror
    )
    plan = plan_traffic(vs, [], request, now=NOW)
    assert vs == original
    assert (plan.by, plan.stable, plan.canary, plan.dr) == ("host", stable, canary, None)
    assert_plan_invariants(plan, vs, None)
    primary = len(vs["spec"]["http"]) - 1
    assert [t.index for t in plan.touched] == [primary]  # the catch-all route only
    for op in plan.vs.ops:
        assert op["path"].startswith((f"/spec/http/{primary}/", "/metadata/annotations"))
