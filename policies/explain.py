"""Text for `canary-bot policy check` and `canary-bot policy explain`. Pure: text in, text out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from policies.decide import decide, staged_gates
from policies.errors import PolicyError
from policies.load import load_policy
from policies.model import (
    Action,
    Actor,
    Allow,
    ApprovalRule,
    Change,
    Decision,
    Deny,
    FreezeWindow,
    HealthThresholds,
    Limits,
    Permissions,
    PlacedRule,
    Policy,
    RolloutSettings,
    Target,
)

EXIT_OK = 0
EXIT_INVALID = 2


def check(path_text: str, file_name: str) -> tuple[int, str]:
    """(0, a summary of the rules) for a usable policy file; (2, every problem) otherwise."""
    try:
        policy = load_policy(path_text, file_name)
    except PolicyError as e:
        return EXIT_INVALID, str(e)
    return EXIT_OK, summary(policy)


def summary(policy: Policy) -> str:
    count = len(policy.rules)
    lines = [f"{policy.source}: OK, {count} rule{'s' if count != 1 else ''}, most specific first"]
    for placed in policy.rules:
        lines.append(f"  {placed.rule.label!r} ({placed.rule.scope}) at {placed.where}")
        lines += (f"    {fact}" for fact in _facts(placed))
    return "\n".join(lines)


def explain(
    policy: Policy,
    *,
    user: str,
    groups: Iterable[str],
    action: str,
    service: str,
    namespace: str,
    at: datetime,
    weight_before: int | None = None,
    weight_after: int | None = None,
    steps: Sequence[int] | None = None,
) -> str:
    """What `decide` says about this request, why, and which rule it came from; for a start,
    which of its steps (`steps`, or the rule's) wait for an approval."""
    actor = Actor(user, frozenset(groups))
    target = Target(namespace, service)
    change = Change(action, weight_before=weight_before, weight_after=weight_after)
    decision = decide(policy, actor, change, target, at)
    lines = [
        f"decision: {_verdict(decision)}",
        f"why: {decision.reason or 'nothing objects'}",
        f"request: {_request(actor, change, target, at)}",
        f"rule: {_which_rule(policy, target)}",
    ]
    if action == Action.START:
        lines.append(f"steps: {_steps(policy, target, steps)}")
    return "\n".join(lines)


def _steps(policy: Policy, target: Target, steps: Sequence[int] | None) -> str:
    placed = policy.match(target)
    weights = tuple(steps or (placed.rule.rollout.steps if placed else RolloutSettings().steps))
    gated = staged_gates(policy, target, weights)
    listed = ", ".join(f"{w}%" for w in weights)
    if not gated:
        return f"{listed}; none waits for an approval"
    waits = "waits" if len(gated) == 1 else "wait"
    return f"{listed}; {', '.join(f'{w}%' for w in gated)} {waits} for an approval"


def _verdict(decision: Decision) -> str:
    if isinstance(decision, Allow):
        return "allowed"
    if isinstance(decision, Deny):
        return "denied"
    return (
        f"needs approval ({decision.count} from {', '.join(decision.sources)}; has {decision.have})"
    )


def _request(actor: Actor, change: Change, target: Target, at: datetime) -> str:
    groups = f" (groups {', '.join(sorted(actor.groups))})" if actor.groups else ""
    weights = f" to {change.weight_after}%" if change.weight_after is not None else ""
    if change.weight_before is not None and change.weight_after is not None:
        weights = f" {change.weight_before}% → {change.weight_after}%"
    where = f"{target.vs} in {target.namespace}"
    return f"{actor.user}{groups} {change.action} {where}{weights} at {at:%Y-%m-%d %H:%M %Z}"


def _which_rule(policy: Policy, target: Target) -> str:
    matching = policy.matching(target)
    if not matching:
        return f"no rule matches {target.namespace}/{target.vs}"
    first = matching[0]
    text = f"{first.rule.label!r} ({first.rule.scope}) at {first.where}"
    if others := ", ".join(f"{p.rule.label!r} at {p.where}" for p in matching[1:]):
        text += f"; more specific than {others}"
    return text


# -- One line per section of a rule


def _facts(placed: PlacedRule) -> list[str]:
    rule = placed.rule
    approvals = "; ".join(_approval(r, rule.approvers(r)) for r in rule.approvals)
    return [
        f"allow: {_permissions(rule.allow)}",
        f"approvals: {approvals or 'none'}",
        f"limits: {_limits(rule.limits)}",
        f"freeze: {'; '.join(_freeze(w) for w in rule.freeze) or 'none'}",
        f"rollout: {_rollout(rule.rollout)}",
        f"health: {_health(rule.rollout.health)}",
    ]


def _permissions(allow: Permissions) -> str:
    by_who: dict[tuple[str, ...], list[str]] = {}
    for action in Action:
        if who := allow.who_may(action):
            by_who.setdefault(who, []).append(action.value)
    parts = [f"{', '.join(actions)} → {', '.join(who)}" for who, actions in by_who.items()]
    return "; ".join(parts) or "nobody may do anything"


def _approval(requirement: ApprovalRule, sources: tuple[str, ...]) -> str:
    actions = ", ".join(requirement.actions) if requirement.actions else "changes that add traffic"
    above = f" above {requirement.above_weight}%" if requirement.above_weight is not None else ""
    return (
        f"{requirement.count} from {', '.join(sources)} for {actions}{above} "
        f"(valid {_duration(requirement.expires)})"
    )


def _limits(limits: Limits) -> str:
    parts = ["staged only"] if limits.staged_only else []
    if limits.max_step is not None:
        parts.append(f"max step {limits.max_step} points")
    if limits.min_interval is not None:
        parts.append(f"min interval {_duration(limits.min_interval)}")
    return ", ".join(parts) or "none"


def _freeze(window: FreezeWindow) -> str:
    if window.start is not None and window.end is not None:
        span = f"{window.start:%Y-%m-%d %H:%M} → {window.end:%Y-%m-%d %H:%M}"
    elif window.days is not None:
        span = f"{', '.join(window.days)} {window.from_ or '00:00'} → {window.to or '24:00'}"
    else:
        span = f"{window.from_} → {window.to}"
    return f"{window.label} ({span} {window.tz})"


def _rollout(settings: RolloutSettings) -> str:
    gates = f", gates at {', '.join(map(str, settings.gates))}%" if settings.gates else ""
    return (
        f"steps {', '.join(map(str, settings.steps))}% every {_duration(settings.every)}{gates}"
        f"{_looks(settings.analysis)}; "
        f"rollback after {_plural(settings.failure_limit, 'failed check')}, "
        f"pause after {settings.inconclusive_limit} inconclusive"
    )


def _looks(analysis: timedelta | None) -> str:
    if analysis is None:
        return ""
    return f", looked at every {_duration(analysis)}" if analysis else ", no looks in between"


def _health(h: HealthThresholds) -> str:
    return (
        f"success ≥ {h.min_success_rate}%, p99 ≤ {h.max_p99_ms:g} ms, "
        f"error rate ≤ stable + {h.max_error_rate_increase} points, "
        f"p99 ≤ {h.max_p99_ratio} × stable, at least {h.min_requests} requests"
    )


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    units = (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1))
    parts = []
    for unit, size in units:
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
