from __future__ import annotations

import math
from datetime import timedelta

import pytest
from pydantic import ValidationError

from bot.health.check import HealthCheck, figures_from
from bot.health.client import PrometheusQueryError, PrometheusUnreachable
from bot.health.promql import Subject
from bot.health.verdict import Figures, Side, judge
from bot.rollout.model import Verdict
from policies.model import HealthThresholds
from tests.health import NOW, RecordingClient, labels, make_rollout

DEFAULT = HealthThresholds()
HEALTHY_STABLE = Side(requests=10_000, errors=10, p99_ms=200)
NAN, INF = math.nan, math.inf


def verdict_for(
    canary: Side, stable: Side = HEALTHY_STABLE, t: HealthThresholds = DEFAULT
) -> Verdict:
    return judge(Figures(canary=canary, stable=stable, window_s=300), t, at=NOW, step=2)


def test_healthy_canary_passes_with_a_one_line_summary() -> None:
    verdict = verdict_for(Side(requests=1_000, errors=2, p99_ms=210))
    assert verdict.outcome == "pass"
    assert verdict.summary == (
        "healthy: success 99.8% (stable 99.9%), p99 210 ms (stable 200 ms),"
        " 1,000 canary requests in the last 5m"
    )
    assert "\n" not in verdict.summary
    assert (verdict.at, verdict.step) == (NOW, 2)


def test_figures_keep_every_number() -> None:
    verdict = verdict_for(Side(requests=1_000, errors=2, p99_ms=210))
    assert verdict.figures == {
        "window_s": 300,
        "canary_requests": 1_000,
        "canary_errors": 2,
        "canary_success_rate": pytest.approx(99.8),
        "canary_p99_ms": 210,
        "stable_requests": 10_000,
        "stable_errors": 10,
        "stable_success_rate": pytest.approx(99.9),
        "stable_p99_ms": 200,
        "min_success_rate": 99.0,  # the limits judged against, for the chart
        "max_p99_ms": 500,
    }


# Exactly at a threshold passes.


def test_success_rate_exactly_at_minimum_passes() -> None:
    assert verdict_for(Side(requests=100, errors=1, p99_ms=100)).outcome == "pass"


def test_p99_exactly_at_maximum_passes() -> None:
    stable = Side(requests=1_000, errors=0, p99_ms=500)
    assert verdict_for(Side(requests=100, errors=0, p99_ms=500), stable).outcome == "pass"


def test_error_rate_exactly_one_point_over_stable_passes() -> None:
    stable = Side(requests=1_000, errors=0, p99_ms=100)
    t = HealthThresholds(min_success_rate=90)
    assert verdict_for(Side(requests=100, errors=1, p99_ms=100), stable, t).outcome == "pass"


def test_p99_exactly_at_ratio_passes() -> None:
    stable = Side(requests=1_000, errors=0, p99_ms=250)
    assert verdict_for(Side(requests=100, errors=0, p99_ms=300), stable).outcome == "pass"


def test_exactly_min_requests_is_enough() -> None:
    assert verdict_for(Side(requests=20, errors=0, p99_ms=100)).outcome == "pass"


# Absolute failures, each named with its figures.


def test_low_success_rate_fails_by_how_much() -> None:
    verdict = verdict_for(
        Side(requests=100, errors=5, p99_ms=100), Side(requests=1_000, errors=45, p99_ms=100)
    )
    assert verdict.outcome == "fail"
    assert verdict.summary == "canary success rate 95.0% is below 99.0% (−4.0 points)"


def test_just_below_success_rate_shows_the_difference() -> None:
    verdict = verdict_for(
        Side(requests=10_000, errors=104, p99_ms=100), Side(requests=1_000, errors=10, p99_ms=90)
    )
    assert verdict.summary == "canary success rate 98.96% is below 99.0% (−0.04 points)"


def test_slow_canary_fails_on_p99() -> None:
    stable = Side(requests=1_000, errors=0, p99_ms=600)
    verdict = verdict_for(Side(requests=100, errors=0, p99_ms=612), stable)
    assert verdict.outcome == "fail"
    assert verdict.summary == "canary p99 612 ms is above 500 ms (+112 ms)"


def test_infinite_p99_with_requests_is_a_latency_failure() -> None:
    verdict = verdict_for(Side(requests=100, errors=0, p99_ms=INF))
    assert verdict.outcome == "fail"
    assert "beyond the largest latency bucket (+Inf)" in verdict.summary
    assert verdict.figures["canary_p99_ms"] == INF


# Relative failures.


def test_error_rate_well_above_stable_fails_even_within_absolute_limit() -> None:
    t = HealthThresholds(min_success_rate=95)
    verdict = verdict_for(Side(requests=1_000, errors=30, p99_ms=100), t=t)
    assert verdict.outcome == "fail"
    assert verdict.summary == (
        "canary error rate 3.0% is 2.9 points above stable's 0.1% (max +1.0)"
    )


def test_p99_well_above_stable_fails_even_within_absolute_limit() -> None:
    verdict = verdict_for(Side(requests=1_000, errors=0, p99_ms=320))
    assert verdict.outcome == "fail"
    assert verdict.summary == "canary p99 320 ms is 1.60× stable's 200 ms (max 1.2×)"


def test_every_failure_is_named() -> None:
    verdict = verdict_for(Side(requests=100, errors=10, p99_ms=900))
    assert verdict.outcome == "fail"
    assert verdict.summary.count(";") == 3
    for part in ("success rate 90.0%", "error rate 10.0%", "above 500 ms", "4.50×"):
        assert part in verdict.summary


# Inconclusive: never promotes.


def test_no_canary_series_is_inconclusive() -> None:
    verdict = verdict_for(Side())
    assert verdict.outcome == "inconclusive"
    assert verdict.summary == "no canary traffic in Prometheus in the last 5m"


def test_too_few_canary_requests_is_inconclusive_even_with_errors() -> None:
    verdict = verdict_for(Side(requests=12, errors=6, p99_ms=900))
    assert verdict.outcome == "inconclusive"
    assert verdict.summary == "only 12 canary requests in the last 5m, need at least 20"


def test_nan_p99_is_inconclusive() -> None:
    verdict = verdict_for(Side(requests=100, errors=0, p99_ms=NAN))
    assert verdict.outcome == "inconclusive"
    assert verdict.summary == "no canary latency data (p99 unknown)"
    assert verdict.figures["canary_p99_ms"] is None


@pytest.mark.parametrize("p99", [None, -INF])
def test_missing_or_impossible_p99_is_inconclusive(p99: float | None) -> None:
    assert verdict_for(Side(requests=100, errors=0, p99_ms=p99)).outcome == "inconclusive"


def test_a_failure_outweighs_an_unknown() -> None:
    verdict = verdict_for(Side(requests=100, errors=50, p99_ms=NAN))
    assert verdict.outcome == "fail"
    assert "success rate 50.0%" in verdict.summary


# Stable with no (or too little) traffic: relative checks are skipped, and the summary says so.


@pytest.mark.parametrize(
    ("stable", "reason"),
    [
        (Side(), "stable had no requests"),
        (Side(requests=0, errors=0, p99_ms=NAN), "stable had no requests"),
        (Side(requests=5, errors=0, p99_ms=10), "stable had only 5 requests, fewer than 20"),
    ],
)
def test_relative_checks_skipped_without_stable_traffic(stable: Side, reason: str) -> None:
    verdict = verdict_for(Side(requests=100, errors=1, p99_ms=400), stable)
    assert verdict.outcome == "pass"
    assert verdict.summary.endswith(f"; relative checks skipped: {reason}")


def test_absolute_checks_still_apply_without_stable_traffic() -> None:
    verdict = verdict_for(Side(requests=100, errors=0, p99_ms=700), Side())
    assert verdict.outcome == "fail"


def test_unknown_stable_p99_skips_only_the_ratio() -> None:
    stable = Side(requests=1_000, errors=0, p99_ms=NAN)
    verdict = verdict_for(Side(requests=100, errors=0, p99_ms=400), stable)
    assert verdict.outcome == "pass"
    assert verdict.summary.endswith("; p99 vs stable skipped: stable p99 unknown")


# The rows the verdict was judged on


def test_rows_of_a_failed_verdict() -> None:
    verdict = verdict_for(Side(requests=100, errors=5, p99_ms=320))
    assert verdict.rows == (
        ("requests", "100 (5 5xx)", "10,000 (10 5xx)", "≥ 20", "pass"),
        ("success rate", "95.0%", "99.9%", "≥ 99.0%", "fail"),
        ("error rate vs stable", "5.0%", "0.1%", "≤ stable + 1.0 points", "fail"),
        ("p99 latency", "320 ms", "200 ms", "≤ 500 ms", "pass"),
        ("p99 vs stable", "1.60×", "200 ms", "≤ 1.2× stable", "fail"),
    )


def test_rows_when_too_few_requests() -> None:
    figures = Figures(canary=Side(requests=3, errors=0, p99_ms=NAN), stable=Side())
    assert judge(figures, DEFAULT, at=NOW, step=0).rows == (
        ("requests", "3 (0 5xx)", "—", "≥ 20", "inconclusive"),
        ("success rate", "100.0%", "—", "—", "skipped"),
        ("error rate vs stable", "0.0%", "—", "—", "skipped"),
        ("p99 latency", "—", "—", "—", "skipped"),
        ("p99 vs stable", "—", "—", "—", "skipped"),
    )


def test_rows_agree_with_the_verdict_for_infinite_p99() -> None:
    verdict = verdict_for(Side(requests=100, errors=0, p99_ms=INF), Side())
    rows = {row[0]: row for row in verdict.rows}
    assert rows["p99 latency"] == ("p99 latency", "+Inf", "—", "≤ 500 ms", "fail")
    assert rows["error rate vs stable"][4] == "skipped"


def test_rows_show_the_thresholds_they_were_judged_with() -> None:
    t = HealthThresholds(max_p99_ms=300, max_p99_ratio=2, min_requests=50)
    verdict = verdict_for(Side(requests=100, errors=0, p99_ms=350), t=t)
    rows = {row[0]: row for row in verdict.rows}
    assert verdict.outcome == "fail"
    assert verdict.summary == "canary p99 350 ms is above 300 ms (+50 ms)"
    assert rows["p99 latency"] == ("p99 latency", "350 ms", "200 ms", "≤ 300 ms", "fail")
    assert rows["p99 vs stable"][3:] == ("≤ 2.0× stable", "pass")
    assert rows["requests"][3:] == ("≥ 50", "pass")


@pytest.mark.parametrize(
    "canary",
    [
        Side(requests=1_000, errors=2, p99_ms=210),
        Side(requests=100, errors=5, p99_ms=320),
        Side(requests=100, errors=0, p99_ms=NAN),
        Side(requests=100, errors=50, p99_ms=NAN),
        Side(requests=3, errors=3, p99_ms=900),
        Side(),
    ],
)
def test_the_outcome_is_what_the_rows_say(canary: Side) -> None:
    verdict = verdict_for(canary)
    statuses = {row[4] for row in verdict.rows}
    expected = next((s for s in ("fail", "inconclusive") if s in statuses), "pass")
    assert verdict.outcome == expected


def test_rows_survive_the_record_round_trip() -> None:
    verdict = verdict_for(Side(requests=1_000, errors=2, p99_ms=210))
    stored = Verdict.model_validate_json(verdict.model_dump_json())
    assert stored.rows == verdict.rows and stored == verdict


def test_a_verdict_stored_before_rows_still_loads() -> None:
    old = '{"outcome": "pass", "at": "2026-11-22T03:00:00Z", "step": 1, "summary": "healthy"}'
    assert Verdict.model_validate_json(old).rows == ()


# min_requests: 0 means no minimum, but a canary with no requests is still no data.


def test_no_minimum_passes_a_canary_with_a_few_requests() -> None:
    t = HealthThresholds(min_requests=0)
    verdict = verdict_for(Side(requests=3, errors=0, p99_ms=100), t=t)
    assert verdict.outcome == "pass"
    assert verdict.rows[0] == ("requests", "3 (0 5xx)", "10,000 (10 5xx)", "≥ 1", "pass")


def test_no_minimum_still_needs_some_canary_requests() -> None:
    t = HealthThresholds(min_requests=0)
    verdict = verdict_for(Side(requests=0, errors=0, p99_ms=NAN), t=t)
    assert verdict.outcome == "inconclusive"
    assert verdict.summary == "only 0 canary requests in the last 5m, need at least 1"
    assert verdict.rows[0][3:] == ("≥ 1", "inconclusive")


def test_thresholds_are_frozen_and_checked() -> None:
    with pytest.raises(ValidationError):
        DEFAULT.min_requests = 5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        HealthThresholds(min_success_rate=101)
    with pytest.raises(ValidationError):
        HealthThresholds(max_p99_ms=500, max_p99=1)  # type: ignore[call-arg]


# From query results to a verdict: the check layer's two queries.

WEATHER = Subject("prod", "weather", "v1", "v2")


def _requests(**by_version_and_class: float) -> dict[tuple[tuple[str, str], ...], float]:
    vector = {}
    for key, value in by_version_and_class.items():
        version, response_class = key.split("_")
        vector[labels(destination_version=version, response_class=response_class)] = value
    return vector


def test_figures_from_query_results() -> None:
    requests = _requests(v1_2xx=990, v1_5xx=10, v2_2xx=95, v2_4xx=3, v2_5xx=2)
    requests[labels(destination_version="v2")] = 1  # response_code "0": no response class
    p99 = {labels(destination_version="v1"): 180.0, labels(destination_version="v2"): NAN}
    figures = figures_from(requests, p99, WEATHER, window=timedelta(seconds=60))
    assert figures.canary == Side(requests=101, errors=2, p99_ms=figures.canary.p99_ms)
    assert math.isnan(figures.canary.p99_ms or 0.0)
    assert figures.stable == Side(requests=1_000, errors=10, p99_ms=180)


def test_version_without_series_has_no_figures() -> None:
    figures = figures_from(_requests(v1_2xx=100), {}, WEATHER, window=timedelta(seconds=60))
    assert figures.canary == Side()
    assert figures.stable == Side(requests=100, errors=0, p99_ms=None)


def test_check_judges_the_two_query_results() -> None:
    client = RecordingClient(
        _requests(v1_2xx=9_990, v1_5xx=10, v2_2xx=940, v2_5xx=60),
        {labels(destination_version="v1"): 200.0, labels(destination_version="v2"): 210.0},
    )
    verdict = HealthCheck(client).check(make_rollout(), NOW)
    assert len(client.calls) == 2
    assert verdict.outcome == "fail"
    assert verdict.summary.startswith("canary success rate 94.0% is below 99.0%")


@pytest.mark.parametrize(
    "error",
    [
        PrometheusUnreachable("http://prometheus:9090", "connection refused", 3),
        PrometheusQueryError("bad_data", "parse error at char 4"),
    ],
)
def test_prometheus_errors_are_inconclusive_with_the_reason(error: Exception) -> None:
    client = RecordingClient(error)
    verdict = HealthCheck(client).check(make_rollout(), NOW)
    assert verdict.outcome == "inconclusive"
    assert verdict.summary == f"no health data: {error}"
    assert len(client.calls) == 1


def test_prometheus_error_on_the_second_query_is_inconclusive() -> None:
    client = RecordingClient(_requests(v1_2xx=100, v2_2xx=100), PrometheusQueryError("x", "y"))
    assert HealthCheck(client).check(make_rollout(), NOW).outcome == "inconclusive"
    assert len(client.calls) == 2
