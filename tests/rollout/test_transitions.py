"""Every transition of the rollout state machine, with a fixed clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bot.rollout.model import (
    Abort,
    ApplyWeight,
    ApprovalDenied,
    ApprovalGranted,
    Audit,
    CancelSchedule,
    CheckHealth,
    DriftDetected,
    HealthResult,
    Notify,
    Pause,
    Phase,
    Promote,
    Resume,
    Rollback,
    Schedule,
    SetWeight,
    StepDue,
    StepPlan,
    Verdict,
)
from bot.rollout.transitions import InvalidTransition, start, start_manual, transition
from tests.support.transitions import STEPS, T0, TARGET, at_step, landed, started


def kinds(effects: list[Any]) -> list[str]:
    return [e.kind for e in effects]


def verdict(outcome: str, step: int, summary: str = "") -> HealthResult:
    return HealthResult(verdict=Verdict(outcome=outcome, at=T0, step=step, summary=summary))


def test_start_applies_the_first_step_and_schedules_the_next() -> None:
    rollout, effects = start(
        rollout_id="r1", target=TARGET, steps=STEPS, actor="U1", channel="C1", live_weight=0, now=T0
    )
    assert (rollout.phase, rollout.step, rollout.weight) == (Phase.PROGRESSING, -1, 0)
    assert (landed((rollout, effects)).step, landed((rollout, effects)).weight) == (0, 10)
    assert rollout.next_step_at == T0 + timedelta(seconds=60)
    assert effects[0] == ApplyWeight(weight=10, previous=0, step=0, guard=True)
    assert effects[1] == Schedule(at=T0 + timedelta(seconds=60), step=0)
    assert kinds(effects) == ["apply", "schedule", "notify", "audit"]
    assert rollout.started_by == "U1" and rollout.channel == "C1"


def test_start_records_the_live_weight_as_the_previous_one() -> None:
    _, effects = start(
        rollout_id="r1",
        target=TARGET,
        steps=STEPS,
        actor="U1",
        channel=None,
        live_weight=30,
        now=T0,
    )
    assert effects[0] == ApplyWeight(weight=10, previous=30, step=0, guard=True)


def test_a_second_rollout_on_the_same_service_is_refused() -> None:
    with pytest.raises(InvalidTransition) as caught:
        start(
            rollout_id="r2",
            target=TARGET,
            steps=STEPS,
            actor="U2",
            channel=None,
            live_weight=0,
            now=T0,
            active=started(),
        )
    assert "weather already has rollout r1 (progressing, started by U1)" in str(caught.value)


def test_a_finished_rollout_does_not_block_a_new_one() -> None:
    done = started().model_copy(update={"phase": Phase.PROMOTED})
    rollout, _ = start(
        rollout_id="r2",
        target=TARGET,
        steps=STEPS,
        actor="U2",
        channel=None,
        live_weight=0,
        now=T0,
        active=done,
    )
    assert rollout.id == "r2"


def test_step_due_asks_for_a_health_check_first() -> None:
    rollout, effects = transition(at_step(0), StepDue(step=0), T0)
    assert effects == [CheckHealth(step=0)]
    assert rollout.next_step_at is None


@pytest.mark.parametrize("phase", [Phase.PAUSED, Phase.PROMOTED, Phase.PENDING_APPROVAL])
def test_step_due_outside_progressing_is_a_no_op(phase: Phase) -> None:
    rollout = at_step(0, phase)
    assert transition(rollout, StepDue(step=0), T0) == (rollout, [])


def test_a_repeated_step_due_is_a_no_op() -> None:
    checking, _ = transition(at_step(0), StepDue(step=0), T0)
    assert transition(checking, StepDue(step=0), T0) == (checking, [])
    assert transition(at_step(1), StepDue(step=0), T0) == (at_step(1), [])


def test_a_passing_check_moves_to_the_next_step() -> None:
    rollout, effects = transition(at_step(0), verdict("pass", 0), T0)
    assert (rollout.step, rollout.weight) == (0, 10)  # not a step taken until it is live
    assert (landed((rollout, effects)).step, landed((rollout, effects)).weight) == (1, 50)
    assert effects[0] == ApplyWeight(weight=50, previous=10, step=1, guard=True)
    assert kinds(effects) == ["apply", "notify", "schedule", "notify", "audit"]
    assert rollout.verdicts[-1].outcome == "pass"


def test_a_passing_check_at_100_promotes_and_finalizes() -> None:
    rollout, effects = transition(at_step(2), verdict("pass", 2), T0)
    assert rollout.phase is Phase.PROMOTED
    assert effects[0] == ApplyWeight(weight=100, previous=100, step=2, finalize=True)
    assert kinds(effects) == ["apply", "notify", "cancel", "notify", "audit"]


def test_a_check_for_another_step_is_ignored() -> None:
    rollout = at_step(1)
    assert transition(rollout, verdict("fail", 0), T0) == (rollout, [])


def test_one_failure_retries_the_step_later() -> None:
    rollout, effects = transition(at_step(1), verdict("fail", 1, "5% errors"), T0)
    assert (rollout.phase, rollout.failures, rollout.weight) == (Phase.PROGRESSING, 1, 50)
    assert effects[1] == Schedule(at=T0 + timedelta(seconds=60), step=1)
    assert "fail 5% errors" in effects[0].text


def test_failures_up_to_the_limit_roll_back_automatically() -> None:
    outcome = transition(at_step(1, failures=1), verdict("fail", 1, "5% errors"), T0)
    rollout, effects = outcome
    assert (rollout.phase, landed(outcome).weight) == (Phase.FAILED, 0)
    assert effects[0] == ApplyWeight(weight=0, previous=50)
    assert "2 failed health checks in a row at 50%: 5% errors" in rollout.reason
    assert kinds(effects) == ["apply", "notify", "cancel", "notify", "audit"]
    audit = effects[-1]
    assert isinstance(audit, Audit) and audit.action == "auto-rollback"


def test_a_failure_the_judge_stands_by_rolls_back_at_once() -> None:
    """A sequential judge's failure holds however often it looks: no second check is waited
    for, whatever the failure limit."""
    final = HealthResult(
        verdict=Verdict(outcome="fail", at=T0, step=1, summary="errors 4.1 % vs 0.2 %", final=True)
    )
    outcome = transition(at_step(1), final, T0)
    rollout, effects = outcome
    assert (rollout.phase, landed(outcome).weight) == (Phase.FAILED, 0)
    assert rollout.reason == "a failed health check at 50%: errors 4.1 % vs 0.2 %"
    assert effects[0] == ApplyWeight(weight=0, previous=50)
    audit = effects[-1]
    assert isinstance(audit, Audit) and audit.action == "auto-rollback"


def test_a_pass_resets_the_failure_count() -> None:
    rollout, _ = transition(at_step(0, failures=1, inconclusive=2), verdict("pass", 0), T0)
    assert (rollout.failures, rollout.inconclusive) == (0, 0)


def test_inconclusive_checks_up_to_the_limit_pause_and_ask_a_human() -> None:
    rollout, effects = transition(at_step(1), verdict("inconclusive", 1, "no canary traffic"), T0)
    assert rollout.phase is Phase.PROGRESSING and rollout.inconclusive == 1
    rollout, effects = transition(
        at_step(1, inconclusive=2), verdict("inconclusive", 1, "no canary traffic"), T0
    )
    assert rollout.phase is Phase.PAUSED and rollout.weight == 50
    assert "3 inconclusive health checks in a row" in rollout.reason
    assert "a human should look" in rollout.reason
    assert "apply" not in kinds(effects)  # never promotes, never moves traffic


def test_pause_cancels_the_schedule() -> None:
    rollout, effects = transition(at_step(1), Pause(actor="U2"), T0)
    assert rollout.phase is Phase.PAUSED and rollout.next_step_at is None
    assert kinds(effects) == ["cancel", "notify", "audit"]
    assert rollout.reason == "paused by U2"


def test_resume_schedules_the_next_check_now() -> None:
    paused = at_step(1, Phase.PAUSED, inconclusive=3)
    rollout, effects = transition(paused, Resume(actor="U2"), T0)
    assert rollout.phase is Phase.PROGRESSING and rollout.next_step_at == T0
    assert effects[0] == Schedule(at=T0, step=1)
    assert rollout.inconclusive == 0


def test_promote_skips_to_100_and_finalizes() -> None:
    outcome = transition(at_step(0), Promote(actor="U2"), T0)
    rollout, effects = outcome
    assert (rollout.phase, landed(outcome).weight) == (Phase.PROMOTED, 100)
    assert effects[0] == ApplyWeight(weight=100, previous=10, step=2, finalize=True)


@pytest.mark.parametrize("phase", [Phase.PROGRESSING, Phase.PAUSED, Phase.PENDING_APPROVAL])
def test_rollback_is_allowed_from_every_live_phase(phase: Phase) -> None:
    outcome = transition(at_step(1, phase), Rollback(actor="U3"), T0)
    rollout, effects = outcome
    assert (rollout.phase, landed(outcome).weight) == (Phase.ROLLED_BACK, 0)
    assert effects[0] == ApplyWeight(weight=0, previous=50)  # the fast path comes first
    assert not effects[0].guard  # a human's rollback always goes through


def test_abort_sends_traffic_back_and_fails_the_rollout() -> None:
    outcome = transition(at_step(1), Abort(actor="U3"), T0)
    rollout, effects = outcome
    assert (rollout.phase, landed(outcome).weight, rollout.reason) == (
        Phase.FAILED,
        0,
        "aborted by U3",
    )
    assert effects[0] == ApplyWeight(weight=0, previous=50)


def test_set_weight_by_hand_pauses_at_that_weight() -> None:
    outcome = transition(at_step(0), SetWeight(actor="U2", weight=30), T0)
    _, effects = outcome
    rollout = landed(outcome)
    assert (rollout.phase, rollout.weight, rollout.step) == (Phase.PAUSED, 30, 0)
    assert effects[0] == ApplyWeight(weight=30, previous=10, step=0)
    _, effects = transition(rollout, Resume(actor="U2"), T0)
    assert effects[0] == Schedule(at=T0, step=0)


def test_drift_pauses_and_names_the_weights() -> None:
    rollout, effects = transition(at_step(1), DriftDetected(found=70, expected=50), T0)
    assert rollout.phase is Phase.PAUSED and rollout.weight == 70
    notify = next(e for e in effects if isinstance(e, Notify))
    assert notify.event == "drift"
    assert "the canary has 70% where the bot set 50%" in notify.text
    assert "apply" not in kinds(effects)


def test_a_gated_step_waits_for_approval() -> None:
    gated = StepPlan(weights=(10, 50, 100), interval_s=60, gates=(50,))
    rollout = started(gated).model_copy(update={"next_step_at": T0})
    waiting, effects = transition(rollout, verdict("pass", 0), T0)
    assert waiting.phase is Phase.PENDING_APPROVAL and waiting.weight == 10
    assert "apply" not in kinds(effects)
    outcome = transition(waiting, ApprovalGranted(actor="U9", step=1), T0)
    assert (outcome[0].phase, landed(outcome).weight) == (Phase.PROGRESSING, 50)
    assert outcome[1][0] == ApplyWeight(weight=50, previous=10, step=1, guard=True)


def test_a_gated_first_step_applies_nothing_until_approved() -> None:
    rollout, effects = start(
        rollout_id="r1",
        target=TARGET,
        steps=StepPlan(weights=(10, 100), gates=(10,)),
        actor="U1",
        channel=None,
        live_weight=0,
        now=T0,
    )
    assert rollout.phase is Phase.PENDING_APPROVAL and rollout.weight == 0
    assert "apply" not in kinds(effects)


def test_a_denied_approval_rolls_back() -> None:
    waiting = at_step(0, Phase.PENDING_APPROVAL)
    rollout, effects = transition(waiting, ApprovalDenied(actor="U9", step=1), T0)
    assert (rollout.phase, rollout.reason) == (Phase.ROLLED_BACK, "denied by U9")
    assert effects[0] == ApplyWeight(weight=0, previous=10)


INVALID = [
    (
        Phase.ROLLED_BACK,
        Promote(actor="U1"),
        "cannot promote rollout r1 of weather: it is rolled-back; it is finished",
    ),
    (Phase.PROMOTED, Resume(actor="U1"), "cannot resume rollout r1 of weather: it is promoted"),
    (Phase.PROMOTED, Rollback(actor="U1"), "cannot roll back rollout r1 of weather"),
    (Phase.FAILED, Pause(actor="U1"), "cannot pause"),
    (Phase.PAUSED, Pause(actor="U1"), "resume it with `/canary weather resume`"),
    (Phase.PROGRESSING, Resume(actor="U1"), "pause it with `/canary weather pause`"),
    (Phase.PROGRESSING, ApprovalGranted(actor="U1", step=1), "cannot approve"),
    (Phase.ROLLED_BACK, SetWeight(actor="U1", weight=5), "cannot set the weight of"),
    (Phase.PROMOTED, Abort(actor="U1"), "cannot abort"),
]


@pytest.mark.parametrize(("phase", "event", "message"), INVALID)
def test_invalid_transitions_say_why(phase: Phase, event: Any, message: str) -> None:
    with pytest.raises(InvalidTransition, match=message.replace("`", ".")):
        transition(at_step(1, phase), event, T0)


def test_approval_for_the_wrong_step_is_refused() -> None:
    with pytest.raises(InvalidTransition, match="waits for approval of step 2, not step 3"):
        transition(at_step(0, Phase.PENDING_APPROVAL), ApprovalGranted(actor="U9", step=2), T0)


def test_drift_on_a_finished_rollout_is_recorded_but_changes_nothing_else() -> None:
    done = at_step(2, Phase.PROMOTED)
    seen, effects = transition(done, DriftDetected(found=3, expected=100), T0)
    assert (seen.phase, seen.weight, seen.next_step_at) == (Phase.PROMOTED, 3, None)
    assert kinds(effects) == ["notify", "audit"]  # nothing to pause, cancel or write


def test_transitions_never_mutate_and_stamp_updated_at() -> None:
    before = at_step(0)
    later = T0 + timedelta(minutes=5)
    after, _ = transition(before, Pause(actor="U1"), later)
    assert before.phase is Phase.PROGRESSING and after.updated_at == later
    assert [type(e) for e in transition(at_step(0), Pause(actor="U1"), T0)[1]] == [
        CancelSchedule,
        Notify,
        Audit,
    ]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ((10, 5, 100), "must climb"),
        ((10, 50), "last step must be 100"),
        ((0, 100), "from 1 to 100"),
        ((), "from 1 to 100"),
    ],
)
def test_bad_step_plans_are_refused(weights: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StepPlan(weights=weights)


def test_gates_must_be_steps() -> None:
    with pytest.raises(ValueError, match="gates \\[30\\] are not among the steps"):
        StepPlan(weights=(10, 100), gates=(30,))


def test_a_weight_set_by_hand_keeps_a_paused_rollout_with_its_buttons() -> None:
    outcome = start_manual(
        rollout_id="r1",
        target=TARGET,
        steps=STEPS,
        actor="U1",
        channel="C1",
        live_weight=0,
        weight=30,
        now=T0,
    )
    _, effects = outcome
    rollout = landed(outcome)
    assert (rollout.phase, rollout.weight, rollout.step) == (Phase.PAUSED, 30, 0)
    assert rollout.next_step_at is None and "set by hand to 30%" in rollout.reason
    assert effects[0] == ApplyWeight(weight=30, previous=0, step=0)
    assert kinds(effects) == ["apply", "notify", "audit"]
    _, effects = transition(rollout, Resume(actor="U1"), T0)
    assert effects[0] == Schedule(at=T0, step=0)
