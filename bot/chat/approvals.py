"""Who may do what: the policy applied to chat, and the cards of approval requests.

A change that needs approval is kept in Redis (bot.store.approvals) with a hash of its exact
plan, and its card's buttons carry that hash. Approvals count for that plan only; when the plan
changes (the live VirtualService moved), earlier approvals are void and the card says so. When
enough approvals are in, the change runs as the person who asked for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from bot.chat.cards import escaped
from bot.chat.phone import phone_diff
from bot.rollout.model import Rollout
from bot.service.changes import plan_hash
from bot.store.approvals import ApprovalBook, ApprovalRequest
from bot.store.redis_store import RolloutStore
from commands.grammar import on_cluster
from policies import (
    Actor,
    Allow,
    Approval,
    Change,
    Decision,
    NeedsApproval,
    Policy,
    approvers,
    decide,
    mention,
)
from policies import Target as PolicyTarget

__all__ = [
    "APPROVAL_PREFIX",
    "ApprovalBook",
    "ApprovalRequest",
    "Gate",
    "GroupDirectory",
    "allowed",
    "approval_blocks",
    "group_ids",
    "parse_vote",
    "plan_hash",
    "summary_text",
]

GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
GROUPS_TTL_S = 300
APPROVAL_PREFIX = "approval:"
_VOTE_VALUE = re.compile(r"^(?P<id>[A-Za-z0-9]{1,32})(?::(?P<hash>[0-9a-f]{0,64}))?$")


class GroupDirectory:
    """The Slack user groups a user is in (`usergroups.users.list`), cached in Redis."""

    def __init__(
        self, members_of: Callable[[str], list[str]], store: RolloutStore, candidates: Iterable[str]
    ) -> None:
        self._members_of, self._store = members_of, store
        self._candidates = sorted(set(candidates))

    def groups_of(self, user: str) -> frozenset[str]:
        return frozenset(g for g in self._candidates if user in self._members(g))

    def _members(self, group: str) -> list[str]:
        key = f"usergroup:{group}"
        cached = self._store.cache_get(key)
        if cached is not None:
            return list(json.loads(cached))
        members = self._members_of(group)
        self._store.cache_set(key, json.dumps(members), GROUPS_TTL_S)
        return members


def group_ids(policy: Policy) -> set[str]:
    """Every user-group ID a policy names, wherever it names it."""
    return {s for s in _strings([placed.rule for placed in policy.rules]) if GROUP_ID.match(s)}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, BaseModel):
        yield from _strings(value.model_dump())
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)


@dataclass(frozen=True)
class Gate:
    """The policy, asked on behalf of a Slack user."""

    policy: Policy
    groups: GroupDirectory
    clock: Callable[[], datetime]

    def actor(self, user: str) -> Actor:
        return Actor(user=user, groups=self.groups.groups_of(user))

    def decide(
        self, user: str, change: Change, namespace: str, vs: str, approvals: Iterable[Approval] = ()
    ) -> Decision:
        return decide(
            self.policy,
            self.actor(user),
            change,
            PolicyTarget(namespace, vs),
            self.clock(),
            approvals=tuple(approvals),
        )

    def may_vote(self, user: str, change: Change, namespace: str, vs: str) -> bool:
        """Whether `user`'s approve or deny counts for `change` (see policies.approvers)."""
        voters = approvers(self.policy, change, PolicyTarget(namespace, vs))
        return self.actor(user).is_one_of(voters)


class GateCards:
    """The approval card a staged rollout's gated step asks for; the notifier posts it when
    the rollout gets there."""

    def __init__(self, book: ApprovalBook, store: RolloutStore, clock: Callable[[], datetime]):
        self._book, self._store, self._clock = book, store, clock

    def card_posted(self, request_id: str, ts: str) -> None:
        self._book.card_posted(request_id, ts)

    def open_gate(
        self, rollout: Rollout, cluster: str | None = None
    ) -> tuple[ApprovalRequest, list[dict[str, Any]]]:
        """A staged rollout (of the wave cluster `cluster`, if given) reached a gated step:
        ask for the go-ahead on a card."""
        on = on_cluster(cluster)
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
        request = self._book.open(
            ApprovalRequest(
                id="",
                requester=rollout.started_by,
                channel=rollout.channel,
                command=f"{rollout.target.service} resume{on}",
                namespace=rollout.target.namespace,
                vs=rollout.target.vs,
                change={**asdict(change), "last_change_at": None},
                diff=f"step {step + 1} of {len(rollout.steps.weights)}: {rollout.weight}% → "
                f"{weight}% to {rollout.target.canary}{on}",
                kind="gate",
                rollout_id=rollout.id,
                step=step,
                cluster=cluster or "",
            )
        )
        audit_vote(
            self._store,
            self._clock(),
            request,
            user=rollout.started_by,
            action="approval-requested",
            before=rollout.weight,
            after=weight,
        )
        return request, approval_blocks(request, None)


def audit_vote(
    store: RolloutStore,
    at: datetime,
    request: ApprovalRequest,
    *,
    user: str,
    action: str,
    before: int | None,
    after: int | None,
) -> None:
    """One entry in the service's audit trail for a request, a vote or a gate."""
    store.audit(
        namespace=request.namespace,
        vs=request.vs,
        action=action,
        actor=user,
        at=at,
        weight_before=before,
        weight_after=after,
        channel=request.channel,
        plan_hash=request.plan_hash,
        detail=f"request {request.id}: /canary {request.command} by {request.requester}",
    )


def approval_blocks(request: ApprovalRequest, decision: Decision | None) -> list[dict[str, Any]]:
    """The approval card: what is asked, the exact diff, who approved, the buttons."""
    asked = f"{mention(request.requester)} asks: `/canary {escaped(request.command)}`"
    if request.kind == "gate":
        asked = (
            f"the rollout of {request.vs} (started by {mention(request.requester)}) waits: "
            f"{escaped(request.diff)}"
        )
    lines = [f"*Approval needed* — {asked}"]
    if isinstance(decision, NeedsApproval):
        lines.append(decision.reason)
    if request.voided:
        lines.append(
            ":warning: The plan changed since this card was first posted; approvals given "
            "before no longer count. Approve again if the new diff is right."
        )
    approvers = [mention(a["user"]) for a in request.approvals if not a["deny"]]
    if approvers:
        lines.append("Approved by " + ", ".join(approvers))
    text = "\n".join(lines)
    blocks: list[dict[str, Any]] = [_section(text)]
    if request.diff and request.kind == "command":
        blocks.append(_section(f"```{escaped(phone_diff(request.diff), 2800)}```"))
    if request.status == "open":
        blocks.append(
            {
                "type": "actions",
                "block_id": "approval",
                "elements": [
                    _button("Approve", "approve", request, "primary"),
                    _button("Deny", "deny", request, "danger"),
                ],
            }
        )
    else:
        outcome = (
            ":white_check_mark: Approved and applied"
            if request.status == "approved"
            else ":x: Denied"
        )
        blocks.append(_section(outcome))
    return blocks


def summary_text(request: ApprovalRequest) -> str:
    return f"Approval needed: /canary {request.command} ({request.status})"


def allowed(decision: Decision) -> bool:
    return isinstance(decision, Allow)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, 2900)}}


def _button(label: str, verb: str, request: ApprovalRequest, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": f"{APPROVAL_PREFIX}{verb}",
        "value": f"{request.id}:{request.plan_hash}",  # the vote is for the plan on the card
        "style": style,
        "confirm": _confirm(verb, request, style),
    }


def _confirm(verb: str, request: ApprovalRequest, style: str) -> dict[str, Any]:
    """The dialog before a vote: one stray tap on a phone must neither roll out nor stop one."""
    what = (
        f"the rollout of {request.vs}" if request.kind == "gate" else f"/canary {request.command}"
    )
    if verb == "approve":
        title, text, yes = (
            "Approve?",
            f"Approve {what}? It runs once enough approvals are in.",
            "Approve",
        )
    elif request.kind == "gate":
        title, yes = "Deny and roll back?", "Deny"
        text = f"Deny {what}? It is rolled back: its canary gets 0%."
    else:
        title, text, yes = "Deny?", f"Deny {what}? Nothing changes; the request is closed.", "Deny"

    def plain(value: str, limit: int) -> dict[str, str]:
        return {"type": "plain_text", "text": _clip(value, limit)}

    return {
        "title": plain(title, 100),
        "text": plain(text, 300),
        "confirm": plain(yes, 30),
        "deny": plain("Cancel", 30),
        "style": style,
    }


def parse_vote(value: str) -> tuple[str, str | None]:
    """(request id, plan hash on the card) from an Approve/Deny button's value; a card posted
    before buttons carried the hash has no hash."""
    match = _VOTE_VALUE.match(value)
    if match is None:
        raise ValueError(f"not an approval button value (<request id>:<plan hash>): {value[:40]!r}")
    return match["id"], match["hash"] or None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
