"""Approve and Deny on an approval card: count the votes, and run the change when they suffice."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bot.chat.approvals import (
    ApprovalBook,
    ApprovalRequest,
    approval_blocks,
    plan_hash,
    record,
)
from bot.chat.dispatch import Asker, Dispatcher, Reply
from bot.rollout.model import ApprovalDenied, ApprovalGranted, Rollout
from commands import parse
from policies import Allow, Change, Deny, mention


class RequestClosed(ValueError):
    """The request expired, or was already approved or denied."""


@dataclass(frozen=True)
class Outcome:
    request: ApprovalRequest
    blocks: list[dict[str, Any]]
    message: str = ""  # for the voter alone
    replies: list[Reply] = field(default_factory=list)  # what running the change said


class Approvals:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def card_posted(self, request_id: str, ts: str) -> None:
        book = self._book()
        request = book.load(request_id)
        if request is not None:
            book.save(replace(request, card_ts=ts))

    def open_gate(self, rollout: Rollout) -> tuple[ApprovalRequest, list[dict[str, Any]]]:
        """A staged rollout reached a gated step: ask for the go-ahead on a card."""
        step = rollout.step + 1
        weight = rollout.steps.weights[step]
        # Judged as part of the start its requester was allowed: freezes and approval rules
        # for adding traffic apply to the gate's weight.
        change = Change(
            action="start",
            weight_before=rollout.weight,
            weight_after=weight,
            plan_hash=plan_hash(rollout.id, step),
        )
        request = self._book().open(
            ApprovalRequest(
                id="",
                requester=rollout.started_by,
                channel=rollout.channel,
                command=f"{rollout.target.service} resume",
                namespace=rollout.target.namespace,
                vs=rollout.target.vs,
                change={**asdict(change), "last_change_at": None},
                diff=f"step {step + 1} of {len(rollout.steps.weights)}: {rollout.weight}% → "
                f"{weight}% to {rollout.target.canary}",
                kind="gate",
                rollout_id=rollout.id,
                step=step,
            )
        )
        self._audit(request, rollout.started_by, "approval-requested", rollout.weight, weight)
        return request, approval_blocks(request, None)

    def vote(self, request_id: str, user: str, *, deny: bool) -> Outcome:
        request = self._open(request_id)
        if request.kind == "gate":
            return self._vote_on_gate(request, user, deny=deny)
        if user == request.requester and not deny:
            return Outcome(
                request,
                approval_blocks(request, None),
                "Your own approval does not count: someone else must approve "
                "(the policy says who).",
            )
        d, gate = self.dispatcher, self.dispatcher.gate
        assert gate is not None
        command = parse(request.command)
        change, diff = d.change_for(command, request.namespace)  # the plan as it is now
        request = replace(
            record(request, gate.actor(user), d.clock(), change.plan_hash, deny=deny), diff=diff
        )
        decision = gate.decide(
            request.requester, change, request.namespace, request.vs, request.recorded()
        )
        self._audit(
            request, user, "deny" if deny else "approve", change.weight_before, change.weight_after
        )
        replies: list[Reply] = []
        if isinstance(decision, Allow):
            asker = Asker(request.requester, request.channel)
            replies = d.run(command, asker, text=request.command, approved=True)
            request = replace(request, status="approved")
        elif isinstance(decision, Deny):
            request = replace(request, status="denied")
            replies = [Reply(f"{mention(request.requester)}: {decision.reason}")]
        self._book().save(request)
        return Outcome(request, approval_blocks(request, decision), "", replies)

    def _vote_on_gate(self, request: ApprovalRequest, user: str, *, deny: bool) -> Outcome:
        """A gate opens when the policy's approvals for the step are in, and at least one
        person the policy lets approve (not the one who started the rollout) said yes."""
        d, gate = self.dispatcher, self.dispatcher.gate
        assert gate is not None
        if user == request.requester and not deny:
            return Outcome(
                request,
                approval_blocks(request, None),
                "Your own approval does not count: someone else must approve.",
            )
        approver = gate.actor(user)
        may = isinstance(
            gate.decide(user, Change(action="approve"), request.namespace, request.vs), Allow
        )
        if not may:
            return Outcome(
                request,
                approval_blocks(request, None),
                "You may not approve changes to this service (see the policy).",
            )
        request = record(request, approver, d.clock(), request.plan_hash, deny=deny)
        change = request.change_now()
        decision = gate.decide(
            request.requester, change, request.namespace, request.vs, request.recorded()
        )
        self._audit(
            request, user, "deny" if deny else "approve", change.weight_before, change.weight_after
        )
        if deny or isinstance(decision, Deny):
            d.engine.handle(request.rollout_id, ApprovalDenied(actor=user, step=request.step))
            request = replace(request, status="denied")
        elif isinstance(decision, Allow):
            d.engine.handle(request.rollout_id, ApprovalGranted(actor=user, step=request.step))
            request = replace(request, status="approved")
        self._book().save(request)
        return Outcome(request, approval_blocks(request, decision))

    def _open(self, request_id: str) -> ApprovalRequest:
        request = self._book().load(request_id)
        if request is None:
            raise RequestClosed("This approval request has expired; ask again.")
        if request.status != "open":
            raise RequestClosed(f"This request is already {request.status}.")
        return request

    def _audit(
        self,
        request: ApprovalRequest,
        user: str,
        action: str,
        before: int | None,
        after: int | None,
    ) -> None:
        self.dispatcher.store.audit(
            namespace=request.namespace,
            vs=request.vs,
            action=action,
            actor=user,
            at=self.dispatcher.clock(),
            weight_before=before,
            weight_after=after,
            channel=request.channel,
            plan_hash=request.plan_hash,
            detail=f"request {request.id}: /canary {request.command} by {request.requester}",
        )

    def _book(self) -> ApprovalBook:
        book = self.dispatcher.book
        if book is None:
            raise RequestClosed("approvals are not configured: no policy is loaded")
        return book
