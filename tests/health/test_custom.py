"""Custom checks from the policy: declared in YAML, filled safely, judged after the standard
check, each a row of the verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.health.check import HealthCheck
from bot.health.client import PrometheusClient, PrometheusUnreachable, Vector
from bot.health.promql import Subject, render
from bot.rollout.model import Verdict
from policies import PolicyError, load_policy
from policies.model import CustomCheck, HealthThresholds
from sandbox.prometheus import PrometheusServer
from tests.health import RecordingClient, labels, make_rollout

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
SUBJECT = Subject(namespace="default", service="weather-service", stable="v1", canary="v2")
WINDOW = timedelta(minutes=1)
ERRORS = CustomCheck(
    name="canary-5xx-per-second",
    query='sum(rate(istio_requests_total{{destination_service_name="{service}",'
    'destination_version="{canary}",response_code=~"5.."}}[{window}]))',
    max=0.5,
)
HEALTHY = (  # the standard check's two answers: both versions healthy
    {
        labels(destination_version="v1", response_class="2xx"): 1_000.0,
        labels(destination_version="v2", response_class="2xx"): 100.0,
    },
    {labels(destination_version="v1"): 200.0, labels(destination_version="v2"): 210.0},
)


def check_with(
    *custom_answers: Vector | Exception, standard: tuple[Vector, Vector] = HEALTHY
) -> tuple[Verdict, list[str]]:
    client = RecordingClient(*standard, *custom_answers)
    health = HealthCheck(
        client,
        HealthThresholds(checks=(ERRORS,)),
        window=WINDOW,
        service=lambda _: "weather-service",
    )
    verdict = health.check(make_rollout(namespace="default"), NOW)
    return verdict, [promql for promql, _ in client.calls]


def test_a_value_over_its_bound_fails_the_check() -> None:
    verdict, asked = check_with({(): 2.5})
    assert verdict.outcome == "fail"
    assert verdict.summary == "canary-5xx-per-second is 2.5, not ≤ 0.5"
    assert verdict.figures["check_canary-5xx-per-second"] == 2.5
    assert verdict.rows[-1] == ("canary-5xx-per-second", "2.5", "—", "≤ 0.5", "fail")
    assert asked[2:] == [render(ERRORS.query, SUBJECT, WINDOW)]
    assert 'destination_version="v2"' in asked[2] and "[1m]" in asked[2]


def test_a_value_within_bounds_keeps_the_pass() -> None:
    verdict, _ = check_with({(): 0.1})
    assert verdict.outcome == "pass" and verdict.figures["check_canary-5xx-per-second"] == 0.1
    assert verdict.rows[-1] == ("canary-5xx-per-second", "0.1", "—", "≤ 0.5", "pass")


def test_a_minimum_is_a_floor() -> None:
    floor = ERRORS.model_copy(update={"max": None, "min": 1.0})
    client = RecordingClient(*HEALTHY, {(): 0.5})
    health = HealthCheck(client, HealthThresholds(checks=(floor,)), window=WINDOW)
    verdict = health.check(make_rollout(namespace="default"), NOW)
    assert verdict.outcome == "fail"
    assert verdict.rows[-1] == ("canary-5xx-per-second", "0.5", "—", "≥ 1", "fail")


@pytest.mark.parametrize(
    "answer",
    [{}, {(("a", "1"),): 1.0, (("a", "2"),): 2.0}, PrometheusUnreachable("http://p", "refused", 3)],
)
def test_no_single_value_makes_a_pass_inconclusive(answer: Vector | Exception) -> None:
    verdict, _ = check_with(answer)
    assert verdict.outcome == "inconclusive"
    assert verdict.summary == "no data for custom check canary-5xx-per-second"
    assert verdict.rows[-1] == ("canary-5xx-per-second", "—", "—", "≤ 0.5", "inconclusive")


def test_custom_checks_do_not_run_when_the_standard_check_did_not_pass() -> None:
    failing = ({labels(destination_version="v2", response_class="5xx"): 100.0}, HEALTHY[1])
    verdict, asked = check_with(standard=failing)
    assert verdict.outcome == "fail"
    assert len(asked) == 2
    assert [row[0] for row in verdict.rows] == [
        "requests",
        "success rate",
        "error rate vs stable",
        "p99 latency",
        "p99 vs stable",
    ]


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
