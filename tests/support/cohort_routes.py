"""Bundled seed objects the cohort tests plan over (weather, and bookinfo's reviews), as live
objects: in their namespace, with a resourceVersion."""

from __future__ import annotations

import copy
from typing import Any

from tests.mesh.conftest import seed_docs


def seeded(kind: str, name: str, stem: str) -> dict[str, Any]:
    [doc] = [d for s, d in seed_docs(kind) if s == stem and d["metadata"]["name"] == name]
    found = copy.deepcopy(doc)
    found["metadata"].setdefault("namespace", "default")
    found["metadata"]["resourceVersion"] = "7"
    return found


WEATHER = seeded("VirtualService", "weather", "weather")
WEATHER_DR = seeded("DestinationRule", "weather-service", "weather")
REVIEWS = seeded("VirtualService", "reviews", "bookinfo-virtual-service-all-v1")
REVIEWS_DR = seeded("DestinationRule", "reviews", "bookinfo-destination-rule-all")
