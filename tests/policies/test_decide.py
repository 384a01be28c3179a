"""`decide`: who may do what, when, with which approvals — one table of cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.rollout.model import StepPlan
from commands.model import MUTATING, Verb
from policies import (
    Action,
    Actor,
    Allow,
    Approval,
    Change,
    Decision,
    Deny,
    NeedsApproval,
    Target,
    decide,
    load_policy,
    rollout_defaults,
)

POLICY_TEXT = """\
rules:
  - name: production
    namespace: "prod*"
    allow:
      start: [S0DEV, S0SRE]
      set-weight: [S0DEV, S0SRE]
      resume: [S0DEV]
      mirror: [S0DEV]
      promote: [S0SRE, U0LEAD]
      approve: [S0SRE]
      pause: [U0PAUSER]
      rollback: [S0SRE, U0ONCALL]
    approvals:
      - count: 2
        from: [S0SRE]
        above_weight: 25
      - count: 1
        from: [U0LEAD, U0REVIEW]
        actions: [promote]
        expires: 30m
    limits:
      max_step: 20
      min_interval: 10m
    freeze:
      - name: weekend freeze
        from: fri 16:00
        to: mon 09:00
        tz: Europe/Berlin
      - name: night freeze
        days: [mon, tue, wed, thu]
        from: 22:00
        to: 06:00
        tz: America/New_York
      - name: year-end freeze
        start: 2026-12-20T00:00
        end: 2027-01-03T00:00
        tz: Europe/Berlin
    rollout:
      steps: [5, 25, 50, 100]
      every: 10m
      gates: [50]
  - name: payments
    namespace: prod
    vs: payments
    allow:
      all: [U0PAY]
      rollback: [U0ONCALL]
    limits:
      staged_only: true
  - name: development
    namespace: "dev*"
    allow:
      all: [S0DEV]
  - name: catch-all
    namespace: "*"
    vs: "*"
    allow:
      all: [U0ADMIN]
"""
POLICY = load_policy(POLICY_TEXT, "test.yaml")

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # Wednesday: no freeze anywhere


def berlin(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def new_york(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK).astimezone(UTC)


def person(user: str, *groups: str) -> Actor:
    return Actor(user, frozenset(groups))


DEV = person("U0DEV1", "S0DEV")
DEV2 = person("U0DEV2", "S0DEV")
SRE1 = person("U0SRE1", "S0SRE")
SRE2 = person("U0SRE2", "S0SRE")
SRE3 = person("U0SRE3", "S0SRE", "S0DEV")
ONCALL = person("U0ONCALL")
PAUSER = person("U0PAUSER")
LEAD = person("U0LEAD")
REVIEWER = person("U0REVIEW")
ADMIN = person("U0ADMIN")
STRANGER = person("U0NOBODY", "S0OTHER")

WEATHER = Target("prod", "weather")
PAYMENTS = Target("prod", "payments")


def vote(actor: Actor, ago: int = 5, plan: str = "p1", deny: bool = False) -> Approval:
    at = NOW - timedelta(minutes=ago)
    return Approval(actor.user, actor.groups, at, plan, deny)


def weight(before: int, after: int, last_ago: int | None = None) -> Change:
    last = NOW - timedelta(minutes=last_ago) if last_ago is not None else None
    return Change("set-weight", before, after, last, "p1")


def act(action: str, after: int | None = None) -> Change:
    return Change(action, weight_after=after, plan_hash="p1")


@dataclass(frozen=True)
class Case:
    name: str
    actor: Actor
    change: Change
    expect: type[Allow] | type[Deny] | type[NeedsApproval]
    says: tuple[str, ...] = ()
    target: Target = WEATHER
    now: datetime = NOW
    votes: tuple[Approval, ...] = field(default=())
    have: int | None = None


CASES = [
    # -- who may: users, groups, most specific rule
    Case("a developer (by group) may start", DEV, act("start", 5), Allow),
    Case(
        "a stranger may not start, and is told whom to ask",
        STRANGER,
        act("start", 5),
        Deny,
        (
            "you (<@U0NOBODY>) may not start in prod*/*: ask one of <!subteam^S0DEV>, "
            "<!subteam^S0SRE>",
        ),
    ),
    Case("a stranger may not roll back", STRANGER, act("rollback"), Deny, ("may not rollback",)),
    Case("anyone may look", STRANGER, act("status"), Allow),
    Case("an unknown action is refused", ADMIN, act("deploy"), Deny, ("not an action",)),
    Case("a group not named counts for nothing", STRANGER, act("pause"), Deny),
    Case(
        "a member of a listed group may promote, with approvals",
        SRE1,
        act("promote"),
        Allow,
        votes=(vote(SRE2), vote(SRE3), vote(REVIEWER)),
    ),
    Case(
        "a user listed by ID may promote, with approvals",
        LEAD,
        act("promote"),
        Allow,
        votes=(vote(SRE1), vote(SRE2), vote(REVIEWER)),
    ),
    Case("a developer may not promote", DEV, act("promote"), Deny, ("may not promote",)),
    Case(
        "the most specific rule wins: prod/payments over prod*",
        DEV,
        act("start", 5),
        Deny,
        ("may not start in prod/payments", "<@U0PAY>"),
        target=PAYMENTS,
    ),
    Case(
        "the most specific rule wins: prod* over the catch-all",
        ADMIN,
        act("start", 5),
        Deny,
        ("may not start in prod*/*",),
    ),
    Case("the catch-all covers the rest", ADMIN, act("start"), Allow, target=Target("qa", "x")),
    Case(
        "dev namespaces need no approvals, even to 100%",
        DEV,
        weight(0, 100),
        Allow,
        target=Target("dev-team", "weather"),
    ),
    # -- rollback, pause and abort: always, for whoever may roll back
    Case(
        "on call may roll back in the weekend freeze",
        ONCALL,
        act("rollback"),
        Allow,
        now=berlin(2026, 6, 13, 3, 0),
    ),
    Case(
        "on call may pause in the weekend freeze",
        ONCALL,
        act("pause"),
        Allow,
        now=berlin(2026, 6, 13, 3, 0),
    ),
    Case(
        "on call may abort in the year-end freeze",
        ONCALL,
        act("abort"),
        Allow,
        now=berlin(2026, 12, 24, 12, 0),
    ),
    Case(
        "a deny does not stop a rollback",
        SRE1,
        act("rollback"),
        Allow,
        votes=(vote(SRE2, deny=True),),
    ),
    Case(
        "rollback needs no approval even where approvals are demanded",
        ONCALL,
        Change("rollback", 60, 0, plan_hash="p1"),
        Allow,
        ("at any time",),
    ),
    Case(
        "on call may roll back in staged-only payments",
        ONCALL,
        act("rollback"),
        Allow,
        target=PAYMENTS,
    ),
    Case("who may not roll back may not roll back", DEV, act("rollback"), Deny),
    Case(
        "pause alone is allowed to its own list, in a freeze too",
        PAUSER,
        act("pause"),
        Allow,
        now=berlin(2026, 6, 13, 3, 0),
    ),
    Case("who may pause may not roll back", PAUSER, act("rollback"), Deny),
    # -- weekly freeze across days, and across midnight in another time zone
    Case(
        "weekend freeze: starting on Friday evening is refused",
        DEV,
        act("start", 5),
        Deny,
        (
            "weather in prod is frozen until Mon 09:00 Europe/Berlin (weekend freeze); "
            "rollback, pause and abort are still allowed",
        ),
        now=berlin(2026, 6, 12, 17, 0),
    ),
    Case(
        "weekend freeze: Friday 15:59 is still open",
        DEV,
        act("start", 5),
        Allow,
        now=berlin(2026, 6, 12, 15, 59),
    ),
    Case(
        "weekend freeze: Monday 08:59 is frozen",
        DEV,
        act("start", 5),
        Deny,
        ("until Mon 09:00",),
        now=berlin(2026, 6, 15, 8, 59),
    ),
    Case(
        "weekend freeze: Monday 09:00 is open",
        DEV,
        act("start", 5),
        Allow,
        now=berlin(2026, 6, 15, 9, 0),
    ),
    Case(
        "weekend freeze: raising a weight is refused",
        DEV,
        weight(10, 20),
        Deny,
        ("frozen",),
        now=berlin(2026, 6, 14, 12, 0),
    ),
    Case(
        "weekend freeze: resuming is refused",
        DEV,
        act("resume"),
        Deny,
        ("frozen",),
        now=berlin(2026, 6, 14, 12, 0),
    ),
    Case(
        "weekend freeze: lowering a weight is allowed",
        DEV,
        weight(20, 5, last_ago=1),
        Allow,
        now=berlin(2026, 6, 14, 12, 0),
    ),
    Case(
        "DST spring forward: Mon 08:59 CEST is still frozen",
        DEV,
        act("start", 5),
        Deny,
        ("until Mon 09:00 Europe/Berlin",),
        now=datetime(2026, 3, 30, 6, 59, tzinfo=UTC),
    ),
    Case(
        "DST spring forward: Mon 09:00 CEST is open",
        DEV,
        act("start", 5),
        Allow,
        now=datetime(2026, 3, 30, 7, 0, tzinfo=UTC),
    ),
    Case(
        "DST fall back: Mon 08:30 CET is frozen",
        DEV,
        act("start", 5),
        Deny,
        now=datetime(2026, 10, 26, 7, 30, tzinfo=UTC),
    ),
    Case(
        "DST fall back: Mon 09:00 CET is open",
        DEV,
        act("start", 5),
        Allow,
        now=datetime(2026, 10, 26, 8, 0, tzinfo=UTC),
    ),
    Case(
        "night freeze in New York, across midnight",
        DEV,
        act("start", 5),
        Deny,
        ("until Wed 06:00 America/New_York (night freeze)",),
        now=new_york(2026, 6, 9, 23, 0),
    ),
    Case(
        "night freeze: after midnight, still frozen",
        DEV,
        act("start", 5),
        Deny,
        ("until Wed 06:00",),
        now=new_york(2026, 6, 10, 5, 59),
    ),
    Case(
        "night freeze: 06:00 is open", DEV, act("start", 5), Allow, now=new_york(2026, 6, 10, 6, 0)
    ),
    Case(
        "night freeze: 21:59 is open", DEV, act("start", 5), Allow, now=new_york(2026, 6, 9, 21, 59)
    ),
    Case(
        "night freeze: Thursday night runs into Friday 06:00",
        DEV,
        act("start", 5),
        Deny,
        ("until Fri 06:00",),
        now=new_york(2026, 6, 11, 23, 0),
    ),
    Case(
        "night freeze: Friday 06:00 is open",
        DEV,
        act("start", 5),
        Allow,
        now=new_york(2026, 6, 12, 6, 0),
    ),
    Case(
        "night freeze after DST starts in New York: 05:30 EDT is frozen",
        DEV,
        act("start", 5),
        Deny,
        ("until Tue 06:00",),
        now=datetime(2026, 3, 10, 9, 30, tzinfo=UTC),
    ),
    Case(
        "night freeze after DST starts in New York: 06:30 EDT is open",
        DEV,
        act("start", 5),
        Allow,
        now=datetime(2026, 3, 10, 10, 30, tzinfo=UTC),
    ),
    # -- dated freeze, chained with the weekend that follows it
    Case(
        "year-end freeze, then the weekend: frozen until Monday 4 January",
        DEV,
        act("start", 5),
        Deny,
        ("until Mon 04 Jan 2027 09:00 Europe/Berlin (year-end freeze)",),
        now=berlin(2026, 12, 24, 12, 0),
    ),
    Case(
        "year-end freeze: not yet on 17 December",
        DEV,
        act("start", 5),
        Allow,
        now=berlin(2026, 12, 17, 12, 0),
    ),
    Case(
        "year-end freeze: promote is refused",
        SRE1,
        act("promote"),
        Deny,
        ("frozen",),
        now=berlin(2026, 12, 22, 12, 0),
    ),
    Case(
        "approve is no traffic change: allowed in a freeze",
        SRE1,
        act("approve"),
        Allow,
        now=berlin(2026, 12, 22, 12, 0),
    ),
    # -- approvals
    Case(
        "above 25% needs 2 approvals from SRE",
        DEV,
        weight(20, 30),
        NeedsApproval,
        ("production changes above 25% need 2 approvals from <!subteam^S0SRE>; you have 0",),
        have=0,
    ),
    Case(
        "one approval is not enough",
        DEV,
        weight(20, 30),
        NeedsApproval,
        ("you have 1",),
        votes=(vote(SRE1),),
        have=1,
    ),
    Case(
        "two approvals from two people are",
        DEV,
        weight(20, 30),
        Allow,
        ("approved by <@U0SRE1> and <@U0SRE2>",),
        votes=(vote(SRE1), vote(SRE2)),
    ),
    Case(
        "the same approver twice counts once",
        DEV,
        weight(20, 30),
        NeedsApproval,
        votes=(vote(SRE1), vote(SRE1, ago=1)),
        have=1,
    ),
    Case(
        "self-approval does not count",
        SRE1,
        weight(20, 30),
        NeedsApproval,
        ("your own approval does not count",),
        votes=(vote(SRE1), vote(SRE2)),
        have=1,
    ),
    Case(
        "an expired approval does not count",
        DEV,
        weight(20, 30),
        NeedsApproval,
        ("1 approval expired (approvals last 1h)",),
        votes=(vote(SRE1, ago=61), vote(SRE2)),
        have=1,
    ),
    Case(
        "an approval is good for its whole hour",
        DEV,
        weight(20, 30),
        Allow,
        votes=(vote(SRE1, ago=59), vote(SRE2)),
    ),
    Case(
        "a changed plan voids approvals",
        DEV,
        weight(20, 30),
        NeedsApproval,
        ("2 approvals for an earlier plan no longer count (a changed plan voids approvals)",),
        votes=(vote(SRE1, plan="p0"), vote(SRE2, plan="p0")),
        have=0,
    ),
    Case(
        "one deny vetoes",
        DEV,
        weight(20, 30),
        Deny,
        ("<@U0SRE3> denied this change",),
        votes=(vote(SRE1), vote(SRE2), vote(SRE3, deny=True)),
    ),
    Case(
        "a deny of an earlier plan does not veto",
        DEV,
        weight(20, 30),
        Allow,
        votes=(vote(SRE1), vote(SRE2), vote(SRE3, plan="p0", deny=True)),
    ),
    Case(
        "a deny from someone who may not approve is ignored",
        DEV,
        weight(20, 30),
        Allow,
        votes=(vote(SRE1), vote(SRE2), vote(STRANGER, deny=True)),
    ),
    Case(
        "approvals from outside the sources do not count",
        DEV,
        weight(20, 30),
        NeedsApproval,
        votes=(vote(SRE1), vote(DEV2)),
        have=1,
    ),
    Case("exactly 25% needs no approval", DEV, weight(10, 25), Allow),
    Case("lowering from above 25% needs no approval", DEV, weight(60, 40), Allow),
    Case("a staged start at 5% needs no approval", DEV, act("start", 5), Allow),
    Case(
        "promote needs the lead or reviewer too; the lead's own does not count",
        LEAD,
        act("promote"),
        NeedsApproval,
        ("promote in production needs 1 approval from <@U0LEAD> or <@U0REVIEW>; you have 0",),
        votes=(vote(SRE1), vote(SRE2), vote(LEAD)),
        have=0,
    ),
    Case(
        "promote approvals expire after 30m",
        SRE1,
        act("promote"),
        NeedsApproval,
        ("approvals last 30m",),
        votes=(vote(SRE2), vote(SRE3), vote(REVIEWER, ago=31)),
        have=0,
    ),
    # -- limits
    Case(
        "max_step: +25 is more than 20",
        DEV,
        weight(5, 30),
        Deny,
        ("may raise the weight by at most 20 points: from 5% you can go to 25%",),
    ),
    Case("max_step: +20 is fine", DEV, weight(5, 25), Allow),
    Case(
        "min_interval: 5 minutes after the last change is too soon",
        DEV,
        weight(5, 10, last_ago=5),
        Deny,
        ("at least 10m apart", "try again in 5m"),
    ),
    Case("min_interval: 10 minutes after is fine", DEV, weight(5, 10, last_ago=10), Allow),
    Case("min_interval does not hold a lowering", DEV, weight(20, 10, last_ago=1), Allow),
    Case(
        "staged_only refuses a manual raise and says what to do",
        person("U0PAY"),
        weight(0, 10),
        Deny,
        ("prod/payments is staged-only", "`/canary payments.prod start`"),
        target=PAYMENTS,
    ),
    Case(
        "staged_only allows a staged start",
        person("U0PAY"),
        act("start", 5),
        Allow,
        target=PAYMENTS,
    ),
    Case(
        "staged_only allows lowering by hand",
        person("U0PAY"),
        weight(50, 10),
        Allow,
        target=PAYMENTS,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide(case: Case) -> None:
    decision = decide(POLICY, case.actor, case.change, case.target, case.now, approvals=case.votes)

    assert isinstance(decision, case.expect), decision
    for text in case.says:
        assert text in decision.reason
    if case.have is not None:
        assert isinstance(decision, NeedsApproval)
        assert decision.have == case.have


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 40


def test_needs_approval_names_its_sources_for_the_card() -> None:
    decision = decide(POLICY, DEV, weight(20, 30), WEATHER, NOW, approvals=(vote(SRE1),))

    assert decision == NeedsApproval(
        count=2,
        sources=("S0SRE",),
        have=1,
        reason="production changes above 25% need 2 approvals from <!subteam^S0SRE>; you have 1",
    )


def test_a_target_no_rule_covers_is_refused() -> None:
    policy = load_policy("rules:\n  - namespace: prod\n    allow: {all: [U0ADMIN]}\n")

    decision = decide(policy, ADMIN, act("start"), Target("dev", "weather"), NOW)

    assert decision == Deny(
        "no policy rule covers weather in dev; ask the platform team to add one to policy.yaml"
    )


def test_nobody_listed_for_an_action_says_so() -> None:
    decision = decide(POLICY, DEV, act("mirror", 10), PAYMENTS, NOW)

    assert isinstance(decision, Deny)
    assert decision.reason.startswith("you (<@U0DEV1>) may not mirror in prod/payments")
    nobody = load_policy("rules:\n  - name: p\n    namespace: prod\n")
    assert "nobody may start in prod/*" in _reason(decide(nobody, DEV, act("start"), WEATHER, NOW))


def test_a_naive_clock_is_a_bug() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(POLICY, DEV, act("start"), WEATHER, datetime(2026, 6, 10, 12, 0))


def test_verbs_and_actions_agree() -> None:
    """Each action is a verb that changes something, but approve and wave (a start over
    several clusters, decided as a wave and as a start)."""
    others = (Action.APPROVE, Action.WAVE)
    assert {Verb(v) for v in Action if v not in others} == set(MUTATING)


def test_rollout_defaults_come_from_the_matching_rule() -> None:
    fields, health = rollout_defaults(POLICY, WEATHER)

    assert fields == {
        "weights": (5, 25, 50, 100),
        "interval_s": 600,
        "gates": (50,),
        "failure_limit": 2,
        "inconclusive_limit": 3,
    }
    assert StepPlan(**fields).gates == (50,)
    assert health.min_success_rate == 99.0
    assert health.max_p99_ms == 500


def test_rollout_defaults_without_a_rule_are_the_built_in_plan() -> None:
    policy = load_policy("rules:\n  - namespace: prod\n")

    fields, health = rollout_defaults(policy, Target("dev", "weather"))

    assert StepPlan(**fields) == StepPlan()
    assert (health.max_error_rate_increase, health.max_p99_ratio, health.min_requests) == (
        1.0,
        1.2,
        20,
    )


SHIPPED = Path(__file__).parents[2] / "policies"


def test_shipped_production_policy_behaves_as_its_comments_say() -> None:
    policy = load_policy((SHIPPED / "production.yaml").read_text(), "production.yaml")
    dev = person("U0DEV1", "S0DEV00000")
    sre = person("U0SRE1", "S0SRE00000")
    friday_evening = berlin(2026, 6, 12, 18, 0)

    assert isinstance(decide(policy, dev, weight(10, 20), WEATHER, NOW), Deny)  # staged only
    assert isinstance(decide(policy, dev, act("start", 5), WEATHER, friday_evening), Deny)
    oncall = person("U0ONCALL00")
    assert isinstance(decide(policy, oncall, act("rollback"), WEATHER, friday_evening), Allow)
    assert isinstance(decide(policy, sre, act("promote"), WEATHER, NOW), NeedsApproval)
    fields, _ = rollout_defaults(policy, WEATHER)
    assert StepPlan(**fields).gates == (50,)


def test_shipped_dev_policy_lets_developers_do_everything() -> None:
    policy = load_policy((SHIPPED / "dev.yaml").read_text(), "dev.yaml")
    dev = person("U0DEV1", "S0DEV00000")

    for action in Action:
        change = Change(action, 0, 100, plan_hash="p")
        assert isinstance(decide(policy, dev, change, Target("staging", "weather"), NOW), Allow)
    assert isinstance(decide(policy, STRANGER, weight(0, 10), Target("dev", "w"), NOW), Deny)


def _reason(decision: Decision) -> str:
    return decision.reason
