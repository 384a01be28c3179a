"""A staged rollout that starts with a cohort's step, over signed HTTP into the running bot: the
traffic simulator (a quarter of its requests carry `x-beta: 1`) shows only the cohort reaching
the canary at first, then the weight steps with the cohort still on the canary, and nobody left
on a cohort route once the rollout is promoted or rolled back."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from bot.mesh.cohort import COHORT_ROUTE
from sandbox.traffic import REST, RequestShare, TrafficSimulator
from tests.support.harness import Bot, responses_to, wait_until

BETA = RequestShare({"x-beta": "1"}, 0.25)


def live(bot: Bot) -> dict[str, Any]:
    vs = bot.cluster.get_object("default", "virtualservices", "weather")
    assert vs is not None
    return vs


def cohort_route(bot: Bot) -> dict[str, Any] | None:
    return cohort_route_of(live(bot))


def reached(vs: Callable[[], dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Where 10 s of 100 requests/s go by `vs` (the live one, or a snapshot)."""
    with TrafficSimulator(
        api=vs,
        namespace="default",
        vs="weather",
        service="weather-service",
        rate=100.0,
        shares=[BETA],
        tick=3600.0,
    ) as simulator:
        simulator.simulate(10)
    return simulator.reached()


def catch_all_weights(vs: dict[str, Any]) -> list[int]:
    [route] = [r for r in vs["spec"]["http"] if r.get("name") != COHORT_ROUTE]
    return [d.get("weight", 100) for d in route["route"]]


def snapshot_when(bot: Bot, holds: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """The live VirtualService as first seen with `holds` true: the rollout moves on by itself,
    so the traffic is judged on that copy."""
    seen: list[dict[str, Any]] = []

    def found() -> bool:
        vs = copy.deepcopy(live(bot))
        seen[:] = [vs] if holds(vs) else []
        return bool(seen)

    wait_until(found, timeout=30, what=what)
    return seen[0]


def promoted(bot: Bot) -> bool:
    return any(e.action == "promote" for e in bot.server.parts.store.history("default", "weather"))


def test_only_the_cohort_reaches_the_canary_first_then_the_steps_then_everyone(bot: Bot) -> None:
    assert (
        bot.post(bot.command("weather start cohort header x-beta=1 steps 50,100 every 2s")) == 200
    )

    first = snapshot_when(
        bot, lambda vs: cohort_route_of(vs) is not None, "the cohort's step, its route written"
    )
    assert catch_all_weights(first) == [100, 0]
    assert reached(lambda: first) == {BETA.name: {"v2": 250}, REST: {"v1": 750}}

    second = snapshot_when(
        bot, lambda vs: catch_all_weights(vs) == [50, 50], "the first weight step, 50%"
    )
    assert cohort_route_of(second) is not None
    assert reached(lambda: second) == {BETA.name: {"v2": 250}, REST: {"v1": 375, "v2": 375}}

    wait_until(lambda: promoted(bot), timeout=30, what="the promotion")
    assert cohort_route(bot) is None
    assert reached(lambda: live(bot)) == {BETA.name: {"v2": 250}, REST: {"v2": 750}}
    store = bot.server.parts.store
    steps = [(e.action, e.weight_after) for e in store.history("default", "weather")]
    assert steps[:3] == [("start", 0), ("step", 50), ("step", 100)]


def test_rolling_back_at_the_cohort_step_takes_the_route_off(bot: Bot) -> None:
    assert bot.post(bot.command("weather start cohort header x-beta=1 every 1h")) == 200
    wait_until(lambda: cohort_route(bot) is not None, what="the cohort's route")
    assert reached(lambda: live(bot)) == {BETA.name: {"v2": 250}, REST: {"v1": 750}}

    assert bot.post(bot.command("weather rollback")) == 200
    wait_until(lambda: cohort_route(bot) is None, what="the cohort's route gone")
    assert catch_all_weights(live(bot)) == [100, 0]
    assert reached(lambda: live(bot)) == {BETA.name: {"v1": 250}, REST: {"v1": 750}}


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("weather start cohort off", "say who is in the cohort the rollout starts with"),
        ("weather start cohort header x-beta=1 steps 0,100", "steps are percentages from 1"),
    ],
)
def test_a_bad_start_cohort_gets_one_sentence_and_changes_nothing(
    bot: Bot, text: str, said: str
) -> None:
    status, reply = bot.exchange(bot.command(text))
    assert status == 200
    bot.drain()
    [answer] = [*responses_to(bot, "cmd"), *([json.loads(reply)["text"]] if reply else [])]
    assert said in answer and "\n" not in answer
    assert [r for r in bot.cluster.requests if r.is_write] == []


def cohort_route_of(vs: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in vs["spec"]["http"] if r.get("name") == COHORT_ROUTE), None)
