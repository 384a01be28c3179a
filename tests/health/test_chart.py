"""The end-of-rollout chart: the weight staircase and the limits each check was judged with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.health import sequential
from bot.health.chart import chart_png, staircase
from bot.health.verdict import Figures, Side, judge
from bot.rollout.model import Phase, Rollout, StepPlan, Target, Verdict
from policies.model import HealthThresholds

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
STRICT = HealthThresholds(min_success_rate=99.5, max_p99_ms=300)


def checked(step: int, minutes: int) -> Verdict:
    figures = Figures(
        canary=Side(requests=500, errors=1, p99_ms=120.0),
        stable=Side(requests=5000, errors=5, p99_ms=110.0),
    )
    return judge(figures, STRICT, at=T0 + timedelta(minutes=minutes), step=step)


def failed_at_second_step() -> Rollout:
    return Rollout(
        id="r1",
        target=Target(namespace="default", vs="weather", stable="v1", canary="v2"),
        steps=StepPlan(weights=(10, 50, 100), interval_s=300),
        phase=Phase.FAILED,
        step=-1,
        weight=0,
        started_by="U1",
        channel="C1",
        created_at=T0,
        updated_at=T0 + timedelta(minutes=12),
        verdicts=(checked(0, 5), checked(1, 10)),
    )


def test_the_staircase_follows_each_checks_step_and_ends_where_the_rollout_did() -> None:
    assert staircase(failed_at_second_step()) == [(300.0, 10), (600.0, 50), (720.0, 0)]


def test_each_judge_keeps_the_limits_it_judged_with_for_the_chart() -> None:
    fixed = checked(0, 5)
    assert (fixed.figures["min_success_rate"], fixed.figures["max_p99_ms"]) == (99.5, 300)
    counts = sequential.Counts(
        requests=500, errors=1, buckets=((100.0, 400), (250.0, 495), (500.0, 500))
    )
    looked = sequential.judge(counts, counts, STRICT, at=T0, step=0)
    assert (looked.figures["min_success_rate"], looked.figures["max_p99_ms"]) == (99.5, 300)


def test_the_chart_is_drawn_with_the_staircase_and_the_limits() -> None:
    png = chart_png(failed_at_second_step())
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    bare = failed_at_second_step().model_copy(update={"verdicts": ()})
    assert chart_png(bare).startswith(b"\x89PNG")  # no checks: the staircase alone
