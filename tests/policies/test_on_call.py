"""The on-call target of a rule: a person or a user group, by ID, per namespace or service."""

from __future__ import annotations

import pytest

from policies import PolicyError, Target, load_policy, to_alert

RULE = """
rules:
  - namespace: prod
    on-call: {value}
    allow:
      rollback: [U0ALICE001]
"""


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("alice", "looks like a name, not an ID"),
        ("'@alice'", "looks like a name, not an ID"),
        ("'<@U0ALICE001>'", "is a mention; write the bare ID 'U0ALICE001'"),
        ("C0DEPLOYS", "is a channel ID"),
        ("u0alice001", "is not upper case"),
        ("U", "is too short for a Slack ID"),
    ],
)
def test_a_bad_on_call_is_refused_with_what_to_write(value: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as raised:
        load_policy(RULE.format(value=value), "p.yaml")
    assert "on-call" in str(raised.value) and fragment in str(raised.value)


@pytest.mark.parametrize("value", ["U0ALICE001", "W0ALICE001", "S0SRE00000"])
def test_a_person_or_a_group_is_on_call(value: str) -> None:
    policy = load_policy(RULE.format(value=value))
    assert to_alert(policy, Target("prod", "weather")) == (value,)
    assert to_alert(policy, Target("dev", "weather")) == ()
