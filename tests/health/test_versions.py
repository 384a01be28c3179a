"""Istio's telemetry names a workload by its canonical revision (destination_version), taken
from its pods' labels, not by the DestinationRule subset that selects them: the health query
asks for the label values the subsets select."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.health.check import HealthCheck
from bot.health.promql import selector
from bot.mesh.planner import plan_split
from bot.mesh.request import SplitRequest
from bot.rollout.model import Target

VS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "weather", "namespace": "default"},
    "spec": {
        "hosts": ["weather"],
        "http": [{"route": [{"destination": {"host": "weather", "subset": "stable"}}]}],
    },
}


def rule(*subsets: tuple[str, dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "weather", "namespace": "default"},
        "spec": {
            "host": "weather",
            "subsets": [{"name": n, "labels": labels} for n, labels in subsets],
        },
    }


@pytest.mark.parametrize(
    ("canary_labels", "version"),
    [
        ({"version": "v2"}, "v2"),
        ({"app.kubernetes.io/version": "2.1.0", "version": "v2"}, "2.1.0"),
        ({"service.istio.io/canonical-revision": "r7", "version": "v2"}, "r7"),
        ({"track": "canary"}, "canary"),  # the labels do not say: the subset's name
    ],
)
def test_each_subset_is_named_as_istio_telemetry_names_its_pods(
    canary_labels: dict[str, str], version: str
) -> None:
    dr = rule(("stable", {"version": "v1"}), ("canary", canary_labels))
    planned = plan_split(
        copy.deepcopy(VS), dr, SplitRequest.build(vs="weather", weight=10, to="canary"), now=None
    )
    assert (planned.version_of("stable"), planned.version_of("canary")) == ("v1", version)


def test_the_health_query_selects_label_values_not_subset_names() -> None:
    target = Target(
        namespace="default",
        vs="weather",
        stable="stable",
        canary="canary",
        stable_version="v1",
        canary_version="v2",
    )
    subject = HealthCheck(client=None).subject(target)  # type: ignore[arg-type]
    query = selector(subject)
    assert 'destination_version=~"v1|v2"' in query and "stable|canary" not in query


def test_a_record_from_before_versions_were_kept_still_queries_by_subset_name() -> None:
    target = Target(namespace="default", vs="weather", stable="v1", canary="v2")
    subject = HealthCheck(client=None).subject(target)  # type: ignore[arg-type]
    assert (subject.stable, subject.canary) == ("v1", "v2")
