"""Every VirtualService in the bundled seed files, with the canary to name and what the planner
should say (a plan, or which refusal), and the DestinationRule each one is planned with."""

from __future__ import annotations

from typing import Any

import pytest

from bot.mesh.errors import AmbiguousCanary, InvalidRequest, MeshError, PlanError
from bot.mesh.planner import select_destination_rule
from tests.mesh.conftest import seed_docs

WEIGHTS = (0, 1, 10, 50, 99, 100)
ALL_DRS = [dr for _, dr in seed_docs("DestinationRule")]
# What the planner must do for each seed VirtualService (file, name), per canary subset asked
# for: None means "plans"; an exception type means "refuses with that error".
EXPECTED: dict[tuple[str, str, str | None], type[MeshError] | None] = {
    ("weather", "weather", None): None,
    ("weather", "weather", "v2"): None,
    ("weather", "weather", "v3"): PlanError,  # v2 still carries 10%: two canaries refused
    ("bookinfo-gateway", "bookinfo", None): PlanError,  # productpage without a subset
    ("bookinfo-gateway", "bookinfo", "v1"): PlanError,
    ("httpbin", "httpbin", None): PlanError,  # the DR has only v1: name the canary
    ("httpbin", "httpbin", "v2"): None,  # ... and it is added to the DR
    ("bookinfo-virtual-service-all-v1", "productpage", None): PlanError,
    ("bookinfo-virtual-service-all-v1", "productpage", "v2"): None,
    ("bookinfo-virtual-service-all-v1", "reviews", None): AmbiguousCanary,  # v2 or v3?
    ("bookinfo-virtual-service-all-v1", "reviews", "v3"): None,
    ("bookinfo-virtual-service-all-v1", "ratings", None): AmbiguousCanary,
    ("bookinfo-virtual-service-all-v1", "ratings", "v2-mysql"): None,
    ("bookinfo-virtual-service-all-v1", "details", None): None,
    ("bookinfo-virtual-service-all-v1", "details", "v1"): InvalidRequest,  # v1 is stable
    ("bookinfo-reviews-50-50", "reviews", None): PlanError,  # an even split: who is stable?
    ("bookinfo-reviews-50-50", "reviews", "v3"): None,
    ("bookinfo-reviews-50-50", "reviews", "v2"): PlanError,  # would leave v3 at 50%
    ("bookinfo-reviews-mirroring", "reviews", None): AmbiguousCanary,
    ("bookinfo-reviews-mirroring", "reviews", "v2"): None,
    ("bookinfo-reviews-mirroring", "reviews", "v3"): None,
}
CASES = [
    pytest.param(stem, vs, to, expected, id=f"{stem}:{vs['metadata']['name']}:{to}")
    for stem, vs in seed_docs("VirtualService")
    for (e_stem, e_name, to), expected in EXPECTED.items()
    if (e_stem, e_name) == (stem, vs["metadata"]["name"])
]


def dr_for(vs: dict[str, Any]) -> dict[str, Any]:
    return select_destination_rule(vs, ALL_DRS, "default")
