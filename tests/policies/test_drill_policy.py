"""Fault drills in the policy: off unless a rule turns them on, with a default and a maximum."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policies import (
    Actor,
    Allow,
    Change,
    Deny,
    PolicyError,
    Target,
    decide,
    drill_limits,
    load_policy,
)

POLICY = load_policy(
    """\
rules:
  - name: lab
    namespace: lab
    allow:
      fault: [U0QA01]
    drills:
      default: 5m
      max: 30m
  - name: everywhere else
    namespace: "*"
    allow:
      all: [U0ADMIN]
""",
    "drills.yaml",
)
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
FAULT = Change("fault")


def test_a_rule_with_drills_lets_those_it_names_run_them() -> None:
    assert isinstance(decide(POLICY, Actor("U0QA01"), FAULT, Target("lab", "ratings"), NOW), Allow)
    assert drill_limits(POLICY, Target("lab", "ratings")) is not None


def test_without_drills_in_the_rule_nobody_may_not_even_with_all() -> None:
    refused = decide(POLICY, Actor("U0ADMIN"), FAULT, Target("prod", "ratings"), NOW)
    assert isinstance(refused, Deny)
    assert refused.reason.startswith("fault drills are off in */*")
    assert drill_limits(POLICY, Target("prod", "ratings")) is None


def test_the_default_and_the_maximum() -> None:
    limits = drill_limits(POLICY, Target("lab", "ratings"))
    assert limits is not None
    assert (limits.default, limits.max) == (timedelta(minutes=5), timedelta(minutes=30))


@pytest.mark.parametrize(
    ("drills", "said"),
    [("{default: 2h, max: 1h}", "longer than drills.max"), ("{max: 2d}", "at most 1d")],
)
def test_limits_that_cannot_hold_are_refused_at_load(drills: str, said: str) -> None:
    text = f'rules:\n  - namespace: "*"\n    allow: {{fault: [U0QA01]}}\n    drills: {drills}\n'
    with pytest.raises(PolicyError, match=said):
        load_policy(text, "bad.yaml")
