"""The sequential judge's carried evidence in the rollout's record: taken from the passing
check that lets a step advance, once, and kept in Redis across a restart or failover (the
engine against real Redis and the sandbox API server); records older than it load empty."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime

import pytest

from bot.health.sequential import Counts, judge
from bot.mesh.kube import KubeMesh
from bot.rollout.engine import Engine
from bot.rollout.model import (
    NO_EVIDENCE,
    ApplyWeight,
    HealthResult,
    Phase,
    Rollout,
    StepDue,
    StepPlan,
    Target,
    Verdict,
)
from bot.rollout.traffic import KubeTraffic
from bot.rollout.transitions import transition
from bot.store.redis_store import Keys, RolloutStore, connect
from policies.model import HealthThresholds
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for

from .conftest import Clock, Recorder

STEPS = StepPlan(weights=(10, 50, 100), interval_s=300, analysis_s=0)
# A canary at 0.45 % 5xx against stable's 0.1 %: each step alone about 60 times more likely
# if it is worse, short of the 400 (4 tests / α) that fails a test; two steps together, 3,600.
STABLE = Counts(20_000, 20)
CANARY = Counts(2_000, 9)


class Judged:
    """The sequential judge on the same counts every step, with the rollout's carried
    evidence, as SequentialCheck judges Prometheus's."""

    def check(self, rollout: Rollout, now: datetime) -> Verdict:
        return judge(
            CANARY,
            STABLE,
            HealthThresholds(),
            at=now,
            step=rollout.step,
            carried=rollout.evidence,
        )


@pytest.fixture
def replicas(
    cluster: SandboxApiServer, redis_url: str, clock: Clock
) -> Iterator[tuple[Engine, Engine]]:
    """Two replicas of the bot, each with its own Redis connection and Kubernetes client."""
    meshes = [KubeMesh(api_client_for(cluster.url), sleep=lambda _: None) for _ in range(2)]
    engines = [
        Engine(
            store=RolloutStore(connect(redis_url)),
            traffic=KubeTraffic(mesh),
            notifier=Recorder(),
            clock=clock,
            health=Judged(),
        )
        for mesh in meshes
    ]
    yield engines[0], engines[1]
    for mesh in meshes:
        mesh.close()


def start(engine: Engine) -> Rollout:
    return engine.start(
        namespace="default", vs="weather", to=None, steps=STEPS, actor="U1", channel="C1"
    )


def step_due(engine: Engine, clock: Clock, rollout_id: str) -> Rollout:
    rollout = engine.store.load(rollout_id)
    clock.advance(STEPS.interval_s)
    return engine.handle(rollout_id, StepDue(step=rollout.step))


def test_evidence_carried_by_one_replica_fails_the_next_step_on_another(
    replicas: tuple[Engine, Engine], clock: Clock
) -> None:
    one, other = replicas
    rollout = start(one)
    assert rollout.evidence == NO_EVIDENCE

    passed = step_due(one, clock, rollout.id)
    assert passed.phase is Phase.PROGRESSING and passed.step == 1
    assert passed.evidence.steps == 1
    assert passed.evidence.through == passed.last_verdict.at  # type: ignore[union-attr]
    assert passed.evidence.log_e == passed.last_verdict.evidence  # type: ignore[union-attr]

    loaded = other.store.load(rollout.id)  # another replica, its own connection
    assert loaded.evidence == passed.evidence
    alone = judge(CANARY, STABLE, HealthThresholds(), at=clock(), step=1)
    assert alone.outcome == "pass"  # the second step's data alone would pass it too

    ended = step_due(other, clock, rollout.id)
    assert ended.phase is Phase.FAILED and ended.weight == 0
    assert "over this step and the one before" in ended.reason
    assert ended.evidence == passed.evidence  # a failing check carries nothing


def test_a_record_older_than_carried_evidence_loads_with_none_and_carries_from_then(
    replicas: tuple[Engine, Engine], clock: Clock, redis_url: str
) -> None:
    one, other = replicas
    rollout = start(one)
    client = connect(redis_url)
    key = Keys().rollout(rollout.id)
    old = json.loads(client.hget(key, "json"))  # type: ignore[arg-type]
    del old["evidence"]
    client.hset(key, "json", json.dumps(old))

    loaded = other.store.load(rollout.id)
    assert loaded.evidence == NO_EVIDENCE

    passed = step_due(other, clock, rollout.id)
    assert passed.evidence.steps == 1
    assert one.store.load(rollout.id).evidence == passed.evidence
    client.close()


def test_an_old_verdict_without_evidence_loads_and_carries_nothing() -> None:
    old = {"outcome": "pass", "at": "2026-11-22T03:05:00Z", "step": 0, "summary": "healthy"}
    verdict = Verdict.model_validate_json(json.dumps(old))
    assert verdict.evidence == {}
    assert NO_EVIDENCE.carry(verdict) == NO_EVIDENCE


# The transitions: only the check that lets a step advance carries, and only once


def held(clock: Clock) -> Rollout:
    return Rollout(
        id="r1",
        target=Target(namespace="default", vs="weather", stable="v1", canary="v2"),
        steps=STEPS,
        phase=Phase.PROGRESSING,
        step=0,
        weight=10,
        started_by="U1",
        created_at=clock(),
        updated_at=clock(),
        next_step_at=None,  # the step fell due and its check runs
    )


def test_the_passing_check_of_a_step_carries_its_evidence_once(clock: Clock) -> None:
    rollout = held(clock)
    clock.advance(300)
    verdict = Judged().check(rollout, clock())
    moved, effects = transition(rollout, HealthResult(verdict=verdict), clock())
    assert effects[0] == ApplyWeight(weight=50, previous=10, step=1, guard=True)
    assert moved.evidence == NO_EVIDENCE.carry(verdict) and moved.evidence.steps == 1
    # the record's step moves once the weight is live: the same result delivered again
    # before then is still about this step, and adds nothing
    again, _ = transition(moved, HealthResult(verdict=verdict), clock())
    assert again.evidence == moved.evidence


@pytest.mark.parametrize("outcome", ["inconclusive", "fail"])
def test_a_check_that_does_not_pass_carries_nothing(clock: Clock, outcome: str) -> None:
    rollout = held(clock)
    clock.advance(300)
    verdict = Judged().check(rollout, clock()).model_copy(update={"outcome": outcome})
    after, _ = transition(rollout, HealthResult(verdict=verdict), clock())
    assert after.evidence == NO_EVIDENCE
    assert math.isfinite(sum(verdict.evidence.values()))
