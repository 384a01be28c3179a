"""The sequential judge on fixed counts: its outcome, its rows and what it says in words."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from bot.health.sequential import (
    ALPHA,
    Counts,
    excess_evidence,
    judge,
    quantile,
    rate_evidence,
)
from policies.model import HealthThresholds

AT = datetime(2026, 1, 1, tzinfo=UTC)
BOUNDS = (25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, math.inf)


def counts(requests: int, errors: int, *cumulative: int) -> Counts:
    filled = (*cumulative, *[requests] * (len(BOUNDS) - len(cumulative)))
    return Counts(requests, errors, tuple(zip(BOUNDS, map(float, filled), strict=True)))


STABLE = counts(8000, 16, 200, 4000, 7920, 7992)


def rows(verdict: object) -> dict[str, tuple[str, ...]]:
    return {row[0]: row[1:] for row in verdict.rows}  # type: ignore[attr-defined]


def test_a_canary_with_many_more_errors_fails_saying_how_sure_in_words() -> None:
    canary = counts(400, 16, 10, 200, 396, 400)
    verdict = judge(canary, STABLE, HealthThresholds(), at=AT, step=1, window_s=20)
    assert verdict.outcome == "fail"
    assert "errors 4.0 % vs 0.2 %, 99.9 % sure it is worse" in verdict.summary
    assert rows(verdict)["errors vs stable"] == (
        "4.0 %",
        "0.2 %",
        "fails at 99 % sure worse",
        "fail",
    )
    assert verdict.figures["sure_errors_vs_stable"] > 0.999
    assert verdict.figures["canary_requests"] == 400
    assert verdict.final  # it stands however often it is looked at: no retry is waited for


def test_as_good_as_stable_with_enough_requests_passes_and_says_how_unsure() -> None:
    canary = counts(400, 1, 10, 200, 396, 400)
    verdict = judge(canary, STABLE, HealthThresholds(), at=AT, step=1)
    assert verdict.outcome == "pass" and not verdict.final
    assert verdict.summary.startswith("healthy: errors 0.2 % vs 0.2 %, 0 % sure it is worse")


def test_low_traffic_is_inconclusive_never_a_pass() -> None:
    canary = counts(19, 0, 1, 10, 19)
    verdict = judge(canary, STABLE, HealthThresholds(min_requests=20), at=AT, step=0)
    assert verdict.outcome == "inconclusive"
    assert "only 19 canary requests since the step began, need 20" in verdict.summary


def test_overwhelming_evidence_fails_even_below_min_requests() -> None:
    canary = counts(15, 15, 0, 15)  # every canary request failed
    verdict = judge(canary, STABLE, HealthThresholds(min_requests=20), at=AT, step=0)
    assert verdict.outcome == "fail"


def test_a_slower_canary_fails_on_the_buckets_not_on_one_number() -> None:
    canary = counts(400, 1, 0, 20, 200, 396)  # half of it above 100 ms, stable 1 %
    verdict = judge(canary, STABLE, HealthThresholds(max_p99_ms=2000), at=AT, step=0)
    assert verdict.outcome == "fail"
    assert rows(verdict)["latency vs stable"][-1] == "fail"
    assert "sure the canary is slower" in verdict.summary


def test_the_hard_limits_hold_when_stable_is_just_as_bad() -> None:
    bad = counts(4000, 200, 0, 100, 1000, 2000, 3000)  # 5 % errors, p99 above 1 s
    verdict = judge(bad, bad, HealthThresholds(max_p99_ms=500), at=AT, step=0)
    assert verdict.outcome == "fail"
    statuses = {metric: row[-1] for metric, row in rows(verdict).items()}
    assert statuses["errors vs stable"] == "pass"
    assert statuses["error ceiling"] == "fail"
    assert statuses["p99 ceiling"] == "fail"


def test_without_stable_traffic_the_comparisons_are_skipped_and_the_limits_judge() -> None:
    canary = counts(400, 0, 10, 200, 396, 400)
    verdict = judge(canary, Counts(), HealthThresholds(), at=AT, step=4)
    assert verdict.outcome == "pass"
    assert rows(verdict)["errors vs stable"][-1] == "skipped"


def test_evidence_is_one_without_events_or_without_a_split() -> None:
    assert rate_evidence(0, 0, 0.05) == pytest.approx(1.0)
    assert rate_evidence(5, 0, 1.0) == 1.0
    assert excess_evidence(0, 0, 0.01) == 1.0
    assert rate_evidence(0, 50, 0.05) < 1.0  # errors only on stable: evidence the other way


def test_evidence_grows_with_canary_events_and_falls_with_stable_ones() -> None:
    assert rate_evidence(4, 1, 0.05) > rate_evidence(3, 1, 0.05) > rate_evidence(3, 2, 0.05)
    assert excess_evidence(10, 100, 0.01) > 1 / ALPHA > excess_evidence(1, 100, 0.01)


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        (((10.0, 0.0), (20.0, 100.0), (math.inf, 100.0)), 19.9),  # 99th of 100 in (10, 20]
        (((10.0, 50.0), (20.0, 50.0), (math.inf, 100.0)), 20.0),  # in +Inf: the largest bound
        (((10.0, 0.0), (math.inf, 0.0)), None),
    ],
)
def test_quantile_interpolates_as_histogram_quantile_does(
    buckets: tuple[tuple[float, float], ...], expected: float | None
) -> None:
    assert quantile(0.99, buckets) == (expected if expected is None else pytest.approx(expected))


def test_latency_is_judged_within_the_histogram_when_the_request_counter_disagrees() -> None:
    """The request counter and the histogram are two series; extrapolated over a window that
    begins before their first samples they may disagree. Same latency, a counter 40 % high:
    no latency failure, and the p99 ceiling counts slow requests against the histogram too."""
    stable = counts(8000, 16, 200, 4000, 7920, 7992)
    timed = (10, 200, 396, 399, 400, 400, 400)
    canary = Counts(560.0, 1.0, tuple(zip(BOUNDS, map(float, timed), strict=True)))
    verdict = judge(canary, stable, HealthThresholds(), at=AT, step=1)
    assert rows(verdict)["latency vs stable"][-1] == "pass"
    assert rows(verdict)["p99 ceiling"][-1] == "pass"
    assert verdict.outcome == "pass"
    slower = (10, 100, 200, 300, 390, 400, 400)  # a truly slower canary still fails
    slow = Counts(400.0, 1.0, tuple(zip(BOUNDS, map(float, slower), strict=True)))
    assert judge(slow, stable, HealthThresholds(), at=AT, step=1).outcome == "fail"
