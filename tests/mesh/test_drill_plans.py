"""Fault drills in the planner: added to the catch-all route only where the field is free,
taken off only while still as added; the cohort's route and other routes are left alone."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.mesh.errors import InvalidRequest
from bot.mesh.planner import ANNOTATION, plan_drill, plan_split
from bot.mesh.request import SplitRequest
from commands import parse
from commands.cohort import make_cohort
from commands.drill import Drill
from tests.support.cohort_routes import REVIEWS, REVIEWS_DR, WEATHER

DELAY = Drill(kind="delay", seconds=7, percent=10)
ABORT = Drill(kind="abort", status=500, percent=5)


def drill(vs: dict[str, Any], **fields: Any) -> Any:
    return plan_drill(vs, SplitRequest.build(vs=vs["metadata"]["name"], **fields))


def test_the_bookinfo_ratings_delay_goes_on_the_catch_all_route() -> None:
    result = drill(REVIEWS, drill=DELAY)
    assert result.vs.ops == (
        {
            "op": "add",
            "path": "/spec/http/0/fault",
            "value": {"delay": {"fixedDelay": "7s", "percentage": {"value": 10.0}}},
        },
    )
    assert ANNOTATION not in str(result.vs.after["metadata"])  # weights' record untouched


def test_two_faults_share_the_fault_field_and_each_comes_off_alone() -> None:
    both = drill(drill(REVIEWS, drill=DELAY).vs.after, drill=ABORT).vs.after
    assert set(both["spec"]["http"][0]["fault"]) == {"delay", "abort"}
    one = drill(both, end_drill=DELAY).vs.after
    assert set(one["spec"]["http"][0]["fault"]) == {"abort"}
    none = drill(one, end_drill=ABORT)
    assert none.vs.after == REVIEWS


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("x retries 3 per-try 2s", "retries", {"attempts": 3, "perTryTimeout": "2s"}),
        ("x timeout 10s", "timeout", "10s"),
    ],
)
def test_retries_and_timeouts_are_set_and_taken_off(text: str, field: str, value: Any) -> None:
    asked = parse(text).drill
    assert isinstance(asked, Drill)
    on = drill(REVIEWS, drill=asked).vs.after
    assert on["spec"]["http"][0][field] == value
    assert drill(on, end_drill=asked).vs.after == REVIEWS


def test_a_field_someone_set_is_never_taken_over() -> None:
    theirs = copy.deepcopy(REVIEWS)
    theirs["spec"]["http"][0]["timeout"] = "3s"
    with pytest.raises(
        InvalidRequest, match=r"already has a timeout \(\"3s\"\).*nothing was changed"
    ):
        drill(theirs, drill=Drill(kind="timeout", seconds=10))
    assert drill(theirs, end_drill=Drill(kind="timeout", seconds=10)).noop


def test_a_drill_skips_the_cohort_route() -> None:
    request = SplitRequest.build(vs="reviews", cohort=make_cohort("user", "", "jason"), to="v2")
    with_cohort = plan_split(REVIEWS, REVIEWS_DR, request, now=None).vs.after
    result = drill(with_cohort, drill=DELAY)
    assert [op["path"] for op in result.vs.ops] == ["/spec/http/1/fault"]


def test_a_drill_goes_on_a_catch_all_route_with_a_match_when_every_route_has_one() -> None:
    result = drill(WEATHER, drill=ABORT)
    assert [op["path"] for op in result.vs.ops] == ["/spec/http/0/fault"]


def test_tcp_routes_take_no_drill() -> None:
    tcp = copy.deepcopy(REVIEWS)
    tcp["spec"] = {"hosts": ["reviews"], "tcp": [{"route": REVIEWS["spec"]["http"][0]["route"]}]}
    with pytest.raises(InvalidRequest, match="http routes only; nothing was changed"):
        drill(tcp, drill=DELAY)
    assert drill(tcp, end_drill=DELAY).noop
