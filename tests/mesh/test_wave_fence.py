"""The planner refuses to start a wave's rollout where a rollout of the same wave has its
canary live already (its record lost with Redis): the refusal rides on the plan, whose write
tests the resourceVersion it was read at, so no start slips in between the look and the write.
On a VirtualService and on an HTTPRoute."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.mesh.errors import TurnTaken
from bot.mesh.httproute import plan_http_route
from bot.mesh.planner import TrafficPlan, plan_split
from bot.mesh.request import SplitRequest

from .conftest import NOW, seed_docs

WAVE = {"id": "w1", "clusters": ["canary-eu", "prod-eu"], "index": 1, "steps": {}}
ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "weather", "namespace": "default", "resourceVersion": "7"},
    "spec": {
        "parentRefs": [{"name": "gateway", "namespace": "istio-ingress"}],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [
                    {"name": "weather-stable", "port": 8080, "weight": 100},
                    {"name": "weather-canary", "port": 8080, "weight": 0},
                ],
            }
        ],
    },
}


class Split:
    """A VirtualService with its DestinationRule, or an HTTPRoute, as a write leaves it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "HTTPRoute":
            self.live, self.dr = copy.deepcopy(ROUTE), None
        else:
            self.live, self.dr = _seed("VirtualService"), _seed("DestinationRule")

    def plan(self, weight: int, **owner: Any) -> TrafficPlan:
        request = SplitRequest.build(vs="weather", weight=weight, **owner)
        if self.kind == "HTTPRoute":
            return plan_http_route(copy.deepcopy(self.live), request, now=NOW)
        return plan_split(copy.deepcopy(self.live), self.dr, request, now=NOW)

    def write(self, weight: int, **owner: Any) -> None:
        planned = self.plan(weight, **owner)
        self.live = planned.vs.after
        if planned.dr is not None:
            self.dr = planned.dr.after


@pytest.fixture(params=["VirtualService", "HTTPRoute"])
def split(request: pytest.FixtureRequest) -> Split:
    return Split(request.param)


def test_a_second_rollout_of_the_wave_is_refused_where_the_first_has_its_canary(
    split: Split,
) -> None:
    split.write(20, write="a1", rollout="r1", channel="C1", wave=WAVE)
    with pytest.raises(TurnTaken, match="rollout r1 of wave w1 already; nothing was changed"):
        split.plan(20, write="a2", rollout="r2", channel="C1", wave=WAVE)


def test_the_waves_own_rollout_a_human_and_another_wave_still_plan(split: Split) -> None:
    split.write(20, write="a1", rollout="r1", channel="C1", wave=WAVE)
    assert split.plan(50, write="a2", rollout="r1", wave=WAVE).canary_weight() == 50
    assert split.plan(0, write="a3").canary_weight() == 0  # a rollback by hand, say
    other = WAVE | {"id": "w2"}
    assert split.plan(50, write="a4", rollout="r9", wave=other).canary_weight() == 50


def test_a_canary_of_the_wave_at_zero_leaves_the_turn_free(split: Split) -> None:
    split.write(20, write="a1", rollout="r1", channel="C1", wave=WAVE)
    split.write(0, write="a2", rollout="r1", channel="C1", wave=WAVE)  # rolled back
    assert split.plan(20, write="a3", rollout="r2", wave=WAVE).canary_weight() == 20


def _seed(kind: str) -> dict[str, Any]:
    [found] = [doc for stem, doc in seed_docs(kind) if stem == "weather"]
    return copy.deepcopy(found)
