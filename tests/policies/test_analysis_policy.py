"""A rule's `rollout.analysis`: how often its services' held steps are looked at."""

from __future__ import annotations

import re
import textwrap
from datetime import timedelta

import pytest

from policies import PolicyError, Target, analysis_every, check, load_policy
from policies.explain import EXIT_INVALID

POLICY = """\
rules:
  - name: payments
    namespace: prod
    vs: payments
    allow: {all: [U0ADMIN]}
    rollout:
      every: 10m
      analysis: 5s
  - name: batch
    namespace: batch
    allow: {all: [U0ADMIN]}
    rollout:
      analysis: off
  - name: the rest of prod
    namespace: prod
    allow: {all: [U0ADMIN]}
"""


def rule_with(analysis: str, every: str = "5m") -> str:
    return textwrap.dedent(f"""\
        rules:
          - namespace: prod
            allow: {{all: [U0ADMIN]}}
            rollout:
              every: {every}
              analysis: {analysis}
        """)


def test_each_rule_sets_its_services_interval() -> None:
    policy = load_policy(POLICY, "policy.yaml")

    assert analysis_every(policy, Target("prod", "payments")) == timedelta(seconds=5)
    assert analysis_every(policy, Target("batch", "nightly")) == timedelta(0)
    assert analysis_every(policy, Target("prod", "weather")) is None  # CANARY_ANALYSIS decides
    assert analysis_every(policy, Target("dev", "weather")) is None  # no rule


@pytest.mark.parametrize("off", ["off", "0", "0s", "OFF"])
def test_zero_or_off_means_no_looks_between_checks(off: str) -> None:
    policy = load_policy(rule_with(off), "policy.yaml")
    assert analysis_every(policy, Target("prod", "weather")) == timedelta(0)


def test_policy_check_states_the_interval() -> None:
    code, summary = check(POLICY, "policy.yaml")

    assert code == 0, summary
    assert "steps 5, 10, 25, 50, 100% every 10m, looked at every 5s;" in summary
    assert "every 5m, no looks in between;" in summary


@pytest.mark.parametrize(
    ("analysis", "every", "said"),
    [
        ("10", "5m", "10 is not an analysis interval; write a duration, e.g. 10s, or off"),
        ("on", "5m", "'on' is not an analysis interval; write a duration, e.g. 10s, or off"),
        ("2h", "1d", "analysis is at most 1h; shorten it, or write off"),
        ("5m", "5m", "analysis (300s) is not shorter than every (300s)"),
    ],
)
def test_a_bad_interval_is_refused_by_line_with_the_fix(
    analysis: str, every: str, said: str
) -> None:
    code, report = check(rule_with(analysis, every), "bad.yaml")

    assert code == EXIT_INVALID  # the policy is not loaded: nothing changes
    assert said in report
    line = next(line for line in report.splitlines() if said in line)
    assert re.match(r"^bad\.yaml:\d+: rules\[0\]\.rollout(\.analysis)?: .+; .+$", line), line
    with pytest.raises(PolicyError):
        load_policy(rule_with(analysis, every), "bad.yaml")
