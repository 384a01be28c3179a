"""The analyst's tick: which held steps it looks at, and how often."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from bot.rollout.analysis import Analyst
from bot.rollout.model import StepPlan

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Looking(Analyst):
    def __init__(self, schedule: dict[str, datetime], now: list[datetime]) -> None:
        held = SimpleNamespace(steps=StepPlan())  # no interval of its own: `every`
        store = SimpleNamespace(load=lambda rollout_id: held)
        engine: Any = SimpleNamespace(clock=lambda: now[0], store=store)
        super().__init__(engine, lambda until: schedule.items(), every=timedelta(seconds=10))
        self.looked: list[str] = []

    def look(self, rollout_id: str) -> None:  # type: ignore[override]
        self.looked.append(rollout_id)
        if rollout_id == "broken":
            raise RuntimeError("Prometheus said no")


def test_each_held_step_is_looked_at_once_per_interval_and_one_failure_stops_no_other() -> None:
    now = [T0]
    schedule = {"a": T0 + timedelta(minutes=5), "broken": T0 + timedelta(minutes=5)}
    analyst = Looking({**schedule, "due-now": T0}, now)
    for second in range(0, 25):
        now[0] = T0 + timedelta(seconds=second)
        analyst.run()
    assert analyst.looked.count("a") == 3  # at 0, 10 and 20 s
    assert analyst.looked.count("broken") == 3
    assert "due-now" not in analyst.looked  # its step falls due: the step's own check judges
