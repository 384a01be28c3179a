"""Approval requests in Redis, each change to one a single WATCH/MULTI transaction.

A vote and the status it leads to are written together or not at all. The policy judges the
votes inside the transaction, so a vote that raced another is judged again on what the other
wrote: once a Deny is recorded the request is denied for good, and the move from open to
approved happens exactly once, by the vote that completed the approvals, before the change runs.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from redis.client import Pipeline

from bot.store.redis_store import RolloutStore, unavailable_on_error
from policies import Allow, Approval, Change, Decision, Deny

REQUEST_TTL_S = 24 * 3600
OPEN, APPROVED, DENIED = "open", "approved", "denied"
R = TypeVar("R")


@dataclass(frozen=True)
class ApprovalRequest:
    id: str
    requester: str
    channel: str | None
    command: str  # the text after /canary, run as the requester once approved
    namespace: str
    vs: str
    change: dict[str, Any]  # a policies.Change as JSON, with the hash of the plan on the card
    diff: str
    approvals: list[dict[str, Any]] = field(default_factory=list)
    status: str = OPEN  # open | approved | denied
    voided: bool = False  # the plan changed since the card was first posted
    card_ts: str | None = None
    kind: str = "command"  # or "gate": a staged rollout's step waiting for a go-ahead
    rollout_id: str = ""
    step: int = -1
    cluster: str = ""  # a gate of a wave cluster's rollout: that cluster ("": the bot's own)

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

    def denied_by(self) -> list[str]:
        return [a["user"] for a in self.approvals if a["deny"]]


@dataclass(frozen=True)
class Vote:
    user: str
    groups: frozenset[str]
    at: datetime
    plan_hash: str  # the plan the voter saw; a Deny counts against whatever plan is stored
    deny: bool


@dataclass(frozen=True)
class Ballot:
    """What a vote came to: the request as stored after it, and whether the vote counted."""

    request: ApprovalRequest
    counted: bool
    decision: Decision | None = None


class ApprovalBook:
    """Approval requests, one Redis key each, kept for a day."""

    def __init__(self, store: RolloutStore, *, prefix: str = "canary") -> None:
        self._redis, self._prefix = store.redis, prefix

    def open(self, request: ApprovalRequest) -> ApprovalRequest:
        request = replace(request, id=request.id or secrets.token_hex(4))
        with unavailable_on_error(self._redis):
            self._redis.set(self._key(request.id), _dump(request), ex=REQUEST_TTL_S)
        return request

    def load(self, request_id: str) -> ApprovalRequest | None:
        with unavailable_on_error(self._redis):
            raw = self._redis.get(self._key(request_id))
        return None if raw is None else _load(raw)

    def card_posted(self, request_id: str, ts: str) -> None:
        self._transact(request_id, lambda r: (r and replace(r, card_ts=ts), None))

    def replan(self, request_id: str, change: dict[str, Any], diff: str) -> ApprovalRequest | None:
        """Put a new plan on an open request; approvals given for another plan stop counting."""

        def step(
            r: ApprovalRequest | None,
        ) -> tuple[ApprovalRequest | None, ApprovalRequest | None]:
            if r is None or r.status != OPEN:
                return None, r
            kept = [a for a in r.approvals if a["plan_hash"] == change.get("plan_hash")]
            new = replace(r, change=change, diff=diff, approvals=kept, voided=True)
            return new, new

        return self._transact(request_id, step)

    def cast(
        self, request_id: str, vote: Vote, judge: Callable[[ApprovalRequest], Decision]
    ) -> Ballot | None:
        """Record `vote` on an open request and set the status the votes now lead to: denied
        after any Deny, approved when `judge` allows. An approval for a plan other than the
        request's is not counted. None when the request is gone."""

        def step(r: ApprovalRequest | None) -> tuple[ApprovalRequest | None, Ballot | None]:
            if r is None:
                return None, None
            if r.status != OPEN or not (vote.deny or vote.plan_hash == r.plan_hash):
                return None, Ballot(r, counted=False)
            voted = _record(r, replace(vote, plan_hash=r.plan_hash))
            decision = judge(voted)
            decided = replace(voted, status=_status(vote, decision))
            return decided, Ballot(decided, counted=True, decision=decision)

        return self._transact(request_id, step)

    def _transact(
        self,
        request_id: str,
        step: Callable[[ApprovalRequest | None], tuple[ApprovalRequest | None, R]],
    ) -> R:
        """Run `step` on the stored request and write what it returns, as one transaction:
        if anyone else wrote the request meanwhile, it runs again on what they wrote."""
        key, results = self._key(request_id), []

        def attempt(pipe: Pipeline) -> None:
            raw = pipe.get(key)
            write, result = step(None if raw is None else _load(raw))
            results.append(result)
            pipe.multi()
            if write is not None:
                pipe.set(key, _dump(write), keepttl=True)

        with unavailable_on_error(self._redis):
            self._redis.transaction(attempt, key)
        return results[-1]  # what the attempt that went through decided

    def _key(self, request_id: str) -> str:
        return f"{self._prefix}:approval:{request_id}"


def _record(request: ApprovalRequest, vote: Vote) -> ApprovalRequest:
    """Add a vote: one a person, the latest kept."""
    votes = [a for a in request.approvals if a["user"] != vote.user]
    entry = {**asdict(vote), "groups": sorted(vote.groups), "at": vote.at.isoformat()}
    return replace(request, approvals=[*votes, entry])


def _status(vote: Vote, decision: Decision) -> str:
    if vote.deny or isinstance(decision, Deny):
        return DENIED
    return APPROVED if isinstance(decision, Allow) else OPEN


def _dump(request: ApprovalRequest) -> str:
    return json.dumps(asdict(request))


def _load(raw: Any) -> ApprovalRequest:
    return ApprovalRequest(**json.loads(raw))
