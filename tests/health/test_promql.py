from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from datetime import timedelta
from typing import Any

import pytest

from bot.health.check import HealthCheck
from bot.health.promql import (
    Subject,
    TemplateError,
    UnsafeLabel,
    duration,
    latency_buckets,
    newest_sample,
    p99_latency,
    quote,
    regex_literal,
    render,
    requests_and_newest,
    requests_by_class,
    window_for,
)
from tests.health import NOW, RecordingClient, make_rollout

WEATHER = Subject(namespace="prod", service="weather-service", stable="v1", canary="v2")
SELECTOR = (
    '{reporter="destination",destination_service_namespace="prod",'
    'destination_service_name="weather-service",destination_version=~"v1|v2"}'
)
FIVE_MINUTES = timedelta(minutes=5)
INJECTIONS = [
    'weather"} or vector(1) #',
    "weather\\",
    'v1\\"',
    "v1\n",
    "v1\r",
    "v{1}",
    "v1}",
    "v1|v2",
    ".*",
    "v1$",
    "(v1)",
    "v1 ",
    "V1",
    "-v1",
    "v1-",
    "",
    "a" * 64,
]


def test_requests_query_counts_each_version_by_response_class() -> None:
    assert requests_by_class(WEATHER, FIVE_MINUTES) == (
        "sum by (destination_version, response_class) (label_replace("
        f"increase(istio_requests_total{SELECTOR}[5m]),"
        ' "response_class", "${1}xx", "response_code", "([0-9])[0-9][0-9]"))'
    )


def test_newest_sample_query_marks_its_series_apart_from_the_counts() -> None:
    assert newest_sample(WEATHER) == (
        "label_replace(max by (destination_version) ("
        f'timestamp(istio_requests_total{SELECTOR})), "scrape", "newest", "", "")'
    )


def test_p99_query_returns_both_versions() -> None:
    assert p99_latency(WEATHER, FIVE_MINUTES) == (
        "histogram_quantile(0.99, sum by (le, destination_version) ("
        f"rate(istio_request_duration_milliseconds_bucket{SELECTOR}[5m])))"
    )


def test_bucket_query_keeps_le_and_version() -> None:
    assert latency_buckets(WEATHER, FIVE_MINUTES) == (
        "sum by (le, destination_version) ("
        f"increase(istio_request_duration_milliseconds_bucket{SELECTOR}[5m]))"
    )


def test_version_label_is_configurable() -> None:
    subject = Subject("prod", "reviews", "v1", "v3", version_label="version")
    query = p99_latency(subject, FIVE_MINUTES)
    assert 'version=~"v1|v3"}' in query
    assert "sum by (le, version)" in query
    assert "destination_version" not in query


def test_regex_metacharacters_in_versions_are_escaped() -> None:
    subject = Subject("prod", "weather-service", "v2.0", "v2.1_rc")
    assert 'destination_version=~"v2\\\\.0|v2\\\\.1_rc"' in p99_latency(subject, FIVE_MINUTES)
    assert re.fullmatch(regex_literal("v2.1"), "v2.1")
    assert not re.fullmatch(regex_literal("v2.1"), "v2x1")


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (timedelta(minutes=1), "1m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(minutes=5), "5m"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=1, seconds=1), "1d1s"),
        (timedelta(seconds=1.2), "2s"),
    ],
)
def test_window_is_a_promql_duration(window: timedelta, expected: str) -> None:
    assert duration(window) == expected


def test_window_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one second"):
        duration(timedelta(0))


@pytest.mark.parametrize(
    ("interval", "window"),
    [
        (timedelta(seconds=30), timedelta(minutes=1)),
        (timedelta(minutes=1), timedelta(minutes=1)),
        (timedelta(minutes=5), timedelta(minutes=5)),
    ],
)
def test_window_is_the_step_interval_but_at_least_a_minute(
    interval: timedelta, window: timedelta
) -> None:
    assert window_for(interval) == window


def test_check_uses_the_step_interval_as_window_and_asks_at_now() -> None:
    client = RecordingClient()
    HealthCheck(client).check(make_rollout(interval_s=30), NOW)
    assert [at for _, at in client.calls] == [NOW, NOW]
    assert all("[1m]" in query for query, _ in client.calls)


def test_check_window_can_be_fixed() -> None:
    client = RecordingClient()
    HealthCheck(client, window=timedelta(minutes=10)).check(make_rollout(interval_s=30), NOW)
    assert all("[10m]" in query for query, _ in client.calls)


def test_check_asks_for_the_mapped_service() -> None:
    client = RecordingClient()
    check = HealthCheck(client, service=lambda target: f"{target.vs}-service")
    check.check(make_rollout(), NOW)
    assert [query for query, _ in client.calls] == [
        requests_by_class(WEATHER, FIVE_MINUTES),
        p99_latency(WEATHER, FIVE_MINUTES),
    ]


def test_quote_escapes_backslash_quote_and_newline() -> None:
    assert quote('a\\b"c\nd') == '"a\\\\b\\"c\\nd"'


@pytest.mark.parametrize("field", ["namespace", "service", "stable", "canary"])
@pytest.mark.parametrize("value", INJECTIONS)
def test_unsafe_values_are_refused(field: str, value: str) -> None:
    names = {"namespace": "prod", "service": "weather", "stable": "v1", "canary": "v2"}
    with pytest.raises(UnsafeLabel) as refused:
        Subject(**{**names, field: value})
    assert refused.value.value == value
    assert repr(value) in str(refused.value)


@pytest.mark.parametrize("label", ['version"', "version}", "1version", "__name__", "ver-sion"])
def test_unsafe_version_label_is_refused(label: str) -> None:
    with pytest.raises(UnsafeLabel, match="version label"):
        Subject("prod", "weather", "v1", "v2", version_label=label)


def test_version_values_may_hold_dots_and_underscores() -> None:
    assert Subject("prod", "weather", "v1.2.3", "v2_rc-1").canary == "v2_rc-1"


@pytest.mark.parametrize(
    ("field", "value"),
    [("namespace", 'prod"} or vector(1) #'), ("vs", "weather\\"), ("canary", "v2|.*")],
)
def test_unsafe_target_never_reaches_prometheus(field: str, value: str) -> None:
    client = RecordingClient()
    rollout = make_rollout()
    rollout = rollout.model_copy(
        update={"target": rollout.target.model_copy(update={field: value})}
    )
    verdict = HealthCheck(client).check(rollout, NOW)
    assert verdict.outcome == "inconclusive"
    assert "cannot go into a Prometheus query" in verdict.summary
    assert client.calls == []


def test_unsafe_version_label_never_reaches_prometheus() -> None:
    client = RecordingClient()
    verdict = HealthCheck(client, version_label="v} or vector(1)").check(make_rollout(), NOW)
    assert verdict.outcome == "inconclusive"
    assert client.calls == []


# Custom checks


def test_template_placeholders_are_filled() -> None:
    template = (
        'sum(rate(istio_requests_total{{destination_service_namespace="{namespace}",'
        'destination_service_name="{service}",{version_label}=~"{canary:re}|{stable:re}",'
        'response_code="429"}}[{window}]))'
    )
    subject = Subject("prod", "weather-service", "v1", "v2.1")
    assert render(template, subject, timedelta(minutes=2)) == (
        'sum(rate(istio_requests_total{destination_service_namespace="prod",'
        'destination_service_name="weather-service",destination_version=~"v2\\\\.1|v1",'
        'response_code="429"}[2m]))'
    )


def test_template_plain_version_is_not_regex_escaped() -> None:
    subject = Subject("prod", "weather", "v1", "v2.1")
    assert render('x{{v="{canary}"}}', subject, FIVE_MINUTES) == 'x{v="v2.1"}'


@pytest.mark.parametrize(
    ("template", "complaint"),
    [
        ('up{{pod="{pod}"}}', "unknown placeholder {pod}"),
        ("{canary.__class__}", "unknown placeholder"),
        ("{canary[0]}", "unknown placeholder"),
        ("{}", "unknown placeholder"),
        ("{0}", "unknown placeholder"),
        ("{canary!r}", "no conversion"),
        ("{canary:>10}", "format spec"),
        ("{service:re}", "format spec"),
        ("{canary:{stable}}", "format spec"),
        ("up{job='x'}", "unknown placeholder"),
        ("up}", "malformed"),
        ("up{", "malformed"),
    ],
)
def test_template_mistakes_are_refused(template: str, complaint: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(complaint)):
        render(template, WEATHER, FIVE_MINUTES)


# Every built query is valid PromQL, as the real Prometheus judges it.

SUBJECTS = [
    WEATHER,
    Subject("default", "reviews", "v1", "v3"),
    Subject("team-a", "httpbin", "v2.0", "v2.1_rc", version_label="version"),
    Subject("a" * 63, "b" * 63, "c" * 63, "d" * 63),
]
TEMPLATES = [
    'sum(rate(istio_requests_total{{reporter="destination",destination_service_namespace='
    '"{namespace}",destination_service_name="{service}",{version_label}="{canary}",'
    'response_code="429"}}[{window}]))',
    'max by ({version_label}) (up{{{version_label}=~"{canary:re}|{stable:re}"}})',
]


def _builders() -> list[Any]:
    return [
        requests_by_class,
        p99_latency,
        latency_buckets,
        requests_and_newest,  # the look's first
        *(lambda s, w, t=t: render(t, s, w) for t in TEMPLATES),
    ]


def _post_query(url: str, promql: str) -> dict[str, Any]:
    body = urllib.parse.urlencode({"query": promql}).encode()
    with urllib.request.urlopen(f"{url}/api/v1/query", data=body, timeout=5) as response:
        answer: dict[str, Any] = json.load(response)
        return answer


@pytest.mark.parametrize("subject", SUBJECTS, ids=lambda s: f"{s.service}-{s.canary}")
@pytest.mark.parametrize("window", [timedelta(minutes=1), timedelta(seconds=90)], ids=str)
def test_real_prometheus_accepts_every_query(
    prometheus_server: Any, subject: Subject, window: timedelta
) -> None:
    for build in _builders():
        query = build(subject, window)
        answer = _post_query(prometheus_server.url, query)
        assert answer["status"] == "success", (query, answer)
        assert answer["data"]["resultType"] == "vector"
