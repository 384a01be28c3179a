"""A Hypothesis strategy for host-based VirtualServices: a catch-all route split between two
Services (no subsets), with the stable and canary Service names."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

PAIRS = (("app-stable", "app-canary"), ("app-primary", "app-canary"), ("app", "app-canary"))
port = st.one_of(st.none(), st.builds(lambda n: {"number": n}, st.integers(1, 65535)))
extras = st.fixed_dictionaries(
    {},
    optional={
        "retries": st.just({"attempts": 3, "perTryTimeout": "2s"}),
        "timeout": st.just("10s"),
        "headers": st.just({"request": {"set": {"x-env": "canary"}}}),
    },
)


def destination(name: str, fqdn: bool, port_: dict[str, int] | None) -> dict[str, Any]:
    dest: dict[str, Any] = {"host": f"{name}.prod.svc.cluster.local" if fqdn else name}
    if port_ is not None:
        dest["port"] = port_
    return dest


@st.composite
def virtual_service(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    stable, canary = draw(st.sampled_from(PAIRS))
    fqdn, p = draw(st.booleans()), draw(port)
    weight = draw(st.integers(0, 49))
    route = [{"destination": destination(stable, fqdn, p), "weight": 100 - weight}]
    if weight or draw(st.booleans()):
        route.append({"destination": destination(canary, fqdn, p), "weight": weight})
    primary = {**draw(extras), "route": route}
    if draw(st.booleans()):
        primary["name"] = "primary"
    testers = {
        "match": [{"headers": {"x-canary": {"exact": "1"}}}],
        "route": [{"destination": destination(canary, fqdn, p)}],
    }
    http = [testers, primary] if draw(st.booleans()) else [primary]
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "app", "namespace": "prod", "resourceVersion": "7"},
        "spec": {"hosts": ["app"], "http": http},
    }
    return vs, stable, canary
