from __future__ import annotations

import math

import numpy as np
import pytest

from bot.health.judge import mann_whitney, samples_from_histogram

# Istio's default request duration buckets (ms), up to 1 s, then +Inf.
ISTIO_BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def latencies(median_ms: float, n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(x) for x in rng.lognormal(math.log(median_ms), 0.3, n)]


def cumulative(samples: list[float]) -> list[tuple[float, float]]:
    bounds = [*ISTIO_BUCKETS, math.inf]
    return [(le, float(sum(1 for s in samples if s <= le))) for le in bounds]


def test_clearly_slower_canary_fails() -> None:
    outcome, p_value, summary = mann_whitney(latencies(150, 300, 1), latencies(100, 300, 2))
    assert outcome == "fail"
    assert p_value is not None and p_value < 1e-6
    assert "significantly higher" in summary
    assert "at or above the 1.2× limit" in summary


def test_same_distribution_passes() -> None:
    outcome, p_value, summary = mann_whitney(latencies(100, 300, 3), latencies(100, 300, 4))
    assert outcome == "pass"
    assert p_value is not None and p_value > 0.05
    assert summary.startswith("no significant latency increase")


def test_identical_samples_pass() -> None:
    samples = latencies(100, 50, 5)
    outcome, p_value, _ = mann_whitney(samples, samples)
    assert outcome == "pass"
    assert p_value == pytest.approx(0.5, abs=0.05)
    assert mann_whitney([7.5] * 30, [7.5] * 30) == (
        "pass",
        1.0,
        "canary and stable latencies are identical",
    )


def test_faster_canary_passes() -> None:
    assert mann_whitney(latencies(60, 300, 6), latencies(100, 300, 7))[0] == "pass"


def test_significant_but_small_shift_passes() -> None:
    outcome, p_value, summary = mann_whitney(latencies(105, 5_000, 8), latencies(100, 5_000, 9))
    assert outcome == "pass"
    assert p_value is not None and p_value < 0.05
    assert "below the 1.2× limit" in summary


@pytest.mark.parametrize(("canary", "stable"), [(5, 300), (300, 5), (19, 19), (0, 0)])
def test_tiny_samples_are_inconclusive(canary: int, stable: int) -> None:
    outcome, p_value, summary = mann_whitney(
        latencies(500, canary, 10) if canary else [], latencies(100, stable, 11) if stable else []
    )
    assert (outcome, p_value) == ("inconclusive", None)
    assert f"canary {canary}, stable {stable}, need 20 each" in summary


def test_samples_sit_at_bucket_midpoints() -> None:
    buckets = [(10.0, 2.0), (20.0, 5.0), (math.inf, 6.0)]
    assert samples_from_histogram(buckets) == [5.0, 5.0, 15.0, 15.0, 15.0, 40.0]


def test_unsorted_buckets_and_dips_are_tolerated() -> None:
    buckets = [(math.inf, 4.0), (20.0, 1.9), (10.0, 2.0)]
    assert samples_from_histogram(buckets) == [5.0, 5.0, 40.0, 40.0]


def test_fractional_counts_are_apportioned() -> None:
    samples = samples_from_histogram([(10.0, 1.4), (20.0, 3.0), (math.inf, 3.0)])
    assert samples == [5.0, 15.0, 15.0]


def test_sample_count_is_bounded_and_keeps_shares() -> None:
    buckets = [(10.0, 30_000.0), (20.0, 90_000.0), (math.inf, 100_000.0)]
    samples = samples_from_histogram(buckets, max_samples=1_000)
    assert len(samples) == 1_000
    assert (samples.count(5.0), samples.count(15.0), samples.count(40.0)) == (300, 600, 100)


def test_empty_histogram_gives_no_samples() -> None:
    assert samples_from_histogram([]) == []
    assert samples_from_histogram([(10.0, 0.0), (math.inf, 0.0)]) == []


def test_histograms_of_a_slower_canary_fail() -> None:
    canary = samples_from_histogram(cumulative(latencies(300, 2_000, 12)))
    stable = samples_from_histogram(cumulative(latencies(60, 2_000, 13)))
    assert mann_whitney(canary, stable)[0] == "fail"


def test_histograms_of_the_same_latency_pass() -> None:
    canary = samples_from_histogram(cumulative(latencies(60, 2_000, 14)))
    stable = samples_from_histogram(cumulative(latencies(60, 2_000, 15)))
    assert mann_whitney(canary, stable)[0] == "pass"
