"""Custom checks from the policy: declared in YAML, filled safely, judged after the standard
check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.health.client import PrometheusClient, PrometheusUnreachable, Vector
from bot.health.custom import run_checks
from bot.health.promql import Subject, render
from bot.rollout.model import Verdict
from bot.sandbox.prometheus import PrometheusServer
from policies import PolicyError, load_policy
from policies.model import CustomCheck

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
SUBJECT = Subject(namespace="default", service="weather-service", stable="v1", canary="v2")
ERRORS = CustomCheck(
    name="canary-5xx-per-second",
    query='sum(rate(istio_requests_total{{destination_service_name="{service}",'
    'destination_version="{canary}",response_code=~"5.."}}[{window}]))',
    max=0.5,
)


class Answers:
    """A query client double: canned answers, and a record of what was asked."""

    def __init__(self, *answers: Vector | Exception) -> None:
        self.answers, self.asked = list(answers), []

    def query(self, promql: str, at: datetime | None = None) -> Vector:
        self.asked.append(promql)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def passed() -> Verdict:
    return Verdict(outcome="pass", at=NOW, step=0, summary="healthy", figures={"x": 1.0})


def test_a_value_over_its_bound_fails_the_check() -> None:
    client = Answers({(): 2.5})
    verdict = run_checks(
        passed(), [ERRORS], client, subject=SUBJECT, window=timedelta(minutes=1), now=NOW
    )
    assert verdict.outcome == "fail"
    assert verdict.summary == "canary-5xx-per-second is 2.5, not ≤ 0.5"
    assert verdict.figures["check_canary-5xx-per-second"] == 2.5
    assert client.asked == [render(ERRORS.query, SUBJECT, timedelta(minutes=1))]
    assert 'destination_version="v2"' in client.asked[0] and "[1m]" in client.asked[0]


def test_a_value_within_bounds_keeps_the_pass() -> None:
    verdict = run_checks(
        passed(),
        [ERRORS],
        Answers({(): 0.1}),
        subject=SUBJECT,
        window=timedelta(minutes=1),
        now=NOW,
    )
    assert verdict.outcome == "pass" and verdict.figures["check_canary-5xx-per-second"] == 0.1


@pytest.mark.parametrize(
    "answer",
    [{}, {(("a", "1"),): 1.0, (("a", "2"),): 2.0}, PrometheusUnreachable("http://p", "refused", 3)],
)
def test_no_single_value_makes_a_pass_inconclusive(answer: Vector | Exception) -> None:
    verdict = run_checks(
        passed(), [ERRORS], Answers(answer), subject=SUBJECT, window=timedelta(minutes=1), now=NOW
    )
    assert verdict.outcome == "inconclusive"
    assert "no data for custom checks canary-5xx-per-second" in verdict.summary


def test_custom_checks_do_not_run_when_the_standard_check_did_not_pass() -> None:
    client = Answers()
    failed = passed().model_copy(update={"outcome": "fail"})
    assert (
        run_checks(failed, [ERRORS], client, subject=SUBJECT, window=timedelta(minutes=1), now=NOW)
        is failed
    )
    assert client.asked == []


def test_the_filled_template_parses_in_prometheus(prometheus_server: PrometheusServer) -> None:
    client = PrometheusClient(prometheus_server.url)
    assert client.query(render(ERRORS.query, SUBJECT, timedelta(minutes=1))) == {}


def test_policies_declare_checks_and_bad_ones_are_refused_with_lines() -> None:
    good = """rules:
  - namespace: "*"
    rollout:
      health:
        checks:
          - name: canary-5xx-per-second
            query: 'sum(rate(istio_requests_total{{destination_version="{canary}"}}[{window}]))'
            max: 0.5
"""
    [placed] = load_policy(good).rules
    assert placed.rule.rollout.health.checks[0].max == 0.5
    with pytest.raises(PolicyError) as caught:
        load_policy(good.replace("{canary}", "{user}"), "policy.yaml")
    assert "policy.yaml:7:" in str(caught.value)
    assert "unknown placeholders ['user']" in str(caught.value)
    with pytest.raises(PolicyError, match="give exactly one of max or min"):
        load_policy(good.replace("max: 0.5", "min: 1\n            max: 2"), "policy.yaml")
