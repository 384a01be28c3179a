"""The judge of continuous analysis: anytime-valid tests of a canary against stable. Pure.

A check that runs every few seconds looks at the same growing data many times; a fixed
threshold asked at every look cries wolf far more often than its nominal rate. Each test here
is an e-process instead: a running likelihood ratio, mixed over the alternatives, whose
chance of ever reaching 1/α while the canary is no worse is at most α, however often it is
looked at (Ville's inequality). The constructions:

- Wald, "Sequential Tests of Statistical Hypotheses" (1945): the sequential probability ratio
  test; Robbins, "Statistical methods related to the law of the iterated logarithm" (1970):
  mixing the ratio over a prior of alternatives keeps it a martingale. Here the prior is a
  uniform weight over the rate ratios in `RATIOS`.
- Lindon, Sanden and Shirikian, "Rapid Regression Detection in Software Deployments through
  Sequential Testing" (KDD 2022, Netflix's canary analysis): two versions' event counts as
  Poisson processes; given an event, it is the canary's with probability ρ (the canary's
  share of the requests) when both have the same rate, and more often when the canary is
  worse. Errors and slow requests are such events.
- A latency comparison from histogram buckets: for every bucket bound, "slower than the bound"
  is an event, tested as above (canary stochastically slower than stable); the e-processes of
  all bounds are averaged, which is again an e-process.
- The hard limits of the thresholds (`min_success_rate`, `max_p99_ms`) are one-sample tests
  of the same kind: errors above 100 − min_success_rate percent, and more than 1 % of the
  requests slower than max_p99_ms.

The data are counts since the step went live (each look's window starts there), so the looks
of a step see one growing sample, and each step's e-process starts afresh at 1. The evidence is
carried across steps (`Carried`): a test's e-value is the product of every passed step's final
e-value (taken by the judgement that let the step advance) and the current step's running one.
Each step's process is a test martingale given everything before it, so the product, a test
martingale concatenated at the steps' stopping times, is again one (Shafer, Shen, Vereshchagin
and Vovk, "Test martingales, Bayes factors and p-values", 2011; Ramdas, Grünwald, Vovk and
Shafer, "Game-theoretic statistics and safe anytime-valid inference", 2023): Ville's
inequality bounds it over the whole rollout, so α is split over the four tests only
(Bonferroni) and `ALPHA` bounds the false rollbacks of a whole rollout. A step's data must
begin after the carried evidence was judged, or the same requests would count twice
(`SequentialCheck` starts its windows there). The price of carrying: a healthy step leaves its
tests' e-values below 1 (most of all the ceilings', when the canary is far below them), and a
canary that turns bad in a later step must first make that up. "99.9 % sure" in the rows is
1 − the adjusted anytime-valid p-value of the rollout so far (min(1, m / e), e the product);
a test fails at 1 − α. Failing needs evidence only, at any traffic; passing needs
`min_requests` canary requests since the step began and no test failing: low traffic is
inconclusive, never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.health.verdict import NONE, Check, Figures, Side, Status, conclude, with_limits
from bot.rollout.model import NO_EVIDENCE, Carried, Verdict
from policies.model import HealthThresholds

ALPHA = 0.01
RATIOS = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0)  # how much worse, as rate ratios
TESTS = 4  # errors vs stable, latency vs stable, error ceiling, p99 ceiling
TAIL = 0.01  # p99: at most 1 % of the requests slower than max_p99_ms
Buckets = tuple[tuple[float, float], ...]  # cumulative (le, count), as Prometheus keeps them


@dataclass(frozen=True)
class Counts:
    """One version's requests since the step went live: totals, 5xx, latency buckets."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: Buckets = ()
    scraped_at: datetime | None = None  # when Prometheus last scraped them; None: not known

    @property
    def timed(self) -> float:
        """Requests the latency histogram counted (its +Inf bucket). Latency is judged within
        the histogram alone: the request counter is another series, and Prometheus's
        extrapolation over a window can make the two disagree by more than any real effect.
        Without a +Inf bucket, the request count."""
        return next((n for le, n in self.buckets if math.isinf(le)), self.requests)

    def slower_than(self, bound: float) -> float:
        """Timed requests above `bound`: those past the largest bucket bound at or below it."""
        below = [count for le, count in sorted(self.buckets) if le <= bound]
        return max(self.timed - (below[-1] if below else 0.0), 0.0)

    @property
    def error_rate(self) -> float | None:
        return 100.0 * self.errors / self.requests if self.requests > 0 else None

    @property
    def p99_ms(self) -> float | None:
        return quantile(0.99, self.buckets)


@dataclass(frozen=True)
class Evidence:
    """One test over the rollout so far: the log of its e-value, and how sure it makes us,
    Bonferroni-adjusted over `tests`."""

    log_e: float
    tests: int

    @property
    def sure(self) -> float:
        if self.log_e <= math.log(self.tests):
            return 0.0
        return 1.0 - math.exp(math.log(self.tests) - self.log_e)

    def proves(self, alpha: float) -> bool:
        return self.sure >= 1.0 - alpha - 1e-12


def rate_evidence(canary: float, stable: float, share: float, null: float = 1.0) -> float:
    """The e-value that canary events come at more than `null` × stable's rate per request,
    from `canary` and `stable` events, the canary taking `share` of the requests."""
    return _exp(rate_log_evidence(canary, stable, share, null))


def rate_log_evidence(canary: float, stable: float, share: float, null: float = 1.0) -> float:
    """`rate_evidence`, as its log."""
    if not 0.0 < share < 1.0:
        return 0.0
    theta0 = _tilted(share, null)
    x, y = round(canary), round(stable)  # `increase()` extrapolates: whole events only
    logs = [
        x * math.log(theta / theta0) + y * math.log((1 - theta) / (1 - theta0))
        for theta in (_tilted(share, null * r) for r in RATIOS)
    ]
    return _log_mean_exp(logs)


def excess_evidence(events: float, trials: float, limit: float) -> float:
    """The e-value that more than a `limit` share of the trials are events."""
    return _exp(excess_log_evidence(events, trials, limit))


def excess_log_evidence(events: float, trials: float, limit: float) -> float:
    """`excess_evidence`, as its log."""
    x, n = round(events), round(trials)
    if limit >= 1.0 or n <= 0:
        return 0.0
    if limit <= 0.0:
        return math.inf if x > 0 else 0.0
    alternatives = [min(limit * r, (1 + limit) / 2) for r in RATIOS if limit * r < 1]
    logs = [
        x * math.log(p / limit) + (n - x) * math.log((1 - p) / (1 - limit)) for p in alternatives
    ]
    return _log_mean_exp(logs)


def latency_evidence(canary: Counts, stable: Counts, share: float) -> float:
    """The e-value that canary requests are slower than stable's (one test per bucket bound,
    averaged)."""
    return _exp(latency_log_evidence(canary, stable, share))


def latency_log_evidence(canary: Counts, stable: Counts, share: float) -> float:
    """`latency_evidence`, as its log."""
    bounds = sorted({le for le, _ in (*canary.buckets, *stable.buckets) if math.isfinite(le)})
    if not bounds:
        return 0.0
    timed = canary.timed + stable.timed
    share = canary.timed / timed if timed > 0 else share
    return _log_mean_exp(
        [rate_log_evidence(canary.slower_than(b), stable.slower_than(b), share) for b in bounds]
    )


def _tilted(share: float, ratio: float) -> float:
    """The chance that an event is the canary's when its rate is `ratio` × stable's."""
    return share * ratio / (share * ratio + 1 - share)


def _log_mean_exp(logs: Sequence[float]) -> float:
    top = max(logs)
    if not math.isfinite(top):
        return top
    return top + math.log(sum(math.exp(v - top) for v in logs) / len(logs))


def _exp(log_e: float) -> float:
    return math.inf if log_e > 700 else math.exp(log_e)


def quantile(q: float, buckets: Buckets) -> float | None:
    """`histogram_quantile` as Prometheus computes it: linear within the bucket, the largest
    finite bound when the quantile falls in +Inf, None without requests."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank, lower, below = q * ordered[-1][1], 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if not math.isfinite(le):
                return lower
            inside = count - below
            return le if inside <= 0 else lower + (le - lower) * (rank - below) / inside
        lower, below = le if math.isfinite(le) else lower, count
    return lower


# The judgement


def judge(
    canary: Counts,
    stable: Counts,
    thresholds: HealthThresholds,
    *,
    at: datetime,
    step: int,
    carried: Carried = NO_EVIDENCE,
    window_s: float | None = None,
    alpha: float = ALPHA,
) -> Verdict:
    """Pass, fail or inconclusive, with a row per test saying how sure it is over the rollout
    so far: the counts are the current step's, `carried` the evidence of the steps passed
    before it (their data must all be older than the counts')."""
    figures = Figures(canary=_side(canary), stable=_side(stable), window_s=window_s)
    share = _share(canary, stable)
    bar = _Bar(carried, alpha)
    rows = [
        _traffic(canary, stable, thresholds),
        _errors_vs_stable(canary, stable, share, bar),
        _latency_vs_stable(canary, stable, share, bar),
        _error_ceiling(canary, thresholds, bar),
        _p99_ceiling(canary, thresholds, bar),
    ]
    verdict = conclude(rows, figures, at=at, step=step)
    numbers = {**with_limits(verdict, thresholds).figures, **_confidences(rows)}
    return verdict.model_copy(
        update={
            "figures": numbers,
            "summary": _summary(verdict, rows),
            "final": verdict.outcome == "fail",  # each test's error is bounded over every look
            "evidence": _evidence(rows),
        }
    )


@dataclass(frozen=True)
class _Bar:
    """What a test's step evidence is judged with: the carried evidence, and α."""

    carried: Carried
    alpha: float
    tests: int = TESTS

    def evidence(self, metric: str, log_e: float) -> Evidence:
        return Evidence(self.carried.log_e.get(_key(metric), 0.0) + log_e, self.tests)

    def over(self, metric: str) -> str:
        """How many steps the sureness is over, in words; "" for this step alone."""
        before = self.carried.steps if _key(metric) in self.carried.log_e else 0
        if before == 0:
            return ""
        return f" over this step and the {'one' if before == 1 else before} before"


def _side(counts: Counts) -> Side:
    if counts.requests <= 0:
        return Side()
    return Side(requests=counts.requests, errors=counts.errors, p99_ms=counts.p99_ms)


def _share(canary: Counts, stable: Counts) -> float:
    total = canary.requests + stable.requests
    return canary.requests / total if total > 0 else 0.0


@dataclass(frozen=True)
class Row(Check):
    """A row of the verdict with how sure its test is over the rollout so far, and the log
    e-value of the step's own data (None: not a test)."""

    sure: float | None = None
    log_e: float | None = None


def _traffic(canary: Counts, stable: Counts, t: HealthThresholds) -> Row:
    need = max(t.min_requests, 1)
    shown = (_requests(canary), _requests(stable), f"≥ {need}")
    if canary.requests >= need:
        return Row("requests", *shown, "pass")
    note = f"only {canary.requests:,.0f} canary requests since the step began, need {need}"
    return Row("requests", *shown, "inconclusive", note)


def _errors_vs_stable(canary: Counts, stable: Counts, share: float, bar: _Bar) -> Row:
    metric = "errors vs stable"
    shown = (_percent(canary.error_rate), _percent(stable.error_rate), _bound(bar.alpha, "worse"))
    if stable.requests <= 0 or canary.requests <= 0:
        return Row(metric, *shown, "skipped", "errors vs stable: no stable traffic")
    log_e = rate_log_evidence(canary.errors, stable.errors, share)
    evidence = bar.evidence(metric, log_e)
    words = (
        f"errors {_percent(canary.error_rate)} vs {_percent(stable.error_rate)},"
        f" {_sure(evidence)} sure it is worse{bar.over(metric)}"
    )
    return _decided(metric, shown, words, bar=bar, log_e=log_e)


def _latency_vs_stable(canary: Counts, stable: Counts, share: float, bar: _Bar) -> Row:
    metric = "latency vs stable"
    shown = (_ms(canary.p99_ms), _ms(stable.p99_ms), _bound(bar.alpha, "slower"))
    if stable.requests <= 0 or canary.requests <= 0:
        return Row(metric, *shown, "skipped", "latency vs stable: no stable traffic")
    if not canary.buckets and not stable.buckets:  # TCP: connections have no request latency
        return Row(metric, *shown, "skipped", "")
    log_e = latency_log_evidence(canary, stable, share)
    evidence = bar.evidence(metric, log_e)
    words = (
        f"p99 {_ms(canary.p99_ms)} vs {_ms(stable.p99_ms)},"
        f" {_sure(evidence)} sure the canary is slower{bar.over(metric)}"
    )
    return _decided(metric, shown, words, bar=bar, log_e=log_e)


def _error_ceiling(canary: Counts, t: HealthThresholds, bar: _Bar) -> Row:
    metric, limit = "error ceiling", 100.0 - t.min_success_rate
    shown = (_percent(canary.error_rate), NONE, f"≤ {_percent(limit)}")
    log_e = excess_log_evidence(canary.errors, canary.requests, limit / 100)
    evidence = bar.evidence(metric, log_e)
    words = (
        f"errors {_percent(canary.error_rate)}, {_sure(evidence)} sure they are above"
        f" {_percent(limit)}{bar.over(metric)}"
    )
    return _decided(metric, shown, words, bar=bar, log_e=log_e)


def _p99_ceiling(canary: Counts, t: HealthThresholds, bar: _Bar) -> Row:
    metric = "p99 ceiling"
    shown = (_ms(canary.p99_ms), NONE, f"≤ {_ms(t.max_p99_ms)}")
    if not canary.buckets:
        return Row(metric, *shown, "skipped", "no canary latency data")
    log_e = excess_log_evidence(canary.slower_than(t.max_p99_ms), canary.timed, TAIL)
    evidence = bar.evidence(metric, log_e)
    words = (
        f"p99 {_ms(canary.p99_ms)}, {_sure(evidence)} sure it is above {_ms(t.max_p99_ms)}"
        f"{bar.over(metric)}"
    )
    return _decided(metric, shown, words, bar=bar, log_e=log_e)


def _decided(
    metric: str, shown: tuple[str, str, str], words: str, *, bar: _Bar, log_e: float
) -> Row:
    evidence = bar.evidence(metric, log_e)
    status: Status = "fail" if evidence.proves(bar.alpha) else "pass"
    return Row(metric, *shown, status, words, sure=evidence.sure, log_e=log_e)


def _summary(verdict: Verdict, rows: Sequence[Row]) -> str:
    if verdict.outcome == "fail":
        return "; ".join(row.note for row in rows if row.status == "fail")
    told = "; ".join(row.note for row in rows if row.sure is not None and row.note)
    if verdict.outcome == "inconclusive":
        return "; ".join(filter(None, (rows[0].note, told)))
    return f"healthy: {told}" if told else "healthy"


def _confidences(rows: Sequence[Row]) -> dict[str, float | None]:
    return {f"sure_{_key(row.metric)}": row.sure for row in rows if row.sure is not None}


def _evidence(rows: Sequence[Row]) -> dict[str, float]:
    """The step's own log e-values, to carry if it passes; an infinite one fails the step."""
    return {
        _key(row.metric): row.log_e
        for row in rows
        if row.log_e is not None and math.isfinite(row.log_e)
    }


def _key(metric: str) -> str:
    return metric.replace(" ", "_")


# Words


def _sure(evidence: Evidence) -> str:
    sure = 100 * evidence.sure
    if sure >= 99.9:
        return f"{math.floor(sure * 10) / 10:.1f} %"
    return f"{math.floor(sure):.0f} %"


def _bound(alpha: float, what: str) -> str:
    return f"fails at {100 * (1 - alpha):g} % sure {what}"


def _percent(value: float | None) -> str:
    if value is None:
        return NONE
    return f"{value:.1f} %" if value >= 0.1 or value == 0 else f"{value:.2f} %"


def _ms(value: float | None) -> str:
    return NONE if value is None else f"{value:.0f} ms"


def _requests(counts: Counts) -> str:
    if counts.requests <= 0:
        return NONE
    return f"{counts.requests:,.0f} ({counts.errors:,.0f} 5xx)"
