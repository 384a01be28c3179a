"""Who may do what: the policy applied to chat, and approval requests with their cards.

A change that needs approval is kept in Redis with a hash of its exact plan. Approvals are
recorded against that hash; when the plan changes (the live VirtualService moved), earlier
approvals are void and the card says so. When enough approvals are in, the change runs as the
person who asked for it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from bot.store.redis_store import RolloutStore
from policies import (
    Actor,
    Allow,
    Approval,
    Change,
    Decision,
    NeedsApproval,
    Policy,
    decide,
    mention,
)
from policies import Target as PolicyTarget

GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
GROUPS_TTL_S = 300
REQUEST_TTL_S = 24 * 3600
APPROVAL_PREFIX = "approval:"


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


def plan_hash(*parts: object) -> str:
    """A short, stable fingerprint of what a change will do."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class ApprovalRequest:
    id: str
    requester: str
    channel: str | None
    command: str  # the text after /canary, run as the requester once approved
    namespace: str
    vs: str
    change: dict[str, Any]
    diff: str
    approvals: list[dict[str, Any]] = field(default_factory=list)
    status: str = "open"  # open | approved | denied
    voided: bool = False  # the plan changed since someone approved
    card_ts: str | None = None
    kind: str = "command"  # or "gate": a staged rollout's step waiting for a go-ahead
    rollout_id: str = ""
    step: int = -1

    @property
    def plan_hash(self) -> str:
        return str(self.change.get("plan_hash", ""))

    def change_now(self) -> Change:
        fields = dict(self.change)
        last = fields.get("last_change_at")
        fields["last_change_at"] = datetime.fromisoformat(last) if last else None
        return Change(**fields)

    def recorded(self) -> list[Approval]:
        return [
            Approval(
                user=a["user"],
                groups=frozenset(a["groups"]),
                at=datetime.fromisoformat(a["at"]),
                plan_hash=a["plan_hash"],
                deny=a["deny"],
            )
            for a in self.approvals
        ]


class ApprovalBook:
    """Approval requests in Redis."""

    def __init__(self, store: RolloutStore) -> None:
        self.store = store

    def open(self, request: ApprovalRequest) -> ApprovalRequest:
        request = replace(request, id=request.id or secrets.token_hex(4))
        self.save(request)
        return request

    def load(self, request_id: str) -> ApprovalRequest | None:
        raw = self.store.cache_get(f"approval:{request_id}")
        return None if raw is None else ApprovalRequest(**json.loads(raw))

    def save(self, request: ApprovalRequest) -> None:
        self.store.cache_set(f"approval:{request.id}", json.dumps(asdict(request)), REQUEST_TTL_S)


def record(
    request: ApprovalRequest, approver: Actor, at: datetime, current_hash: str, *, deny: bool
) -> ApprovalRequest:
    """Add a vote; a changed plan voids the votes cast on the old one."""
    votes = [a for a in request.approvals if a["plan_hash"] == current_hash]
    voided = len(votes) < len(request.approvals)
    votes = [a for a in votes if a["user"] != approver.user]  # one vote a person
    votes.append(
        {
            "user": approver.user,
            "groups": sorted(approver.groups),
            "at": at.isoformat(),
            "plan_hash": current_hash,
            "deny": deny,
        }
    )
    change = {**request.change, "plan_hash": current_hash}
    return replace(request, approvals=votes, change=change, voided=voided or request.voided)


def approval_blocks(request: ApprovalRequest, decision: Decision | None) -> list[dict[str, Any]]:
    """The approval card: what is asked, the exact diff, who approved, the buttons."""
    asked = f"{mention(request.requester)} asks: `/canary {request.command}`"
    if request.kind == "gate":
        asked = (
            f"the rollout of {request.vs} (started by {mention(request.requester)}) waits: "
            f"{request.diff}"
        )
    lines = [f"*Approval needed* — {asked}"]
    if isinstance(decision, NeedsApproval):
        lines.append(decision.reason)
    if request.voided:
        lines.append(
            ":warning: The plan changed since earlier approvals; they no longer "
            "count. Approve again if the new diff is right."
        )
    approvers = [mention(a["user"]) for a in request.approvals if not a["deny"]]
    if approvers:
        lines.append("Approved by " + ", ".join(approvers))
    text = "\n".join(lines)
    blocks: list[dict[str, Any]] = [_section(text)]
    if request.diff and request.kind == "command":
        blocks.append(_section(f"```{_clip(request.diff, 2800)}```"))
    if request.status == "open":
        blocks.append(
            {
                "type": "actions",
                "block_id": "approval",
                "elements": [
                    _button("Approve", "approve", request.id, "primary"),
                    _button("Deny", "deny", request.id, "danger"),
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


def _button(label: str, verb: str, request_id: str, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": f"{APPROVAL_PREFIX}{verb}",
        "value": request_id,
        "style": style,
    }


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
