"""CANARY_CLUSTERS' `prometheus_labels`: the matchers that pick a wave cluster's series out of
a Prometheus that clusters share, read from the environment and checked at startup."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.app import ClusterSettings, Settings
from bot.cli import main

SHARED = "http://thanos-query.monitoring:9090"


def test_labels_are_read_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_URL", SHARED)
    monkeypatch.setenv(
        "CANARY_CLUSTERS",
        '{"canary-eu": {"prometheus_labels": {"cluster": "canary-eu"}},'
        ' "prod-eu": {"prometheus_labels": {"cluster": "prod-eu", "region": "eu-west-1"}},'
        ' "prod-us": {"prometheus_url": "http://prometheus.prod-us:9090"}}',
    )
    assert Settings().clusters == {
        "canary-eu": ClusterSettings(prometheus_labels={"cluster": "canary-eu"}),
        "prod-eu": ClusterSettings(prometheus_labels={"cluster": "prod-eu", "region": "eu-west-1"}),
        "prod-us": ClusterSettings(prometheus_url="http://prometheus.prod-us:9090"),
    }
    assert Settings().clusters["prod-us"].prometheus_labels == {}


@pytest.mark.parametrize(
    ("labels", "sentence"),
    [
        (
            '{"cluster-name": "prod-eu"}',
            "label name 'cluster-name' cannot go into a Prometheus query: it must be a"
            " Prometheus label name",
        ),
        ('{"__name__": "up"}', "label name '__name__' cannot go into a Prometheus query"),
        ('{"reporter": "source"}', "the health queries set that label themselves"),
        ('{"cluster": ""}', "value of label cluster '' cannot go into a Prometheus query"),
        ('{"cluster": "prod\\neu"}', "it must be non-empty printable text"),
        ('{"cluster": 1}', "Input should be a valid string"),
    ],
)
def test_serve_refuses_unsafe_labels_at_startup_with_one_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], labels: str, sentence: str
) -> None:
    monkeypatch.setenv("PROMETHEUS_URL", SHARED)
    monkeypatch.setenv("CANARY_CLUSTERS", f'{{"prod-eu": {{"prometheus_labels": {labels}}}}}')
    with pytest.raises(ValidationError, match="prometheus_labels"):
        Settings()
    assert main(["check-config"]) == 2
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("✗ setting CANARY_CLUSTERS.prod-eu.prometheus_labels")
    assert sentence in line


def test_labels_without_any_prometheus_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    monkeypatch.setenv("CANARY_CLUSTERS", '{"prod-eu": {"prometheus_labels": {"cluster": "a"}}}')
    with pytest.raises(ValidationError, match="cluster prod-eu has prometheus_labels but no"):
        Settings()


def test_labels_with_the_clusters_own_prometheus_are_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    own = {"prometheus_url": "http://thanos.eu:9090", "prometheus_labels": {"cluster": "a"}}
    settings = Settings(CANARY_CLUSTERS={"prod-eu": own})
    assert settings.clusters["prod-eu"].prometheus_labels == {"cluster": "a"}
