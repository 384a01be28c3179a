"""Rollout records at a given step, made by the state machine itself with a fixed clock: the
weather service's v1 → v2 over the steps 10, 50, 100."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.rollout.model import ApplyWeight, Phase, Rollout, StepPlan, Target
from bot.rollout.transitions import start

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
TARGET = Target(namespace="default", vs="weather", stable="v1", canary="v2")
STEPS = StepPlan(weights=(10, 50, 100), interval_s=60)


def started(steps: StepPlan = STEPS, live: int = 0) -> Rollout:
    return landed(
        start(
            rollout_id="r1",
            target=TARGET,
            steps=steps,
            actor="U1",
            channel="C1",
            live_weight=live,
            now=T0,
        )
    )


def landed(outcome: tuple[Rollout, list[Any]]) -> Rollout:
    """The record once its traffic change is live, as the engine records it then: a decision
    alone never changes the live weight."""
    rollout, effects = outcome
    apply = next((e for e in effects if isinstance(e, ApplyWeight)), None)
    if apply is None:
        return rollout
    return rollout.model_copy(update={"weight": apply.weight, "step": apply.step})


def at_step(index: int, phase: Phase = Phase.PROGRESSING, **extra: Any) -> Rollout:
    weight = STEPS.weights[index]
    return started().model_copy(
        update={
            "step": index,
            "weight": weight,
            "phase": phase,
            "next_step_at": T0 if phase is Phase.PROGRESSING else None,
            **extra,
        }
    )
