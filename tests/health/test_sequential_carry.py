"""The sequential judge's evidence carried across steps: a product of each passed step's final
e-value and the current step's, each step's data counted once, and still anytime-valid."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bot.health.analysis import SequentialCheck
from bot.health.client import Vector
from bot.health.sequential import TESTS, Counts, judge
from bot.rollout.model import NO_EVIDENCE, Carried, Phase, Rollout, StepPlan, Target, Verdict
from policies.model import HealthThresholds
from tests.analysis.traffic import Behaviour, Tally

AT = datetime(2026, 1, 1, tzinfo=UTC)
BOUNDS = (25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, math.inf)
THRESHOLDS = HealthThresholds()


def counts(requests: int, errors: int) -> Counts:
    """Requests with the same latency shape whatever their number: 2 % under 25 ms, half
    under 50 ms, 99 % under 100 ms, all under 250 ms."""
    shares = (0.02, 0.5, 0.99, 1.0, 1.0, 1.0, 1.0)
    cumulative = tuple(float(round(requests * s)) for s in shares)
    return Counts(requests, errors, tuple(zip(BOUNDS, cumulative, strict=True)))


# Stable at 0.1 % 5xx; a canary at 10 % of the requests with 0.45 %: in one step, evidence of
# about 60 that it is worse, short of the 4 / α = 400 a test needs to fail. At 0.35 %, about 8.
STABLE = counts(20_000, 20)
CANARY = counts(2_000, 9)
MILDER = counts(2_000, 7)


def row(verdict: Verdict, metric: str) -> tuple[str, ...]:
    return next(r for r in verdict.rows if r[0] == metric)


def step(carried: Carried, minutes: int, canary: Counts = CANARY) -> Verdict:
    at = AT + timedelta(minutes=minutes)
    return judge(canary, STABLE, THRESHOLDS, at=at, step=minutes // 5 - 1, carried=carried)


def test_two_steps_each_short_of_proof_fail_together() -> None:
    first = step(NO_EVIDENCE, 5)
    assert first.outcome == "pass"
    assert 0.9 < first.figures["sure_errors_vs_stable"] < 0.99  # type: ignore[operator]

    alone = step(NO_EVIDENCE, 10)
    carried = step(NO_EVIDENCE.carry(first), 10)

    assert alone.outcome == "pass"  # the second step's data alone prove nothing
    assert carried.outcome == "fail" and carried.final
    assert row(carried, "errors vs stable")[-1] == "fail"
    assert carried.figures["sure_errors_vs_stable"] > 0.99  # type: ignore[operator]
    assert carried.summary == (
        "errors 0.5 % vs 0.1 %, 99 % sure it is worse over this step and the one before"
    )


def test_a_milder_excess_passes_two_steps_and_fails_at_the_third() -> None:
    carried, outcomes = NO_EVIDENCE, []
    for minutes in (5, 10, 15):
        verdict = step(carried, minutes, canary=MILDER)
        outcomes.append(verdict.outcome)
        carried = carried.carry(verdict)
    assert outcomes == ["pass", "pass", "fail"]
    assert "over this step and the 2 before" in verdict.summary


def test_the_sureness_is_that_of_the_product_of_the_steps_e_values() -> None:
    first = step(NO_EVIDENCE, 5)
    second = step(NO_EVIDENCE.carry(first), 10)
    e1 = math.exp(first.evidence["errors_vs_stable"])
    e2 = math.exp(second.evidence["errors_vs_stable"])
    assert second.figures["sure_errors_vs_stable"] == pytest.approx(1 - TESTS / (e1 * e2))


def test_a_verdict_holds_its_own_step_s_evidence_not_the_carried_product() -> None:
    first = step(NO_EVIDENCE, 5, canary=MILDER)
    carried = NO_EVIDENCE.carry(first)
    second = step(carried, 10, canary=MILDER)
    assert second.outcome == "pass"
    assert second.evidence == first.evidence  # the same counts: the same evidence
    twice = carried.carry(second)
    assert twice.steps == 2 and twice.through == second.at
    for test, log_e in first.evidence.items():
        assert twice.log_e[test] == pytest.approx(2 * log_e)  # not 3 × (the product again)


def test_a_step_s_evidence_is_carried_once() -> None:
    first = step(NO_EVIDENCE, 5)
    carried = NO_EVIDENCE.carry(first)
    assert carried.carry(first) == carried  # the same judgement again adds nothing
    earlier = first.model_copy(update={"at": first.at - timedelta(seconds=1)})
    assert carried.carry(earlier) == carried  # nor one on data the carried evidence holds


@pytest.mark.parametrize("outcome", ["fail", "inconclusive"])
def test_only_a_passing_judgement_is_carried(outcome: str) -> None:
    judged = step(NO_EVIDENCE, 5).model_copy(update={"outcome": outcome})
    assert NO_EVIDENCE.carry(judged) == NO_EVIDENCE


def test_a_verdict_without_evidence_carries_nothing() -> None:
    thresholds = Verdict(outcome="pass", at=AT, step=0)  # the fixed-threshold judge's
    assert NO_EVIDENCE.carry(thresholds) == NO_EVIDENCE


def test_a_healthy_step_leaves_the_carried_evidence_below_one() -> None:
    """The price of carrying: a canary as good as stable lowers what the next steps start
    from (the error ceiling's most, the canary far below it)."""
    healthy = step(NO_EVIDENCE, 5, canary=counts(2_000, 2))
    carried = NO_EVIDENCE.carry(healthy)
    assert all(log_e < 0 for log_e in carried.log_e.values())
    assert carried.log_e["error_ceiling"] < math.log(0.01)


def test_the_words_of_the_first_step_say_nothing_of_other_steps() -> None:
    assert "before" not in step(NO_EVIDENCE, 5).summary


# The windows: a step's data begin after the carried evidence was judged


class Queries:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def query(self, promql: str, at: datetime | None = None) -> Vector:
        self.asked.append(promql)
        return {}


def held(evidence: Carried, *, began: datetime) -> Rollout:
    steps = StepPlan(weights=(10, 50, 100), interval_s=300)
    return Rollout(
        id="r1",
        target=Target(namespace="default", vs="weather", stable="v1", canary="v2"),
        steps=steps,
        phase=Phase.PROGRESSING,
        step=1,
        weight=50,
        started_by="U1",
        created_at=AT,
        updated_at=AT,
        next_step_at=began + steps.interval,
        evidence=evidence,
    )


def test_a_look_s_window_never_reaches_back_into_the_carried_evidence() -> None:
    now = AT + timedelta(minutes=10)
    check = SequentialCheck(Queries())
    judged = Carried(log_e={"errors_vs_stable": 1.0}, steps=1, through=now - timedelta(seconds=12))
    # 5 s into the step the window would be the least one Prometheus answers for, 30 s
    assert check.window(held(NO_EVIDENCE, began=now - timedelta(seconds=5)), now) == timedelta(
        seconds=30
    )
    # but after the carried evidence's judgement only: 12 s, and never a part of a second more
    check = SequentialCheck(Queries())
    rollout = held(judged, began=now - timedelta(seconds=5))
    assert check.window(rollout, now) == timedelta(seconds=12)
    assert check.window(rollout, now + timedelta(milliseconds=900)) == timedelta(seconds=12)
    later = now + timedelta(minutes=5)  # a full step: its own start bounds it
    assert check.window(rollout, later) == timedelta(seconds=305)


def test_a_look_with_nothing_left_to_count_asks_nothing() -> None:
    now = AT + timedelta(minutes=10)
    queries = Queries()
    judged = Carried(log_e={"errors_vs_stable": 1.0}, steps=1, through=now - timedelta(seconds=0.4))
    verdict = SequentialCheck(queries).check(held(judged, began=now), now)
    assert verdict.outcome == "inconclusive" and "no data yet" in verdict.summary
    assert queries.asked == []


def test_the_check_judges_with_the_rollout_s_carried_evidence() -> None:
    now = AT + timedelta(minutes=10)
    first = step(NO_EVIDENCE, 5)
    carried = NO_EVIDENCE.carry(first)
    check = SequentialCheck(Queries())
    check.counts = lambda subject, window, at: (CANARY, STABLE)  # type: ignore[method-assign]
    verdict = check.check(held(carried, began=now - timedelta(minutes=5)), now)
    assert verdict.outcome == "fail"
    assert "over this step and the one before" in verdict.summary


# Identical versions: the carried product is a test martingale, so each test's running value
# over a whole rollout reaches c with chance at most 1 / c (Ville's inequality)


SAME = Behaviour(error_rate=0.005)
LEVELS = (2, 5, 10, 20, 100)


def healthy_rollout(rng: np.random.Generator) -> tuple[dict[str, float], bool]:
    """Identical versions, 2 canary rps at the first step (5, 10, 25, 50 %), each minute's
    rate bursty (a gamma factor of mean 1 and variance 1), a look a minute over each 5-minute
    step, each passed step's evidence carried: the highest log e-value each test reached over
    the rollout, and whether any look failed."""
    carried, highest, failed = NO_EVIDENCE, {}, False
    for index, weight in enumerate((5, 10, 25, 50)):
        tallies = (Tally(), Tally())
        for look in range(1, 6):
            total = int(rng.poisson(40 * 60 * rng.gamma(1.0, 1.0)))
            canary = int(rng.binomial(total, weight / 100))
            tallies[0].add(rng, canary, SAME)
            tallies[1].add(rng, total - canary, SAME)
            at = AT + timedelta(minutes=5 * index + look)
            canary_counts, stable_counts = tallies[0].counts(), tallies[1].counts()
            verdict = judge(
                canary_counts, stable_counts, THRESHOLDS, at=at, step=index, carried=carried
            )
            failed = failed or verdict.outcome == "fail"
            for test, log_e in verdict.evidence.items():
                running = carried.log_e.get(test, 0.0) + log_e
                highest[test] = max(highest.get(test, -math.inf), running)
        carried = carried.carry(verdict)
    return highest, failed


@pytest.mark.slow
def test_identical_versions_carried_over_a_rollout_stay_within_ville_s_bound() -> None:
    """600 seeded rollouts: for every test and every level c, at most 1 / c of them saw
    the carried product reach c at any look (the bound itself, no slack: the draws are
    fixed, and the rates found are a quarter of it or less), and no rollout failed (α = 1 %)."""
    rng = np.random.default_rng(20261202)
    runs = [healthy_rollout(rng) for _ in range(600)]
    assert not any(failed for _, failed in runs)
    for test in ("errors_vs_stable", "latency_vs_stable", "error_ceiling", "p99_ceiling"):
        for c in LEVELS:
            reached = sum(highest.get(test, -math.inf) >= math.log(c) for highest, _ in runs)
            assert reached <= len(runs) / c, (test, c, reached)
