"""The HTTPRoute planner on the shapes users have: Argo Rollouts' and Flagger's Service pairs,
behind a Gateway or a Service's waypoint (ambient), with tester rules beside the catch-all."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.mesh.errors import AmbiguousCanary, InvalidObject, InvalidRequest, PlanError
from bot.mesh.httproute import canary_weight, last_applied, plan_http_route
from bot.mesh.request import SplitRequest
from commands.cohort import Cohort
from tests.support.route_invariants import assert_route_invariants

from .conftest import NOW

EVERY_PATH = [{"path": {"type": "PathPrefix", "value": "/"}}]


def route(
    backends: list[dict[str, Any]], *, parent: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An HTTPRoute as the API server keeps it (the catch-all's match filled in), with a
    testers' rule on a header ahead of it."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "weather", "namespace": "prod", "resourceVersion": "7"},
        "spec": {
            "parentRefs": [parent or {"name": "gateway", "namespace": "istio-ingress"}],
            "rules": [
                {
                    "name": "testers",
                    "matches": [{"headers": [{"name": "x-tester", "value": "yes"}]}],
                    "backendRefs": [{"name": "weather-canary", "port": 8080}],
                },
                {"name": "primary", "matches": EVERY_PATH, "backendRefs": copy.deepcopy(backends)},
            ],
        },
    }


ARGO = [
    {"name": "weather-stable", "port": 8080, "weight": 100},
    {"name": "weather-canary", "port": 8080, "weight": 0},
]
WAYPOINT = {"group": "", "kind": "Service", "name": "weather"}  # ambient: the Service's waypoint


def plan(raw: dict[str, Any], weight: int, **fields: Any) -> Any:
    request = SplitRequest.build(vs="weather", namespace="prod", weight=weight, **fields)
    planned = plan_http_route(copy.deepcopy(raw), request, now=NOW)
    assert_route_invariants(planned, raw)
    return planned


def weights(raw: dict[str, Any], rule: int = 1) -> list[tuple[str, int]]:
    return [(r["name"], r.get("weight", 1)) for r in raw["spec"]["rules"][rule]["backendRefs"]]


@pytest.mark.parametrize("parent", [None, WAYPOINT], ids=["gateway", "waypoint"])
def test_the_catch_all_rule_moves_and_the_testers_rule_stays(parent: Any) -> None:
    raw = route(ARGO, parent=parent)
    planned = plan(raw, 10)
    assert (planned.stable, planned.canary, planned.by) == (
        "weather-stable",
        "weather-canary",
        "host",
    )
    assert weights(planned.vs.after) == [("weather-stable", 90), ("weather-canary", 10)]
    assert planned.vs.after["spec"]["rules"][0] == raw["spec"]["rules"][0]
    assert [t.index for t in planned.touched] == [1]
    assert planned.vs.guarded_ops()[0] == {
        "op": "test",
        "path": "/metadata/resourceVersion",
        "value": "7",
    }
    assert planned.host == "weather-stable.prod.svc.cluster.local"
    # a Service's waypoint reports the requests it carries; a Gateway's route leaves the
    # reporter to the bot's setting
    assert planned.reporter == ("waypoint" if parent is WAYPOINT else "")


def test_steps_then_promotion_leave_the_canary_alone_with_all_traffic() -> None:
    raw = plan(route(ARGO), 50).vs.after
    record = last_applied(raw)
    assert record is not None and (record.stable, record.canary, record.by) == (
        "weather-stable",
        "weather-canary",
        "host",
    )
    assert canary_weight(raw, "weather-stable", "weather-canary") == 50
    final = plan(raw, 100, to="weather-canary", stable="weather-stable", finalize=True)
    assert weights(final.vs.after) == [("weather-canary", 100)]
    assert canary_weight(final.vs.after, "weather-stable", "weather-canary") == 100
    again = plan(final.vs.after, 100, to="weather-canary", finalize=True)
    assert again.noop


def test_a_rollback_gives_stable_everything_back() -> None:
    raw = plan(route(ARGO), 50).vs.after
    back = plan(raw, 0)
    assert weights(back.vs.after) == [("weather-stable", 100), ("weather-canary", 0)]


def test_flagger_names_and_a_new_canary_backend_copied_from_stable() -> None:
    raw = route([{"name": "weather-primary", "port": 9898}])
    raw["spec"]["rules"][0]["backendRefs"] = [{"name": "weather-primary", "port": 9898}]
    planned = plan(raw, 10, to="weather-canary")
    assert planned.vs.after["spec"]["rules"][1]["backendRefs"] == [
        {"name": "weather-primary", "port": 9898, "weight": 90},
        {"name": "weather-canary", "port": 9898, "weight": 10},
    ]
    assert [t.index for t in planned.touched] == [1]


def test_a_named_rule_moves_when_asked() -> None:
    raw = route(ARGO)
    raw["spec"]["rules"][0]["backendRefs"] = copy.deepcopy(ARGO)
    planned = plan(raw, 20, routes=("testers",))
    assert [t.index for t in planned.touched] == [0]
    assert weights(planned.vs.after, 0) == [("weather-stable", 80), ("weather-canary", 20)]
    assert weights(planned.vs.after) == weights(raw)


def test_names_that_say_nothing_get_a_command_that_works() -> None:
    raw = route([{"name": "weather-v1", "weight": 90}, {"name": "weather-v2", "weight": 10}])
    raw["spec"]["rules"].pop(0)
    with pytest.raises(AmbiguousCanary, match=r"`/canary weather\.prod 10% to weather-v2`$"):
        plan(raw, 10)
    assert weights(plan(raw, 10, to="weather-v2").vs.after, 0) == [
        ("weather-v1", 90),
        ("weather-v2", 10),
    ]


def test_a_third_backend_with_traffic_is_refused() -> None:
    raw = route([*ARGO, {"name": "weather-old", "weight": 5}])
    with pytest.raises(PlanError, match="also sends 5% to Service 'weather-old'"):
        plan(raw, 10)


def test_an_owned_route_is_refused_and_a_gitops_one_is_warned_about() -> None:
    raw = route(ARGO)
    owner = {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "weather"}
    raw["metadata"]["ownerReferences"] = [{**owner, "uid": "1", "controller": True}]
    with pytest.raises(PlanError, match=r"HTTPRoute 'weather' .* managed by Canary 'weather'"):
        plan(raw, 10)
    raw = route(ARGO)
    raw["metadata"]["labels"] = {"kustomize.toolkit.fluxcd.io/name": "apps"}
    [gitops] = plan(raw, 10).gitops
    assert gitops.tool == "Flux" and gitops.subject.startswith("HTTPRoute 'weather'")


@pytest.mark.parametrize(
    "fields",
    [{"mirror": 10}, {"cohort": Cohort(by="header", name="x-beta", value="1")}],
    ids=["mirror", "cohort"],
)
def test_what_only_a_virtual_service_can_do_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match="backendRefs weights only"):
        plan(route(ARGO), 10, **fields)


def test_an_invalid_live_route_is_refused_before_anything_is_planned() -> None:
    raw = route(ARGO)
    raw["spec"]["rules"][1]["backendRefs"][0]["weight"] = -1
    with pytest.raises(InvalidObject, match="the live HTTPRoute 'weather'"):
        plan(raw, 10)


def test_the_canary_backend_may_be_named_by_its_host() -> None:
    raw = route(ARGO)
    planned = plan(raw, 30, to="weather-canary.prod.svc.cluster.local")
    assert (planned.stable, planned.canary) == ("weather-stable", "weather-canary")
    with pytest.raises(InvalidRequest, match="is in namespace 'dev'"):
        plan(raw, 30, to="weather-canary.dev")
