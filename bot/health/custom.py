"""Custom checks from the policy: one PromQL template each, run after the standard check.

They cost one query each, on top of the standard two, and only where a policy declares them.
Every value that fills a template is validated and escaped first (`promql.render`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.health.check import QueryClient
from bot.health.client import PrometheusError
from bot.health.promql import Subject, TemplateError, render
from bot.rollout.model import Verdict
from policies.model import CustomCheck


def run_checks(
    verdict: Verdict,
    checks: Sequence[CustomCheck],
    client: QueryClient,
    *,
    subject: Subject,
    window: timedelta,
    now: datetime,
) -> Verdict:
    """The verdict with each custom check's figure added; a failed one fails it, one without
    data makes a pass inconclusive."""
    if not checks or verdict.outcome != "pass":
        return verdict
    figures, failures, unknown = dict(verdict.figures), [], []
    for check in checks:
        value = _value(check, client, subject, window, now)
        figures[f"check_{check.name}"] = value
        if value is None:
            unknown.append(check.name)
        elif (check.max is not None and value > check.max) or (
            check.min is not None and value < check.min
        ):
            bound = f"≤ {check.max:g}" if check.max is not None else f"≥ {check.min:g}"
            failures.append(f"{check.name} is {value:g}, not {bound}")
    if failures:
        return verdict.model_copy(
            update={"outcome": "fail", "figures": figures, "summary": "; ".join(failures)}
        )
    if unknown:
        return verdict.model_copy(
            update={
                "outcome": "inconclusive",
                "figures": figures,
                "summary": f"no data for custom checks {', '.join(unknown)}",
            }
        )
    return verdict.model_copy(update={"figures": figures})


def _value(
    check: CustomCheck, client: QueryClient, subject: Subject, window: timedelta, now: datetime
) -> float | None:
    try:
        result = client.query(render(check.query, subject, window), at=now)
    except (PrometheusError, TemplateError):
        return None
    values = [v for v in result.values() if not math.isnan(v)]
    return values[0] if len(values) == 1 else None
