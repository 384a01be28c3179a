"""Which steps of a staged start wait for an approval, and whose vote counts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policies import Change, Target, approvers, explain, load_policy, staged_gates

POLICY = load_policy(
    """\
rules:
  - name: production
    namespace: "prod*"
    allow:
      start: [S0DEV]
      approve: [U0LEAD]
    approvals:
      - count: 2
        from: [S0SRE]
        above_weight: 25
    rollout:
      steps: [5, 10, 25, 50, 100]
  - name: gated
    namespace: staging
    allow:
      start: [S0DEV]
      approve: [S0SRE]
    rollout:
      steps: [20, 50, 100]
      gates: [50]
  - name: start needs a nod
    namespace: qa
    allow:
      start: [S0DEV]
    approvals:
      - from: [S0SRE]
        actions: [start]
  - name: free
    namespace: "dev*"
    allow:
      all: [S0DEV]
""",
    "test.yaml",
)
PROD = Target("prod", "weather")
STAGING = Target("staging", "weather")


@pytest.mark.parametrize(
    ("steps", "gated"),
    [
        ((10, 100), (100,)),
        ((5, 10, 25, 50, 100), (50, 100)),
        ((5, 25, 100), (100,)),
        ((50, 100), (100,)),  # the first step is the start itself: `decide` holds it
        ((26, 100), (100,)),
        ((100,), ()),
    ],
)
def test_steps_above_an_approval_threshold_wait_for_an_approval(
    steps: tuple[int, ...], gated: tuple[int, ...]
) -> None:
    assert staged_gates(POLICY, PROD, steps) == gated


def test_a_configured_gate_holds_the_first_step_that_reaches_it() -> None:
    assert staged_gates(POLICY, STAGING, (20, 50, 100)) == (50,)
    assert staged_gates(POLICY, STAGING, (10, 100)) == (100,)  # 50 is not a step: 100 passes it
    assert staged_gates(POLICY, STAGING, (50, 100)) == (50,)


def test_a_requirement_without_a_threshold_is_met_by_approving_the_start() -> None:
    assert staged_gates(POLICY, Target("qa", "weather"), (10, 50, 100)) == ()


def test_no_rule_or_no_approvals_means_no_gates() -> None:
    assert staged_gates(POLICY, Target("dev", "weather"), (10, 100)) == ()
    assert staged_gates(POLICY, Target("elsewhere", "weather"), (10, 100)) == ()


def test_whose_vote_counts_is_who_may_approve_and_whom_the_requirement_names() -> None:
    high = Change("set-weight", 0, 50)
    assert approvers(POLICY, high, PROD) == {"U0LEAD", "S0SRE"}
    assert approvers(POLICY, Change("set-weight", 0, 10), PROD) == {"U0LEAD"}
    assert approvers(POLICY, high, Target("elsewhere", "weather")) == frozenset()


def test_explain_says_which_steps_of_a_start_wait() -> None:
    text = explain(
        POLICY,
        user="U0DEV1",
        groups=["S0DEV"],
        action="start",
        service="weather",
        namespace="prod",
        at=datetime(2026, 6, 10, 12, 0, tzinfo=UTC),
        weight_after=10,
        steps=(10, 100),
    )
    assert "decision: allowed" in text
    assert "steps: 10%, 100%; 100% waits for an approval" in text


def test_explain_uses_the_rules_steps_when_none_are_given() -> None:
    text = explain(
        POLICY,
        user="U0DEV1",
        groups=["S0DEV"],
        action="start",
        service="weather",
        namespace="prod",
        at=datetime(2026, 6, 10, 12, 0, tzinfo=UTC),
    )
    assert "steps: 5%, 10%, 25%, 50%, 100%; 50%, 100% wait for an approval" in text
