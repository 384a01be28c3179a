"""TCP and TLS routes carry weights too (Istio's TCP traffic-shifting task; TLS passthrough
behind a gateway): a VirtualService with no http routes has its tcp (or tls) routes planned
like http catch-all routes, with the same invariants. A delegating root VirtualService points
at its delegate."""

from __future__ import annotations

import copy

import pytest

from bot.mesh.errors import InvalidRequest, PlanError
from tests.support.tcp_tls_shapes import TCP_DR, TCP_ECHO, TLS_DR, TLS_NGINX, dest, plan

from .invariants import assert_plan_invariants


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
