"""Each held step is looked at on its own interval: the rollout's (`start … analysis 10s`),
else its service's (the policy's `analysis`), else the bot's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from bot.rollout.analysis import Analyst
from bot.rollout.model import StepPlan, Target

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OWN = {"fast": timedelta(seconds=5), "slow": timedelta(seconds=30), "quiet": timedelta(0)}
# Rollouts started with their own interval: `asked-3s` over a policy that says 30 s,
# `asked-off` over the bot's 10 s.
ASKED = {"asked-3s": 3, "asked-off": 0}


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
        vs = "slow" if rollout_id == "asked-3s" else rollout_id
        target = Target(namespace="default", vs=vs, stable="v1", canary="v2")
        steps = StepPlan(interval_s=300, analysis_s=ASKED.get(rollout_id))
        return SimpleNamespace(target=target, steps=steps)

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


def test_a_rollout_started_with_its_own_interval_is_looked_at_on_it() -> None:
    now = [T0]
    held = T0 + timedelta(minutes=5)
    analyst = Looking({"asked-3s": held, "asked-off": held, "slow": held}, now)
    for second in range(0, 31):
        now[0] = T0 + timedelta(seconds=second)
        analyst.run()

    def seconds(rollout: str) -> list[int]:
        return [at for looked, at in analyst.looked if looked == rollout]

    assert seconds("asked-3s") == list(range(0, 31, 3))  # its service's policy says 30 s
    assert seconds("slow") == [0, 30]
    assert seconds("asked-off") == []  # `analysis off`: judged only when its step falls due
