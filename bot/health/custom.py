"""Custom checks from the policy: one PromQL template each, run after the standard check.

They cost one query each, on top of the standard two, and only where the thresholds declare
them and the standard checks passed. Every value that fills a template is validated and escaped
first (`promql.render`). Their values are judged in `verdict.custom`, as rows of the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.health.client import PrometheusError
from bot.health.promql import Subject, TemplateError, render
from policies.model import CustomCheck

if TYPE_CHECKING:  # check.py runs these checks, so it cannot be imported from here at run time
    from bot.health.check import QueryClient


def custom_values(
    checks: Sequence[CustomCheck],
    client: QueryClient,
    *,
    subject: Subject,
    window: timedelta,
    now: datetime,
) -> dict[str, float | None]:
    """Each check's single value, or None when its query failed or did not give exactly one."""
    return {check.name: _value(check, client, subject, window, now) for check in checks}


def _value(
    check: CustomCheck, client: QueryClient, subject: Subject, window: timedelta, now: datetime
) -> float | None:
    try:
        result = client.query(render(check.query, subject, window), at=now)
    except (PrometheusError, TemplateError):
        return None
    found = [v for v in result.values() if not math.isnan(v)]
    return found[0] if len(found) == 1 else None
