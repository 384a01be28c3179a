"""The planner over every VirtualService in the bundled seed files."""

from __future__ import annotations

from typing import Any

import pytest

from bot.mesh.errors import AmbiguousCanary, InvalidRequest, MeshError
from bot.mesh.planner import plan_split
from bot.mesh.request import SplitRequest
from tests.support.seed_cases import CASES, EXPECTED, WEIGHTS, dr_for

from .conftest import NOW, seed_docs
from .invariants import assert_plan_invariants


@pytest.mark.parametrize(("stem", "vs", "to", "expected"), CASES)
@pytest.mark.parametrize("weight", WEIGHTS)
def test_seed_plans_hold_invariants(
    stem: str, vs: dict[str, Any], to: str | None, expected: type[MeshError] | None, weight: int
) -> None:
    name = vs["metadata"]["name"]
    if expected is not None:
        with pytest.raises(expected) as caught:
            plan_split(vs, dr_for(vs), SplitRequest.build(vs=name, weight=weight, to=to), now=NOW)
        assert f"'{name}'" in str(caught.value) or "DestinationRule" in str(caught.value)
        return
    dr = dr_for(vs)
    plan = plan_split(vs, dr, SplitRequest.build(vs=name, weight=weight, to=to), now=NOW)
    assert_plan_invariants(plan, vs, dr)


def test_every_seed_virtual_service_is_covered() -> None:
    seen = {(stem, vs["metadata"]["name"]) for stem, vs in seed_docs("VirtualService")}
    assert seen == {(stem, name) for stem, name, _ in EXPECTED}


def test_ambiguous_canary_lists_candidates_then_plans_with_to() -> None:
    vs = next(
        vs
        for stem, vs in seed_docs("VirtualService")
        if stem == "bookinfo-virtual-service-all-v1" and vs["metadata"]["name"] == "reviews"
    )
    dr = dr_for(vs)
    with pytest.raises(AmbiguousCanary) as caught:
        plan_split(vs, dr, SplitRequest.build(vs="reviews", weight=10), now=NOW)
    assert caught.value.candidates == ["v2", "v3"]
    assert "v2, v3" in str(caught.value) and "to v3" in str(caught.value)
    plan = plan_split(vs, dr, SplitRequest.build(vs="reviews", weight=10, to="v3"), now=NOW)
    assert (plan.stable, plan.canary) == ("v1", "v3")
    route = plan.vs.after["spec"]["http"][0]["route"]
    assert [(d["destination"]["subset"], d["weight"]) for d in route] == [("v1", 90), ("v3", 10)]


def test_weather_moves_to_fifty_percent_with_two_replace_ops() -> None:
    _, vs = next(item for item in seed_docs("VirtualService") if item[0] == "weather")
    plan = plan_split(vs, dr_for(vs), SplitRequest.build(vs="weather", weight=50), now=NOW)
    weight_ops = [op for op in plan.vs.ops if op["path"].endswith("/weight")]
    assert weight_ops == [
        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 50},
        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 50},
    ]
    assert plan.dr is None
    assert "-      weight: 90" in plan.diff and "+      weight: 50" in plan.diff


def test_missing_canary_subset_is_added_to_the_destination_rule() -> None:
    _, vs = next(item for item in seed_docs("VirtualService") if item[0] == "httpbin")
    plan = plan_split(vs, dr_for(vs), SplitRequest.build(vs="httpbin", weight=10, to="v2"), now=NOW)
    assert plan.dr is not None
    assert plan.dr.ops == (
        {
            "op": "add",
            "path": "/spec/subsets/-",
            "value": {"name": "v2", "labels": {"version": "v2"}},
        },
    )
    added = plan.vs.after["spec"]["http"][0]["route"][1]
    assert added == {
        "destination": {"port": {"number": 8000}, "host": "httpbin", "subset": "v2"},
        "weight": 10,
    }


def test_same_weight_again_is_a_noop() -> None:
    _, vs = next(item for item in seed_docs("VirtualService") if item[0] == "weather")
    plan = plan_split(vs, dr_for(vs), SplitRequest.build(vs="weather", weight=10), now=NOW)
    assert plan.noop and plan.diff == ""


def test_stable_stays_stable_past_fifty_percent() -> None:
    """After 70% the canary carries most traffic; the annotation keeps the roles straight."""
    _, vs = next(item for item in seed_docs("VirtualService") if item[0] == "weather")
    dr = dr_for(vs)
    at70 = plan_split(vs, dr, SplitRequest.build(vs="weather", weight=70), now=NOW).vs.after
    plan = plan_split(at70, dr, SplitRequest.build(vs="weather", weight=80), now=NOW)
    assert (plan.stable, plan.canary) == ("v1", "v2")
    assert plan.touched[0].after == (20, 80)


def test_mirror_on_and_off() -> None:
    _, vs = next(item for item in seed_docs("VirtualService") if item[0] == "weather")
    dr = dr_for(vs)
    on = plan_split(vs, dr, SplitRequest.build(vs="weather", mirror=25), now=NOW)
    route = on.vs.after["spec"]["http"][0]
    assert route["mirror"] == {"host": "weather-service", "port": {"number": 80}, "subset": "v2"}
    assert route["mirrorPercentage"] == {"value": 25.0}
    assert on.touched[0].after == (90, 10)  # weights untouched
    off = plan_split(on.vs.after, dr, SplitRequest.build(vs="weather", mirror=0), now=NOW)
    assert "mirror" not in off.vs.after["spec"]["http"][0]
    assert "mirrorPercentage" not in off.vs.after["spec"]["http"][0]


def test_existing_foreign_mirror_is_kept_on_mirror_off() -> None:
    vs = next(vs for stem, vs in seed_docs("VirtualService") if stem.endswith("mirroring"))
    dr = dr_for(vs)
    plan = plan_split(vs, dr, SplitRequest.build(vs="reviews", mirror=0, to="v3"), now=NOW)
    assert plan.noop  # the mirror points at v2, not at the canary v3: not ours to remove


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"weight": -1}, "not a whole number from 0 to 100"),
        ({"weight": 101}, "not a whole number from 0 to 100"),
        ({"weight": 10.5}, "not a whole number from 0 to 100"),
        ({"weight": "ten"}, "not a whole number from 0 to 100"),
        ({"weight": True}, "not a whole number from 0 to 100"),
        ({"weight": 10, "vs": "Weather"}, "not a valid name"),
        ({"weight": 10, "to": "v2;rm"}, "not a valid name"),
        ({"weight": 10, "namespace": "-prod"}, "not a valid name"),
        ({}, "say what to change"),
    ],
)
def test_bad_requests_are_refused_before_planning(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        SplitRequest.build(**{"vs": "weather", **fields})


def test_finalize_makes_the_canary_the_stable_subset() -> None:
    _, vs = next(item for item in seed_docs("VirtualService") if item[0] == "weather")
    dr = dr_for(vs)
    request = SplitRequest.build(vs="weather", weight=100, to="v2", finalize=True)
    plan = plan_split(vs, dr, request, now=NOW)
    route = plan.vs.after["spec"]["http"][0]
    assert route["route"] == [
        {
            "destination": {"host": "weather-service", "port": {"number": 80}, "subset": "v2"},
            "weight": 100,
        }
    ]
    assert route["match"] == vs["spec"]["http"][0]["match"]
    assert plan.touched[0].after == (0, 100)
    again = plan_split(plan.vs.after, dr, request, now=NOW)
    assert again.noop  # a replayed promotion changes nothing
    nxt = plan_split(
        plan.vs.after, dr, SplitRequest.build(vs="weather", weight=10, to="v3"), now=NOW
    )
    assert (nxt.stable, nxt.canary) == ("v2", "v3")


def test_finalize_needs_the_canary_named_at_100() -> None:
    with pytest.raises(InvalidRequest, match="promotion needs the canary named"):
        SplitRequest.build(vs="weather", weight=90, to="v2", finalize=True)


def test_a_host_where_the_route_splits_by_subsets_is_refused_naming_a_subset() -> None:
    _, vs = next(item for item in seed_docs("VirtualService") if item[0] == "weather")
    request = SplitRequest.build(vs="weather", weight=10, to="weather-canary.default")
    with pytest.raises(InvalidRequest, match=r"names a host, .* name a subset, like `to v2`"):
        plan_split(vs, dr_for(vs), request, now=NOW)
