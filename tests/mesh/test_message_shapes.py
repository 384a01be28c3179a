"""What the bot says when it cannot plan, and what it leaves alone: no `None` in a message, a
suggested command that would work (not a subset already in use, the weight that was asked),
no deprecated mirror field left behind, no namespace written into a file's objects."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli import main
from bot.mesh.errors import AmbiguousCanary, PlanError
from bot.mesh.planner import plan_traffic
from bot.mesh.request import SplitRequest

from .conftest import NOW


def route(*dests: tuple[str, str | None, int]) -> list[dict[str, Any]]:
    found = []
    for host, subset, weight in dests:
        destination = {"host": host} if subset is None else {"host": host, "subset": subset}
        found.append({"destination": destination, "weight": weight})
    return found


def virtual_service(http: list[Any], namespace: str = "front") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": namespace},
        "spec": {"hosts": ["reviews"], "http": http},
    }


def destination_rule(host: str, *subsets: str, namespace: str = "front") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": namespace},
        "spec": {
            "host": host,
            "subsets": [{"name": s, "labels": {"version": s}} for s in subsets],
        },
    }


def plan(vs: Any, drs: list[Any], weight: int | None = 10, **fields: Any) -> Any:
    ns = vs["metadata"]["namespace"]
    request = SplitRequest.build(vs="reviews", namespace=ns, weight=weight, **fields)
    return plan_traffic(vs, drs, request, now=NOW)


def test_traffic_to_a_host_in_a_third_namespace_is_named_without_none() -> None:
    back, legacy = "reviews.back.svc.cluster.local", "reviews.legacy.svc.cluster.local"
    vs = virtual_service([{"route": route((back, "v1", 80), (back, "v2", 10), (legacy, None, 10))}])
    before = copy.deepcopy(vs)
    with pytest.raises(PlanError) as caught:
        plan(vs, [destination_rule(back, "v1", "v2")], 20)
    assert str(caught.value) == (
        "route #0 of VirtualService 'reviews' in namespace 'front' also sends 10% to "
        "reviews.legacy.svc.cluster.local; the bot splits traffic between two subsets of one "
        "service only; move that traffic by hand first"
    )
    assert vs == before


def test_a_lone_stable_subset_gets_a_new_name_suggested_with_the_weight_asked() -> None:
    vs = virtual_service([{"route": route(("reviews", "v2", 100))}])
    with pytest.raises(PlanError) as caught:
        plan(vs, [destination_rule("reviews", "v2")], 33)
    assert str(caught.value) == (
        "DestinationRule 'reviews' has only subset 'v2', the stable one; name the canary and "
        "the bot adds it: `/canary reviews.front 33% to v3`"
    )


def test_the_suggested_canary_is_not_a_subset_that_carries_testers_traffic() -> None:
    # Bookinfo's reviews: jason is routed to v2, everyone else to v1; v3 is idle.
    jason = {
        "match": [{"headers": {"end-user": {"exact": "jason"}}}],
        "route": route(("reviews", "v2", 100)),
    }
    vs = virtual_service([jason, {"route": route(("reviews", "v1", 100))}])
    dr = destination_rule("reviews", "v1", "v3", "v2")
    with pytest.raises(AmbiguousCanary) as caught:
        plan(vs, [dr], 25)
    assert str(caught.value).endswith("say which is the canary: `/canary reviews.front 25% to v3`")
    assert caught.value.candidates == ["v3", "v2"]


def test_mirror_0_removes_the_deprecated_mirror_percent_too() -> None:
    vs = virtual_service(
        [
            {
                "route": route(("reviews", "v1", 100)),
                "mirror": {"host": "reviews", "subset": "v2"},
                "mirrorPercent": 50,
            }
        ]
    )
    result = plan(vs, [destination_rule("reviews", "v1", "v2")], None, mirror=0)
    assert result.vs.after["spec"]["http"][0] == {"route": route(("reviews", "v1", 100))}


def test_plan_keeps_objects_read_from_files_without_a_namespace_as_they_were(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vs = virtual_service([{"route": route(("reviews", "v1", 100))}])
    dr = destination_rule("reviews", "v1", "v2")
    del vs["metadata"]["namespace"], dr["metadata"]["namespace"]
    path = tmp_path / "reviews.yaml"
    path.write_text(yaml.safe_dump_all([vs, dr]))
    assert main(["plan", str(path), "--vs", "reviews", "--weight", "20"]) == 0
    planned = yaml.safe_load(capsys.readouterr().out)
    assert sorted(planned["metadata"]) == ["annotations", "name"]  # no namespace added
