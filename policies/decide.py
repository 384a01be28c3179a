"""May this person do this to this service now? Pure: the clock and the approvals are arguments.

The checks run in order and the first that objects decides: lowering traffic (rollback, pause,
abort by whoever may roll back) → permission → synced from Git (`gitops: refuse`) → staged-only
→ freeze → max_step → min_interval → approvals. Lowering a weight is never held by a freeze, a
limit or an approval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from commands.names import service_name
from policies.model import (
    RAISING_ACTIONS,
    SAFE_ACTIONS,
    Action,
    Actor,
    Allow,
    Approval,
    ApprovalRule,
    Change,
    Decision,
    Deny,
    DrillSettings,
    FreezeWindow,
    HealthThresholds,
    NeedsApproval,
    PlacedRule,
    Policy,
    RolloutSettings,
    Rule,
    StepPlanFields,
    Target,
    is_user,
)

READ_ONLY = frozenset({"status", "history", "plan", "list", "help"})
_ACTIONS = frozenset(Action)
_CHAIN_LIMIT = 64  # back-to-back freeze windows followed to find when the freeze really ends


def decide(
    policy: Policy,
    actor: Actor,
    change: Change,
    target: Target,
    now: datetime,
    *,
    approvals: Sequence[Approval] = (),
) -> Decision:
    """Allow, Deny(reason) or NeedsApproval(...) for `actor` making `change` to `target`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
    if change.action in READ_ONLY:
        return Allow("anyone may look")
    if change.action not in _ACTIONS:
        return Deny(f"{change.action!r} is not an action; use one of {', '.join(Action)}")
    placed = policy.match(target)
    if placed is None:
        return Deny(
            f"no policy rule covers {_service(target)}; ask the platform team to add one "
            f"to {policy.source}"
        )
    ask = _Ask(placed, actor, change, Action(change.action), target, now, tuple(approvals))
    return _first_objection(ask) or _approvals(ask)


def rollout_defaults(policy: Policy, target: Target) -> tuple[StepPlanFields, HealthThresholds]:
    """The step plan and health thresholds for `target`'s rollouts (built-in ones if no rule)."""
    placed = policy.match(target)
    settings = placed.rule.rollout if placed else RolloutSettings()
    fields = StepPlanFields(
        weights=settings.steps,
        interval_s=int(settings.every.total_seconds()),
        gates=settings.gates,
        failure_limit=settings.failure_limit,
        inconclusive_limit=settings.inconclusive_limit,
    )
    return fields, settings.health


def analysis_every(policy: Policy, target: Target) -> timedelta | None:
    """How often `target`'s held steps are looked at (zero: never); None when no rule says."""
    placed = policy.match(target)
    return None if placed is None else placed.rule.rollout.analysis


def staged_gates(policy: Policy, target: Target, weights: Sequence[int]) -> tuple[int, ...]:
    """The steps of a staged rollout that wait for an approval before they are applied.

    A step waits when it is the first to reach one of the rule's `gates`, or when a requirement
    for starts holds at its weight (`above_weight`). The first step is the start itself, which
    `decide` judges (and holds for approval when needed); a requirement without a threshold is
    met by approving the start.
    """
    placed = policy.match(target)
    if placed is None:
        return ()
    rule = placed.rule
    gated = {min((w for w in weights if w >= gate), default=None) for gate in rule.rollout.gates}
    gated |= {w for w in weights[1:] if _above_threshold(rule, w)}
    return tuple(w for w in weights if w in gated)


def _above_threshold(rule: Rule, weight: int) -> bool:
    start = Change(Action.START, weight_after=weight)
    return any(r.above_weight is not None for r in _held(rule, Action.START, start))


@dataclass(frozen=True)
class _Ask:
    placed: PlacedRule
    actor: Actor
    change: Change
    action: Action
    target: Target
    now: datetime
    approvals: tuple[Approval, ...]

    @property
    def rule(self) -> Rule:
        return self.placed.rule

    @property
    def raising(self) -> bool:
        return _raising(self.action, self.change)


def _raising(action: Action, change: Change) -> bool:
    """Whether it starts or adds traffic (an unknown new weight counts as adding)."""
    if action in (Action.SET_WEIGHT, Action.MIRROR):
        after = change.weight_after
        return after is None or after > (change.weight_before or 0)
    return action in RAISING_ACTIONS


def _held(rule: Rule, action: Action, change: Change) -> list[ApprovalRule]:
    """The approval requirements that apply to `change`."""
    weight = change.weight_after
    if action is Action.PROMOTE and weight is None:
        weight = 100
    return [r for r in rule.approvals if r.holds(action, _raising(action, change), weight)]


Check = Callable[[_Ask], Decision | None]


def _first_objection(ask: _Ask) -> Decision | None:
    for check in _CHECKS:
        if (decision := check(ask)) is not None:
            return decision
    return None


def _safe(ask: _Ask) -> Decision | None:
    if ask.action in SAFE_ACTIONS and ask.actor.is_one_of(ask.rule.allow.who_may(Action.ROLLBACK)):
        return Allow(
            f"you may roll back in {ask.rule.scope}, so {ask.action} is allowed at any time: "
            f"no freeze, limit or approval holds it ({_rule_ref(ask.placed)})"
        )
    return None


def _permitted(ask: _Ask) -> Decision | None:
    allowed = ask.rule.allow.who_may(ask.action)
    if ask.actor.is_one_of(allowed):
        return None
    if not allowed:
        return Deny(
            f"nobody may {ask.action} in {ask.rule.scope} ({_rule_ref(ask.placed)}); "
            "ask the platform team to change the policy"
        )
    return Deny(
        f"you ({mention(ask.actor.user)}) may not {ask.action} in {ask.rule.scope}: "
        f"ask one of {', '.join(mention(p) for p in allowed)}"
    )


def _synced_from_git(ask: _Ask) -> Decision | None:
    if ask.rule.gitops != "refuse" or not ask.change.gitops:
        return None
    return Deny(
        f"{ask.change.gitops} In {ask.rule.scope}, changes that a GitOps sync would undo are "
        f"refused ({_rule_ref(ask.placed)}); nothing was changed."
    )


def _staged_only(ask: _Ask) -> Decision | None:
    if ask.action is not Action.SET_WEIGHT or not ask.raising or not ask.rule.limits.staged_only:
        return None
    return Deny(
        f"{ask.rule.scope} is staged-only: traffic goes up only in a staged rollout with health "
        f"checks; use `/canary {_command_name(ask.target)} start` (lowering the weight and "
        "rolling back are still allowed)"
    )


def _frozen(ask: _Ask) -> Decision | None:
    found = _frozen_until(ask.rule.freeze, ask.now) if ask.raising else None
    if found is None:
        return None
    window, until = found
    return Deny(
        f"{_service(ask.target)} is frozen until {_when(until, window.zone, ask.now)} "
        f"({window.label}); rollback, pause and abort are still allowed"
    )


def _max_step(ask: _Ask) -> Decision | None:
    limit, after = ask.rule.limits.max_step, ask.change.weight_after
    if ask.action is not Action.SET_WEIGHT or limit is None or after is None:
        return None
    before = ask.change.weight_before or 0
    if after - before <= limit:
        return None
    return Deny(
        f"in {ask.rule.scope} a manual change may raise the weight by at most {limit} points: "
        f"from {before}% you can go to {min(before + limit, 100)}%, or start a staged rollout "
        f"with `/canary {_command_name(ask.target)} start`"
    )


def _min_interval(ask: _Ask) -> Decision | None:
    gap, last = ask.rule.limits.min_interval, ask.change.last_change_at
    if ask.action is not Action.SET_WEIGHT or not ask.raising or gap is None or last is None:
        return None
    wait = last + gap - ask.now
    if wait <= timedelta(0):
        return None
    return Deny(
        f"in {ask.rule.scope} manual weight changes must be at least {_span(gap)} apart; "
        f"the last one was {_span(ask.now - last)} ago, so try again in {_span(wait)}"
    )


def _drills_on(ask: _Ask) -> Decision | None:
    if ask.action is not Action.FAULT or ask.rule.drills is not None:
        return None
    return Deny(
        f"fault drills are off in {ask.rule.scope} ({_rule_ref(ask.placed)}); ask the platform "
        "team to turn them on with `drills: {default: 10m, max: 1h}` in the rule"
    )


def drill_limits(policy: Policy, target: Target) -> DrillSettings | None:
    """How long `target`'s fault drills last by default and at most; None when they are off."""
    placed = policy.match(target)
    return None if placed is None else placed.rule.drills


_CHECKS: tuple[Check, ...] = (
    _safe,
    _drills_on,
    _permitted,
    _synced_from_git,
    _staged_only,
    _frozen,
    _max_step,
    _min_interval,
)


# -- Freeze windows


def _frozen_until(
    windows: tuple[FreezeWindow, ...], now: datetime
) -> tuple[FreezeWindow, datetime] | None:
    """The window holding `now` and when the freeze ends, following back-to-back windows."""
    open_now = [(w, end) for w in windows if (end := w.ends_after(now)) is not None]
    if not open_now:
        return None
    window, until = max(open_now, key=lambda pair: pair[1])
    for _ in range(_CHAIN_LIMIT):
        later = [end for w in windows if (end := w.ends_after(until)) is not None and end > until]
        if not later:
            break
        until = max(later)
    return window, until


def _when(until: datetime, zone: ZoneInfo, now: datetime) -> str:
    pattern = "%a %H:%M" if until - now < timedelta(days=6) else "%a %d %b %Y %H:%M"
    return f"{until.astimezone(zone).strftime(pattern)} {zone.key}"


# -- Approvals


@dataclass(frozen=True)
class _Tally:
    counted: frozenset[str]  # distinct approvers whose approval counts
    stale: int  # people whose approval was for an earlier plan
    expired: int  # people whose approval for this plan is too old
    own: bool  # the requester approved their own change


def _approvals(ask: _Ask) -> Decision:
    held = _held(ask.rule, ask.action, ask.change)
    if veto := _veto(ask, held):
        return veto
    counted: set[str] = set()
    for requirement in held:
        tally = _tally(ask, requirement)
        if len(tally.counted) < requirement.count:
            return _needs(ask, requirement, tally)
        counted |= tally.counted
    return Allow(_allowed_because(ask, counted))


def _veto(ask: _Ask, held: list[ApprovalRule]) -> Decision | None:
    if not held:
        return None
    voters = _voters(ask.rule, held)
    for vote in ask.approvals:
        if vote.deny and vote.plan_hash == ask.change.plan_hash and _may_vote(vote, voters, ask):
            return Deny(
                f"{mention(vote.user)} denied this change; it stays denied until the plan changes"
            )
    return None


def _may_vote(vote: Approval, voters: frozenset[str], ask: _Ask) -> bool:
    return vote.user == ask.actor.user or Actor(vote.user, vote.groups).is_one_of(voters)


def _voters(rule: Rule, held: list[ApprovalRule]) -> frozenset[str]:
    """Whose approve or deny counts: who may approve, and whom a holding requirement names."""
    return frozenset(
        {*rule.allow.who_may(Action.APPROVE), *(s for r in held for s in rule.approvers(r))}
    )


def approvers(policy: Policy, change: Change, target: Target) -> frozenset[str]:
    """The people and groups whose approve or deny counts for `change` to `target`."""
    placed = policy.match(target)
    if placed is None or change.action not in _ACTIONS:
        return frozenset()
    return _voters(placed.rule, _held(placed.rule, Action(change.action), change))


def _tally(ask: _Ask, requirement: ApprovalRule) -> _Tally:
    sources = frozenset(ask.rule.approvers(requirement))
    votes = [a for a in ask.approvals if not a.deny and Actor(a.user, a.groups).is_one_of(sources)]
    current = [a for a in votes if a.plan_hash == ask.change.plan_hash]
    fresh = [a for a in current if ask.now < a.at + requirement.expires]
    counted = frozenset(a.user for a in fresh if a.user != ask.actor.user)
    return _Tally(
        counted=counted,
        stale=len({a.user for a in votes if a.plan_hash != ask.change.plan_hash} - counted),
        expired=len({a.user for a in current if a not in fresh} - counted),
        own=any(a.user == ask.actor.user for a in fresh),
    )


def _needs(ask: _Ask, requirement: ApprovalRule, tally: _Tally) -> NeedsApproval:
    sources = ask.rule.approvers(requirement)
    subject, verb = _subject(ask.rule, requirement)
    reason = (
        f"{subject} {verb} {_count(requirement.count, 'approval')} from {_either(sources)}; "
        f"you have {len(tally.counted)}"
    )
    return NeedsApproval(
        count=requirement.count,
        sources=sources,
        have=len(tally.counted),
        reason=reason + "".join(_notes(requirement, tally)),
    )


def _subject(rule: Rule, requirement: ApprovalRule) -> tuple[str, str]:
    above = f" above {requirement.above_weight}%" if requirement.above_weight is not None else ""
    if not requirement.actions:
        return f"{rule.label} changes{above}", "need"
    return f"{' and '.join(requirement.actions)} in {rule.label}{above}", "needs"


def _notes(requirement: ApprovalRule, tally: _Tally) -> list[str]:
    notes = []
    if tally.stale:
        notes.append(
            f"; {_count(tally.stale, 'approval')} for an earlier plan no longer "
            f"{'counts' if tally.stale == 1 else 'count'} (a changed plan voids approvals)"
        )
    if tally.expired:
        notes.append(
            f"; {_count(tally.expired, 'approval')} expired (approvals last "
            f"{_span(requirement.expires)})"
        )
    if tally.own:
        notes.append("; your own approval does not count")
    return notes


def _allowed_because(ask: _Ask, counted: set[str]) -> str:
    reason = f"{_rule_ref(ask.placed)} lets you {ask.action} in {ask.rule.scope}"
    if counted:
        return f"{reason}; approved by {_either(tuple(sorted(counted)), 'and')}"
    return reason


# -- Words


def to_alert(policy: Policy, target: Target) -> tuple[str, ...]:
    """Who hears of a rollout of `target` that needs a human (approval, a pause the bot made,
    an automatic rollback, drift): the rule's on-call, then everyone who may approve."""
    placed = policy.match(target)
    if placed is None:
        return ()
    rule = placed.rule
    named = [rule.on_call] if rule.on_call else []
    named += [s for requirement in rule.approvals for s in rule.approvers(requirement)]
    named += rule.allow.who_may(Action.APPROVE)
    return tuple(dict.fromkeys(named))


def mention(principal: str) -> str:
    """How Slack shows a member (<@U…>) or a user group (<!subteam^S…>)."""
    return f"<@{principal}>" if is_user(principal) else f"<!subteam^{principal}>"


def _either(principals: Sequence[str], word: str = "or") -> str:
    names = [mention(p) for p in principals]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _span(delta: timedelta) -> str:
    seconds = max(1, math.ceil(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{seconds}s" if seconds else "",
    ]
    return " ".join(p for p in parts if p)


def _rule_ref(placed: PlacedRule) -> str:
    return f"rule {placed.rule.label!r} at {placed.where}"


def _service(target: Target) -> str:
    return f"{target.vs} in {target.namespace}"


def _command_name(target: Target) -> str:
    return service_name(target.vs, target.namespace)
