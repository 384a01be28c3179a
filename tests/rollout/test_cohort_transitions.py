"""Cohorts in the rollout state machine: on a rollout going on, as a one-off change, and what
the record says is live once the engine has written it."""

from __future__ import annotations

import pytest

from bot.rollout.model import (
    ApplyWeight,
    Audit,
    Notify,
    Phase,
    Rollback,
    SetCohort,
    SetMirror,
    WriteFailed,
)
from bot.rollout.transitions import InvalidTransition, start_one_off, transition
from commands.cohort import OFF, make_cohort
from tests.support.transitions import T0, TARGET, at_step

BETA = make_cohort("header", "x-beta", "1")


def test_a_cohort_on_a_rollout_keeps_its_weight_and_phase() -> None:
    rollout = at_step(0)
    new, effects = transition(rollout, SetCohort(actor="U1", cohort=BETA), T0)
    assert new.phase is Phase.PROGRESSING and new.next_step_at == rollout.next_step_at
    assert effects == [
        ApplyWeight(weight=10, previous=10, step=0, cohort=BETA),
        Notify(event="cohort", text="weather: cohort header x-beta=1 sent to v2 by U1"),
        Audit(
            action="cohort",
            actor="U1",
            weight_before=10,
            weight_after=10,
            detail="cohort header x-beta=1",
        ),
    ]
    assert effects[0].written_weight is None  # only the cohort's route is written


def test_off_says_the_route_is_removed() -> None:
    _, effects = transition(at_step(1, Phase.PAUSED), SetCohort(actor="U1", cohort=OFF), T0)
    assert effects[0] == ApplyWeight(weight=50, previous=50, step=1, cohort=OFF)
    assert effects[1] == Notify(event="cohort", text="weather: cohort route removed by U1")


def test_a_finished_rollout_takes_no_cohort() -> None:
    with pytest.raises(InvalidTransition, match="cannot set the cohort of rollout"):
        transition(at_step(2, Phase.PROMOTED), SetCohort(actor="U1", cohort=BETA), T0)


def test_a_cohort_with_no_rollout_is_a_one_off_change_on_record() -> None:
    rollout, effects = start_one_off(
        rollout_id="r9",
        target=TARGET,
        channel="C1",
        live_weight=0,
        event=SetCohort(actor="U1", cohort=BETA),
        now=T0,
    )
    assert (rollout.phase, rollout.started_by, rollout.weight) == (Phase.APPLIED, "U1", 0)
    assert rollout.reason == "cohort header x-beta=1 sent to v2 by U1"
    assert [e.kind for e in effects] == ["apply", "notify", "audit"]


def test_mirroring_one_off_reads_as_before() -> None:
    rollout, effects = start_one_off(
        rollout_id="r9",
        target=TARGET,
        channel="C1",
        live_weight=0,
        event=SetMirror(actor="U1", mirror=20),
        now=T0,
    )
    assert rollout.reason == "mirroring to v2 set to 20% of traffic by U1"
    assert effects[0] == ApplyWeight(weight=0, previous=0, mirror=20)


def test_a_cohort_that_did_not_go_live_says_so() -> None:
    failed = WriteFailed(
        effect=ApplyWeight(weight=10, previous=10, step=0, cohort=BETA), reason="403 Forbidden"
    )
    new, _ = transition(at_step(0), failed, T0)
    assert new.reason.startswith("could not send cohort header x-beta=1 to v2: 403 Forbidden")
    off = failed.model_copy(update={"effect": ApplyWeight(weight=10, previous=10, cohort=OFF)})
    assert transition(at_step(0), off, T0)[0].reason.startswith(
        "could not remove the cohort route: 403"
    )


def test_a_rollback_writes_0_percent_which_removes_the_cohort_route() -> None:
    rollout = at_step(1).model_copy(update={"cohort": BETA})
    _, effects = transition(rollout, Rollback(actor="U1"), T0)
    assert effects[0] == ApplyWeight(weight=0, previous=50)
    assert effects[0].written_weight == 0
