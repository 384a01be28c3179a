"""The fault campaign, fast: a few dozen seeded schedules on every run. `make chaos` runs
thousands and writes its figures to BENCHMARKS.md."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.rollout.model import Phase, Rollout, StepPlan, Target
from sandbox.redis_server import RedisServer
from tests.support.campaign import History, World, describe, run_schedule, violations

SCHEDULES = int(os.environ.get("CANARY_CAMPAIGN_SCHEDULES", "24"))


@pytest.fixture(scope="module")
def world(redis_server: RedisServer) -> Iterator[World]:
    built = World(redis_server.url)
    yield built
    built.close()


def test_every_guarantee_holds_over_randomized_fault_schedules(world: World) -> None:
    failures = []
    for seed in range(SCHEDULES):
        history, problems = run_schedule(world, seed)
        if problems:
            failures.append(describe(history, problems))
    assert not failures, "\n".join(failures)


def test_the_checker_catches_a_write_that_was_never_recorded(world: World) -> None:
    """The invariants are not vacuous: a weight written behind the bot's back, as a replica
    without the write path would, is reported."""
    history, problems = run_schedule(world, 7, length=6)
    assert problems == []
    forged = [r for r in history.requests if r.method == "PATCH" and r.succeeded]
    assert forged, "the schedule should have written something"
    body = forged[-1].body.replace(b'\\"write\\":\\"', b'\\"write\\":\\"forged')
    assert body != forged[-1].body
    history.requests[history.requests.index(forged[-1])] = replace(forged[-1], body=body)
    assert any("never recorded" in p for p in violations(history))


def test_the_checker_judges_the_rollout_created_last_not_the_save_that_returned_last() -> None:
    """Seed 3478's shape: a rollout rolled back to 0%, and a Redis reset delayed the reply to
    its last save until after a newer rollout had set 75% (live, and on its record). The live
    weight is the newer rollout's; nothing is wrong. A newer rollout whose record disagrees
    with what is live is still reported."""
    old, new = _record("old", 1, 10), _record("new", 1, 45)
    history = History(seed=3478, live=_vs(canary=75))
    history.versions = [
        (1.0, old),
        (2.0, old.model_copy(update={"version": 2, "weight": 0, "phase": Phase.ROLLED_BACK})),
        (3.0, new),
        (4.0, new.model_copy(update={"version": 2, "weight": 75})),
        (5.0, old.model_copy(update={"version": 2, "weight": 0, "phase": Phase.ROLLED_BACK})),
    ]
    assert violations(history) == []
    history.live = _vs(canary=45)
    assert violations(history) == ["record says 75% but 45% is live (new)"]


def _record(rollout_id: str, version: int, weight: int) -> Rollout:
    target = Target(namespace="default", vs="weather", stable="v1", canary="v2")
    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    return Rollout(
        id=rollout_id,
        target=target,
        steps=StepPlan(weights=(10, 100), interval_s=30),
        phase=Phase.PAUSED,
        step=-1,
        weight=weight,
        started_by="U1",
        created_at=now,
        updated_at=now,
        version=version,
    )


def _vs(canary: int) -> dict[str, object]:
    routes = [
        {"destination": {"host": "weather", "subset": "v1"}, "weight": 100 - canary},
        {"destination": {"host": "weather", "subset": "v2"}, "weight": canary},
    ]
    return {"spec": {"http": [{"route": routes}]}}
