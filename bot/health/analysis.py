"""The sequential judge's Health port: two Prometheus queries over the step so far, one verdict.

Query 1 counts requests per version and response class (as `HealthCheck` does) and says when
Prometheus last scraped each version (`newest_sample`: the analyst times its next look after the
next scrape), query 2 the cumulative latency buckets per version; the p99 is computed from the
buckets as `histogram_quantile` would. Each custom check in the thresholds costs one more query
once the standard rows pass. The window starts when the check first saw the step (the step's
start, from its schedule), so every look of a step sees the same growing sample, which is what
the judge's anytime-valid tests need; it is at least `min_window` so that Prometheus has two
scrapes in it, but never reaches back before the evidence the rollout carries from its passed
steps was judged: those requests are in it already. As with `HealthCheck`, nothing that stops a
check from being decided raises into the engine: it is an inconclusive verdict that says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from bot.health import sequential
from bot.health.check import ERROR_CLASS, HealthCheck, QueryClient, vs_name
from bot.health.client import PrometheusError, Vector
from bot.health.custom import custom_values
from bot.health.promql import (
    DEFAULT_REPORTER,
    DEFAULT_VERSION_LABEL,
    NEWEST_LABEL,
    Subject,
    UnsafeLabel,
    latency_buckets,
    requests_and_newest,
)
from bot.health.sequential import Counts
from bot.health.verdict import custom_check, inconclusive, outcome
from bot.rollout.model import Rollout, Target, Verdict
from policies.model import HealthThresholds

MIN_WINDOW = timedelta(seconds=30)  # two scrapes at Prometheus' usual 15 s
REMEMBERED = 10_000  # step starts kept; more are forgotten at once (then read from schedules)
Thresholds = Callable[[Target], HealthThresholds]


class SequentialCheck:
    """`check(rollout, now) -> Verdict` by the sequential judge; `thresholds` per target;
    `labels` are matchers every query carries, as `HealthCheck`'s."""

    def __init__(
        self,
        client: QueryClient,
        thresholds: Thresholds | HealthThresholds | None = None,
        *,
        service: Callable[[Target], str] = vs_name,
        reporter: str = DEFAULT_REPORTER,
        version_label: str = DEFAULT_VERSION_LABEL,
        min_window: timedelta = MIN_WINDOW,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        fixed = thresholds if isinstance(thresholds, HealthThresholds) else HealthThresholds()
        self.thresholds: Thresholds = thresholds if callable(thresholds) else lambda _: fixed
        self.client, self.min_window = client, min_window
        self._subjects = HealthCheck(
            client, version_label=version_label, service=service, reporter=reporter, labels=labels
        )
        self._began: dict[tuple[str, int, int], datetime] = {}

    def check(self, rollout: Rollout, now: datetime) -> Verdict:
        try:
            subject = self.subject(rollout.target)
        except UnsafeLabel as e:
            return inconclusive(f"health check not run: {e}", at=now, step=rollout.step)
        window = self.window(rollout, now)
        if window <= timedelta(0):
            note = "no data yet: the step's data begins after the carried evidence's"
            return inconclusive(note, at=now, step=rollout.step)
        try:
            canary, stable = self.counts(subject, window, now)
        except PrometheusError as e:
            return inconclusive(f"no health data: {e}", at=now, step=rollout.step)
        thresholds = self.thresholds(rollout.target)
        verdict = sequential.judge(
            canary,
            stable,
            thresholds,
            at=now,
            step=rollout.step,
            carried=rollout.evidence,
            window_s=window.total_seconds(),
        ).model_copy(update={"data_at": canary.scraped_at})
        if not thresholds.checks or verdict.outcome != "pass":
            return verdict
        return self._custom(verdict, thresholds, subject, window, now)

    def subject(self, target: Target) -> Subject:
        return self._subjects.subject(target)

    def window(self, rollout: Rollout, now: datetime) -> timedelta:
        """Since the step began (as first seen: a retried step keeps its start), at least
        `min_window`, and within what the carried evidence has not counted."""
        if len(self._began) >= REMEMBERED:
            self._began.clear()
        scheduled = rollout.next_step_at or now
        began = self._began.setdefault(
            (rollout.id, rollout.step, rollout.weight), scheduled - rollout.steps.interval
        )
        window = max(now - began, self.min_window)
        counted = rollout.evidence.through
        if counted is None:
            return window
        second = timedelta(seconds=1)  # queries round their windows up to whole seconds
        return min(window, (now - counted) // second * second)

    def counts(self, subject: Subject, window: timedelta, now: datetime) -> tuple[Counts, Counts]:
        """The canary's and stable's counts over the window, with when each was last scraped
        (`newest_sample` rides along with the requests: still two queries)."""
        requests = self.client.query(requests_and_newest(subject, window), at=now)
        if subject.protocol == "tcp":  # connections: no request latency to compare
            buckets: Vector = {}
        else:
            buckets = self.client.query(latency_buckets(subject, window), at=now)
        label = subject.version_label
        return (
            counts_of(subject.canary, label, requests, buckets),
            counts_of(subject.stable, label, requests, buckets),
        )

    def _custom(
        self,
        verdict: Verdict,
        thresholds: HealthThresholds,
        subject: Subject,
        window: timedelta,
        now: datetime,
    ) -> Verdict:
        values = custom_values(
            thresholds.checks, self.client, subject=subject, window=window, now=now
        )
        rows = [custom_check(c, values[c.name]) for c in thresholds.checks]
        result = outcome(rows)
        update: dict[str, object] = {"rows": (*verdict.rows, *(r.row for r in rows))}
        if result != "pass":
            notes = "; ".join(r.note for r in rows if r.status == result)
            update |= {"outcome": result, "summary": notes}
        return verdict.model_copy(update=update)


def counts_of(version: str, label: str, requests: Vector, buckets: Vector) -> Counts:
    """One version's counts from the two queries' answers."""
    mine = [(dict(labels), value) for labels, value in requests.items()]
    by_class = {
        labels.get("response_class", ""): value
        for labels, value in mine
        if labels.get(label) == version and NEWEST_LABEL not in labels
    }
    cumulative = tuple(
        sorted(
            (float(dict(labels)["le"]), value)
            for labels, value in buckets.items()
            if dict(labels).get(label) == version and "le" in dict(labels)
        )
    )
    return Counts(
        requests=sum(by_class.values()),
        errors=by_class.get(ERROR_CLASS, 0.0),
        buckets=cumulative,
        scraped_at=scraped_at(version, label, requests),
    )


def scraped_at(version: str, label: str, requests: Vector) -> datetime | None:
    """When Prometheus last scraped the version's counters, from `newest_sample`'s series."""
    for labels, value in requests.items():
        named = dict(labels)
        if NEWEST_LABEL in named and named.get(label) == version and math.isfinite(value):
            try:
                return datetime.fromtimestamp(value, tz=UTC)
            except (OverflowError, OSError, ValueError):  # no time at all: not known
                return None
    return None
