"""Hypothesis strategies for the planner's property tests: VirtualServices with a stable route,
other routes and fields from the future, their DestinationRules, and split requests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from bot.mesh.request import SplitRequest

HOSTS = ("weather-service", "weather-service.prod.svc.cluster.local")
names = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True)
port = st.one_of(st.none(), st.builds(lambda n: {"number": n}, st.integers(1, 65535)))
unknown = st.dictionaries(
    st.from_regex(r"x[A-Z][a-zA-Z]{1,6}", fullmatch=True),
    st.one_of(st.integers(), st.text(max_size=5), st.booleans()),
    max_size=2,
)
extras = st.fixed_dictionaries(
    {},
    optional={
        "match": st.just([{"headers": {"end-user": {"exact": "jason"}}}]),
        "retries": st.just({"attempts": 3, "perTryTimeout": "2s"}),
        "timeout": st.just("10s"),
        "headers": st.just({"request": {"set": {"x-env": "canary"}}}),
        "fault": st.just({"delay": {"percentage": {"value": 0.1}, "fixedDelay": "5s"}}),
        "corsPolicy": st.just({"allowOrigins": [{"exact": "https://example.com"}]}),
    },
)


def destination(host: str, subset: str | None, port_: dict[str, int] | None) -> dict[str, Any]:
    dest: dict[str, Any] = {"host": host}
    if subset is not None:
        dest["subset"] = subset
    if port_ is not None:
        dest["port"] = port_
    return dest


@st.composite
def stable_route(draw: st.DrawFn) -> dict[str, Any]:
    """A route sending most of its traffic to v1, maybe some to the canary v2."""
    host, p = draw(st.sampled_from(HOSTS)), draw(port)
    canary = draw(st.integers(0, 49))
    route = [{"destination": destination(host, "v1", p), "weight": 100 - canary}]
    if canary or draw(st.booleans()):
        route.append({"destination": destination(host, "v2", p), "weight": canary})
    elif draw(st.booleans()):
        del route[0]["weight"]
    body = {**draw(extras), **draw(unknown), "route": route}
    if draw(st.booleans()):
        body["mirror"] = {"host": "shadow", "subset": "v9"}
    if draw(st.booleans()):
        body["name"] = draw(names)
    return body


@st.composite
def other_route(draw: st.DrawFn) -> dict[str, Any]:
    """A route the planner must leave alone: canary-only testers, or another service."""
    kind = draw(st.sampled_from(["canary-only", "other-host"]))
    dest = destination(HOSTS[0], "v2", None) if kind == "canary-only" else {"host": "ratings"}
    return {
        "match": [{"headers": {"x-canary": {"exact": "1"}}}],
        **draw(extras),
        "route": [{"destination": dest}],
    }


@st.composite
def virtual_service(draw: st.DrawFn) -> dict[str, Any]:
    routes = draw(st.lists(st.one_of(stable_route(), other_route()), min_size=1, max_size=5))
    if not any(r["route"][0]["destination"].get("subset") == "v1" for r in routes):
        routes.insert(draw(st.integers(0, len(routes))), draw(stable_route()))
    spec: dict[str, Any] = {"hosts": ["weather.example.com"], "http": routes, **draw(unknown)}
    if draw(st.booleans()):
        spec["tcp"] = [{"match": [{"port": 31400}], "route": [{"destination": {"host": "db"}}]}]
    if draw(st.booleans()):
        spec["gateways"] = ["weather-gateway"]
    meta: dict[str, Any] = {"name": "weather", "namespace": "prod", "resourceVersion": "7"}
    if draw(st.booleans()):
        meta["annotations"] = {"team": "forecast"}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta,
        "spec": spec,
    }


@st.composite
def destination_rule(draw: st.DrawFn) -> dict[str, Any]:
    subsets = [{"name": "v1", "labels": {"version": "v1"}}]
    if draw(st.booleans()):
        subsets.append({"name": "v2", "labels": {"version": "v2"}})
    spec: dict[str, Any] = {"host": "weather-service", "subsets": subsets}
    if draw(st.booleans()):
        spec["trafficPolicy"] = {"loadBalancer": {"simple": "LEAST_REQUEST"}}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "weather-service", "namespace": "prod"},
        "spec": spec,
    }


requests = st.builds(
    lambda weight, mirror: SplitRequest.build(
        vs="weather", namespace="prod", weight=weight, to="v2", mirror=mirror
    ),
    st.integers(0, 100),
    st.one_of(st.none(), st.integers(0, 100)),
)
