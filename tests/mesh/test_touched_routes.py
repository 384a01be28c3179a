"""Only the primary (catch-all) traffic moves by default; a route with a match, such as
testers' cookie route from Istio's canary blog post, moves only when named."""

from __future__ import annotations

import copy
from typing import Any

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
