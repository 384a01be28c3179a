"""The fault campaign, fast: a few dozen seeded schedules on every run. `make chaos` runs
thousands and writes its figures to BENCHMARKS.md."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace

import pytest

from sandbox.redis_server import RedisServer
from tests.support.campaign import World, describe, run_schedule, violations

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
