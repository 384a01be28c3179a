"""Each service's held steps are looked at on its own interval (the policy's `analysis`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from bot.rollout.analysis import Analyst
from bot.rollout.model import Target

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OWN = {"fast": timedelta(seconds=5), "slow": timedelta(seconds=30), "quiet": timedelta(0)}


class Looking(Analyst):
    """Records its looks; each rollout id is its service's VirtualService."""

    def __init__(self, schedule: dict[str, datetime], now: list[datetime]) -> None:
        self.loads: list[str] = []
        store = SimpleNamespace(load=self._load)
        engine: Any = SimpleNamespace(clock=lambda: now[0], store=store)
        super().__init__(
            engine,
            lambda until: schedule.items(),
            every=timedelta(seconds=10),
            every_for=lambda target: OWN.get(target.vs),
        )
        self.looked: list[tuple[str, int]] = []
        self.now = now

    def _load(self, rollout_id: str) -> Any:
        self.loads.append(rollout_id)
        target = Target(namespace="default", vs=rollout_id, stable="v1", canary="v2")
        return SimpleNamespace(target=target)

    def look(self, rollout_id: str) -> None:  # type: ignore[override]
        self.looked.append((rollout_id, int((self.now[0] - T0).total_seconds())))


def test_two_services_are_looked_at_on_their_own_intervals() -> None:
    now = [T0]
    held = T0 + timedelta(minutes=5)
    analyst = Looking({"fast": held, "slow": held, "quiet": held, "unset": held}, now)
    for second in range(0, 61):
        now[0] = T0 + timedelta(seconds=second)
        analyst.run()

    def seconds(vs: str) -> list[int]:
        return [at for looked, at in analyst.looked if looked == vs]

    assert seconds("fast") == list(range(0, 61, 5))
    assert seconds("slow") == [0, 30, 60]
    assert seconds("unset") == list(range(0, 61, 10))  # no rule says: CANARY_ANALYSIS
    assert seconds("quiet") == []  # analysis: off, judged only when its step falls due
    assert sorted(analyst.loads) == ["fast", "quiet", "slow", "unset"]  # asked once per step
