"""A rollout of weather in prod at its third step (25%), as the message snapshots show it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.rollout.model import Phase, Rollout, StepPlan, Target, Verdict

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
ALICE, SRE = "U0ALICE01", "U0SRE0002"


def rollout(
    phase: Phase, verdicts: tuple[Verdict, ...] = (), reason: str = "", *, id: str = "r-8d1e"
) -> Rollout:
    return Rollout(
        id=id,
        target=Target(
            namespace="prod", vs="weather", stable="v1", canary="v2", host="weather-service"
        ),
        steps=StepPlan(weights=(5, 10, 25, 50, 100), interval_s=300),
        phase=phase,
        step=2,
        weight=25,
        started_by=ALICE,
        channel="C0CANARY",
        created_at=T0,
        updated_at=T0 + timedelta(minutes=15),
        next_step_at=T0 + timedelta(minutes=19) if phase is Phase.PROGRESSING else None,
        verdicts=verdicts,
        reason=reason,
    )
