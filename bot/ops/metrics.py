"""The bot's own metrics, for Prometheus (`/metrics`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.rollout.model import ApplyWeight, Audit, Effect, Verdict

ROLLBACK_CAUSES = {
    "rollback": "manual",
    "auto-rollback": "health",
    "abort": "abort",
    "denied": "denied",
}
FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """One registry per bot, so tests and several bots in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.commands = Counter(
            "canary_commands",
            "Slash commands and buttons, by verb and outcome",
            ["verb", "outcome"],
            registry=r,
        )
        self.ack_seconds = Histogram(
            "canary_ack_seconds", "Time to answer Slack's request", buckets=FAST, registry=r
        )
        self.steps = Counter("canary_steps_applied", "Rollout steps applied", registry=r)
        self.rollbacks = Counter("canary_rollbacks", "Rollbacks, by cause", ["cause"], registry=r)
        self.verdicts = Counter(
            "canary_health_verdicts", "Health check outcomes", ["outcome"], registry=r
        )
        self.leader = Gauge("canary_leader", "1 while this replica drives the steps", registry=r)
        self.kube_seconds = Histogram(
            "canary_kube_request_seconds",
            "Kubernetes API calls",
            ["verb"],
            buckets=FAST,
            registry=r,
        )
        self.kube_errors = Counter(
            "canary_kube_errors", "Kubernetes API errors, by status", ["status"], registry=r
        )
        self.prometheus_seconds = Histogram(
            "canary_prometheus_query_seconds", "Prometheus queries", buckets=FAST, registry=r
        )
        self.prometheus_errors = Counter(
            "canary_prometheus_errors", "Failed Prometheus queries", registry=r
        )

    def effect_done(self, effect: Effect) -> None:
        if isinstance(effect, Audit) and effect.action == "step":
            self.steps.inc()
        elif isinstance(effect, Audit) and effect.action in ROLLBACK_CAUSES:
            self.rollbacks.labels(ROLLBACK_CAUSES[effect.action]).inc()
        elif isinstance(effect, ApplyWeight):
            pass  # counted through the audit entry that follows it

    def verdict(self, verdict: Verdict) -> None:
        self.verdicts.labels(verdict.outcome).inc()

    def kube_call(self, verb: str, seconds: float, status: int | None) -> None:
        self.kube_seconds.labels(verb).observe(seconds)
        if status is not None and status >= 400:
            self.kube_errors.labels(str(status)).inc()

    def prometheus_query(self, seconds: float, ok: bool) -> None:
        self.prometheus_seconds.observe(seconds)
        if not ok:
            self.prometheus_errors.inc()

    def exposition(self) -> tuple[int, str, str]:
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry).decode()
