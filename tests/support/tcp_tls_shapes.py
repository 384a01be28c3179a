"""TCP and TLS routes from istio.io (tcp-echo traffic shifting, TLS passthrough to nginx) with
their DestinationRules, and their plans."""

from __future__ import annotations

from typing import Any

from bot.mesh.planner import plan_traffic
from bot.mesh.request import SplitRequest
from tests.mesh.conftest import NOW


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
