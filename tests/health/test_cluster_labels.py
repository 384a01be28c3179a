"""A wave cluster's label matchers (`cluster="prod-eu"` in a Prometheus that clusters share):
in every query its checks make, escaped like every other value, and refused when unsafe."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from datetime import timedelta
from typing import Any

import pytest

from bot.health.analysis import SequentialCheck
from bot.health.check import HealthCheck
from bot.health.promql import (
    Subject,
    UnsafeLabel,
    label_matchers,
    latency_buckets,
    p99_latency,
    requests_and_newest,
    requests_by_class,
)
from bot.rollout.model import Rollout
from tests.health import NOW, RecordingClient, make_rollout

FIVE_MINUTES = timedelta(minutes=5)
PROD_EU = (("cluster", "prod-eu"),)
SELECTOR = (
    '{reporter="destination",destination_service_namespace="prod",'
    'destination_service_name="weather-service",destination_version=~"v1|v2",'
    'cluster="prod-eu"}'
)


def _weather(labels: tuple[tuple[str, str], ...] = PROD_EU, **more: Any) -> Subject:
    return Subject("prod", "weather-service", "v1", "v2", labels=labels, **more)


def _tcp(rollout: Rollout) -> Rollout:
    target = rollout.target.model_copy(update={"protocol": "tcp"})
    return rollout.model_copy(update={"target": target})


def test_each_standard_query_selects_only_the_clusters_series() -> None:
    subject = _weather()
    assert requests_by_class(subject, FIVE_MINUTES) == (
        "sum by (destination_version, response_class) (label_replace("
        f"increase(istio_requests_total{SELECTOR}[5m]),"
        ' "response_class", "${1}xx", "response_code", "([0-9])[0-9][0-9]"))'
    )
    assert p99_latency(subject, FIVE_MINUTES) == (
        "histogram_quantile(0.99, sum by (le, destination_version) ("
        f"rate(istio_request_duration_milliseconds_bucket{SELECTOR}[5m])))"
    )
    assert latency_buckets(subject, FIVE_MINUTES) == (
        "sum by (le, destination_version) ("
        f"increase(istio_request_duration_milliseconds_bucket{SELECTOR}[5m]))"
    )


def test_tcp_connections_select_only_the_clusters_series() -> None:
    query = requests_by_class(_weather(protocol="tcp"), FIVE_MINUTES)
    assert query.startswith("sum by (destination_version, response_class) (label_replace(")
    assert f"increase(istio_tcp_connections_closed_total{SELECTOR}[5m])" in query


def test_several_labels_are_all_matched_in_their_order() -> None:
    subject = _weather((("region", "eu-west-1"), ("cluster", "prod-eu")))
    assert (
        requests_by_class(subject, FIVE_MINUTES).count(
            'destination_version=~"v1|v2",region="eu-west-1",cluster="prod-eu"}'
        )
        == 1
    )


def test_label_values_are_escaped_as_every_other_value() -> None:
    subject = _weather((("cluster", 'eu"} or vector(1) # \\'),))
    assert (
        p99_latency(subject, FIVE_MINUTES).count(',cluster="eu\\"} or vector(1) # \\\\"}[5m]') == 1
    )


@pytest.mark.parametrize(
    ("labels", "what"),
    [
        ({"cluster-name": "prod-eu"}, "label name 'cluster-name'"),
        ({"1cluster": "prod-eu"}, "label name '1cluster'"),
        ({'cluster"': "prod-eu"}, "label name 'cluster\"'"),
        ({'cluster="x",y': "prod-eu"}, "label name"),
        ({"__name__": "up"}, "label name '__name__'"),
        ({"": "prod-eu"}, "label name ''"),
        ({"reporter": "source"}, "label name 'reporter'"),
        ({"destination_version": "v1"}, "label name 'destination_version'"),
        ({"destination_service_namespace": "prod"}, "label name"),
        ({"le": "+Inf"}, "label name 'le'"),
        ({"cluster": ""}, "value of label cluster ''"),
        ({"cluster": "prod\neu"}, "value of label cluster"),
        ({"cluster": "prod\x00eu"}, "value of label cluster"),
    ],
)
def test_unsafe_labels_are_refused(labels: dict[str, str], what: str) -> None:
    with pytest.raises(UnsafeLabel, match="cannot go into a Prometheus query") as refused:
        label_matchers(labels)
    assert str(refused.value).startswith(what)
    with pytest.raises(UnsafeLabel):
        _weather(tuple(labels.items()))


def test_a_label_the_subjects_own_version_label_names_is_refused() -> None:
    assert label_matchers({"version": "v1"}) == (("version", "v1"),)
    with pytest.raises(UnsafeLabel, match="label name 'version'"):
        _weather((("version", "v1"),), version_label="version")


def test_a_health_check_asks_every_query_with_the_clusters_labels() -> None:
    client = RecordingClient()
    HealthCheck(client, labels={"cluster": "prod-eu"}).check(make_rollout(), NOW)
    queries = [query for query, _ in client.calls]
    assert len(queries) == 2  # requests and p99
    assert all(query.count(',cluster="prod-eu"}') == 1 for query in queries)


def test_the_sequential_judge_asks_every_query_with_the_clusters_labels() -> None:
    client = RecordingClient()
    SequentialCheck(client, labels={"cluster": "prod-eu"}).check(make_rollout(), NOW)
    queries = [query for query, _ in client.calls]
    assert [q.split("(")[1].split("{")[0] for q in queries] == [
        "destination_version, response_class) ",
        "le, destination_version) ",
    ]
    assert "istio_requests_total{" in queries[0]
    assert "istio_request_duration_milliseconds_bucket{" in queries[1]
    # every series selector, the requests' and their newest samples' timestamps alike
    assert [query.count(',cluster="prod-eu"}') for query in queries] == [2, 1]
    assert queries[0].count("istio_requests_total{") == 2


def test_a_tcp_check_counts_only_the_clusters_connections() -> None:
    client = RecordingClient()
    SequentialCheck(client, labels={"cluster": "prod-eu"}).check(_tcp(make_rollout()), NOW)
    [(query, _)] = client.calls
    assert query.count("istio_tcp_connections_closed_total{") == 2  # counts and timestamps
    assert query.count(',cluster="prod-eu"}') == 2


def test_without_labels_the_queries_are_the_ones_before() -> None:
    plain, labelled = RecordingClient(), RecordingClient()
    HealthCheck(plain).check(make_rollout(), NOW)
    HealthCheck(labelled, labels={"cluster": "prod-eu"}).check(make_rollout(), NOW)
    assert [q.replace(',cluster="prod-eu"', "") for q, _ in labelled.calls] == [
        q for q, _ in plain.calls
    ]
    assert all("cluster" not in q for q, _ in plain.calls)


@pytest.mark.parametrize("check", [HealthCheck, SequentialCheck])
def test_unsafe_labels_never_reach_prometheus(check: type[HealthCheck | SequentialCheck]) -> None:
    client = RecordingClient()
    verdict = check(client, labels={"cluster": ""}).check(make_rollout(), NOW)
    assert verdict.outcome == "inconclusive"
    assert "value of label cluster '' cannot go into a Prometheus query" in verdict.summary
    assert client.calls == []


def _post_query(url: str, promql: str) -> dict[str, Any]:
    body = urllib.parse.urlencode({"query": promql}).encode()
    with urllib.request.urlopen(f"{url}/api/v1/query", data=body, timeout=5) as response:
        answer: dict[str, Any] = json.load(response)
        return answer


@pytest.mark.parametrize("value", ["prod-eu", 'eu"} or vector(1) #', "eu\\", "eu-west/1 ü"])
def test_real_prometheus_reads_each_labelled_query_as_one_selector(
    prometheus: Any, value: str
) -> None:
    """Valid PromQL whatever the value, and with nothing stored nothing comes back: a value
    that broke out of its string would make the query malformed, or answer `vector(1)`."""
    subject = _weather((("cluster", value),))
    queries = [build(subject, FIVE_MINUTES) for build in (p99_latency, latency_buckets)]
    queries.append(requests_and_newest(subject, FIVE_MINUTES))
    for query in queries:
        answer = _post_query(prometheus.url, query)
        assert answer["status"] == "success"
        assert answer["data"]["result"] == []
