"""A statistical latency comparison, in the spirit of Kayenta's Mann-Whitney judge. Optional:
no check uses it yet, and it needs the `analysis` extra (`pip install canary-bot[analysis]`,
scipy), which the image does not carry.

The threshold checks in `verdict` look at one number per version (the p99). This judge looks at
the whole latency distribution instead: a one-sided Mann-Whitney U test asks whether canary
latencies tend to be larger than stable's, and an effect-size floor (the ratio of medians) keeps
a statistically significant but tiny shift from failing a rollout, as Kayenta's allowed
increase does.

Prometheus keeps histograms, not samples, so `samples_from_histogram` turns cumulative bucket
counts (`latency_buckets` in `promql`) into pseudo-samples at bucket midpoints, at most
`max_samples` of them with each bucket's share kept.

When it helps:
- enough traffic on both versions in the window (hundreds of requests, not dozens);
- both versions see similar load and request mix, as under a weighted split;
- the regression is a shift of the bulk of the distribution (a slower code path for everyone),
  which a p99 alone reports late or noisily.

When it does not:
- few requests: the test has no power, so the judge answers inconclusive below `min_samples`;
- coarse buckets: every request in a bucket ties, and a shift inside one bucket is invisible;
  the midpoint samples also cap the sample count, which lowers the test's power;
- non-stationary load (a traffic spike, a cold cache on fresh canary pods, a batch job):
  the distributions differ for reasons other than the code, and the test will say so;
- tail-only regressions (a rare timeout): a rank test over the bulk can miss them; keep p99.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Literal

Outcome = Literal["pass", "fail", "inconclusive"]
MIN_SAMPLES = 20
MAX_SAMPLES = 1000


def mann_whitney(
    canary_samples: Sequence[float],
    stable_samples: Sequence[float],
    *,
    alpha: float = 0.05,
    effect: float = 1.2,
    min_samples: int = MIN_SAMPLES,
) -> tuple[Outcome, float | None, str]:
    """Fail when canary latency is significantly higher (p < alpha) by at least `effect`×."""
    smallest = min(len(canary_samples), len(stable_samples))
    if smallest < min_samples:
        return "inconclusive", None, _too_few(canary_samples, stable_samples, min_samples)
    if min(*canary_samples, *stable_samples) == max(*canary_samples, *stable_samples):
        return "pass", 1.0, "canary and stable latencies are identical"
    from scipy.stats import mannwhitneyu  # noqa: PLC0415 the optional extra, needed only here

    p_value = float(mannwhitneyu(canary_samples, stable_samples, alternative="greater").pvalue)
    ratio = _median_ratio(canary_samples, stable_samples)
    return _decide(p_value, ratio, alpha, effect), p_value, _explain(p_value, ratio, alpha, effect)


def _decide(p_value: float, ratio: float, alpha: float, effect: float) -> Outcome:
    return "fail" if p_value < alpha and ratio >= effect else "pass"


def _explain(p_value: float, ratio: float, alpha: float, effect: float) -> str:
    shift = f"canary median latency is {ratio:.2f}× stable's"
    if p_value >= alpha:
        return f"no significant latency increase (Mann-Whitney p={p_value:.3g}); {shift}"
    verdict = "at or above" if ratio >= effect else "below"
    return (
        f"canary latency is significantly higher (Mann-Whitney p={p_value:.3g} < {alpha});"
        f" {shift}, {verdict} the {effect}× limit"
    )


def _too_few(canary: Sequence[float], stable: Sequence[float], needed: int) -> str:
    return (
        f"too few latency samples for a Mann-Whitney test: canary {len(canary)},"
        f" stable {len(stable)}, need {needed} each"
    )


def _median_ratio(canary: Sequence[float], stable: Sequence[float]) -> float:
    canary_median, stable_median = statistics.median(canary), statistics.median(stable)
    if stable_median > 0:
        return float(canary_median / stable_median)
    return 1.0 if canary_median <= 0 else math.inf


def samples_from_histogram(
    buckets: Sequence[tuple[float, float]], *, max_samples: int = MAX_SAMPLES
) -> list[float]:
    """Pseudo-samples from cumulative `(le, count)` buckets, as Prometheus reports them.

    Each bucket contributes its midpoint once per request in it (counts from `increase()` may be
    fractional; they are apportioned to whole samples). Requests in the `+Inf` bucket sit at
    twice the largest finite bound: above every finite bucket, which is all a rank test needs.
    No more than `max_samples` samples come out, with each bucket's share kept.
    """
    ordered = sorted(buckets)
    counts = _per_bucket(ordered)
    points = _midpoints([le for le, _ in ordered])
    wanted = min(round(sum(counts)), max_samples)
    return [
        point for point, k in zip(points, _apportion(counts, wanted), strict=True) for _ in range(k)
    ]


def _per_bucket(cumulative: Sequence[tuple[float, float]]) -> list[float]:
    counts, previous = [], 0.0
    for _, total in cumulative:
        counts.append(max(total - previous, 0.0))  # extrapolated counts can dip
        previous = max(total, previous)
    return counts


def _midpoints(bounds: Sequence[float]) -> list[float]:
    finite = [le for le in bounds if math.isfinite(le)]
    beyond = 2 * finite[-1] if finite else 1.0
    points, lower = [], 0.0
    for le in bounds:
        points.append((lower + le) / 2 if math.isfinite(le) else beyond)
        lower = le if math.isfinite(le) else lower
    return points


def _apportion(counts: Sequence[float], total: int) -> list[int]:
    """Whole numbers summing to `total`, proportional to `counts` (largest remainder)."""
    weight = sum(counts)
    if weight <= 0 or total <= 0:
        return [0] * len(counts)
    exact = [count * total / weight for count in counts]
    whole = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: whole[i] - exact[i])
    for i in by_remainder[: total - sum(whole)]:
        whole[i] += 1
    return whole
