"""Checks every plan must pass, shared by the seed tests and the property tests."""

from __future__ import annotations

import copy
from typing import Any

from bot.mesh.models import Destination, VirtualService, fqdn
from bot.mesh.planner import ANNOTATION, TrafficPlan, destination_name
from bot.mesh.schema import schema_errors
from sandbox.jsonpatch import apply_json_patch


def assert_plan_invariants(
    plan: TrafficPlan, vs: dict[str, Any], dr: dict[str, Any] | None
) -> None:
    """`dr` is None for a host-based split (two Services, no subsets)."""
    assert plan.vs.before == vs
    assert plan.dr is None or plan.dr.before == dr
    after_vs = plan.vs.after
    after_dr = plan.dr.after if plan.dr else dr
    for version in ("v1", "v1beta1", "v1alpha3"):
        assert schema_errors(after_vs, "VirtualService", version) == []
        assert after_dr is None or schema_errors(after_dr, "DestinationRule", version) == []
    for change in plan.changes:
        assert apply_json_patch(change.before, list(change.ops)) == change.after
    _assert_touched_routes(plan)
    _assert_rest_unchanged(plan, vs)
    _assert_dr_only_grew(plan, dr)


def _assert_touched_routes(plan: TrafficPlan) -> None:
    http = plan.vs.after["spec"][_kind(plan.vs.after)]
    for touched in plan.touched:
        route = http[touched.index]["route"]
        weights = [100] if len(route) == 1 else [d.get("weight", 0) for d in route]
        assert sum(weights) == 100, route
        if plan.request.weight is not None:
            assert touched.after == (100 - plan.request.weight, plan.request.weight)
        stable = [d for d in route if _name(d, plan) == plan.stable]
        canary = [d for d in route if _name(d, plan) == plan.canary]
        assert len(stable) == 1
        assert len(canary) <= 1
        if canary:
            expected = {**stable[0]["destination"], "subset": plan.canary}
            if plan.by == "host":
                host = stable[0]["destination"]["host"].split(".", 1)
                expected = {**stable[0]["destination"], "host": ".".join([plan.canary, *host[1:]])}
            assert canary[0]["destination"] == expected  # a copy of stable, port kept


def _assert_rest_unchanged(plan: TrafficPlan, vs: dict[str, Any]) -> None:
    """Everything but the touched routes' weights/destinations/mirror and our annotation."""
    before, after = _strip(vs, plan), _strip(plan.vs.after, plan)
    assert before == after


def _strip(obj: dict[str, Any], plan: TrafficPlan) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    annotations = obj["metadata"].get("annotations") or {}
    annotations.pop(ANNOTATION, None)
    if not annotations:
        obj["metadata"].pop("annotations", None)
    for touched in plan.touched:
        route = obj["spec"][_kind(obj)][touched.index]
        ours = [d for d in route["route"] if _is_ours(d, plan, obj)]
        route["route"] = [d for d in route["route"] if d not in ours]
        if plan.request.mirror is not None:
            route.pop("mirror", None)
            route.pop("mirrorPercentage", None)
            route.pop("mirrorPercent", None)
    return obj


def _is_ours(dest: dict[str, Any], plan: TrafficPlan, obj: dict[str, Any]) -> bool:
    if plan.by == "host":
        return _name(dest, plan) in (plan.stable, plan.canary)
    ns = obj["metadata"].get("namespace") or plan.request.namespace
    return fqdn(dest["destination"]["host"], ns) == plan.host and dest["destination"].get(
        "subset"
    ) in (plan.stable, plan.canary)


def _kind(vs: dict[str, Any]) -> str:
    return VirtualService.parse(vs).spec.kind


def _name(dest: dict[str, Any], plan: TrafficPlan) -> str | None:
    return destination_name(Destination.model_validate(dest["destination"]), plan.by)


def _assert_dr_only_grew(plan: TrafficPlan, dr: dict[str, Any] | None) -> None:
    if plan.dr is None or dr is None:
        return
    before, after = dr["spec"]["subsets"], plan.dr.after["spec"]["subsets"]
    assert after[: len(before)] == before
    assert [s["name"] for s in after[len(before) :]] == [plan.canary]
    assert {k: v for k, v in plan.dr.after.items() if k != "spec"} == {
        k: v for k, v in dr.items() if k != "spec"
    }
