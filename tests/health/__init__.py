"""Helpers shared by the health tests: a rollout to check and a Prometheus client double."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bot.health.client import Labels, Vector
from bot.rollout.model import Phase, Rollout, StepPlan, Target

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def make_rollout(
    *,
    namespace: str = "prod",
    vs: str = "weather",
    stable: str = "v1",
    canary: str = "v2",
    interval_s: int = 300,
) -> Rollout:
    return Rollout(
        id="r1",
        target=Target(namespace=namespace, vs=vs, stable=stable, canary=canary),
        steps=StepPlan(interval_s=interval_s),
        phase=Phase.PROGRESSING,
        step=1,
        weight=10,
        started_by="U123",
        created_at=NOW - timedelta(minutes=10),
        updated_at=NOW,
    )


def labels(**pairs: str) -> Labels:
    return tuple(sorted(pairs.items()))


class RecordingClient:
    """Answers queries from a script, in order, and records every query it was asked."""

    def __init__(self, *answers: Vector | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, datetime | None]] = []

    def query(self, promql: str, at: datetime | None = None) -> Vector:
        self.calls.append((promql, at))
        answer = self.answers.pop(0) if self.answers else {}
        if isinstance(answer, Exception):
            raise answer
        return answer


def table_rows(text: str) -> list[list[str]]:
    """The cells of a rendered health table's rows, below its header."""
    block = text.split("```")[1].strip("\n").splitlines()
    return [re.split(r"\s{2,}", line.strip()) for line in block[1:]]


def agrees(text: str) -> bool:
    """Whether the one-line verdict above a rendered table says what its rows say."""
    statuses = {row[-1] for row in table_rows(text)}
    said = next((s for s in ("fail", "inconclusive") if s in statuses), "pass")
    return f": {said} — " in text.splitlines()[0]
