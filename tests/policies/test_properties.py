"""Properties that must hold for every policy: generated policies, people, changes, clocks."""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.rollout.model import StepPlan
from policies import (
    SAFE_ACTIONS,
    Action,
    Actor,
    Allow,
    Approval,
    Change,
    Decision,
    Deny,
    NeedsApproval,
    Policy,
    PolicyError,
    Target,
    decide,
    load_policy,
    rollout_defaults,
)
from policies._globs import common_name

USERS = ("U0AAA", "U0BBB", "U0CCC", "W0DDD")
GROUPS = ("S0SRE", "S0DEV")
OUTSIDER = Actor("U0OUTSIDER", frozenset({"S0OUTSIDERS"}))  # named by no generated rule
NAMESPACE_GLOBS = ("*", "prod*", "prod", "dev*", "p?od", "[pd]*", "prod-[0-9]")
VS_GLOBS = ("*", "weather", "w*")
NAMESPACES = ("prod", "prod-1", "dev", "pxod", "qa")
SERVICES = ("weather", "wind", "other")
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
PROPERTY = settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])

principals = st.lists(st.sampled_from(USERS + GROUPS), max_size=3, unique=True)
actions = st.sampled_from(list(Action))
minutes = st.integers(0, 24 * 60 - 1)


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _daily(days: list[str], start: int, length: int, tz: str) -> dict[str, Any]:
    return {"days": days, "from": _clock(start), "to": _clock((start + length) % 1440), "tz": tz}


def _span(first: str, last: str, start: int, end: int, tz: str) -> dict[str, Any]:
    return {"from": f"{first} {_clock(start)}", "to": f"{last} {_clock(end)}", "tz": tz}


def _dated(offset_h: int, length_h: int, tz: str) -> dict[str, Any]:
    start = EPOCH.replace(tzinfo=None) + timedelta(hours=offset_h)
    end = start + timedelta(hours=length_h)
    return {"start": f"{start:%Y-%m-%dT%H:%M}", "end": f"{end:%Y-%m-%dT%H:%M}", "tz": tz}


zones = st.sampled_from(ZONES)
windows = st.one_of(
    st.builds(
        _daily,
        st.lists(st.sampled_from(DAYS), min_size=1, unique=True),
        minutes,
        st.integers(1, 24 * 60 - 1),
        zones,
    ),
    st.builds(_span, st.sampled_from(DAYS), st.sampled_from(DAYS), minutes, minutes, zones).filter(
        lambda w: w["from"] != w["to"]
    ),
    st.builds(_dated, st.integers(0, 3 * 365 * 24), st.integers(1, 30 * 24), zones),
)
approval_rules = st.fixed_dictionaries(
    {
        "count": st.integers(1, 3),
        "from": st.lists(st.sampled_from(GROUPS), min_size=1, unique=True),
    },
    optional={
        "actions": st.lists(
            st.sampled_from([a.value for a in Action if a is not Action.APPROVE]), unique=True
        ),
        "above_weight": st.integers(0, 99),
        "expires": st.sampled_from(["1m", "30m", "1h", "1d"]),
    },
)
limits = st.fixed_dictionaries(
    {},
    optional={
        "max_step": st.integers(1, 100),
        "min_interval": st.sampled_from(["30s", "10m", "1h"]),
        "staged_only": st.booleans(),
    },
)
rule_bodies = st.fixed_dictionaries(
    {
        "allow": st.dictionaries(st.sampled_from(["all", *(a.value for a in Action)]), principals),
        "approvals": st.lists(approval_rules, max_size=2),
        "limits": limits,
        "freeze": st.lists(windows, max_size=3),
    }
)
scopes = st.lists(
    st.tuples(st.sampled_from(NAMESPACE_GLOBS), st.sampled_from(VS_GLOBS)),
    min_size=1,
    max_size=4,
    unique=True,
)


@st.composite
def policies(draw: st.DrawFn, rollback: bool = False) -> Policy:
    """Random policies; with `rollback`, every rule lets somebody roll back."""
    rules: list[dict[str, Any]] = [
        {"name": f"r{i}", "namespace": ns, "vs": vs, **draw(rule_bodies)}
        for i, (ns, vs) in enumerate(draw(scopes))
    ]
    for rule in rules if rollback else ():
        rule["allow"]["rollback"] = draw(principals.filter(bool))
    try:
        return load_policy(yaml.safe_dump({"rules": rules}), "generated.yaml")
    except PolicyError as e:
        assume("equally specific" not in str(e))  # overlapping ties are refused, as they should
        raise


targets = st.builds(Target, st.sampled_from(NAMESPACES), st.sampled_from(SERVICES))
moments = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2029, 12, 31), timezones=st.just(UTC)
)
weights = st.one_of(st.none(), st.integers(0, 100))
plans = st.sampled_from(["plan-a", "plan-b"])
actors = st.builds(
    Actor,
    st.sampled_from((*USERS, "U0ZZZ")),
    st.frozensets(st.sampled_from((*GROUPS, "S0OTHER")), max_size=2),
)


@st.composite
def changes(draw: st.DrawFn, now: datetime, action: st.SearchStrategy[Action] = actions) -> Change:
    ago = draw(st.one_of(st.none(), st.integers(0, 7200)))
    return Change(
        draw(action).value,
        draw(weights),
        draw(weights),
        now - timedelta(seconds=ago) if ago is not None else None,
        draw(plans),
    )


@st.composite
def votes(draw: st.DrawFn, now: datetime) -> tuple[Approval, ...]:
    voters = draw(st.lists(actors, max_size=5))
    return tuple(
        Approval(
            a.user,
            a.groups,
            now - timedelta(minutes=draw(st.integers(-5, 3000))),
            draw(plans),
            draw(st.booleans()),
        )
        for a in voters
    )


@st.composite
def covered_targets(draw: st.DrawFn, policy: Policy) -> Target:
    """A VirtualService some rule of `policy` matches (not always the most specific one)."""
    rule = draw(st.sampled_from(policy.rules)).rule
    namespace, vs = common_name(rule.namespace, rule.namespace), common_name(rule.vs, rule.vs)
    assert namespace is not None and vs is not None
    return Target(namespace, vs)


@st.composite
def rollback_capable(draw: st.DrawFn, policy: Policy, target: Target) -> Actor:
    """Someone the rule matching `target` lets roll back, by user ID or through a group."""
    placed = policy.match(target)
    assert placed is not None
    who = draw(st.sampled_from(placed.rule.allow.who_may(Action.ROLLBACK)))
    extra = draw(st.frozensets(st.sampled_from(GROUPS), max_size=2))
    return Actor(who, extra) if who.startswith(("U", "W")) else Actor("U0ZZZ", extra | {who})


@PROPERTY
@given(st.data(), policies(rollback=True), moments)
def test_who_may_roll_back_is_never_held(
    data: st.DataObject, policy: Policy, now: datetime
) -> None:
    target = data.draw(covered_targets(policy))
    actor = data.draw(rollback_capable(policy, target))
    change = data.draw(changes(now, st.sampled_from(sorted(SAFE_ACTIONS))))
    approvals = data.draw(votes(now))

    decision = decide(policy, actor, change, target, now, approvals=approvals)

    assert isinstance(decision, Allow), decision


@PROPERTY
@given(st.data(), policies(), targets, moments)
def test_someone_named_by_no_rule_may_never_write(
    data: st.DataObject, policy: Policy, target: Target, now: datetime
) -> None:
    assert all(OUTSIDER.user not in r.rule.named for r in policy.rules)
    change = data.draw(changes(now))
    approvals = data.draw(votes(now))

    decision = decide(policy, OUTSIDER, change, target, now, approvals=approvals)

    assert isinstance(decision, Deny), decision


@PROPERTY
@given(st.data(), policies(), targets, moments, actors)
def test_own_approval_changes_nothing(
    data: st.DataObject, policy: Policy, target: Target, now: datetime, actor: Actor
) -> None:
    change = data.draw(changes(now))
    approvals = data.draw(votes(now))
    own = Approval(actor.user, actor.groups, now, change.plan_hash)

    before = decide(policy, actor, change, target, now, approvals=approvals)
    after = decide(policy, actor, change, target, now, approvals=(*approvals, own))

    assert _shape(before) == _shape(after)


@PROPERTY
@given(st.data(), policies(), targets, moments, actors, actors)
def test_another_approval_never_makes_things_worse(
    data: st.DataObject, policy: Policy, target: Target, now: datetime, actor: Actor, other: Actor
) -> None:
    change = data.draw(changes(now))
    approvals = data.draw(votes(now))
    extra = Approval(other.user, other.groups, now, change.plan_hash)

    before = decide(policy, actor, change, target, now, approvals=approvals)
    after = decide(policy, actor, change, target, now, approvals=(*approvals, extra))

    if isinstance(before, Allow):
        assert isinstance(after, Allow)
    if isinstance(before, NeedsApproval):
        assert isinstance(after, NeedsApproval | Allow)


@PROPERTY
@given(st.data(), policies(), targets, moments, actors)
def test_every_refusal_says_why(
    data: st.DataObject, policy: Policy, target: Target, now: datetime, actor: Actor
) -> None:
    change = data.draw(changes(now))

    decision = decide(policy, actor, change, target, now, approvals=data.draw(votes(now)))

    if not isinstance(decision, Allow):
        assert decision.reason.strip()
    if isinstance(decision, NeedsApproval):
        assert 0 <= decision.have < decision.count
        assert decision.sources


@PROPERTY
@given(policies(), targets)
def test_rollout_defaults_are_always_a_valid_step_plan(policy: Policy, target: Target) -> None:
    fields, health = rollout_defaults(policy, target)

    assert StepPlan(**fields).weights[-1] == 100
    assert 0 <= health.min_success_rate <= 100


@given(
    st.sampled_from(NAMESPACE_GLOBS), st.sampled_from(NAMESPACE_GLOBS), st.sampled_from(NAMESPACES)
)
def test_common_name_is_a_name_both_globs_match(a: str, b: str, name: str) -> None:
    both = common_name(a, b)

    if both is not None:
        assert fnmatch.fnmatchcase(both, a)
        assert fnmatch.fnmatchcase(both, b)
    elif fnmatch.fnmatchcase(name, a):
        assert not fnmatch.fnmatchcase(name, b)


def _shape(decision: Decision) -> tuple[type, int | None]:
    return type(decision), decision.have if isinstance(decision, NeedsApproval) else None
