"""A subset the bot adds selects the pods the existing subsets' convention says it should."""

from __future__ import annotations

from typing import Any

import pytest

from bot.mesh.errors import InvalidRequest, PlanError
from bot.mesh.planner import plan_split
from bot.mesh.request import SplitRequest


def objects(*subsets: tuple[str, dict[str, str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    stable = subsets[0][0]
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "recommendation", "namespace": "tutorial"},
        "spec": {
            "hosts": ["recommendation"],
            "http": [{"route": [{"destination": {"host": "recommendation", "subset": stable}}]}],
        },
    }
    dr = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "recommendation", "namespace": "tutorial"},
        "spec": {
            "host": "recommendation",
            "subsets": [{"name": name, "labels": labels} for name, labels in subsets],
        },
    }
    return vs, dr


def added_subset(subsets: list[tuple[str, dict[str, str]]], canary: str) -> dict[str, Any]:
    vs, dr = objects(*subsets)
    request = SplitRequest.build(vs="recommendation", namespace="tutorial", weight=10, to=canary)
    planned = plan_split(vs, dr, request, now=None)
    assert planned.dr is not None
    added: dict[str, Any] = planned.dr.after["spec"]["subsets"][-1]
    return added


@pytest.mark.parametrize(
    ("subsets", "canary", "labels"),
    [
        # istio-tutorial: subsets named version-v1, pods labelled version: v1
        ([("version-v1", {"version": "v1"})], "version-v2", {"version": "v2"}),
        ([("v1", {"app": "weather", "version": "v1"})], "v3", {"version": "v3"}),
        ([("blue", {"color": "blue"}), ("green", {"color": "green"})], "red", {"color": "red"}),
        ([("rev-1-stable", {"rev": "1"})], "rev-2-stable", {"rev": "2"}),
    ],
)
def test_a_new_subset_follows_the_convention_of_the_existing_ones(
    subsets: list[tuple[str, dict[str, str]]], canary: str, labels: dict[str, str]
) -> None:
    assert added_subset(subsets, canary) == {"name": canary, "labels": labels}


@pytest.mark.parametrize(
    ("subsets", "canary"),
    [
        ([("stable", {"track": "main"})], "canary"),  # nothing says what `canary` would select
        ([("version-v1", {"version": "v1"})], "v2"),  # named against the convention
    ],
)
def test_a_subset_whose_labels_cannot_be_known_is_refused_with_what_to_do(
    subsets: list[tuple[str, dict[str, str]]], canary: str
) -> None:
    with pytest.raises(PlanError) as refused:
        added_subset(subsets, canary)
    message = str(refused.value)
    assert f"has no subset '{canary}'" in message
    assert f"add subset '{canary}' with the labels its pods carry" in message
    assert subsets[0][0] in message  # shows what the existing subsets look like


# --- `labels`: the user names the new subset's pods ---------------------------------------------


def planned_with(
    subsets: list[tuple[str, dict[str, str]]], canary: str, labels: dict[str, str]
) -> dict[str, Any]:
    vs, dr = objects(*subsets)
    request = SplitRequest.build(
        vs="recommendation",
        namespace="tutorial",
        weight=10,
        to=canary,
        labels=tuple(sorted(labels.items())),
    )
    planned = plan_split(vs, dr, request, now=None)
    assert planned.dr is not None
    added: dict[str, Any] = planned.dr.after["spec"]["subsets"][-1]
    return added


def test_the_refusal_gives_a_labels_command_that_then_plans() -> None:
    subsets = [("stable", {"track": "main"})]
    with pytest.raises(PlanError) as refused:
        added_subset(subsets, "canary")
    message = str(refused.value)
    assert "`/canary recommendation.tutorial 10% to canary labels track=VALUE`" in message
    assert planned_with(subsets, "canary", {"track": "next"}) == {
        "name": "canary",
        "labels": {"track": "next"},
    }


def test_named_labels_win_over_the_convention() -> None:
    subsets = [("v1", {"version": "v1"})]
    assert planned_with(subsets, "v2", {"version": "v2", "track": "canary"}) == {
        "name": "v2",
        "labels": {"track": "canary", "version": "v2"},
    }


def test_labels_that_differ_from_an_existing_subsets_are_refused_and_nothing_is_planned() -> None:
    subsets = [("v1", {"version": "v1"}), ("v2", {"version": "v2"})]
    with pytest.raises(InvalidRequest, match=r"has subset 'v2' already, selecting version=v2"):
        planned_with(subsets, "v2", {"version": "two"})


def test_labels_that_match_an_existing_subset_change_nothing_of_it() -> None:
    vs, dr = objects(("v1", {"version": "v1"}), ("v2", {"version": "v2"}))
    request = SplitRequest.build(
        vs="recommendation", namespace="tutorial", weight=10, to="v2", labels=(("version", "v2"),)
    )
    assert plan_split(vs, dr, request, now=None).dr is None


def test_a_route_between_services_takes_no_labels() -> None:
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "hosts": ["podinfo"],
            "http": [{"route": [{"destination": {"host": "podinfo-primary"}, "weight": 100}]}],
        },
    }
    request = SplitRequest.build(
        vs="podinfo", namespace="test", weight=10, to="podinfo-canary", labels=(("app", "x"),)
    )
    with pytest.raises(InvalidRequest, match="splits between Services"):
        plan_split(vs, None, request, now=None)


@pytest.mark.parametrize(
    "labels",
    [
        (("version", ""),),  # an empty value
        (("ver sion", "v2"),),
        (("-version", "v2"),),
        (("version", "v" * 64),),  # a value over 63 characters
        (("a" * 254 + "/version", "v2"),),  # a prefix over 253 characters
        (("version", "v2\n"),),
    ],
)
def test_labels_kubernetes_would_refuse_are_refused_before_anything_is_read(
    labels: tuple[tuple[str, str], ...],
) -> None:
    with pytest.raises(InvalidRequest, match="is not a list of pod labels"):
        SplitRequest.build(vs="recommendation", weight=10, to="v2", labels=labels)
