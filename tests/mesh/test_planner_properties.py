"""Property tests: the planner's invariants over generated VirtualServices."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings

from bot.mesh.planner import plan_split
from bot.mesh.request import SplitRequest
from tests.support.strategies import destination_rule, requests, virtual_service

from .conftest import NOW
from .invariants import assert_plan_invariants


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vs=virtual_service(), dr=destination_rule(), request=requests)
def test_invariants_hold_for_generated_virtual_services(
    vs: dict[str, Any], dr: dict[str, Any], request: SplitRequest
) -> None:
    original = copy.deepcopy(vs)
    plan = plan_split(vs, dr, request, now=NOW)
    assert vs == original  # the input is never mutated
    assert (plan.stable, plan.canary) == ("v1", "v2")
    assert_plan_invariants(plan, vs, dr)
    touched = {t.index for t in plan.touched}
    routes = vs["spec"]["http"]
    to_stable = [any(d["destination"].get("subset") == "v1" for d in r["route"]) for r in routes]
    catch_all = [sends and "match" not in r for sends, r in zip(to_stable, routes, strict=True)]
    for index, route in enumerate(routes):
        # the catch-all routes to stable move; routes with a match only when there is none
        moves = catch_all[index] if any(catch_all) else to_stable[index]
        assert (index in touched) == moves
        if index not in touched:
            assert plan.vs.after["spec"]["http"][index] == route
    assert {k: v for k, v in plan.vs.after["spec"].items() if k != "http"} == {
        k: v for k, v in vs["spec"].items() if k != "http"
    }


@settings(max_examples=100, deadline=None)
@given(vs=virtual_service(), dr=destination_rule(), request=requests)
def test_a_plan_applied_and_planned_again_is_a_noop(
    vs: dict[str, Any], dr: dict[str, Any], request: SplitRequest
) -> None:
    plan = plan_split(vs, dr, request, now=NOW)
    dr_after = plan.dr.after if plan.dr else dr
    again = plan_split(plan.vs.after, dr_after, request, now=NOW)
    assert again.noop
