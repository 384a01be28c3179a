"""Pure transitions: `(rollout, event, now) -> (new rollout, effects)`. No I/O, no clock.

The engine stores the new record with its effects as `pending` *before* carrying any of them
out, so a crash between effects leaves the intent on record. Effects are ordered so the one
that matters most comes first: a rollback's traffic change leads its list.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.rollout.model import (
    VERDICTS_KEPT,
    WRITE_FAILED,
    Abort,
    ApplyWeight,
    ApprovalDenied,
    ApprovalGranted,
    Audit,
    CancelSchedule,
    CheckHealth,
    DriftDetected,
    Effect,
    HealthResult,
    Notify,
    Pause,
    Phase,
    Promote,
    Resume,
    Rollback,
    Rollout,
    Schedule,
    SetCohort,
    SetMirror,
    SetWeight,
    StepDue,
    StepPlan,
    Target,
    WaveRef,
    WriteFailed,
)
from commands.cohort import OFF, Cohort, CohortChange

Outcome = tuple[Rollout, list[Effect]]
MOVABLE = (Phase.PROGRESSING, Phase.PAUSED, Phase.PENDING_APPROVAL)


class InvalidTransition(Exception):
    """The event does not apply to the rollout in its present phase; the message says why."""


def start(
    *,
    rollout_id: str,
    target: Target,
    steps: StepPlan,
    actor: str,
    channel: str | None,
    live_weight: int,
    now: datetime,
    active: Rollout | None = None,
    wave: WaveRef | None = None,
) -> Outcome:
    """A new rollout whose first step is applied at once (or waits for its gate); `wave`
    when it is a turn of a multi-cluster wave."""
    if active is not None and active.active:
        raise InvalidTransition(
            f"{target.service} already has rollout {active.id} ({active.phase}, started by "
            f"{active.started_by}); see `/canary {target.service} status`, or roll it back or "
            "abort it first"
        )
    created = Rollout(
        id=rollout_id,
        target=target,
        steps=steps,
        phase=Phase.PROGRESSING,
        step=-1,
        weight=live_weight,
        started_by=actor,
        channel=channel,
        created_at=now,
        updated_at=now,
        wave=wave,
    )
    rollout, effects = _advance(created, 0, now, actor)
    started = Notify(event="started", text=_started_text(rollout))
    audit = Audit(
        action="start",
        actor=actor,
        weight_before=live_weight,
        weight_after=steps.weights[0] if rollout.phase is Phase.PROGRESSING else live_weight,
        detail=f"steps {_steps_text(steps)}",
    )
    moves = [e for e in effects if not isinstance(e, Notify | Audit)]  # "started" says it all
    gate = [e for e in effects if isinstance(e, Notify) and e.event == "approval-needed"]
    return rollout, [*moves, started, *gate, audit]


def start_manual(
    *,
    rollout_id: str,
    target: Target,
    steps: StepPlan,
    actor: str,
    channel: str | None,
    live_weight: int,
    weight: int,
    now: datetime,
    active: Rollout | None = None,
) -> Outcome:
    """`/canary weather 10%` with no rollout going on: set the weight now, and keep a paused
    rollout for it, so its card has the buttons (a one-tap rollback) and `resume` goes on
    with the staged steps from there. `0%` with no rollout is a one-off change."""
    created, _ = start(
        rollout_id=rollout_id,
        target=target,
        steps=steps,
        actor=actor,
        channel=channel,
        live_weight=live_weight,
        now=now,
        active=active,
    )
    reason = f"weight set by hand to {weight}% by {actor}; resume to go on with the steps"
    one_off = weight == 0
    rollout = created.model_copy(
        update={
            "phase": Phase.APPLIED if one_off else Phase.PAUSED,
            "step": -1,
            "next_step_at": None,
            "reason": f"set to 0% by {actor}" if one_off else reason,
        }
    )
    text = f"{target.service}: {weight}% to {target.canary} (was {live_weight}%), set by {actor}"
    return rollout, [
        ApplyWeight(weight=weight, previous=live_weight, step=_step_at(steps, weight)),
        Notify(event="started", text=text),
        Audit(action="set-weight", actor=actor, weight_before=live_weight, weight_after=weight),
    ]


def start_one_off(
    *,
    rollout_id: str,
    target: Target,
    channel: str | None,
    live_weight: int,
    event: SetMirror | SetCohort,
    now: datetime,
) -> Outcome:
    """Mirroring or a cohort set with no rollout going on: recorded and audited like any
    traffic change."""
    created = Rollout(
        id=rollout_id,
        target=target,
        steps=StepPlan(),
        phase=Phase.APPLIED,
        step=-1,
        weight=live_weight,
        started_by=event.actor,
        channel=channel,
        created_at=now,
        updated_at=now,
    )
    if isinstance(event, SetCohort):
        rollout, effects = _set_cohort(created, event, now, check=False)
    else:
        rollout, effects = _set_mirror(created, event, now, check=False)
    return rollout.model_copy(update={"reason": _one_off_reason(effects)}), effects


def _one_off_reason(effects: list[Effect]) -> str:
    """A one-off change's record says what it did: its notice, without the service."""
    text = next(e.text for e in effects if isinstance(e, Notify))
    return text.split(": ", 1)[-1]


def adopt(
    *,
    rollout_id: str,
    target: Target,
    live_weight: int,
    channel: str | None,
    now: datetime,
    wave: WaveRef | None = None,
) -> Outcome:
    """A VirtualService the bot was rolling out, whose record is gone (Redis lost its data):
    taken back as a paused rollout, so its card has a one-tap Rollback, and a human decides.
    `wave`: the wave it is a turn of, taken back with it."""
    reason = (
        f"the bot lost its record of this rollout (was Redis restarted empty?); "
        f"{target.service} still sends {live_weight}% to {target.canary}: roll back, or resume "
        f"to go on with the default steps{_wave_taken_back(wave)}"
    )
    rollout = Rollout(
        id=rollout_id,
        target=target,
        steps=StepPlan(),
        phase=Phase.PAUSED,
        step=_step_at(StepPlan(), live_weight),
        weight=live_weight,
        started_by="canary-bot",
        channel=channel,
        created_at=now,
        updated_at=now,
        reason=reason,
        wave=wave,
    )
    return rollout, [
        Notify(event="adopted", text=f"{target.service}: {reason}"),
        Audit(
            action="adopted",
            actor="canary-bot",
            weight_before=live_weight,
            weight_after=live_weight,
            detail=reason,
        ),
    ]


def _wave_taken_back(wave: WaveRef | None) -> str:
    if wave is None:
        return ""
    taken = f"; the wave {' → '.join(wave.clusters)} is taken back with it: "
    following = wave.clusters[wave.index + 1 : wave.index + 2]
    if not following:
        return f"{taken}it is done once {wave.cluster} is promoted, and halts if it is rolled back"
    return (
        f"{taken}it goes on to {following[0]} once {wave.cluster} is promoted, and halts if it "
        "is rolled back"
    )


def transition(rollout: Rollout, event: Any, now: datetime) -> Outcome:
    """Apply `event` to `rollout`. Stale scheduler events are no-ops; human ones that do not
    apply raise InvalidTransition with a message for the human."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"not a rollout event: {event!r}")
    new, effects = handler(rollout, event, now)
    if effects:
        new = new.model_copy(update={"updated_at": now})
    return new, effects


def _step_due(r: Rollout, e: StepDue, now: datetime) -> Outcome:
    if r.phase is not Phase.PROGRESSING or e.step != r.step or r.next_step_at is None:
        return r, []  # a late or repeated firing: the step was already taken care of
    return r.model_copy(update={"next_step_at": None}), [CheckHealth(step=r.step)]


def _health_result(r: Rollout, e: HealthResult, now: datetime) -> Outcome:
    if r.phase is not Phase.PROGRESSING or e.verdict.step != r.step:
        return r, []
    r = r.model_copy(update={"verdicts": (*r.verdicts, e.verdict)[-VERDICTS_KEPT:]})
    report = Notify(
        event="health",
        text=f"{r.target.service} at {r.weight}%: {e.verdict.outcome} {e.verdict.summary}".rstrip(),
    )
    if e.verdict.outcome == "pass":  # the step's final judgement: its evidence is carried
        evidence = r.evidence.carry(e.verdict)
        r = r.model_copy(update={"failures": 0, "inconclusive": 0, "evidence": evidence})
        if r.step == len(r.steps.weights) - 1:
            new, effects = _promote(r, e.actor, now, "every step was healthy")
        else:
            new, effects = _advance(r, r.step + 1, now, e.actor)
        return new, _reported(effects, report)
    if e.verdict.outcome == "fail":
        return _after_failure(r, e, now, report)
    return _after_inconclusive(r, e, now, report)


def _reported(effects: list[Effect], report: Notify) -> list[Effect]:
    """The health report goes right after any traffic change, which always comes first."""
    lead = 1 if effects and isinstance(effects[0], ApplyWeight) else 0
    return [*effects[:lead], report, *effects[lead:]]


def _after_failure(r: Rollout, e: HealthResult, now: datetime, report: Notify) -> Outcome:
    failures = r.failures + 1
    r = r.model_copy(update={"failures": failures})
    if e.verdict.final or failures >= r.steps.failure_limit:
        checks = (
            "a failed health check"
            if failures == 1
            else f"{failures} failed health checks in a row"
        )
        reason = f"{checks} at {r.weight}%: {e.verdict.summary}".rstrip(": ")
        new, effects = _end(r, Phase.FAILED, e.actor, "auto-rollback", reason)
        return new, _reported(effects, report)
    return _retry(r, now, report)


def _after_inconclusive(r: Rollout, e: HealthResult, now: datetime, report: Notify) -> Outcome:
    count = r.inconclusive + 1
    r = r.model_copy(update={"inconclusive": count})
    if count >= r.steps.inconclusive_limit:
        reason = (
            f"{count} inconclusive health checks in a row at {r.weight}% "
            f"({e.verdict.summary or 'no data'}); a human should look: resume or roll back"
        )
        paused, effects = _pause(r, e.actor, reason)
        return paused, _reported(effects, report)
    return _retry(r, now, report)


def _retry(r: Rollout, now: datetime, report: Notify) -> Outcome:
    at = now + r.steps.interval
    return r.model_copy(update={"next_step_at": at}), _reported(
        [Schedule(at=at, step=r.step)], report
    )


def _pause_event(r: Rollout, e: Pause, now: datetime) -> Outcome:
    _require(r, (Phase.PROGRESSING, Phase.PENDING_APPROVAL), "pause")
    return _pause(r, e.actor, e.reason or f"paused by {e.actor}")


def _pause(
    r: Rollout, actor: str, reason: str, *, action: str = "pause", before: int | None = None
) -> Outcome:
    paused = r.model_copy(update={"phase": Phase.PAUSED, "next_step_at": None, "reason": reason})
    return paused, [
        CancelSchedule(),
        Notify(event=action, text=f"{r.target.service} paused at {r.weight}%: {reason}"),
        Audit(
            action=action,
            actor=actor,
            weight_before=r.weight if before is None else before,
            weight_after=r.weight,
            detail=reason,
        ),
    ]


def _resume(r: Rollout, e: Resume, now: datetime) -> Outcome:
    _require(r, (Phase.PAUSED,), "resume")
    note = Notify(event="resumed", text=f"{r.target.service} resumed by {e.actor} at {r.weight}%")
    if r.step < 0:  # no step is live yet: resuming takes the first one
        moved, effects = _advance(r, 0, now, e.actor)
        return moved, [*effects, note]
    resumed = r.model_copy(
        update={"phase": Phase.PROGRESSING, "next_step_at": now, "reason": "", "inconclusive": 0}
    )
    return resumed, [
        Schedule(at=now, step=resumed.step),
        note,
        Audit(action="resume", actor=e.actor, weight_before=r.weight, weight_after=r.weight),
    ]


def _promote_event(r: Rollout, e: Promote, now: datetime) -> Outcome:
    _require(r, MOVABLE, "promote")
    return _promote(r, e.actor, now, f"promoted by {e.actor}")


def _promote(r: Rollout, actor: str, now: datetime, reason: str) -> Outcome:
    promoted = r.model_copy(
        update={"phase": Phase.PROMOTED, "next_step_at": None, "reason": reason}
    )
    text = (
        f"{r.target.service} promoted: {r.target.canary} now takes all traffic and is the "
        f"stable subset ({reason})"
    )
    return promoted, [
        ApplyWeight(weight=100, previous=r.weight, step=len(r.steps.weights) - 1, finalize=True),
        CancelSchedule(),
        Notify(event="promoted", text=text),
        Audit(
            action="promote", actor=actor, weight_before=r.weight, weight_after=100, detail=reason
        ),
    ]


def _rollback(r: Rollout, e: Rollback, now: datetime) -> Outcome:
    _require(r, MOVABLE, "roll back")
    return _end(r, Phase.ROLLED_BACK, e.actor, "rollback", e.reason or f"rolled back by {e.actor}")


def _abort(r: Rollout, e: Abort, now: datetime) -> Outcome:
    _require(r, MOVABLE, "abort")
    return _end(r, Phase.FAILED, e.actor, "abort", e.reason or f"aborted by {e.actor}")


def _end(r: Rollout, phase: Phase, actor: str, action: str, reason: str) -> Outcome:
    """Send every request back to stable and close the rollout."""
    ended = r.model_copy(update={"phase": phase, "next_step_at": None, "reason": reason})
    return ended, [
        ApplyWeight(weight=0, previous=r.weight),
        CancelSchedule(),
        Notify(
            event=action,
            text=f"{r.target.service} back on {r.target.stable} "
            f"(canary {r.weight}% → 0%): {reason}",
        ),
        Audit(action=action, actor=actor, weight_before=r.weight, weight_after=0, detail=reason),
    ]


def _set_weight(r: Rollout, e: SetWeight, now: datetime) -> Outcome:
    _require(r, MOVABLE, "set the weight of")
    reason = f"weight set by hand to {e.weight}% by {e.actor}; resume to go on from there"
    paused = r.model_copy(update={"phase": Phase.PAUSED, "next_step_at": None, "reason": reason})
    return paused, [
        ApplyWeight(weight=e.weight, previous=r.weight, step=_step_at(r.steps, e.weight)),
        CancelSchedule(),
        Notify(event="set-weight", text=f"{r.target.service}: {reason}"),
        Audit(action="set-weight", actor=e.actor, weight_before=r.weight, weight_after=e.weight),
    ]


def _drift(r: Rollout, e: DriftDetected, now: datetime) -> Outcome:
    if not r.active:  # finished: nothing to pause, but the record and the trail say what is live
        seen = f"the canary has {e.found}% where the bot left {e.expected}% (changed by hand)"
        return r.model_copy(update={"weight": e.found}), [
            Notify(event="drift", text=f"{r.target.service}: {seen}"),
            Audit(
                action="drift",
                actor=e.actor,
                weight_before=e.expected,
                weight_after=e.found,
                detail=seen,
            ),
        ]
    reason = (
        f"someone changed the weights by hand: the canary has {e.found}% where the bot "
        f"set {e.expected}%; nothing was overwritten; resume to go on from "
        f"{e.found}%, or roll back"
    )
    return _pause(
        r.model_copy(update={"weight": e.found}), e.actor, reason, action="drift", before=e.expected
    )


def _approval_granted(r: Rollout, e: ApprovalGranted, now: datetime) -> Outcome:
    _require(r, (Phase.PENDING_APPROVAL,), "approve")
    if e.step != r.step + 1:
        raise InvalidTransition(
            f"rollout {r.id} of {r.target.service} waits for approval of step {r.step + 2}, "
            f"not step {e.step + 1}"
        )
    return _advance(r, e.step, now, e.actor, approved=True)


def _approval_denied(r: Rollout, e: ApprovalDenied, now: datetime) -> Outcome:
    _require(r, (Phase.PENDING_APPROVAL,), "deny")
    reason = e.reason or f"denied by {e.actor}"
    return _end(r, Phase.ROLLED_BACK, e.actor, "denied", reason)


def _advance(
    r: Rollout, index: int, now: datetime, actor: str, *, approved: bool = False
) -> Outcome:
    """Move to step `index`: apply its weight and schedule the next check, unless it is gated."""
    weight = r.steps.weights[index]
    if weight in r.steps.gates and not approved:
        reason = f"step {index + 1} ({weight}%) waits for an approval"
        waiting = r.model_copy(
            update={"phase": Phase.PENDING_APPROVAL, "next_step_at": None, "reason": reason}
        )
        return waiting, [Notify(event="approval-needed", text=f"{r.target.service}: {reason}")]
    at = now + r.steps.interval
    moved = r.model_copy(
        update={
            "phase": Phase.PROGRESSING,
            "next_step_at": at,
            "failures": 0,
            "inconclusive": 0,
            "reason": "",
        }
    )
    cohort = r.steps.cohort if index == 0 else None  # the cohort's step: its route, and 0%
    what = f"{weight}% to {r.target.canary}"
    if cohort is not None:
        what = f"{cohort_text(cohort, r.target.canary)}, {what}"
    text = f"{r.target.service}: {what} (step {index + 1} of {len(r.steps.weights)})"
    return moved, [
        ApplyWeight(weight=weight, previous=r.weight, step=index, guard=True, cohort=cohort),
        Schedule(at=at, step=index),
        Notify(event="step", text=text),
        Audit(action="step", actor=actor, weight_before=r.weight, weight_after=weight),
    ]


def _set_mirror(r: Rollout, e: SetMirror, now: datetime, *, check: bool = True) -> Outcome:
    if check:
        _require(r, MOVABLE, "set mirroring of")
    what = "off" if e.mirror == 0 else f"{e.mirror}% of traffic"
    text = f"{r.target.service}: mirroring to {r.target.canary} set to {what} by {e.actor}"
    return r, [
        ApplyWeight(weight=r.weight, previous=r.weight, step=r.step, mirror=e.mirror),
        Notify(event="mirror", text=text),
        Audit(
            action="mirror",
            actor=e.actor,
            weight_before=r.weight,
            weight_after=r.weight,
            detail=f"mirror {e.mirror}%",
        ),
    ]


def _set_cohort(r: Rollout, e: SetCohort, now: datetime, *, check: bool = True) -> Outcome:
    if check:
        _require(r, MOVABLE, "set the cohort of")
    what = cohort_text(e.cohort, r.target.canary)
    return r, [
        ApplyWeight(weight=r.weight, previous=r.weight, step=r.step, cohort=e.cohort),
        Notify(event="cohort", text=f"{r.target.service}: {what} by {e.actor}"),
        Audit(
            action="cohort",
            actor=e.actor,
            weight_before=r.weight,
            weight_after=r.weight,
            detail=f"cohort {e.cohort.text if isinstance(e.cohort, Cohort) else OFF}",
        ),
    ]


def cohort_text(cohort: CohortChange, canary: str) -> str:
    """`cohort header x-beta=1 sent to v2`, or `cohort route removed`."""
    if isinstance(cohort, Cohort):
        return f"cohort {cohort.text} sent to {canary}"
    return "cohort route removed"


def _write_failed(r: Rollout, e: WriteFailed, now: datetime) -> Outcome:
    """A write that did not go live is not a step taken: the weight stays what is live, and a
    human decides what next. `resume` retries the same step."""
    wanted = e.effect.weight
    if e.found is not None:  # someone else moved the weights: the record says what is live
        r = r.model_copy(update={"weight": e.found})
    if e.effect.mirror is not None and wanted == r.weight:
        what = f"set mirroring to {e.effect.mirror}%"
    elif e.effect.cohort is not None and wanted == r.weight:
        what = "remove the cohort route"
        if isinstance(e.effect.cohort, Cohort):
            what = f"send cohort {e.effect.cohort.text} to {r.target.canary}"
    elif e.effect.finalize:
        what = "promote"
    elif wanted == 0 and r.weight != 0:
        what = "roll back"
    else:
        what = f"set {wanted}%"
    reason = f"{WRITE_FAILED}{what}: {e.reason}; the canary has {r.weight}% (nothing else changed)"
    phase = Phase.FAILED if r.phase is Phase.APPLIED else Phase.PAUSED
    hint = "" if phase is Phase.FAILED else f"; `/canary {r.target.service} resume` retries"
    failed = r.model_copy(update={"phase": phase, "next_step_at": None, "reason": reason})
    return failed, [
        CancelSchedule(),
        Notify(event="write-failed", text=f"{r.target.service}: {reason}{hint}"),
        Audit(
            action="write-failed",
            actor=e.actor,
            weight_before=r.weight,
            weight_after=r.weight,
            detail=reason,
        ),
    ]


def _step_at(steps: StepPlan, weight: int) -> int:
    """The index of the last step at or below `weight` (-1 below the first)."""
    below = [i for i, w in enumerate(steps.weights) if w <= weight]
    return below[-1] if below else -1


def _require(r: Rollout, phases: tuple[Phase, ...], verb: str) -> None:
    if r.phase in phases:
        return
    hint = {
        Phase.PROMOTED: f"it is finished; start a new one with `/canary {r.target.service} start`",
        Phase.ROLLED_BACK: f"it is finished; start a new one with `/canary {r.target.service} "
        "start`",
        Phase.FAILED: f"it is finished; start a new one with `/canary {r.target.service} start`",
        Phase.APPLIED: f"it is finished; start a new one with `/canary {r.target.service} start`",
        Phase.PAUSED: f"resume it with `/canary {r.target.service} resume`",
        Phase.PROGRESSING: f"pause it with `/canary {r.target.service} pause`",
        Phase.PENDING_APPROVAL: "it waits for an approval",
    }[r.phase]
    raise InvalidTransition(
        f"cannot {verb} rollout {r.id} of {r.target.service}: it is {r.phase.value}; {hint}"
    )


def _started_text(r: Rollout) -> str:
    t = r.target
    return (
        f"{t.service}: rollout {r.id} from {t.stable} to {t.canary}, steps "
        f"{_steps_text(r.steps)} every {r.steps.interval_s}s"
    )


def _steps_text(steps: StepPlan) -> str:
    weights = ",".join(map(str, steps.weighted))
    return weights if steps.cohort is None else f"cohort {steps.cohort.text}, then {weights}"


_HANDLERS: dict[type, Callable[[Rollout, Any, datetime], Outcome]] = {
    StepDue: _step_due,
    HealthResult: _health_result,
    Pause: _pause_event,
    Resume: _resume,
    Promote: _promote_event,
    Rollback: _rollback,
    Abort: _abort,
    SetWeight: _set_weight,
    DriftDetected: _drift,
    ApprovalGranted: _approval_granted,
    ApprovalDenied: _approval_denied,
    WriteFailed: _write_failed,
    SetMirror: _set_mirror,
    SetCohort: _set_cohort,
}
