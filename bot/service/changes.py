"""The one path every change takes, from chat, buttons and the command line alike.

`propose` reads the live objects once and plans the change; the policy decides on that plan
(its hash is what approvers approve); `carry_out` hands the very same plan to the engine, which
writes it under the resourceVersion it was planned on. Nothing here re-plans or re-reads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.mesh.planner import TrafficPlan
from bot.rollout.engine import Engine
from bot.rollout.model import (
    Abort,
    ApplyWeight,
    Pause,
    Promote,
    Resume,
    Rollback,
    Rollout,
    StepPlan,
)
from bot.rollout.ports import Resolved
from bot.rollout.transitions import transition
from commands import Command, Verb
from policies import Change

EVENTS: dict[Verb, type[Any]] = {
    Verb.PAUSE: Pause,
    Verb.RESUME: Resume,
    Verb.PROMOTE: Promote,
    Verb.ROLLBACK: Rollback,
    Verb.ABORT: Abort,
}
StepsFor = Callable[[str, str, Command], StepPlan]  # (namespace, vs, command) -> steps


class Records(Protocol):
    """What the service reads of the rollout records and the audit trail."""

    def active_for(self, namespace: str, vs: str) -> Rollout | None: ...

    def history(self, namespace: str, vs: str, count: int = 50) -> Sequence[HasTime]: ...


class HasTime(Protocol):
    @property
    def at(self) -> datetime: ...


def plan_hash(*parts: object) -> str:
    """A short, stable fingerprint of what a change will do."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Proposal:
    """A command resolved against what is live: the change the policy decides on, the diff an
    approver reads, and (for traffic changes) the plan the engine will write as it is."""

    command: Command
    namespace: str
    change: Change
    diff: str = ""
    steps: StepPlan | None = None
    resolved: Resolved | None = None

    @property
    def vs(self) -> str:
        return str(self.command.service)

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the asker should know although the change goes ahead."""
        return () if self.resolved is None else gitops_warnings(self.resolved.planned.plan)


class Changes:
    def __init__(
        self,
        *,
        engine: Engine,
        store: Records,
        clock: Callable[[], datetime],
        steps_for: StepsFor,
    ) -> None:
        self.engine, self.store, self.clock = engine, store, clock
        self._steps_for = steps_for

    def propose(self, command: Command, namespace: str, channel: str | None) -> Proposal:
        vs = str(command.service)
        last = self.store.history(namespace, vs, count=1)
        since = last[-1].at if last else None
        if command.verb in EVENTS:
            return self._event(command, namespace, since)
        steps = self._steps_for(namespace, vs, command)
        weight, mirror = _wanted(command, steps)
        resolved = self.engine.resolve(
            namespace,
            vs,
            to=command.to,
            channel=channel,
            weight=weight,
            mirror=mirror,
            cohort=command.cohort,
            labels=command.labels,
        )
        planned = resolved.planned
        plan = planned.plan
        fingerprint = plan_hash(
            plan.stable,
            plan.canary,
            command.verb,
            command.steps,
            command.interval_s,
            command.analysis_s,
            [(t.index, t.before, t.after) for t in plan.touched],
            plan.dr.ops if plan.dr else None,
            *([route_ops(plan)] if command.cohort is not None else []),
        )
        change = Change(
            action=command.verb.value,
            weight_before=planned.live_weight,
            weight_after=planned.live_weight if weight is None else weight,
            plan_hash=fingerprint,
            last_change_at=since,
            gitops=" ".join(gitops_warnings(plan, certain=True)),
        )
        return Proposal(command, namespace, change, plan.diff, steps, resolved)

    def propose_wave(self, command: Command, namespace: str) -> Proposal:
        """A start over several clusters, decided as a `start` of its first step from 0%.
        Nothing live is read: each cluster's rollout plans on its own objects in its turn."""
        vs = str(command.service)
        last = self.store.history(namespace, vs, count=1)
        steps = self._steps_for(namespace, vs, command)
        change = Change(
            action=Verb.START.value,
            weight_before=0,
            weight_after=steps.weights[0],
            plan_hash=plan_hash(command.clusters, command.to, steps.model_dump(mode="json")),
            last_change_at=last[-1].at if last else None,
        )
        return Proposal(command, namespace, change, _wave_diff(command, steps), steps)

    def preview(self, command: Command, namespace: str) -> TrafficPlan:
        """The plan the command's weight would make now; nothing is written or recorded."""
        weight = command.weight or 0 if command.cohort is None else None
        resolved = self.engine.resolve(
            namespace,
            str(command.service),
            to=command.to,
            channel=None,
            weight=weight,
            cohort=command.cohort,
            labels=command.labels,
        )
        return resolved.planned.plan

    def carry_out(self, proposal: Proposal, actor: str, channel: str | None) -> Rollout:
        c, ns, vs = proposal.command, proposal.namespace, proposal.vs
        if c.verb in EVENTS:
            return self.engine.act(ns, vs, EVENTS[c.verb](actor=actor))
        steps, resolved = proposal.steps or StepPlan(), proposal.resolved
        if c.verb is Verb.START:
            return self.engine.start(
                namespace=ns,
                vs=vs,
                to=c.to,
                steps=steps,
                actor=actor,
                channel=channel,
                resolved=resolved,
            )
        if c.verb is Verb.COHORT and c.cohort is not None:
            return self.engine.set_cohort(
                namespace=ns,
                vs=vs,
                to=c.to,
                cohort=c.cohort,
                actor=actor,
                channel=channel,
                resolved=resolved,
            )
        if c.verb is Verb.MIRROR:
            return self.engine.set_mirror(
                namespace=ns,
                vs=vs,
                to=c.to,
                mirror=int(c.mirror or 0),
                actor=actor,
                channel=channel,
                resolved=resolved,
            )
        return self.engine.set_weight(
            namespace=ns,
            vs=vs,
            to=c.to,
            weight=int(c.weight or 0),
            steps=steps,
            actor=actor,
            channel=channel,
            resolved=resolved,
        )

    def _event(self, command: Command, namespace: str, since: datetime | None) -> Proposal:
        """Pause, resume, promote, roll back, abort: what the rollout's own transition would
        do, asked of the transition itself (it is pure), so the policy sees the true weights."""
        active = self.engine.active(namespace, str(command.service))
        _, effects = transition(active, EVENTS[command.verb](actor="?"), self.clock())
        applied = [e.weight for e in effects if isinstance(e, ApplyWeight)]
        after = applied[0] if applied else _next_step(active, command.verb)
        change = Change(
            action=command.verb.value,
            weight_before=active.weight,
            weight_after=after,
            plan_hash=plan_hash(active.id, active.step, active.weight, command.verb),
            last_change_at=since,
        )
        return Proposal(command, namespace, change)


def gitops_warnings(plan: TrafficPlan, *, certain: bool = False) -> tuple[str, ...]:
    """For each changed object a GitOps tool syncs (`certain`: known to sync, not only maybe):
    that its sync will undo the change."""
    return tuple(g.warning(plan.request) for g in plan.gitops if g.certain or not certain)


def route_ops(plan: TrafficPlan) -> list[dict[str, Any]]:
    """The plan's changes to the routes, without the annotation (its write id and time differ
    on every read), so the same change keeps the same fingerprint."""
    return [op for op in plan.vs.ops if str(op["path"]).startswith("/spec/")]


def _wave_diff(command: Command, steps: StepPlan) -> str:
    """What an approver of a wave reads, as a diff of what it adds: nothing live is planned
    until each cluster's turn, when its VirtualService is planned and written guarded."""
    weights = ", ".join(f"{w}%" for w in steps.weights)
    lines = [
        f"+wave: {', then '.join(command.clusters or ())}",
        f"+canary: {command.to or 'as each cluster names it'}",
        f"+steps: {weights}, every {steps.interval_s}s",
        *([f"+approval before: {', '.join(f'{w}%' for w in steps.gates)}"] if steps.gates else []),
    ]
    return "\n".join(lines)


def _wanted(command: Command, steps: StepPlan) -> tuple[int | None, int | None]:
    """(canary weight, mirror percentage) the command asks for; None leaves it as it is."""
    if command.verb is Verb.MIRROR:
        return None, int(command.mirror or 0)
    if command.verb is Verb.COHORT:
        return None, None
    if command.verb is Verb.START:
        return steps.weights[0], None
    return int(command.weight or 0), None


def _next_step(rollout: Rollout, verb: Verb) -> int:
    """Resuming leads to the next step's weight once its check passes."""
    if verb is Verb.RESUME and rollout.step + 1 < len(rollout.steps.weights):
        return rollout.steps.weights[rollout.step + 1]
    return rollout.weight
