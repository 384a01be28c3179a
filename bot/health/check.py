"""The engine's Health port: two Prometheus queries, one verdict.

Query 1 counts requests per version and response class, query 2 asks for each version's p99;
both are evaluated at the same instant (`now`) so they describe the same window. When those
pass, each custom check in the thresholds costs one more query (`custom`). Anything that
stops the check from being decided (a Prometheus error, a name that is unsafe in PromQL) gives
an inconclusive verdict that says why: it never promotes, and it never raises into the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

from bot.health.client import PrometheusError, Vector
from bot.health.custom import custom_values
from bot.health.promql import (
    DEFAULT_REPORTER,
    DEFAULT_VERSION_LABEL,
    SERVICE_LABEL,
    Subject,
    UnsafeLabel,
    p99_latency,
    requests_by_class,
    window_for,
)
from bot.health.verdict import (
    Figures,
    Side,
    conclude,
    custom_check,
    evaluate,
    inconclusive,
    outcome,
)
from bot.rollout.model import Rollout, Target, Verdict
from policies.model import HealthThresholds

ERROR_CLASS = "5xx"


class QueryClient(Protocol):
    def query(self, promql: str, at: datetime | None = None) -> Vector: ...


def vs_name(target: Target) -> str:
    """The Kubernetes Service behind a VirtualService, when it has the VirtualService's name."""
    return target.vs


class HealthCheck:
    """`check(rollout, now) -> Verdict` from two Prometheus queries, and one per custom check.

    `service` maps a rollout's target to the Kubernetes Service name that Istio reports as
    `destination_service_name` (the VirtualService's name by default). `window` overrides the
    look-back, which is otherwise the step interval and at least a minute. `labels` are
    matchers every query carries: a wave cluster's `cluster="prod-eu"` in a shared Prometheus.
    """

    def __init__(
        self,
        client: QueryClient,
        thresholds: HealthThresholds | None = None,
        version_label: str = DEFAULT_VERSION_LABEL,
        window: timedelta | None = None,
        *,
        service: Callable[[Target], str] = vs_name,
        reporter: str = DEFAULT_REPORTER,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.thresholds = thresholds or HealthThresholds()
        self.version_label, self.window, self.service = version_label, window, service
        self.reporter = reporter
        self.labels = tuple((labels or {}).items())

    def check(self, rollout: Rollout, now: datetime) -> Verdict:
        try:
            subject = self.subject(rollout.target)
        except UnsafeLabel as e:
            return inconclusive(f"health check not run: {e}", at=now, step=rollout.step)
        window = self.window or window_for(rollout.steps.interval)
        try:
            figures = self.figures(subject, window, now)
        except PrometheusError as e:
            return inconclusive(f"no health data: {e}", at=now, step=rollout.step)
        checks = evaluate(figures, self.thresholds)
        if self.thresholds.checks and outcome(checks) == "pass":
            figures = replace(figures, custom=self._query_custom(subject, window, now))
            checks += [custom_check(c, figures.custom[c.name]) for c in self.thresholds.checks]
        return conclude(checks, figures, at=now, step=rollout.step)

    def subject(self, target: Target) -> Subject:
        if target.by == "host":  # two Services: telemetry names them, not a version label
            return Subject(
                namespace=target.namespace,
                service=target.stable,
                stable=target.stable,
                canary=target.canary,
                version_label=SERVICE_LABEL,
                reporter=target.reporter or self.reporter,
                protocol=target.protocol,
                labels=self.labels,
            )
        return Subject(
            namespace=target.namespace,
            service=self.service(target),
            stable=target.stable_version or target.stable,  # as telemetry names them
            canary=target.canary_version or target.canary,
            version_label=self.version_label,
            reporter=target.reporter or self.reporter,
            protocol=target.protocol,
            labels=self.labels,
        )

    def _query_custom(
        self, subject: Subject, window: timedelta, now: datetime
    ) -> dict[str, float | None]:
        checks, client = self.thresholds.checks, self.client
        return custom_values(checks, client, subject=subject, window=window, now=now)

    def figures(self, subject: Subject, window: timedelta, now: datetime) -> Figures:
        requests = self.client.query(requests_by_class(subject, window), at=now)
        p99 = self.client.query(p99_latency(subject, window), at=now)
        return figures_from(requests, p99, subject, window)


def figures_from(requests: Vector, p99: Vector, subject: Subject, window: timedelta) -> Figures:
    """Split the two queries' results into the canary's and stable's numbers."""

    def side(version: str) -> Side:
        return _side(version, subject.version_label, requests, p99)

    return Figures(
        canary=side(subject.canary),
        stable=side(subject.stable),
        window_s=window.total_seconds(),
    )


def _side(version: str, label: str, requests: Vector, p99: Vector) -> Side:
    by_class = {
        dict(labels).get("response_class", ""): value
        for labels, value in requests.items()
        if dict(labels).get(label) == version
    }
    latencies = [value for labels, value in p99.items() if dict(labels).get(label) == version]
    return Side(
        requests=sum(by_class.values()) if by_class else None,
        errors=by_class.get(ERROR_CLASS, 0.0) if by_class else None,
        p99_ms=latencies[0] if latencies else None,
    )
