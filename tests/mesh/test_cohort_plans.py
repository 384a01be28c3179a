"""A cohort's route in the planner: added ahead of the catch-all route, to the canary, with
nothing else in the VirtualService changed; removed exactly; validated like every plan."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from bot.mesh.cohort import COHORT_ROUTE, cohort_match, live_cohort
from bot.mesh.errors import InvalidRequest
from bot.mesh.planner import ANNOTATION, TrafficPlan, plan_split, plan_traffic
from bot.mesh.request import SplitRequest
from bot.mesh.validation import virtual_service_problems
from commands.cohort import OFF, Cohort, make_cohort
from tests.support.cohort_routes import REVIEWS, REVIEWS_DR, WEATHER, WEATHER_DR

BETA = make_cohort("header", "x-beta", "1")
JASON = make_cohort("user", "", "jason")


def plan(vs: dict[str, Any], dr: dict[str, Any], **fields: Any) -> TrafficPlan:
    request = SplitRequest.build(vs=vs["metadata"]["name"], **fields)
    return plan_split(vs, dr, request, now=None)


def without_annotation(vs: dict[str, Any]) -> dict[str, Any]:
    bare = copy.deepcopy(vs)
    bare["metadata"].get("annotations", {}).pop(ANNOTATION, None)
    if bare["metadata"].get("annotations") == {}:
        del bare["metadata"]["annotations"]
    return bare


def test_the_cohort_route_goes_ahead_of_the_catch_all_route_and_nothing_else_changes() -> None:
    result = plan(WEATHER, WEATHER_DR, cohort=BETA, to="v2")
    http = result.vs.after["spec"]["http"]
    assert http[0] == {
        "name": COHORT_ROUTE,
        "match": [{"headers": {"x-beta": {"exact": "1"}}}],
        "route": [
            {"destination": {"host": "weather-service", "port": {"number": 80}, "subset": "v2"}}
        ],
    }
    rest = without_annotation(result.vs.after)
    del rest["spec"]["http"][0]
    assert rest == WEATHER
    assert [op["op"] for op in result.vs.ops] == ["add", "add"]
    assert result.vs.ops[0]["path"] == "/spec/http/0"
    assert [(t.index, t.before, t.after) for t in result.touched] == [(1, (90, 10), (90, 10))]
    assert result.dr is None
    assert virtual_service_problems(result.vs.after, None, namespace="default") == []


def test_bookinfo_end_user_jason_goes_to_reviews_v2() -> None:
    result = plan(REVIEWS, REVIEWS_DR, cohort=JASON, to="v2")
    cohort, catch_all = result.vs.after["spec"]["http"]
    assert cohort["match"] == [{"headers": {"end-user": {"exact": "jason"}}}]
    assert cohort["route"] == [{"destination": {"host": "reviews", "subset": "v2"}}]
    assert catch_all == REVIEWS["spec"]["http"][0]
    assert live_cohort(result.vs.after) == JASON


def test_off_removes_exactly_the_cohort_route() -> None:
    added = plan(WEATHER, WEATHER_DR, cohort=BETA, to="v2").vs.after
    removed = plan(added, WEATHER_DR, cohort=OFF)
    assert [op for op in removed.vs.ops if op["path"].startswith("/spec")] == [
        {"op": "remove", "path": "/spec/http/0"}
    ]
    assert without_annotation(removed.vs.after) == WEATHER
    assert live_cohort(removed.vs.after) is None


def test_off_without_a_cohort_route_changes_nothing() -> None:
    assert plan(WEATHER, WEATHER_DR, cohort=OFF).noop


def test_a_new_cohort_replaces_the_old_one_where_it_is() -> None:
    added = plan(WEATHER, WEATHER_DR, cohort=BETA, to="v2").vs.after
    changed = plan(added, WEATHER_DR, cohort=JASON)
    http = changed.vs.after["spec"]["http"]
    assert [r.get("name") for r in http] == [COHORT_ROUTE, None]
    assert http[0]["match"] == [{"headers": {"end-user": {"exact": "jason"}}}]
    assert plan(changed.vs.after, WEATHER_DR, cohort=JASON).noop


def test_weights_move_in_the_catch_all_route_behind_the_cohort() -> None:
    added = plan(WEATHER, WEATHER_DR, cohort=BETA, to="v2").vs.after
    moved = plan(added, WEATHER_DR, weight=30)
    http = moved.vs.after["spec"]["http"]
    assert [d["weight"] for d in http[1]["route"]] == [70, 30]
    assert http[0] == added["spec"]["http"][0]
    assert [t.index for t in moved.touched] == [1]


def test_without_the_bots_annotation_the_cohort_route_does_not_make_the_canary_stable() -> None:
    added = without_annotation(plan(WEATHER, WEATHER_DR, cohort=BETA, to="v2").vs.after)
    again = plan(added, WEATHER_DR, weight=20)
    assert (again.stable, again.canary) == ("v1", "v2")


def test_zero_percent_and_promotion_remove_the_cohort_route() -> None:
    added = plan(WEATHER, WEATHER_DR, cohort=BETA, to="v2").vs.after
    back = plan(added, WEATHER_DR, weight=0)
    assert live_cohort(back.vs.after) is None
    assert [d["weight"] for d in back.vs.after["spec"]["http"][0]["route"]] == [100, 0]
    promoted = plan(added, WEATHER_DR, weight=100, to="v2", finalize=True)
    assert [r.get("name") for r in promoted.vs.after["spec"]["http"]] == [None]
    assert [d["destination"]["subset"] for d in promoted.vs.after["spec"]["http"][0]["route"]] == [
        "v2"
    ]


def test_a_cohort_on_a_new_canary_subset_adds_the_subset() -> None:
    result = plan(REVIEWS, REVIEWS_DR, cohort=BETA, to="v9")
    assert result.dr is not None
    assert {"name": "v9", "labels": {"version": "v9"}} in result.dr.after["spec"]["subsets"]


def test_a_tcp_service_refuses_a_cohort_and_a_rollback_still_plans() -> None:
    tcp = copy.deepcopy(REVIEWS)
    tcp["spec"] = {
        "hosts": ["reviews"],
        "tcp": [{"route": copy.deepcopy(REVIEWS["spec"]["http"][0]["route"])}],
    }
    with pytest.raises(
        InvalidRequest, match="a cohort is picked by an HTTP header; nothing was changed"
    ):
        plan(tcp, REVIEWS_DR, cohort=BETA, to="v2")
    assert plan(tcp, REVIEWS_DR, weight=0, to="v2").noop


def test_plan_traffic_finds_the_rule_with_a_cohort_in_place() -> None:
    added = plan(REVIEWS, REVIEWS_DR, cohort=JASON, to="v2").vs.after
    request = SplitRequest.build(vs="reviews", weight=10)
    result = plan_traffic(added, [WEATHER_DR, REVIEWS_DR], request, now=None)
    assert (result.stable, result.canary) == ("v1", "v2")


@pytest.mark.parametrize(
    ("cookie", "matches"),
    [
        ("user=jason", True),
        ("session=1; user=jason", True),
        ("session=1;user=jason; theme=dark", True),
        ("user=jasonx", False),
        ("xuser=jason", False),
        ("user=jason2; other=1", False),
        ("session=user=jason", False),
    ],
)
def test_a_cookie_cohort_matches_that_cookie_only(cookie: str, matches: bool) -> None:
    [rule] = cohort_match(Cohort(by="cookie", name="user", value="jason"))
    regex = rule["headers"]["cookie"]["regex"]
    assert bool(re.fullmatch(regex, cookie)) is matches
