"""The judge looked at every 10 s of virtual time, carrying each step's evidence into the next
as the transitions do: identical versions seldom fail, a clearly worse canary is caught early,
and the same harness shows fixed thresholds crying wolf."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bot.health import sequential
from bot.health.verdict import Figures, evaluate, outcome
from bot.rollout.model import NO_EVIDENCE, Carried, Verdict
from policies.model import HealthThresholds
from tests.analysis.traffic import Behaviour, Tally, serve

AT = datetime(2026, 1, 1, tzinfo=UTC)
STEPS = (5, 25, 50)
HOLD_S, LOOK_S = 300, 10
THRESHOLDS = HealthThresholds()
STABLE = Behaviour(error_rate=0.005)
Judge = Callable[[Tally, Tally, Carried, datetime], Verdict]


def sequential_judge(canary: Tally, stable: Tally, carried: Carried, at: datetime) -> Verdict:
    return sequential.judge(
        canary.counts(), stable.counts(), THRESHOLDS, at=at, step=0, carried=carried
    )


def fixed_thresholds(canary: Tally, stable: Tally, carried: Carried, at: datetime) -> Verdict:
    """Today's per-step rules (verdict.evaluate), asked at every look instead of once."""
    figures = Figures(
        canary=sequential._side(canary.counts()), stable=sequential._side(stable.counts())
    )
    return Verdict(outcome=outcome(evaluate(figures, THRESHOLDS)), at=at, step=0)


def first_failure(
    seed: int, judge: Judge, canary: Behaviour, *, rate: float, stable: Behaviour = STABLE
) -> float | None:
    """Seconds into the rollout of the first failing look, or None if it never fails."""
    rng = np.random.default_rng(seed)
    elapsed, carried = 0, NO_EVIDENCE
    for weight in STEPS:
        tallies = (Tally(), Tally())  # each step's looks count from the step's start
        for _ in range(HOLD_S // LOOK_S):
            serve(
                rng,
                LOOK_S,
                rate=rate,
                weight=weight,
                canary=canary,
                stable=stable,
                tallies=tallies,
                burst=0.5,
            )
            elapsed += LOOK_S
            verdict = judge(*tallies, carried, AT + timedelta(seconds=elapsed))
            if verdict.outcome == "fail":
                return elapsed
        carried = carried.carry(verdict)  # the step's last look judges it when it falls due
    return None


def false_alarms(judge: Judge, runs: int) -> int:
    same = Behaviour(error_rate=0.005)
    return sum(first_failure(seed, judge, same, rate=40) is not None for seed in range(runs))


@pytest.mark.slow
def test_identical_versions_looked_at_every_10s_fail_at_most_alpha_of_the_time() -> None:
    runs = 60
    alarms = false_alarms(sequential_judge, runs)
    # 90 looks a rollout; at most α of the rollouts, with room for the draw (P(Bin(60,
    # 0.01) > 3) < 0.3 %). bench/blast.py counts 1,000 and more, with an interval.
    assert alarms <= 3, f"{alarms} of {runs} healthy rollouts failed"


@pytest.mark.slow
def test_the_same_looks_with_fixed_thresholds_fail_healthy_rollouts_often() -> None:
    runs = 40
    alarms = false_alarms(fixed_thresholds, runs)
    assert alarms >= 0.1 * runs, f"only {alarms} of {runs}: the harness would not see wolves"


@pytest.mark.parametrize(
    "worse",
    [
        Behaviour(error_rate=0.055),  # 5 points more errors
        Behaviour(error_rate=0.005, latency_ms=100.0),  # twice as slow
    ],
    ids=["errors", "latency"],
)
def test_a_clearly_worse_canary_fails_within_the_first_step(worse: Behaviour) -> None:
    for seed in range(10):
        failed_at = first_failure(seed, sequential_judge, worse, rate=400)  # canary 20 rps
        assert failed_at is not None and failed_at <= 60, (seed, failed_at)
