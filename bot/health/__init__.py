"""Canary health from Prometheus: PromQL builders, a client, verdicts, the engine's port."""

from bot.health.check import HealthCheck
from bot.health.client import (
    PrometheusClient,
    PrometheusError,
    PrometheusQueryError,
    PrometheusUnreachable,
)
from bot.health.promql import Subject, TemplateError, UnsafeLabel
from bot.health.verdict import Figures, Side, judge

__all__ = [
    "Figures",
    "HealthCheck",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusQueryError",
    "PrometheusUnreachable",
    "Side",
    "Subject",
    "TemplateError",
    "UnsafeLabel",
    "judge",
]
