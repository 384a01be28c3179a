"""Decide a health check from its figures: pass, fail or inconclusive. Pure.

The rules, in order:

- Traffic gates everything: no canary requests, or fewer than `min_requests` of them in the
  window, is inconclusive and nothing else is judged. Inconclusive never promotes.
- Absolute: canary success rate ≥ `min_success_rate`, canary p99 ≤ `max_p99_ms`.
- Relative to stable: error rate ≤ stable's + `max_error_rate_increase` points, p99 ≤
  `max_p99_ratio` × stable's. Skipped (and said so) when stable had fewer than `min_requests`
  requests, or for the ratio when stable's p99 is unknown.
- A value exactly at a threshold passes.
- A canary p99 that is NaN or missing (no latency data) is inconclusive. A p99 of +Inf means
  requests were slower than the largest finite bucket: that is a latency failure, not a lack of
  data. (Prometheus' `histogram_quantile` itself answers with the largest finite bucket bound
  in that case, which fails `max_p99_ms` whenever the buckets reach past it.)
- Any failure makes the verdict fail, even if another figure is unknown.
- Custom checks (a policy's `checks:`) are judged once every standard row has passed: each
  value must stay within its bound, and one without a value is inconclusive.

Each check is a row of the verdict (`Verdict.rows`: metric, canary, stable, the threshold as
judged, status), and the outcome and summary are derived from those rows, here and only here.
Chat shows the rows as they are; it never judges again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from bot.health.promql import duration
from bot.rollout.model import Verdict
from policies.model import CustomCheck, HealthThresholds

Status = Literal["pass", "fail", "inconclusive", "skipped"]
Outcome = Literal["pass", "fail", "inconclusive"]
Row = tuple[str, str, str, str, str]  # metric, canary, stable, threshold, status
NONE = "—"
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Side:
    """One version's numbers over the window; None where Prometheus had no series."""

    requests: float | None = None
    errors: float | None = None  # 5xx responses
    p99_ms: float | None = None

    @property
    def success_rate(self) -> float | None:
        error_rate = self.error_rate
        return None if error_rate is None else 100.0 - error_rate

    @property
    def error_rate(self) -> float | None:
        if not self.requests or not _finite(self.requests):
            return None
        return 100.0 * (self.errors or 0.0) / self.requests


@dataclass(frozen=True)
class Figures:
    canary: Side
    stable: Side
    window_s: float | None = None
    custom: Mapping[str, float | None] = field(default_factory=dict)  # by custom check name

    def as_dict(self) -> dict[str, float | None]:
        """Flat, for `Verdict.figures`; NaN becomes None, +Inf stays."""
        sides = {"canary": self.canary, "stable": self.stable}
        numbers: dict[str, float | None] = {"window_s": self.window_s}
        for name, side in sides.items():
            numbers[f"{name}_requests"] = side.requests
            numbers[f"{name}_errors"] = side.errors
            numbers[f"{name}_success_rate"] = side.success_rate
            numbers[f"{name}_p99_ms"] = side.p99_ms
        numbers.update({f"check_{name}": value for name, value in self.custom.items()})
        return {key: None if _is_nan(value) else value for key, value in numbers.items()}


@dataclass(frozen=True)
class Check:
    """One row of the verdict: a figure, its threshold, and what it says."""

    metric: str
    canary: str
    stable: str
    threshold: str
    status: Status
    note: str = ""  # why it failed, is inconclusive or was skipped; one clause

    @property
    def row(self) -> Row:
        return (self.metric, self.canary, self.stable, self.threshold, self.status)


def judge(figures: Figures, thresholds: HealthThresholds, *, at: datetime, step: int) -> Verdict:
    """The verdict of the standard checks alone (`HealthCheck` adds the custom ones)."""
    verdict = conclude(evaluate(figures, thresholds), figures, at=at, step=step)
    return with_limits(verdict, thresholds)


def with_limits(verdict: Verdict, thresholds: HealthThresholds) -> Verdict:
    """The verdict with the hard limits it was judged against among its figures (the chart
    draws them)."""
    limits = {"min_success_rate": thresholds.min_success_rate, "max_p99_ms": thresholds.max_p99_ms}
    return verdict.model_copy(update={"figures": {**verdict.figures, **limits}})


def conclude(checks: Sequence[Check], figures: Figures, *, at: datetime, step: int) -> Verdict:
    """The verdict these checks make: its outcome, summary and rows all come from them."""
    result = outcome(checks)
    return Verdict(
        outcome=result,
        at=at,
        step=step,
        summary=_summary(result, checks, figures),
        figures=figures.as_dict(),
        rows=tuple(check.row for check in checks),
    )


def inconclusive(
    reason: str, *, at: datetime, step: int, figures: Figures | None = None
) -> Verdict:
    """A check that could not be decided (Prometheus down, a bad name): never promotes."""
    numbers = figures.as_dict() if figures else {}
    return Verdict(outcome="inconclusive", at=at, step=step, summary=reason, figures=numbers)


def evaluate(figures: Figures, thresholds: HealthThresholds) -> list[Check]:
    """The standard checks, one per row."""
    traffic = _traffic(figures, thresholds)
    if traffic.status != "pass":
        return [traffic, *(_not_judged(metric, figures) for metric in _JUDGED_ROWS)]
    skip = _relative_skip(figures.stable, thresholds)
    return [
        traffic,
        _success_rate(figures, thresholds),
        _error_rate_increase(figures, thresholds, skip),
        _p99(figures, thresholds),
        _p99_ratio(figures, thresholds, skip),
    ]


def custom_check(spec: CustomCheck, value: float | None) -> Check:
    """A custom check's row: its value (None: no single value) against its one bound."""
    bound = f"≤ {spec.max:g}" if spec.max is not None else f"≥ {spec.min:g}"
    if value is None:
        note = f"no data for custom check {spec.name}"
        return Check(spec.name, NONE, NONE, bound, "inconclusive", note)
    outside = (spec.max is not None and _above(value, spec.max)) or (
        spec.min is not None and _below(value, spec.min)
    )
    note = f"{spec.name} is {value:g}, not {bound}" if outside else ""
    return Check(spec.name, f"{value:g}", NONE, bound, "fail" if outside else "pass", note)


def outcome(checks: Iterable[Check]) -> Outcome:
    """Any failed row fails; otherwise any inconclusive row makes it inconclusive."""
    statuses = {check.status for check in checks}
    if "fail" in statuses:
        return "fail"
    return "inconclusive" if "inconclusive" in statuses else "pass"


def _summary(result: Outcome, checks: Sequence[Check], figures: Figures) -> str:
    if result != "pass":
        return "; ".join(check.note for check in checks if check.status == result)
    canary, stable = figures.canary, figures.stable
    success = f"{_percent(canary.success_rate)} (stable {_percent(stable.success_rate)})"
    text = (
        f"healthy: success {success},"
        f" p99 {_ms(canary.p99_ms)} (stable {_ms(stable.p99_ms)}),"
        f" {_count(canary.requests)} canary requests{_over(figures)}"
    )
    skipped = sorted({check.note for check in checks if check.status == "skipped" and check.note})
    return "; ".join([text, *skipped])


# The rows


def _traffic(figures: Figures, t: HealthThresholds) -> Check:
    canary, stable = figures.canary, figures.stable
    need = max(t.min_requests, 1)  # `min_requests: 0` is no minimum, but nothing is no data
    status: Status = "pass"
    note = ""
    if canary.requests is None or not _finite(canary.requests):
        status, note = "inconclusive", f"no canary traffic in Prometheus{_over(figures)}"
    elif _below(canary.requests, need):
        status = "inconclusive"
        note = (
            f"only {_count(canary.requests)} canary requests{_over(figures)}, need at least {need}"
        )
    return Check("requests", _requests(canary), _requests(stable), f"≥ {need}", status, note)


def _success_rate(figures: Figures, t: HealthThresholds) -> Check:
    canary = figures.canary.success_rate
    status: Status = "pass"
    note = ""
    if canary is not None and _below(canary, t.min_success_rate):
        status = "fail"
        note = (
            f"canary success rate {_percent(canary)} is below {_percent(t.min_success_rate)}"
            f" ({_signed(canary - t.min_success_rate, _number)} points)"
        )
    stable = _percent(figures.stable.success_rate)
    return Check(
        "success rate", _percent(canary), stable, f"≥ {_percent(t.min_success_rate)}", status, note
    )


def _error_rate_increase(figures: Figures, t: HealthThresholds, skip: str) -> Check:
    canary, stable = figures.canary.error_rate, figures.stable.error_rate
    threshold = f"≤ stable + {_number(t.max_error_rate_increase)} points"
    metric = "error rate vs stable"
    if skip or canary is None or stable is None:
        return Check(metric, _percent(canary), _percent(stable), threshold, "skipped", skip)
    increase = canary - stable
    if not _above(increase, t.max_error_rate_increase):
        return Check(metric, _percent(canary), _percent(stable), threshold, "pass")
    note = (
        f"canary error rate {_percent(canary)} is {_number(increase)} points above stable's"
        f" {_percent(stable)} (max +{_number(t.max_error_rate_increase)})"
    )
    return Check(metric, _percent(canary), _percent(stable), threshold, "fail", note)


def _p99(figures: Figures, t: HealthThresholds) -> Check:
    canary = figures.canary.p99_ms
    status: Status = "pass"
    note = ""
    if canary is None or math.isnan(canary) or canary < 0:
        status, note = "inconclusive", "no canary latency data (p99 unknown)"
    elif math.isinf(canary):
        status = "fail"
        note = "canary p99 is beyond the largest latency bucket (+Inf)"
    elif _above(canary, t.max_p99_ms):
        status = "fail"
        note = (
            f"canary p99 {_ms(canary)} is above {_ms(t.max_p99_ms)}"
            f" ({_signed(canary - t.max_p99_ms, _ms)})"
        )
    stable = _ms(figures.stable.p99_ms)
    return Check("p99 latency", _ms(canary), stable, f"≤ {_ms(t.max_p99_ms)}", status, note)


def _p99_ratio(figures: Figures, t: HealthThresholds, skip: str) -> Check:
    canary, stable = figures.canary.p99_ms, figures.stable.p99_ms
    threshold = f"≤ {_number(t.max_p99_ratio)}× stable"
    metric = "p99 vs stable"
    ratio = _ratio(canary, stable)
    if skip or ratio is None:
        unknown = "" if not _finite(canary) else "p99 vs stable skipped: stable p99 unknown"
        return Check(metric, NONE, _ms(stable), threshold, "skipped", skip or unknown)
    shown = f"{ratio:.2f}×"
    if not _above(ratio, t.max_p99_ratio):
        return Check(metric, shown, _ms(stable), threshold, "pass")
    note = (
        f"canary p99 {_ms(canary)} is {shown} stable's {_ms(stable)}"
        f" (max {_number(t.max_p99_ratio)}×)"
    )
    return Check(metric, shown, _ms(stable), threshold, "fail", note)


def _ratio(canary: float | None, stable: float | None) -> float | None:
    if canary is None or stable is None or not math.isfinite(canary + stable) or stable <= 0:
        return None
    return canary / stable


_JUDGED_ROWS = (
    ("success rate", lambda s: _percent(s.success_rate)),
    ("error rate vs stable", lambda s: _percent(s.error_rate)),
    ("p99 latency", lambda s: _ms(s.p99_ms)),
    ("p99 vs stable", lambda s: NONE),
)


def _not_judged(row: tuple[str, Callable[[Side], str]], figures: Figures) -> Check:
    metric, show = row
    return Check(metric, show(figures.canary), show(figures.stable), NONE, "skipped")


def _relative_skip(stable: Side, t: HealthThresholds) -> str:
    if stable.requests is None or not _finite(stable.requests) or stable.requests <= 0:
        return "relative checks skipped: stable had no requests"
    if _below(stable.requests, t.min_requests):
        return (
            f"relative checks skipped: stable had only {_count(stable.requests)} requests,"
            f" fewer than {t.min_requests}"
        )
    return ""


# Comparisons: a value exactly at its threshold (give or take float rounding) passes.


def _above(value: float, limit: float) -> bool:
    return value > limit and not math.isclose(value, limit, rel_tol=_TOLERANCE)


def _below(value: float, limit: float) -> bool:
    return value < limit and not math.isclose(value, limit, rel_tol=_TOLERANCE)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _is_nan(value: float | None) -> bool:
    return value is not None and math.isnan(value)


# Formatting


def _number(value: float) -> str:
    """One decimal, or two when one would hide the difference (98.96, not 99.0)."""
    one = f"{value:.1f}"
    return one if math.isclose(float(one), value, abs_tol=_TOLERANCE) else f"{value:.2f}"


def _signed(value: float, show: Callable[[float], str]) -> str:
    return f"+{show(value)}" if value >= 0 else f"−{show(-value)}"


def _percent(value: float | None) -> str:
    return NONE if value is None else f"{_number(value)}%"


def _ms(value: float | None) -> str:
    if value is None or _is_nan(value):
        return NONE
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.0f} ms" if value == round(value) else f"{_number(value)} ms"


def _count(value: float | None) -> str:
    return NONE if value is None or not _finite(value) else f"{value:,.0f}"


def _requests(side: Side) -> str:
    if side.requests is None or not _finite(side.requests):
        return NONE
    return f"{_count(side.requests)} ({_count(side.errors or 0.0)} 5xx)"


def _over(figures: Figures) -> str:
    if not figures.window_s:
        return ""
    return f" in the last {duration(timedelta(seconds=figures.window_s))}"
