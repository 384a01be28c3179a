"""Host-based VirtualServices as Argo Rollouts (`-stable`/`-canary`), Flagger
(`-primary`/`-canary`) and Istio's ping/pong example lay them out, and their plans."""

from __future__ import annotations

from typing import Any

from bot.mesh.planner import plan_traffic
from bot.mesh.request import SplitRequest
from tests.mesh.conftest import NOW


def vs(name: str, stable: str, canary: str | None, *, extra: list[Any] | None = None) -> Any:
    route: list[dict[str, Any]] = [{"destination": {"host": stable}, "weight": 100}]
    if canary is not None:
        route.append({"destination": {"host": canary}, "weight": 0})
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "test", "resourceVersion": "7"},
        "spec": {"hosts": [name], "http": [*(extra or []), {"name": "primary", "route": route}]},
    }


# Argo Rollouts' Istio getting-started guide (host-level traffic splitting).
ARGO = vs("rollouts-demo", "rollouts-demo-stable", "rollouts-demo-canary")
# Flagger's generated VirtualService for podinfo, with the testers' header route it adds.
TESTERS = {
    "match": [{"headers": {"x-canary": {"exact": "insider"}}}],
    "route": [{"destination": {"host": "podinfo-canary"}}],
}
FLAGGER = vs("podinfo", "podinfo-primary", "podinfo-canary", extra=[TESTERS])
# Argo Rollouts' e2e `istio-host-split`: two Services whose names say nothing.
PINGPONG = vs("istio-host-split", "ping", "pong")


def plan(obj: Any, weight: int | None = 10, **fields: Any) -> Any:
    request = SplitRequest.build(
        vs=obj["metadata"]["name"], namespace="test", weight=weight, **fields
    )
    return plan_traffic(obj, [], request, now=NOW)
