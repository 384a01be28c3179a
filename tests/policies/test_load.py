"""Loading policy files: the shipped ones load; bad ones are refused by line, with a fix."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policies import SHIPPED, Action, PolicyError, Target, check, explain, load_policy
from policies.model import FreezeWindow, HealthThresholds

POLICY_DIR = Path(__file__).parents[2] / "policies"
PROBLEM_LINE = re.compile(r"^bad\.yaml:\d+: (?:\S+: )?.+; .+$")


def refuse(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        load_policy(textwrap.dedent(text), "bad.yaml")
    return caught.value


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_policies_load(name: str) -> None:
    code, summary = check((POLICY_DIR / name).read_text(), name)

    assert code == 0, summary
    assert summary.startswith(f"{name}: OK")


def test_shipped_production_policy_is_strict() -> None:
    policy = load_policy((POLICY_DIR / "production.yaml").read_text(), "production.yaml")
    placed = policy.match(Target("prod-eu", "weather"))

    assert placed is not None
    rule = placed.rule
    assert rule.limits.staged_only
    assert rule.rollout.gates == (50,)
    assert (rule.approvals[0].count, rule.approvals[0].above_weight) == (2, 25)
    assert {w.label for w in rule.freeze} == {"weekend freeze", "year-end freeze"}
    assert policy.match(Target("dev", "weather")) is None


def test_shipped_policies_mark_their_placeholders() -> None:
    for name in SHIPPED:
        text = (POLICY_DIR / name).read_text()
        assert "REPLACE" in text
        assert "Copy member ID" in text


BAD = [
    (
        "unknown key, with a suggestion",
        """\
        rules:
          - namespace: prod
            alow:
              start: [U0AAA]
        """,
        3,
        "rules[0].alow: unknown key 'alow'; did you mean 'allow'?",
    ),
    (
        "unknown action",
        """\
        rules:
          - namespace: prod
            allow:
              deploy: [U0AAA]
        """,
        4,
        "rules[0].allow.deploy: unknown key 'deploy'; use one of: all, set-weight, start",
    ),
    (
        "unknown top-level key",
        "rule:\n  - namespace: prod\n",
        1,
        "rule: unknown key 'rule'; did you mean 'rules'?",
    ),
    (
        "a number where a list goes",
        """\
        rules:
          - namespace: prod
            allow:
              start: U0AAA
        """,
        4,
        "rules[0].allow.start: expected a list, got 'U0AAA'",
    ),
    (
        "text where a number goes",
        """\
        rules:
          - namespace: prod
            approvals:
              - count: two
                from: [S0SRE]
        """,
        4,
        "rules[0].approvals[0].count: expected a whole number, got 'two'",
    ),
    (
        "text where a boolean goes",
        """\
        rules:
          - namespace: prod
            limits:
              staged_only: maybe
        """,
        4,
        "staged_only: expected true or false, got 'maybe'",
    ),
    (
        "a display name",
        """\
        rules:
          - namespace: prod
            allow:
              promote:
                - U0AAA
                - "@alice"
        """,
        6,
        "rules[0].allow.promote[1]: '@alice' looks like a name, not an ID",
    ),
    (
        "a bare name says where to find the ID",
        """\
        rules:
          - namespace: prod
            allow:
              rollback: [alice]
        """,
        4,
        "Slack profile → ⋮ → Copy member ID",
    ),
    (
        "a lower-case ID",
        "rules:\n  - namespace: prod\n    allow:\n      start: [u0aaa]\n",
        4,
        "'u0aaa' is not upper case; Slack IDs are, write 'U0AAA'",
    ),
    (
        "a mention instead of an ID",
        "rules:\n  - namespace: prod\n    allow:\n      start: ['<@U0AAA|alice>']\n",
        4,
        "is a mention; write the bare ID 'U0AAA'",
    ),
    (
        "a channel ID",
        "rules:\n  - namespace: prod\n    allow:\n      start: [C0AAAA]\n",
        4,
        "'C0AAAA' is a channel ID",
    ),
    (
        "a too short ID",
        "rules:\n  - namespace: prod\n    allow:\n      start: [U1]\n",
        4,
        "'U1' is too short for a Slack ID",
    ),
    (
        "an approver that is a display name",
        """\
        rules:
          - namespace: prod
            approvals:
              - from: [sre-team]
        """,
        4,
        "rules[0].approvals[0].from[0]: 'sre-team' looks like a name",
    ),
    (
        "a bad time zone, with a suggestion",
        """\
        rules:
          - namespace: prod
            freeze:
              - days: [sat, sun]
                tz: Europe/Berln
        """,
        5,
        "rules[0].freeze[0].tz: unknown time zone 'Europe/Berln'; use an IANA name, did you mean "
        "'Europe/Berlin'?",
    ),
    (
        "a missing time zone",
        """\
        rules:
          - namespace: prod
            freeze:
              - days: [sat, sun]
        """,
        4,
        "rules[0].freeze[0].tz: 'tz' is required; add it",
    ),
    (
        "a bad duration",
        """\
        rules:
          - namespace: prod
            limits:
              min_interval: 5 minutes
        """,
        4,
        "min_interval: '5 minutes' is not a duration; write a number with a unit, e.g. 30s, 5m",
    ),
    (
        "a duration without a unit",
        """\
        rules:
          - namespace: prod
            rollout:
              every: 300
        """,
        4,
        "rules[0].rollout.every: 300 is not a duration",
    ),
    (
        "an approval expiry that is zero",
        """\
        rules:
          - namespace: prod
            approvals:
              - from: [S0SRE]
                expires: 0m
        """,
        5,
        "'0m' is zero",
    ),
    (
        "a bad day",
        """\
        rules:
          - namespace: prod
            freeze:
              - days: [friday]
                tz: UTC
        """,
        4,
        "'friday' is not a day; use mon, tue, wed, thu, fri, sat, sun",
    ),
    (
        "a bad time of day",
        """\
        rules:
          - namespace: prod
            freeze:
              - days: [fri]
                from: 25:00
                tz: UTC
        """,
        5,
        "rules[0].freeze[0].from: '25:00' is not a time of day",
    ),
    (
        "a weekly window with day names and days",
        """\
        rules:
          - namespace: prod
            freeze:
              - days: [fri]
                from: fri 16:00
                tz: UTC
        """,
        4,
        "with days, from/to are times only",
    ),
    (
        "a weekly window that says neither days nor day names",
        """\
        rules:
          - namespace: prod
            freeze:
              - from: "16:00"
                to: "09:00"
                tz: UTC
        """,
        4,
        "say when: days: [sat, sun]",
    ),
    (
        "a dated window that ends before it starts",
        """\
        rules:
          - namespace: prod
            freeze:
              - start: 2027-01-03T00:00
                end: 2026-12-20T00:00
                tz: Europe/Berlin
        """,
        4,
        "a dated freeze needs a start and a later end",
    ),
    (
        "a dated window with an offset",
        """\
        rules:
          - namespace: prod
            freeze:
              - start: 2026-12-20T00:00:00+01:00
                end: 2027-01-03T00:00
                tz: Europe/Berlin
        """,
        4,
        "give a local time without an offset",
    ),
    (
        "a dated window with a bad date",
        """\
        rules:
          - namespace: prod
            freeze:
              - start: next friday
                end: 2027-01-03T00:00
                tz: UTC
        """,
        4,
        "start: expected a date and time, got 'next friday'; write e.g. 2026-12-20T00:00",
    ),
    (
        "a glob with upper case",
        "rules:\n  - namespace: Prod\n",
        2,
        "rules[0].namespace: bad glob 'Prod': 'P' cannot appear in a Kubernetes name",
    ),
    (
        "a glob with an unclosed class",
        "rules:\n  - namespace: prod\n    vs: 'weather-[0-9'\n",
        3,
        "rules[0].vs: bad glob 'weather-[0-9': '[' at position 9 is never closed",
    ),
    (
        "a missing namespace",
        "rules:\n  - vs: weather\n",
        2,
        "rules[0].namespace: 'namespace' is required; add it",
    ),
    (
        "no rules",
        "rules: []\n",
        1,
        "rules: there are no rules, so nobody may change anything; add a rule",
    ),
    (
        "steps that do not climb",
        "rules:\n  - namespace: prod\n    rollout:\n      steps: [5, 50, 25]\n",
        4,
        "steps must climb, each above the last; write them like [5, 10, 25, 50, 100], not 5,50,25",
    ),
    (
        "gates that are not steps",
        "rules:\n  - namespace: prod\n    rollout:\n      steps: [5, 50, 100]\n      gates: [60]\n",
        3,
        "gates [60] are not among the steps [5, 50, 100]",
    ),
    (
        "a threshold out of range",
        "rules:\n  - namespace: prod\n    rollout:\n      health:\n        min_success_rate: 101\n",
        5,
        "min_success_rate: 101 is too large; use 100 or less",
    ),
    (
        "a p99 ratio that fails a canary as fast as stable",
        "rules:\n  - namespace: prod\n    rollout:\n      health:\n        max_p99_ratio: 0.5\n",
        5,
        "max_p99_ratio: 0.5 is too small; use 1 or more",
    ),
    (
        "a negative request minimum",
        "rules:\n  - namespace: prod\n    rollout:\n      health:\n        min_requests: -1\n",
        5,
        "min_requests: -1 is too small; use 0 or more",
    ),
    (
        "approvals nobody can give",
        "rules:\n  - namespace: prod\n    approvals:\n      - count: 1\n",
        2,
        "approvals[0] has no `from` and allow.approve names nobody",
    ),
    (
        "approvals that can never be met",
        "rules:\n  - namespace: prod\n    approvals:\n      - {count: 3, from: [U0AAA, U0BBB]}\n",
        2,
        "approvals[0] needs 3 approvers but names only 2 people",
    ),
    (
        "an approval for approve",
        "rules:\n  - namespace: prod\n    approvals:\n"
        "      - {from: [S0SRE], actions: [approve]}\n",
        4,
        "approvals cannot be required for approve itself",
    ),
    (
        "an unknown action in approvals",
        "rules:\n  - namespace: prod\n    approvals:\n      - {from: [S0SRE], actions: [ship]}\n",
        4,
        "rules[0].approvals[0].actions[0]: unknown action 'ship'; use one of: set-weight",
    ),
    (
        "a key given twice",
        """\
        rules:
          - namespace: prod
            allow:
              start: [U0AAA]
              start: [U0BBB]
        """,
        5,
        "rules[0].allow.start: 'start' appears twice in the same mapping (first on line 4)",
    ),
    (
        "rules with the same specificity that overlap",
        """\
        rules:
          - name: prod
            namespace: "prod*"
          - name: weather
            namespace: "*"
            vs: "weat*"
        """,
        4,
        "rules 'prod' (line 2) and 'weather' (line 4) both match prod/weat and are equally "
        "specific, so neither wins",
    ),
    (
        "the same rule twice",
        "rules:\n  - namespace: prod\n  - namespace: prod\n    vs: '*'\n",
        3,
        "rules 'prod/*' (line 2) and 'prod/*' (line 3) both match prod/a",
    ),
    (
        "a YAML syntax error",
        "rules:\n  - namespace: prod\n    allow: [U0AAA\n",
        4,
        "YAML syntax error",
    ),
    (
        "a tab for indentation",
        "rules:\n\t- namespace: prod\n",
        2,
        "YAML syntax error",
    ),
    (
        "two documents",
        "rules: []\n---\nrules: []\n",
        2,
        "YAML syntax error: expected a single document",
    ),
    (
        "a Python object tag",
        "rules: !!python/object/apply:os.system [echo hi]\n",
        1,
        "the tag !!python/object/apply:os.system is not allowed in a policy file; remove it",
    ),
    (
        "an empty file",
        "",
        1,
        "the file is empty; the file is a mapping with a `rules:` list",
    ),
    (
        "a list at the top",
        "- namespace: prod\n",
        1,
        "expected a mapping, got [{'namespace': 'prod'}]",
    ),
]


@pytest.mark.parametrize(("text", "line", "says"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_files_are_refused_by_line(text: str, line: int, says: str) -> None:
    error = refuse(text)

    assert any(p.line == line and says in p.render("bad.yaml") for p in error.problems), str(error)
    assert f"bad.yaml:{line}: " in str(error)
    for rendered in str(error).splitlines():
        assert PROBLEM_LINE.match(rendered), rendered


def test_health_loads_as_the_thresholds_the_checks_judge_with() -> None:
    text = textwrap.dedent(
        """\
        rules:
          - namespace: prod
            rollout:
              health: {min_requests: 0, max_p99_ms: 300}
        """
    )
    code, said = check(text, "policy.yaml")

    assert code == 0, said
    [placed] = load_policy(text).rules
    assert placed.rule.rollout.health == HealthThresholds(min_requests=0, max_p99_ms=300)


def test_every_problem_is_reported_at_once() -> None:
    error = refuse(
        """\
        rules:
          - namespace: prod
            allow:
              promote: ["@alice"]
            limits:
              max_stp: 3
              min_interval: soon
            freeze:
              - days: [sat]
                tz: Mars/Olympus
        """
    )

    assert [p.line for p in error.problems] == [4, 6, 7, 10]
    assert str(error).count("\n") == 3


def test_check_exits_2_with_the_messages() -> None:
    code, text = check("rules:\n  - namespace: prod\n    alow: {}\n", "p.yaml")

    assert code == 2
    assert text.startswith("p.yaml:3: rules[0].alow: unknown key 'alow'")


def test_yaml_12_scalars_times_stay_text() -> None:
    policy = load_policy(
        textwrap.dedent(
            """\
            rules:
              - namespace: no
                freeze:
                  - days: [fri]
                    from: 16:00
                    to: 09:00
                    tz: UTC
            """
        )
    )

    rule = policy.rules[0].rule
    assert rule.namespace == "no"
    assert (rule.freeze[0].from_, rule.freeze[0].to) == ("16:00", "09:00")


def test_anchors_and_merge_keys_work() -> None:
    policy = load_policy(
        textwrap.dedent(
            """\
            rules:
              - name: base
                namespace: prod
                allow: &allow
                  start: [U0AAA]
                  rollback: [U0BBB]
                limits: {max_step: 10}
              - name: staging
                namespace: staging
                allow:
                  <<: *allow
                  start: [U0CCC]
            """
        )
    )

    staging = policy.match(Target("staging", "x"))
    assert staging is not None
    assert staging.rule.allow.who_may(Action.START) == ("U0CCC",)
    assert staging.rule.allow.who_may(Action.ROLLBACK) == ("U0BBB",)


def test_rules_are_ordered_most_specific_first() -> None:
    policy = load_policy(
        textwrap.dedent(
            """\
            rules:
              - {name: any, namespace: "*", vs: "*"}
              - {name: prod-any, namespace: "prod*", vs: "*"}
              - {name: prod, namespace: prod, vs: "*"}
              - {name: eu, namespace: "prod-eu-?", vs: "*"}
              - {name: weather, namespace: prod, vs: weather}
            """
        )
    )

    assert [r.rule.name for r in policy.rules] == ["weather", "prod", "eu", "prod-any", "any"]
    assert [r.line for r in policy.rules] == [6, 4, 5, 3, 2]
    placed = policy.match(Target("prod-eu-1", "weather"))
    assert placed is not None
    assert placed.rule.name == "eu"


def test_a_dated_window_and_weekly_windows_parse() -> None:
    window = FreezeWindow.model_validate(
        {"name": "x", "start": "2026-12-20T00:00", "end": "2027-01-03", "tz": "UTC"}
    )

    assert window.end is not None and window.start is not None
    assert window.end - window.start == timedelta(days=14)


def test_explain_names_the_rule_and_its_line() -> None:
    policy = load_policy((POLICY_DIR / "production.yaml").read_text(), "production.yaml")

    text = explain(
        policy,
        user="U0DEV1",
        groups=["S0DEV00000"],
        action="start",
        service="weather",
        namespace="prod",
        at=datetime(2026, 6, 12, 15, 0, tzinfo=UTC),
        weight_after=5,
    )

    assert text.splitlines()[0] == "decision: denied"
    assert "frozen until Mon 09:00 Europe/Berlin (weekend freeze)" in text
    assert "rule: 'production' (prod*/*) at production.yaml:21" in text
