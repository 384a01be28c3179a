"""Cohorts in the policy: an action of their own, granted by name or by `all`, and held by
freezes like any change that sends traffic to a canary."""

from __future__ import annotations

from datetime import UTC, datetime

from commands.model import RAISING, Verb
from policies import Action, Actor, Allow, Change, Deny, Target, decide, load_policy

POLICY = load_policy(
    """\
rules:
  - name: production
    namespace: "prod*"
    allow:
      set-weight: [U0DEV1]
      cohort: [U0QA01]
      rollback: [U0ONCALL]
    freeze:
      - name: weekend freeze
        days: [sat, sun]
        tz: UTC
  - name: development
    namespace: "dev*"
    allow:
      all: [U0DEV1]
""",
    "cohorts.yaml",
)
WEDNESDAY = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
SATURDAY = datetime(2026, 6, 13, 12, 0, tzinfo=UTC)
COHORT = Change(Action.COHORT, weight_before=0, weight_after=0, plan_hash="p1")


def test_cohort_is_an_action_named_like_its_verb_and_it_adds_traffic() -> None:
    assert Action(Verb.COHORT.value) is Action.COHORT
    assert Verb.COHORT in RAISING


def test_only_those_the_rule_names_may_route_a_cohort() -> None:
    prod = Target("prod", "weather")
    assert isinstance(decide(POLICY, Actor("U0QA01"), COHORT, prod, WEDNESDAY), Allow)
    refused = decide(POLICY, Actor("U0DEV1"), COHORT, prod, WEDNESDAY)
    assert isinstance(refused, Deny)
    assert "may not cohort in prod*/*: ask one of <@U0QA01>" in refused.reason


def test_all_grants_cohorts() -> None:
    assert isinstance(
        decide(POLICY, Actor("U0DEV1"), COHORT, Target("dev", "weather"), WEDNESDAY), Allow
    )


def test_a_freeze_holds_a_cohort() -> None:
    refused = decide(POLICY, Actor("U0QA01"), COHORT, Target("prod", "weather"), SATURDAY)
    assert isinstance(refused, Deny) and "weekend freeze" in refused.reason
