"""Checks every HTTPRoute plan must pass, shared by the corpus and the shape tests."""

from __future__ import annotations

import copy
from typing import Any

from bot.mesh.planner import ANNOTATION, TrafficPlan
from bot.mesh.schema import schema_errors
from sandbox.jsonpatch import apply_json_patch


def assert_route_invariants(plan: TrafficPlan, before: dict[str, Any]) -> None:
    """Valid against the CRD; the ops give `after`; each touched rule is stable + canary summing
    to 100 (the canary a copy of stable's backendRef); everything else as it was."""
    after = plan.vs.after
    assert plan.vs.before == before and plan.vs.kind == "HTTPRoute" and plan.by == "host"
    for version in ("v1", "v1beta1"):
        assert schema_errors(after, "HTTPRoute", version) == []
    assert apply_json_patch(before, list(plan.vs.ops)) == after
    rules = after["spec"]["rules"]
    for touched in plan.touched:
        refs = rules[touched.index]["backendRefs"]
        if plan.request.weight is not None:
            assert touched.after == (100 - plan.request.weight, plan.request.weight)
        weights = [r.get("weight", 1) for r in refs]
        assert len(refs) == 1 or sum(weights) == 100, refs
        stable = [r for r in refs if r["name"] == plan.stable]
        canary = [r for r in refs if r["name"] == plan.canary]
        assert len(canary) <= 1 and len(stable) <= 1
        if stable and canary:
            assert {**stable[0], "name": plan.canary, "weight": 0} == {**canary[0], "weight": 0}
    assert _strip(before, plan) == _strip(after, plan)
    _assert_only_catch_all_moved(plan, before)


def _strip(obj: dict[str, Any], plan: TrafficPlan) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    annotations = obj["metadata"].get("annotations") or {}
    annotations.pop(ANNOTATION, None)
    if not annotations:
        obj["metadata"].pop("annotations", None)
    for touched in plan.touched:
        rule = obj["spec"]["rules"][touched.index]
        ours = (plan.stable, plan.canary)
        rule["backendRefs"] = [r for r in rule["backendRefs"] if r.get("name") not in ours]
    return obj


def _assert_only_catch_all_moved(plan: TrafficPlan, route: dict[str, Any]) -> None:
    rules = route["spec"]["rules"]
    catch_all = {i for i, r in enumerate(rules) if _is_catch_all(r)}
    touched = {t.index for t in plan.touched}
    if touched & catch_all:
        assert touched <= catch_all


def _is_catch_all(rule: dict[str, Any]) -> bool:
    every_path = {"path": {"type": "PathPrefix", "value": "/"}}
    return not rule.get("matches") or every_path in rule["matches"]
