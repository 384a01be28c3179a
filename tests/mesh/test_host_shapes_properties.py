"""Property tests: the planner's invariants over generated host-based VirtualServices (two
Services, no subsets), named as Argo Rollouts, Flagger or a user would name them."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.mesh.planner import plan_traffic
from bot.mesh.request import SplitRequest
from tests.support.host_strategies import virtual_service

from .conftest import NOW
from .invariants import assert_plan_invariants


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
