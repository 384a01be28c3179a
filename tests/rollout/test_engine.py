"""The engine against real Redis and the sandbox API server, driven event by event."""

from __future__ import annotations

import pytest

from bot.mesh.kube import KubeMesh
from bot.rollout.engine import Engine, NoActiveRollout
from bot.rollout.model import (
    ApplyWeight,
    Audit,
    Phase,
    Promote,
    Rollback,
    StepDue,
    StepPlan,
    Write,
)
from bot.rollout.ports import Owner
from bot.rollout.traffic import KubeTraffic
from bot.rollout.transitions import InvalidTransition
from bot.store.errors import Fenced, StoreUnavailable
from bot.store.redis_store import RolloutStore, connect
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.redis_server import RedisServer

from .conftest import Clock, Recorder, canary_weights, live_weights

STEPS = StepPlan(weights=(10, 50, 100), interval_s=30)


def start(engine: Engine) -> str:
    return engine.start(
        namespace="default", vs="weather", to=None, steps=STEPS, actor="U1", channel="C1"
    ).id


def drive(engine: Engine, clock: Clock, rollout_id: str) -> None:
    """Fire each step when it falls due, as the scheduler would, until the rollout ends."""
    for _ in range(10):
        rollout = engine.store.load(rollout_id)
        if not rollout.active:
            return
        clock.advance(STEPS.interval_s)
        engine.handle(rollout_id, StepDue(step=rollout.step))
    raise AssertionError("the rollout did not finish")


def test_a_staged_rollout_walks_every_step_once_then_promotes(
    engine: Engine, cluster: SandboxApiServer, clock: Clock, notes: Recorder
) -> None:
    rollout_id = start(engine)
    assert live_weights(cluster) == [90, 10]  # the seed already had 10%: nothing to write
    drive(engine, clock, rollout_id)
    final = engine.store.load(rollout_id)
    assert final.phase is Phase.PROMOTED and final.pending == ()
    assert canary_weights(cluster) == [50, 100, None]  # 10 was live; None: the finalize patch
    assert live_weights(cluster) == [100]  # only v2 is left, and it is the stable subset now
    actions = [e.action for e in engine.store.history("default", "weather")]
    assert actions == ["start", "step", "step", "promote"]
    assert notes.events()[0] == "started" and notes.events()[-1] == "promoted"
    assert engine.store.active_for("default", "weather") is None


def test_a_crash_between_effects_is_finished_on_recovery(
    engine: Engine, cluster: SandboxApiServer, store: RolloutStore, clock: Clock
) -> None:
    rollout = store.load(start(engine))
    # Decide the next step and record it, as a process would right before dying.
    intent = rollout.model_copy(
        update={
            "pending": (
                ApplyWeight(weight=50, previous=10, step=1, guard=True),
                Audit(action="step", actor="canary-bot", weight_before=10, weight_after=50),
            ),
        }
    )
    saved = store.save(intent, expected_version=rollout.version)
    assert canary_weights(cluster) == []
    recovered = engine.recover(saved)
    assert recovered.pending == ()
    assert canary_weights(cluster) == [50]
    engine.recover(recovered)  # nothing left: a second recovery does nothing
    assert canary_weights(cluster) == [50]
    assert [e.action for e in store.history("default", "weather")] == ["start", "step"]


def test_an_effect_that_ran_before_the_crash_is_not_applied_twice(
    engine: Engine, cluster: SandboxApiServer, store: RolloutStore
) -> None:
    rollout = store.load(start(engine))
    effect = ApplyWeight(weight=50, previous=10, step=1, guard=True)
    planned = engine.traffic.plan(rollout.target, effect, Owner("w1", rollout.id))
    writing = Write(id="w1", weight=50, step=1, against=planned.against)
    intent = rollout.model_copy(update={"pending": (effect,), "writing": writing})
    saved = store.save(intent, expected_version=rollout.version)
    engine.traffic.write(planned)  # sent, then the process died before recording it
    recovered = engine.recover(saved)
    assert canary_weights(cluster) == [50]
    assert (recovered.weight, recovered.step, recovered.writing) == (50, 1, None)


def test_a_hand_edit_of_the_weights_pauses_the_rollout(
    engine: Engine, cluster: SandboxApiServer, clock: Clock, notes: Recorder
) -> None:
    rollout_id = start(engine)
    cluster.mutate(
        "default",
        "virtualservices",
        "weather",
        lambda vs: [
            vs["spec"]["http"][0]["route"][0].update(weight=70),
            vs["spec"]["http"][0]["route"][1].update(weight=30),
        ],
    )
    clock.advance(30)
    paused = engine.handle(rollout_id, StepDue(step=0))
    assert paused.phase is Phase.PAUSED
    assert "the canary has 30% where the bot set 10%" in paused.reason
    assert live_weights(cluster) == [70, 30]  # not overwritten
    assert canary_weights(cluster) == []
    drift = [m for _, m in notes.messages if m.event == "drift"]
    assert drift and "30%" in drift[0].text and "10%" in drift[0].text


def test_rollback_is_one_guarded_patch_and_ends_the_rollout(
    engine: Engine, cluster: SandboxApiServer, clock: Clock
) -> None:
    rollout_id = start(engine)
    clock.advance(30)
    engine.handle(rollout_id, StepDue(step=0))
    cluster.clear_log()
    done = engine.act("default", "weather", Rollback(actor="U2"))
    assert (done.phase, done.pending) == (Phase.ROLLED_BACK, ())
    assert live_weights(cluster) == [100, 0]
    methods = [r.method for r in cluster.requests]
    assert methods.count("PATCH") == 1
    with pytest.raises(InvalidTransition, match="it is finished"):
        engine.handle(rollout_id, Promote(actor="U2"))


def test_commands_for_a_service_without_a_rollout_say_how_to_start(engine: Engine) -> None:
    with pytest.raises(NoActiveRollout, match="weather has no rollout going on"):
        engine.act("default", "weather", Rollback(actor="U2"))


def test_a_second_rollout_on_the_same_service_is_refused(engine: Engine) -> None:
    start(engine)
    with pytest.raises(InvalidTransition, match="already has rollout"):
        start(engine)


def test_a_deposed_leader_cannot_take_a_step(
    engine: Engine, cluster: SandboxApiServer, store: RolloutStore, clock: Clock
) -> None:
    rollout_id = start(engine)
    store.redis.set("canary:leader:token", 7)
    clock.advance(30)
    with pytest.raises(Fenced):
        engine.handle(rollout_id, StepDue(step=0), token=6)
    assert canary_weights(cluster) == []
    assert store.load(rollout_id).pending == ()


def test_with_redis_down_no_write_happens_without_recorded_intent(
    cluster: SandboxApiServer, clock: Clock, notes: Recorder, tmp_path: object
) -> None:
    with RedisServer(persist_dir=tmp_path) as redis_server:  # type: ignore[arg-type]
        store = RolloutStore(connect(redis_server.url, timeout=0.5))
        engine = Engine(
            store=store,
            traffic=KubeTraffic(KubeMesh(api_client_for(cluster.url))),
            notifier=notes,
            clock=clock,
        )
        rollout_id = start(engine)
        redis_server.stop()
        clock.advance(30)
        with pytest.raises(StoreUnavailable, match="cannot be reached"):
            engine.handle(rollout_id, StepDue(step=0))
        assert canary_weights(cluster) == []
        redis_server.start()
        engine.handle(rollout_id, StepDue(step=0))
        assert canary_weights(cluster) == [50]


def test_an_audit_written_just_before_a_crash_is_not_written_again(
    engine: Engine, store: RolloutStore
) -> None:
    rollout = store.load(start(engine))
    intent = rollout.model_copy(
        update={"pending": (Audit(action="pause", actor="U1", weight_before=10, weight_after=10),)}
    )
    saved = store.save(intent, expected_version=rollout.version)
    engine._audit(saved, saved.pending[0])  # ran, then the process died
    engine.recover(saved)
    assert [e.action for e in store.history("default", "weather")] == ["start", "pause"]
