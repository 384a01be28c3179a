"""A staged rollout that starts with a cohort's step: the cohort's route to the canary and 0%
for everyone else, checked like any step; then the weight steps, the route kept until the
rollout is promoted or rolled back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from bot.rollout.model import (
    ApplyWeight,
    HealthResult,
    Phase,
    Rollback,
    Rollout,
    StepPlan,
    Target,
    Verdict,
)
from bot.rollout.transitions import start, transition
from commands import Verb, parse
from commands.cohort import make_cohort

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
TARGET = Target(namespace="default", vs="weather", stable="v1", canary="v2")
BETA = make_cohort("header", "x-beta", "1")
STEPS = StepPlan(weights=(50, 100), interval_s=60, cohort=BETA)


def started(steps: StepPlan) -> Rollout:
    return landed(
        start(
            rollout_id="r1",
            target=TARGET,
            steps=steps,
            actor="U1",
            channel="C1",
            live_weight=0,
            now=T0,
        )
    )


def landed(outcome: tuple[Rollout, list[Any]]) -> Rollout:
    """The record once its traffic change is live, as the engine records it then."""
    rollout, effects = outcome
    apply = next(e for e in effects if isinstance(e, ApplyWeight))
    return rollout.model_copy(update={"weight": apply.weight, "step": apply.step})


def passed(step: int) -> HealthResult:
    return HealthResult(actor="canary-bot", verdict=Verdict(outcome="pass", at=T0, step=step))


def test_the_cohort_step_comes_first_at_zero_percent() -> None:
    assert STEPS.weights == (0, 50, 100) and STEPS.weighted == (50, 100)
    again = StepPlan.model_validate_json(STEPS.model_dump_json())
    assert again == STEPS  # a stored record reads back as it was, the 0 not doubled
    with pytest.raises(ValidationError, match="steps are percentages from 1 to 100"):
        StepPlan(weights=(0, 50, 100))  # 0 is a step only as a cohort's


def test_start_routes_the_cohort_and_nobody_else() -> None:
    rollout, effects = start(
        rollout_id="r1",
        target=TARGET,
        steps=STEPS,
        actor="U1",
        channel="C1",
        live_weight=0,
        now=T0,
    )
    assert rollout.phase is Phase.PROGRESSING
    [apply] = [e for e in effects if isinstance(e, ApplyWeight)]
    assert apply == ApplyWeight(weight=0, previous=0, step=0, guard=True, cohort=BETA)
    assert apply.written_weight is None  # only the cohort's route is written
    [started_note] = [e for e in effects if getattr(e, "event", "") == "started"]
    assert "steps cohort header x-beta=1, then 50,100" in started_note.text


def test_a_healthy_cohort_step_goes_on_to_the_first_weight_keeping_the_route() -> None:
    rollout = started(STEPS)
    moved, effects = transition(rollout, passed(0), T0)
    assert moved.phase is Phase.PROGRESSING
    apply = effects[0]
    assert apply == ApplyWeight(weight=50, previous=0, step=1, guard=True)
    assert apply.cohort is None  # the route stays as it is
    notes = [getattr(e, "text", "") for e in effects]
    assert "weather: 50% to v2 (step 2 of 3)" in notes


def test_promotion_and_rollback_remove_the_route() -> None:
    at_100 = landed(transition(landed(transition(started(STEPS), passed(0), T0)), passed(1), T0))
    assert at_100.weight == 100
    promote = transition(at_100, passed(2), T0)[1]
    assert isinstance(promote[0], ApplyWeight) and promote[0].finalize  # takes the route off
    rollback = transition(started(STEPS), Rollback(actor="U1"), T0)[1]
    assert rollback[0] == ApplyWeight(weight=0, previous=0)  # 0% takes the cohort's route off


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("weather start cohort header x-beta=1", None),
        ("weather start cohort user jason to v2 steps 10,100 every 5s", (10, 100)),
        ("weather start cohort cookie beta=1 steps 10,100", (10, 100)),
    ],
)
def test_start_takes_a_cohort_first(text: str, steps: tuple[int, ...] | None) -> None:
    command = parse(text)
    assert command.verb is Verb.START and command.cohort is not None and command.steps == steps


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("weather start cohort", "say who is in the cohort the rollout starts with"),
        ("weather start cohort off", "say who is in the cohort the rollout starts with"),
        ("weather start cohort header x-beta", "needs a header and its value"),
        ("weather start cohort team a=b", "'team' is not a kind of cohort"),
        ("weather start steps 10,100 cohort user jason", "'cohort' is unexpected there"),
    ],
)
def test_a_bad_start_cohort_says_so_in_a_sentence(text: str, said: str) -> None:
    with pytest.raises(ValueError, match=said) as refused:
        parse(text)
    assert "\n" not in str(refused.value)
