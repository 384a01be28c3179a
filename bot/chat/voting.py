"""Approve and Deny on an approval card: each vote, and the status it leads to, in one step.

A vote counts for the plan its card showed; when the plan has changed since, the card is shown
again with the new diff and the voter asked to look again. A Deny closes the request for good,
whatever the order the votes came in; the vote that completes the approvals moves the request
to approved, once, and only that vote runs the change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bot.chat.approvals import ApprovalBook, ApprovalRequest, approval_blocks, audit_vote
from bot.chat.dispatch import Asker, Dispatcher, Reply
from bot.rollout.model import ApprovalDenied, ApprovalGranted, Phase
from bot.store.approvals import APPROVED, DENIED, OPEN, Ballot, Vote
from commands import parse
from policies import Change, Decision, Deny, mention

PLAN_CHANGED = (
    "The plan changed since this card was posted; look at the new diff and approve again."
)
OWN_APPROVAL = "Your own approval does not count: someone else must approve (the policy says who)."


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
        self._book().card_posted(request_id, ts)

    def vote(self, request_id: str, user: str, *, deny: bool, shown: str | None = None) -> Outcome:
        """`user` pressed Approve or Deny on the card of `request_id` showing plan `shown`."""
        request = self._open(request_id, deny)
        self._require_waiting(request)
        if user == request.requester and not deny:
            return Outcome(request, approval_blocks(request, None), OWN_APPROVAL)
        change, diff = self._plan_now(request, deny)
        if not self._may_vote(request, user, change):
            return Outcome(
                request,
                approval_blocks(request, None),
                "You may not approve or deny changes to this service (see the policy).",
            )
        if not deny and (shown or request.plan_hash) != change.plan_hash:
            return self._replan(request, change, diff)
        ballot = self._cast(request, user, change, deny=deny)
        if not ballot.counted:
            return self._not_counted(ballot.request, deny)
        self._audit(
            request, user, "deny" if deny else "approve", change.weight_before, change.weight_after
        )
        replies = self._carry_out(ballot, user)
        return Outcome(
            ballot.request, approval_blocks(ballot.request, ballot.decision), "", replies
        )

    def _require_waiting(self, request: ApprovalRequest) -> None:
        """A gate's request lives as long as its rollout waits at that step, no longer."""
        if request.kind != "gate":
            return
        rollout = self._desk(request).store.load(request.rollout_id)
        if rollout.phase is not Phase.PENDING_APPROVAL or rollout.step + 1 != request.step:
            raise RequestClosed(
                f"This rollout no longer waits for this approval (it is {rollout.phase.value}); "
                "nothing was changed."
            )

    def _plan_now(self, request: ApprovalRequest, deny: bool) -> tuple[Change, str]:
        """The change as it would be made now, and its diff. A Deny needs no fresh plan:
        refusing is safe whatever the plan became."""
        if deny or request.kind == "gate":
            return request.change_now(), request.diff
        return self.dispatcher.change_for(parse(request.command), request.namespace)

    def _may_vote(self, request: ApprovalRequest, user: str, change: Change) -> bool:
        if request.kind == "command" and user == request.requester:
            return True  # withdrawing one's own request
        gate = self.dispatcher.gate
        assert gate is not None
        return gate.may_vote(user, change, request.namespace, request.vs)

    def _replan(self, request: ApprovalRequest, change: Change, diff: str) -> Outcome:
        fields = {**asdict(change), "last_change_at": _iso(change)}
        replanned = self._book().replan(request.id, fields, diff)
        if replanned is None or replanned.status != OPEN:
            raise RequestClosed(_closed_text(replanned or request, deny=False))
        return Outcome(replanned, approval_blocks(replanned, None), PLAN_CHANGED)

    def _cast(self, request: ApprovalRequest, user: str, change: Change, *, deny: bool) -> Ballot:
        gate = self.dispatcher.gate
        assert gate is not None
        requester = request.requester
        vote = Vote(
            user=user,
            groups=gate.actor(user).groups,
            at=self.dispatcher.clock(),
            plan_hash=change.plan_hash,
            deny=deny,
        )

        def judge(voted: ApprovalRequest) -> Decision:
            judged = voted.change_now() if deny else change
            return gate.decide(requester, judged, voted.namespace, voted.vs, voted.recorded())

        ballot = self._book().cast(request.id, vote, judge)
        if ballot is None:
            raise RequestClosed("This approval request has expired; ask again.")
        return ballot

    def _not_counted(self, request: ApprovalRequest, deny: bool) -> Outcome:
        if request.status == OPEN:  # another vote put a newer plan on the card meanwhile
            return Outcome(request, approval_blocks(request, None), PLAN_CHANGED)
        return Outcome(request, approval_blocks(request, None), _closed_text(request, deny))

    def _carry_out(self, ballot: Ballot, user: str) -> list[Reply]:
        """Run the change (or end the gated rollout): only the vote that decided does this."""
        request, d = ballot.request, self.dispatcher
        if request.kind == "gate" and request.status == APPROVED:
            granted = ApprovalGranted(actor=user, step=request.step)
            self._desk(request).engine.handle(request.rollout_id, granted)
        elif request.kind == "gate" and request.status == DENIED:
            denied = ApprovalDenied(actor=user, step=request.step)
            self._desk(request).engine.handle(request.rollout_id, denied)
        elif request.status == APPROVED:
            asker = Asker(request.requester, request.channel)
            return d.run(parse(request.command), asker, text=request.command, approved=True)
        elif request.status == DENIED:
            reason = ballot.decision.reason if isinstance(ballot.decision, Deny) else ""
            return [Reply(f"{mention(request.requester)}: {reason or f'denied by {user}'}")]
        return []

    def _open(self, request_id: str, deny: bool) -> ApprovalRequest:
        request = self._book().load(request_id)
        if request is None:
            raise RequestClosed("This approval request has expired; ask again.")
        if request.status != OPEN:
            raise RequestClosed(_closed_text(request, deny))
        return request

    def _audit(
        self,
        request: ApprovalRequest,
        user: str,
        action: str,
        before: int | None,
        after: int | None,
    ) -> None:
        d = self.dispatcher
        audit_vote(
            d.store, d.clock(), request, user=user, action=action, before=before, after=after
        )

    def _desk(self, request: ApprovalRequest) -> Dispatcher:
        """The dispatcher of the cluster whose rollout a gate is for: the bot's own, or a wave
        cluster's."""
        return self.dispatcher.desk(request.cluster) if request.cluster else self.dispatcher

    def _book(self) -> ApprovalBook:
        book = self.dispatcher.book
        if book is None:
            raise RequestClosed("approvals are not configured: no policy is loaded")
        return book


def _closed_text(request: ApprovalRequest, deny: bool) -> str:
    vote = "deny" if deny else "approval"
    by = ", ".join(mention(u) for u in request.denied_by())
    status = f"denied by {by}" if request.status == DENIED and by else request.status
    return f"This request is already {status}; your {vote} was not counted."


def _iso(change: Change) -> str | None:
    return None if change.last_change_at is None else change.last_change_at.isoformat()
