"""TCP and TLS routes carry weights too (Istio's TCP traffic-shifting task; TLS passthrough
behind a gateway): a VirtualService with no http routes has its tcp (or tls) routes planned
like http catch-all routes, with the same invariants. A delegating root VirtualService points
at its delegate."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.mesh.errors import InvalidRequest, PlanError
from bot.mesh.planner import plan_traffic
from bot.mesh.request import SplitRequest

from .conftest import NOW
from .invariants import assert_plan_invariants


def dest(host: str, subset: str, weight: int) -> dict[str, Any]:
    return {
        "destination": {"host": host, "port": {"number": 9000}, "subset": subset},
        "weight": weight,
    }


def rule(name: str, host: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": "istio-io-tcp-traffic-shifting"},
        "spec": {
            "host": host,
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        },
    }


# istio.io, Tasks › Traffic Management › TCP Traffic Shifting (tcp-echo at 80/20).
TCP_ECHO = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "tcp-echo", "namespace": "istio-io-tcp-traffic-shifting"},
    "spec": {
        "hosts": ["*"],
        "gateways": ["tcp-echo-gateway"],
        "tcp": [
            {
                "match": [{"port": 31400}],
                "route": [dest("tcp-echo", "v1", 80), dest("tcp-echo", "v2", 20)],
            }
        ],
    },
}
TCP_DR = rule("tcp-echo-destination", "tcp-echo")
# TLS passthrough: the route must match on SNI, so every tls route has a match.
TLS_NGINX = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "nginx", "namespace": "istio-io-tcp-traffic-shifting"},
    "spec": {
        "hosts": ["nginx.example.com"],
        "gateways": ["mygateway"],
        "tls": [
            {
                "match": [{"port": 443, "sniHosts": ["nginx.example.com"]}],
                "route": [dest("my-nginx", "v1", 100)],
            }
        ],
    },
}
TLS_DR = rule("my-nginx", "my-nginx")


def plan(vs: Any, drs: list[Any], weight: int | None = 50, **fields: Any) -> Any:
    ns = vs["metadata"]["namespace"]
    request = SplitRequest.build(vs=vs["metadata"]["name"], namespace=ns, weight=weight, **fields)
    return plan_traffic(vs, drs, request, now=NOW)


@pytest.mark.parametrize("weight", [0, 20, 50, 100])
def test_a_tcp_route_is_split_like_an_http_one(weight: int) -> None:
    before = copy.deepcopy(TCP_ECHO)
    result = plan(TCP_ECHO, [TCP_DR], weight)
    assert before == TCP_ECHO
    assert (result.stable, result.canary) == ("v1", "v2")
    assert_plan_invariants(result, TCP_ECHO, TCP_DR)
    route = result.vs.after["spec"]["tcp"][0]
    assert [d["weight"] for d in route["route"]] == [100 - weight, weight]
    assert route["match"] == [{"port": 31400}]
    assert all(op["path"].startswith(("/spec/tcp/0/route/", "/metadata")) for op in result.vs.ops)


def test_a_tls_route_gets_its_canary_subset_added() -> None:
    result = plan(TLS_NGINX, [TLS_DR], 10, to="v2")
    assert_plan_invariants(result, TLS_NGINX, TLS_DR)
    route = result.vs.after["spec"]["tls"][0]["route"]
    assert route == [dest("my-nginx", "v1", 90), dest("my-nginx", "v2", 10)]


def test_mirroring_a_tcp_route_is_refused_and_nothing_changes() -> None:
    with pytest.raises(InvalidRequest) as caught:
        plan(TCP_ECHO, [TCP_DR], None, mirror=10)
    assert str(caught.value) == (
        "VirtualService 'tcp-echo' in namespace 'istio-io-tcp-traffic-shifting' has tcp routes, "
        "and Istio mirrors http traffic only; nothing was changed; set a weight instead"
    )


def test_http_routes_are_planned_and_tcp_routes_beside_them_kept() -> None:
    both = copy.deepcopy(TCP_ECHO)
    both["spec"]["http"] = [{"route": [dest("tcp-echo", "v1", 100)]}]
    result = plan(both, [TCP_DR], 30)
    assert result.vs.after["spec"]["tcp"] == TCP_ECHO["spec"]["tcp"]
    assert [t.index for t in result.touched] == [0]
    assert result.vs.after["spec"]["http"][0]["route"][1]["weight"] == 30


def test_a_delegating_root_points_at_its_delegate() -> None:
    # istio.io, VirtualService reference › Delegate: the root hands /productpage to a delegate.
    root = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "bookinfo", "namespace": "default"},
        "spec": {
            "hosts": ["bookinfo.com"],
            "gateways": ["mygateway"],
            "http": [
                {
                    "match": [{"uri": {"prefix": "/productpage"}}],
                    "delegate": {"name": "productpage", "namespace": "pages"},
                }
            ],
        },
    }
    with pytest.raises(PlanError) as caught:
        plan(root, [], 25)
    assert str(caught.value) == (
        "VirtualService 'bookinfo' in namespace 'default' delegates route #0 to VirtualService "
        "'productpage' in namespace 'pages', whose routes carry the weights; nothing was changed; "
        "name that one: `/canary productpage.pages 25%`"
    )
