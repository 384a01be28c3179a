"""Only the primary (catch-all) traffic moves by default; a route with a match, such as
testers' cookie route from Istio's canary blog post, moves only when named."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.mesh.errors import PlanError
from bot.mesh.planner import plan_split
from bot.mesh.request import SplitRequest

HOST = "helloworld"


def split(v1: int, v2: int) -> list[dict[str, Any]]:
    return [
        {"destination": {"host": HOST, "subset": "v1"}, "weight": v1},
        {"destination": {"host": HOST, "subset": "v2"}, "weight": v2},
    ]


VS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "helloworld", "namespace": "default"},
    "spec": {
        "hosts": [HOST],
        "http": [
            {
                "name": "internal-users",
                "match": [
                    {
                        "headers": {
                            "cookie": {
                                "regex": "^(.*?;)?(email=[^;]*@some-company-name.com)(;.*)?$"
                            }
                        }
                    }
                ],
                "route": split(50, 50),
            },
            {"route": split(100, 0)},
        ],
    },
}
DR = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "helloworld", "namespace": "default"},
    "spec": {
        "host": HOST,
        "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")],
    },
}


def weights(vs: dict[str, Any], index: int) -> list[int]:
    return [d["weight"] for d in vs["spec"]["http"][index]["route"]]


def test_a_weight_moves_the_catch_all_route_and_leaves_the_testers_route_alone() -> None:
    request = SplitRequest.build(vs="helloworld", weight=10, to="v2")
    planned = plan_split(copy.deepcopy(VS), DR, request, now=None)
    assert [t.index for t in planned.touched] == [1]
    assert "the catch-all route; routes with a match are left alone" in planned.touched[0].reason
    assert weights(planned.vs.after, 0) == [50, 50]  # the cookie route as it was
    assert weights(planned.vs.after, 1) == [90, 10]


def test_a_route_with_a_match_moves_when_it_is_named() -> None:
    request = SplitRequest.build(vs="helloworld", weight=80, to="v2", routes=("internal-users",))
    planned = plan_split(copy.deepcopy(VS), DR, request, now=None)
    assert [t.index for t in planned.touched] == [0]
    assert weights(planned.vs.after, 0) == [20, 80]
    assert weights(planned.vs.after, 1) == [100, 0]


def owned(api_version: str, kind: str, name: str, *, controller: bool) -> dict[str, Any]:
    vs = copy.deepcopy(VS)
    vs["metadata"]["ownerReferences"] = [
        {
            "apiVersion": api_version,
            "kind": kind,
            "name": name,
            "uid": "u1",
            "controller": controller,
        }
    ]
    return vs


@pytest.mark.parametrize(
    ("api_version", "kind", "instead"),
    [
        ("argoproj.io/v1alpha1", "Rollout", "kubectl argo rollouts promote|abort"),
        ("flagger.app/v1beta1", "Canary", "drive the canary with Flagger"),
        ("example.com/v1", "Mesh", "change it through its Mesh"),
    ],
)
def test_an_object_a_controller_owns_is_refused_naming_the_owner(
    api_version: str, kind: str, instead: str
) -> None:
    request = SplitRequest.build(vs="helloworld", weight=10, to="v2")
    with pytest.raises(PlanError) as refused:
        plan_split(owned(api_version, kind, "helloworld", controller=True), DR, request, now=None)
    message = str(refused.value)
    assert f"is managed by {kind} 'helloworld' ({api_version})" in message
    assert "nothing was changed" in message and instead in message


def test_an_owner_that_is_not_a_controller_does_not_stop_the_plan() -> None:
    request = SplitRequest.build(vs="helloworld", weight=10, to="v2")
    vs = owned("v1", "ConfigMap", "bundle", controller=False)
    assert plan_split(vs, DR, request, now=None).touched
