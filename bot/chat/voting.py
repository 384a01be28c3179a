"""Approve and Deny on an approval card: count the votes, and run the change when they suffice."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bot.chat.approvals import ApprovalBook, ApprovalRequest, approval_blocks, record
from bot.chat.dispatch import Asker, Dispatcher, Reply
from commands import parse
from policies import Allow, Deny, mention


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

    def vote(self, request_id: str, user: str, *, deny: bool) -> Outcome:
        request = self._open(request_id)
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
