"""Host-based canaries: a VirtualService whose catch-all route splits between two Services
(no subsets), as Argo Rollouts (`-stable`/`-canary`) and Flagger (`-primary`/`-canary`) lay
them out. The bot moves the weights between the two hosts with the subset split's invariants."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from bot.health.promql import SERVICE_LABEL, Subject, requests_by_class
from bot.mesh.errors import AmbiguousCanary, InvalidRequest, PlanError
from bot.mesh.models import VirtualService
from bot.mesh.planner import ANNOTATION, read_last_applied
from tests.support.host_shapes import ARGO, FLAGGER, PINGPONG, TESTERS, plan, vs

from .invariants import assert_plan_invariants


@pytest.mark.parametrize(
    ("obj", "stable", "canary"),
    [
        (ARGO, "rollouts-demo-stable", "rollouts-demo-canary"),
        (FLAGGER, "podinfo-primary", "podinfo-canary"),
    ],
)
@pytest.mark.parametrize("weight", [0, 10, 50, 99, 100])
def test_the_catch_all_route_moves_between_the_two_services(
    obj: Any, stable: str, canary: str, weight: int
) -> None:
    before = copy.deepcopy(obj)
    result = plan(obj, weight)
    assert obj == before
    assert (result.by, result.stable, result.canary) == ("host", stable, canary)
    assert result.dr is None
    assert_plan_invariants(result, obj, None)
    primary = result.vs.after["spec"]["http"][-1]["route"]
    assert [(d["destination"]["host"], d["weight"]) for d in primary] == [
        (stable, 100 - weight),
        (canary, weight),
    ]
    assert result.vs.guarded_ops()[0] == {
        "op": "test",
        "path": "/metadata/resourceVersion",
        "value": "7",
    }


def test_a_route_with_a_match_keeps_its_weights() -> None:
    result = plan(FLAGGER, 30)
    assert [t.index for t in result.touched] == [1]
    assert result.vs.after["spec"]["http"][0] == TESTERS


def test_the_bots_record_says_it_split_by_host() -> None:
    result = plan(ARGO, 25)
    last = read_last_applied(VirtualService.parse(result.vs.after))
    assert last is not None
    assert (last.by, last.stable, last.canary, last.weights) == (
        "host",
        "rollouts-demo-stable",
        "rollouts-demo-canary",
        {0: 25},
    )
    assert '"by":"host"' in result.vs.after["metadata"]["annotations"][ANNOTATION]


def test_the_next_step_follows_the_record() -> None:
    first = plan(PINGPONG, 10, to="pong").vs.after
    second = plan(first, 40)
    assert (second.stable, second.canary, second.touched[0].after) == ("ping", "pong", (60, 40))


def test_promotion_leaves_the_canary_service_alone_in_the_route() -> None:
    at_50 = plan(ARGO, 50).vs.after
    final = plan(at_50, 100, to="rollouts-demo-canary", finalize=True)
    assert final.vs.after["spec"]["http"][0]["route"] == [
        {"destination": {"host": "rollouts-demo-canary"}, "weight": 100}
    ]
    last = read_last_applied(VirtualService.parse(final.vs.after))
    assert last is not None and (last.stable, last.canary) == ("rollouts-demo-canary", None)


def test_rollback_to_zero_keeps_the_canary_at_weight_0() -> None:
    at_30 = plan(FLAGGER, 30).vs.after
    back = plan(at_30, 0)
    assert back.touched[0].after == (100, 0)
    assert_plan_invariants(back, at_30, None)


def test_names_that_say_nothing_are_refused_with_a_command_that_works() -> None:
    with pytest.raises(AmbiguousCanary) as caught:
        plan(PINGPONG, 20)
    assert str(caught.value) == (
        "VirtualService 'istio-host-split' in namespace 'test' splits traffic between Services "
        "ping, pong, and their names do not say which is the canary (-canary) or the stable "
        "(-primary, -stable); say which is the canary: `/canary istio-host-split.test 20% to pong`"
    )
    result = plan(PINGPONG, 20, to="pong")
    assert (result.stable, result.canary) == ("ping", "pong")


def test_a_lone_service_gets_its_canary_when_named() -> None:
    lone = vs("podinfo", "podinfo", None)
    with pytest.raises(PlanError, match=r"\(`/canary podinfo.test 10% to podinfo-canary`\)"):
        plan(lone)
    result = plan(lone, 10, to="podinfo-canary")
    assert_plan_invariants(result, lone, None)
    assert result.vs.after["spec"]["http"][0]["route"][1] == {
        "destination": {"host": "podinfo-canary"},
        "weight": 10,
    }


def test_a_fully_qualified_canary_is_added_in_the_stables_namespace_with_its_port() -> None:
    lone = vs("web", "web.test.svc.cluster.local", None)
    lone["spec"]["http"][0]["route"][0]["destination"]["port"] = {"number": 8080}
    result = plan(lone, 5, to="web-canary")
    assert result.vs.after["spec"]["http"][0]["route"][1]["destination"] == {
        "host": "web-canary.test.svc.cluster.local",
        "port": {"number": 8080},
    }


def test_a_third_service_with_traffic_is_refused_and_nothing_changes() -> None:
    three = vs("shop", "shop-stable", "shop-canary")
    three["spec"]["http"][0]["route"] = [
        {"destination": {"host": "shop-stable"}, "weight": 80},
        {"destination": {"host": "shop-canary"}, "weight": 10},
        {"destination": {"host": "shop-legacy"}, "weight": 10},
    ]
    before = copy.deepcopy(three)
    with pytest.raises(PlanError) as caught:
        plan(three, 20)
    assert str(caught.value) == (
        "route 'primary' of VirtualService 'shop' in namespace 'test' also sends 10% to "
        "shop-legacy; the bot splits traffic between two Services only: name it as the canary "
        "(`to shop-legacy`) or move that traffic by hand first"
    )
    assert three == before


def test_naming_the_stable_service_as_the_canary_is_refused() -> None:
    with pytest.raises(InvalidRequest, match=r"Service 'rollouts-demo-stable' already carries"):
        plan(ARGO, 10, to="rollouts-demo-stable")


def test_naming_the_service_that_has_all_the_traffic_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        plan(PINGPONG, 10, to="ping")
    assert str(caught.value).startswith(
        "in route 'primary' of VirtualService 'istio-host-split' in namespace 'test' "
        "Service 'ping' already carries more traffic (100%) than 'pong' (0%)"
    )


def test_mirroring_copies_the_stable_destination_with_the_canary_host() -> None:
    result = plan(ARGO, None, mirror=20)
    route = result.vs.after["spec"]["http"][0]
    assert route["mirror"] == {"host": "rollouts-demo-canary"}
    assert route["mirrorPercentage"] == {"value": 20.0}
    off = plan(result.vs.after, None, mirror=0).vs.after["spec"]["http"][0]
    assert "mirror" not in off and "mirrorPercentage" not in off


def test_the_health_query_selects_the_services_by_name() -> None:
    subject = Subject(
        namespace="test",
        service="podinfo-primary",
        stable="podinfo-primary",
        canary="podinfo-canary",
        version_label=SERVICE_LABEL,
    )
    query = requests_by_class(subject, timedelta(minutes=5))
    assert 'destination_service_name=~"podinfo-primary|podinfo-canary"' in query
    assert 'destination_service_name="podinfo-primary"' not in query
    assert "sum by (destination_service_name, response_class)" in query


@pytest.mark.parametrize(
    "to",
    [
        "podinfo-canary",
        "podinfo-canary.test",
        "podinfo-canary.test.svc",
        "podinfo-canary.test.svc.cluster.local",
    ],
)
def test_the_canary_service_may_be_named_by_its_host(to: str) -> None:
    result = plan(FLAGGER, 20, to=to)
    assert (result.stable, result.canary) == ("podinfo-primary", "podinfo-canary")
    assert_plan_invariants(result, FLAGGER, None)


@pytest.mark.parametrize(
    ("to", "said"),
    [
        ("podinfo-canary.prod", "is in namespace 'prod', and VirtualService 'podinfo'"),
        ("podinfo-canary.test.example.com", "is not a Service's name in the cluster"),
    ],
)
def test_a_canary_host_outside_the_routes_namespace_is_refused(to: str, said: str) -> None:
    with pytest.raises(InvalidRequest, match=said):
        plan(FLAGGER, 20, to=to)
