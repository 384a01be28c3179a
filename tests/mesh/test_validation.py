from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.mesh.errors import InvalidObject, InvalidRequest, PlanError
from bot.mesh.planner import plan_split, select_destination_rule
from bot.mesh.request import SplitRequest

from .conftest import NOW, seed_docs

WEATHER_VS = next(vs for stem, vs in seed_docs("VirtualService") if stem == "weather")
WEATHER_DR = next(dr for stem, dr in seed_docs("DestinationRule") if stem == "weather")


def plan(vs: dict[str, Any], dr: dict[str, Any] = WEATHER_DR, **fields: Any) -> Any:
    return plan_split(vs, dr, SplitRequest.build(vs="weather", **fields), now=NOW)


def broken(edit: Any) -> dict[str, Any]:
    vs = copy.deepcopy(WEATHER_VS)
    edit(vs)
    return vs


def test_live_weights_that_do_not_sum_to_100_are_shares_as_istio_reads_them() -> None:
    vs = broken(lambda v: v["spec"]["http"][0]["route"][0].update(weight=30))  # 30 and 10
    planned = plan(vs, weight=50)
    assert (planned.touched[0].before, planned.touched[0].after) == ((75, 25), (50, 50))
    weights = [d["weight"] for d in planned.vs.after["spec"]["http"][0]["route"]]
    assert weights == [50, 50]  # the bot writes percentages


def test_live_weights_that_are_all_zero_are_reported_not_fixed() -> None:
    vs = broken(lambda v: [d.update(weight=0) for d in v["spec"]["http"][0]["route"]])
    with pytest.raises(InvalidObject) as caught:
        plan(vs, weight=20)
    assert str(caught.value) == (
        "the live VirtualService 'weather' in namespace 'default' is not valid: "
        "/spec/http/0/route: the weights [0, 0] are all 0, so the route sends traffic nowhere; "
        "fix it by hand first (kubectl -n default edit virtualservice weather)"
    )


def test_live_schema_violation_names_the_field_and_the_fix() -> None:
    vs = broken(lambda v: v["spec"].update(hosts="weather"))
    with pytest.raises(InvalidObject) as caught:
        plan(vs, weight=20)
    assert str(caught.value).startswith("the live VirtualService 'weather' in namespace")
    assert "/spec/hosts" in str(caught.value) and "kubectl -n default edit" in str(caught.value)


def test_destination_host_must_match_the_destination_rule() -> None:
    dr = copy.deepcopy(WEATHER_DR)
    dr["spec"]["host"] = "climate-service"
    with pytest.raises(PlanError, match="no http route to host 'climate-service'"):
        plan(WEATHER_VS, dr, weight=20)


def test_fqdn_destination_matches_a_short_dr_host_in_the_same_namespace() -> None:
    vs = broken(
        lambda v: [
            d["destination"].update(host="weather-service.default.svc.cluster.local")
            for d in v["spec"]["http"][0]["route"]
        ]
    )
    assert plan(vs, weight=30).touched[0].after == (70, 30)


def test_fqdn_in_another_namespace_is_another_host() -> None:
    vs = broken(
        lambda v: [
            d["destination"].update(host="weather-service.prod.svc.cluster.local")
            for d in v["spec"]["http"][0]["route"]
        ]
    )
    with pytest.raises(PlanError, match="no http route to host"):
        plan(vs, weight=30)


def test_vs_without_a_matching_destination_rule_says_what_to_create() -> None:
    with pytest.raises(PlanError, match="no DestinationRule in 'default' has one of these hosts"):
        select_destination_rule(WEATHER_VS, [], "default")


def test_vs_with_only_tcp_routes_has_them_planned() -> None:
    vs = broken(
        lambda v: v["spec"].update(
            http=[], tcp=[{"route": [{"destination": {"host": "weather-service", "subset": "v1"}}]}]
        )
    )
    weights = [d["weight"] for d in plan(vs, weight=30).vs.after["spec"]["tcp"][0]["route"]]
    assert weights == [70, 30]


def test_duplicate_subsets_in_the_live_destination_rule_are_reported() -> None:
    dr = copy.deepcopy(WEATHER_DR)
    dr["spec"]["subsets"].append({"name": "v2", "labels": {"version": "v2"}})
    with pytest.raises(InvalidObject, match="subset 'v2' is defined twice"):
        plan(WEATHER_VS, dr, weight=30)


def test_named_route_must_exist() -> None:
    with pytest.raises(Exception, match="no http route named 'api'"):
        plan(WEATHER_VS, weight=30, routes=("api",))


def test_subset_label_key_follows_the_existing_subsets() -> None:
    dr = copy.deepcopy(WEATHER_DR)
    for s in dr["spec"]["subsets"]:
        s["labels"] = {"app.kubernetes.io/version": s["name"]}
    vs = broken(lambda v: v["spec"]["http"][0]["route"].pop())
    assert plan(vs, dr, weight=0, to="v3").dr is None  # nothing references v3: DR unchanged
    result = plan(vs, dr, weight=5, to="v3")
    assert result.dr is not None
    assert result.dr.after["spec"]["subsets"][-1] == {
        "name": "v3",
        "labels": {"app.kubernetes.io/version": "v3"},
    }


TESTER_ROUTE = {
    "match": [{"headers": {"x-canary": {"exact": "1"}}}],
    "route": [{"destination": {"host": "weather-service", "subset": "v2"}}],
}


def test_tester_route_does_not_make_the_canary_look_stable() -> None:
    vs = broken(
        lambda v: (v["spec"]["http"][0].pop("match"), v["spec"]["http"].insert(0, TESTER_ROUTE))
    )
    result = plan(vs, weight=20)
    assert (result.stable, result.canary) == ("v1", "v2")
    assert [t.index for t in result.touched] == [1]
    assert result.vs.after["spec"]["http"][0] == TESTER_ROUTE


def test_a_guess_that_would_shift_traffic_the_wrong_way_is_refused() -> None:
    vs = broken(lambda v: v["spec"]["http"].insert(0, TESTER_ROUTE))  # every route has a match
    with pytest.raises(InvalidRequest, match="already carries more traffic"):
        plan(vs, weight=20)
    result = plan(vs, weight=20, to="v2")
    assert result.touched[0].after == (80, 20)
