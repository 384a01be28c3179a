"""From a parsed command to what happens: shared by Slack and the shell.

The dispatcher runs after the ack, off the request path. Changes to a rollout go through the
engine, whose notifications update the rollout's card; what the dispatcher returns is only what
the asker should see (ephemeral) or what the channel should be told outside a rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from bot.chat.approvals import (
    ApprovalBook,
    ApprovalRequest,
    Gate,
    approval_blocks,
    plan_hash,
    summary_text,
)
from bot.chat.cards import card_blocks, card_text, card_view
from bot.chat.health_text import health_table
from bot.health.verdict import Thresholds
from bot.mesh.errors import MeshError
from bot.mesh.kube import KubeMesh
from bot.mesh.request import SplitRequest
from bot.rollout.engine import AlwaysHealthy, Busy, Engine, NoActiveRollout
from bot.rollout.model import (
    Abort,
    Pause,
    Phase,
    Promote,
    Resume,
    Rollback,
    Rollout,
    StepPlan,
)
from bot.rollout.transitions import InvalidTransition
from bot.store.errors import StoreError
from bot.store.redis_store import AuditEntry, RolloutStore
from commands import Command, Verb, help_text
from policies import Change, Deny, NeedsApproval, rollout_defaults, staged_gates
from policies import Target as PolicyTarget

USER_ERRORS = (MeshError, InvalidTransition, NoActiveRollout, Busy, StoreError, ValueError)
EVENTS: dict[Verb, type[Any]] = {
    Verb.PAUSE: Pause,
    Verb.RESUME: Resume,
    Verb.PROMOTE: Promote,
    Verb.ROLLBACK: Rollback,
    Verb.ABORT: Abort,
}


@dataclass(frozen=True)
class Reply:
    """A message for the asker alone (`ephemeral`) or for the whole channel."""

    text: str
    ephemeral: bool = True
    blocks: list[dict[str, Any]] | None = None
    approval: str | None = None  # the id of the approval request this card shows


@dataclass(frozen=True)
class Asker:
    user: str
    channel: str | None


@dataclass
class Dispatcher:
    engine: Engine
    store: RolloutStore
    mesh: KubeMesh
    clock: Callable[[], datetime]
    default_namespace: Callable[[str | None], str] = lambda _channel: "default"
    default_steps: StepPlan = field(default_factory=StepPlan)
    gate: Gate | None = None  # the policy; None lets everyone do everything
    book: ApprovalBook | None = None

    def run(
        self, command: Command, asker: Asker, *, text: str = "", approved: bool = False
    ) -> list[Reply]:
        """Carry the command out if the policy allows it (or hold it for approval); user
        mistakes and refusals come back as an ephemeral reply."""
        try:
            if self.gate is not None and command.mutating and not approved:
                held = self._check(command, asker, text)
                if held is not None:
                    return held
            return self._run(command, asker)
        except USER_ERRORS as e:
            return [Reply(f":warning: {e}")]

    def change_for(self, command: Command, namespace: str) -> tuple[Change, str]:
        """What the command would change (weights before and after, a hash of the exact
        plan) and the diff to show an approver."""
        vs = str(command.service)
        last = self.store.history(namespace, vs, count=1)
        since = last[-1].at.isoformat() if last else None
        active = self.store.active_for(namespace, vs)
        if command.verb in EVENTS:
            if active is None:
                raise NoActiveRollout(f"{_service(vs, namespace)} has no rollout going on")
            after = _weight_after(command.verb, active)
            fingerprint = plan_hash(active.id, active.step, active.weight, command.verb)
            return Change(
                action=command.verb.value,
                weight_before=active.weight,
                weight_after=after,
                plan_hash=fingerprint,
                last_change_at=_parse(since),
            ), ""
        weight = (
            command.weight
            if command.verb is not Verb.START
            else self._steps_for(namespace, vs, command.steps)["weights"][0]
        )
        request = SplitRequest.build(
            vs=vs,
            namespace=namespace,
            weight=weight,
            to=command.to,
            mirror=command.mirror if command.verb is Verb.MIRROR else None,
        )
        plan = self.mesh.plan(request)
        before = plan.touched[0].before[1] if plan.touched else 0
        fingerprint = plan_hash(
            plan.stable,
            plan.canary,
            command.verb,
            command.steps,
            command.interval_s,
            [(t.index, t.before, t.after) for t in plan.touched],
            plan.dr.ops if plan.dr else None,
        )
        weight_after = command.mirror if command.verb is Verb.MIRROR else weight
        return Change(
            action=command.verb.value,
            weight_before=before,
            weight_after=weight_after,
            plan_hash=fingerprint,
            last_change_at=_parse(since),
        ), plan.diff

    def _check(self, command: Command, asker: Asker, text: str) -> list[Reply] | None:
        assert self.gate is not None
        namespace = command.namespace or self.default_namespace(asker.channel)
        change, diff = self.change_for(command, namespace)
        decision = self.gate.decide(asker.user, change, namespace, str(command.service))
        if isinstance(decision, Deny):
            return [Reply(f":no_entry: {decision.reason}")]
        if not isinstance(decision, NeedsApproval) or self.book is None:
            return None
        request = self.book.open(
            ApprovalRequest(
                id="",
                requester=asker.user,
                channel=asker.channel,
                command=text,
                namespace=namespace,
                vs=str(command.service),
                change={**asdict(change), "last_change_at": _iso(change.last_change_at)},
                diff=diff,
            )
        )
        self.store.audit(
            namespace=namespace,
            vs=str(command.service),
            action="approval-requested",
            actor=asker.user,
            at=self.clock(),
            weight_before=change.weight_before,
            weight_after=change.weight_after,
            channel=asker.channel,
            plan_hash=change.plan_hash,
            detail=f"request {request.id}: /canary {text}",
        )
        card = Reply(
            summary_text(request),
            ephemeral=False,
            blocks=approval_blocks(request, decision),
            approval=request.id,
        )
        return [Reply(f":hourglass: {decision.reason}; I posted an approval request."), card]

    def _run(self, command: Command, asker: Asker) -> list[Reply]:
        if command.verb is Verb.HELP:
            return [Reply(help_text(command.topic))]
        if command.verb is Verb.LIST:
            return [self._list()]
        namespace = command.namespace or self.default_namespace(asker.channel)
        handler = getattr(self, f"_{command.verb.value.replace('-', '_')}")
        result: list[Reply] = handler(command, namespace, asker)
        return result

    def _set_weight(self, c: Command, namespace: str, asker: Asker) -> list[Reply]:
        vs, weight = str(c.service), int(c.weight or 0)
        rollout = self.engine.set_weight(
            namespace=namespace,
            vs=vs,
            to=c.to,
            weight=weight,
            steps=StepPlan.model_validate(self._steps_for(namespace, vs)),
            actor=asker.user,
            channel=asker.channel,
        )
        return _outcome(rollout, weight)

    def _mirror(self, c: Command, namespace: str, asker: Asker) -> list[Reply]:
        rollout = self.engine.set_mirror(
            namespace=namespace,
            vs=str(c.service),
            to=c.to,
            mirror=int(c.mirror or 0),
            actor=asker.user,
            channel=asker.channel,
        )
        return _outcome(rollout, rollout.weight)

    def _start(self, c: Command, namespace: str, asker: Asker) -> list[Reply]:
        fields = self._steps_for(namespace, str(c.service), c.steps)
        fields["interval_s"] = c.interval_s or fields["interval_s"]
        try:
            steps = StepPlan.model_validate(fields)
        except ValidationError as e:
            raise ValueError(str(e.errors()[0]["msg"]).removeprefix("Value error, ")) from e
        self.engine.start(
            namespace=namespace,
            vs=str(c.service),
            to=c.to,
            steps=steps,
            actor=asker.user,
            channel=asker.channel,
        )
        if not steps.gates:
            return []
        waits = ", ".join(f"{w}%" for w in steps.gates)
        which = (
            f"the steps to {waits} wait" if len(steps.gates) > 1 else f"the step to {waits} waits"
        )
        return [
            Reply(
                f":hourglass: {_service(str(c.service), namespace)}: {which} for an approval; "
                "an approval card is posted when the rollout gets there"
            )
        ]

    def _steps_for(
        self, namespace: str, vs: str, weights: tuple[int, ...] | None = None
    ) -> dict[str, Any]:
        """The step plan for this service (the policy's, or the built-in one), walking through
        `weights` if given; the policy says which steps wait for an approval."""
        if self.gate is None:
            return self.default_steps.model_dump() | ({"weights": weights} if weights else {})
        target = PolicyTarget(namespace, vs)
        fields: dict[str, Any] = dict(rollout_defaults(self.gate.policy, target)[0])
        fields["weights"] = weights or fields["weights"]
        fields["gates"] = staged_gates(self.gate.policy, target, fields["weights"])
        return fields

    def _transition(self, c: Command, namespace: str, asker: Asker) -> list[Reply]:
        self.engine.act(namespace, str(c.service), EVENTS[c.verb](actor=asker.user))
        return []

    _pause = _resume = _promote = _rollback = _abort = _transition

    def _status(self, c: Command, namespace: str, asker: Asker) -> list[Reply]:
        active = self.store.active_for(namespace, str(c.service))
        if active is not None:
            card = self.card_reply(active)
            table = self._fresh_check(active)
            section = {"type": "section", "text": {"type": "mrkdwn", "text": table[:2900]}}
            return [Reply(f"{card.text}\n\n{table}", blocks=[*(card.blocks or []), section])]
        plan = self.mesh.plan(
            SplitRequest.build(vs=c.service, namespace=namespace, weight=0, to=c.to)
        )
        weights = ", ".join(f"{s}%/{k}%" for s, k in (t.before for t in plan.touched))
        return [
            Reply(
                f"{_service(str(c.service), namespace)}: no rollout going on; "
                f"{plan.stable}/{plan.canary} at {weights}"
            )
        ]

    def _fresh_check(self, rollout: Rollout) -> str:
        """A health check made now, shown but not stored (it decides nothing)."""
        health = self.engine.health
        if isinstance(health, AlwaysHealthy):
            return "Now: no health checks are configured (set PROMETHEUS_URL)"
        verdict = health.check(rollout, self.clock())
        return f"Now: {health_table(verdict, getattr(health, 'thresholds', Thresholds()))}"

    def _history(self, c: Command, namespace: str, asker: Asker) -> list[Reply]:
        entries = self.store.history(namespace, str(c.service), count=20)
        service = _service(str(c.service), namespace)
        if not entries:
            return [Reply(f"{service}: nothing in the audit trail yet")]
        lines = [_history_line(e) for e in entries]
        return [Reply(f"*{service}*, last {len(lines)} events:\n" + "\n".join(lines))]

    def _plan(self, c: Command, namespace: str, asker: Asker) -> list[Reply]:
        request = SplitRequest.build(vs=c.service, namespace=namespace, weight=c.weight, to=c.to)
        plan = self.mesh.plan(request)
        if plan.noop:
            return [Reply(f"{_service(request.vs, namespace)} is already at {c.weight}%")]
        return [
            Reply(
                f"Plan for {_service(request.vs, namespace)} at {c.weight}% "
                f"({plan.stable} → {plan.canary}), nothing applied:\n```{plan.diff}```"
            )
        ]

    def _list(self) -> Reply:
        active = self.store.list_active()
        if not active:
            return Reply("No rollouts going on.")
        now = self.clock()
        return Reply("\n".join(card_text(card_view(r, now)).splitlines()[0] for r in active))

    def card_reply(self, rollout: Rollout) -> Reply:
        view = card_view(rollout, self.clock())
        return Reply(card_text(view), blocks=card_blocks(view))


def _outcome(rollout: Rollout, wanted: int) -> list[Reply]:
    """What the asker is told beyond the card: only what went wrong, as it really is."""
    went_live = rollout.weight == wanted and rollout.writing is None
    if went_live and not rollout.write_failed and rollout.phase is not Phase.FAILED:
        return []
    return [Reply(f":warning: {rollout.reason or 'the change did not go live'}")]


def _weight_after(verb: Verb, rollout: Rollout) -> int:
    if verb is Verb.PROMOTE:
        return 100
    if verb in (Verb.ROLLBACK, Verb.ABORT):
        return 0
    if verb is Verb.RESUME and rollout.step + 1 < len(rollout.steps.weights):
        return rollout.steps.weights[rollout.step + 1]
    return rollout.weight


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _service(vs: str, namespace: str) -> str:
    return vs if namespace == "default" else f"{vs}.{namespace}"


def _history_line(entry: AuditEntry) -> str:
    weights = ""
    if entry.weight_before is not None and entry.weight_after is not None:
        weights = f" {entry.weight_before}% → {entry.weight_after}%"
    who = entry.actor if not entry.actor.startswith(("U", "W")) else f"<@{entry.actor}>"
    detail = f" ({entry.detail})" if entry.detail else ""
    return f"`{entry.at:%Y-%m-%d %H:%M:%S}` {entry.action}{weights} by {who}{detail}"
