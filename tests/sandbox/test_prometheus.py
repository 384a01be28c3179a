"""A real Prometheus scraping the traffic simulator, asked the queries the health checks ask."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.apiserver import SandboxApiServer
from sandbox.prometheus import JOB_NAME, PrometheusServer, PrometheusServerError, scrape_config
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed
from sandbox.traffic import TrafficSimulator, VersionProfile

RATES = 'sum by (destination_version) (rate(istio_requests_total{reporter="destination"}[30s]))'
P99 = (
    "histogram_quantile(0.99, sum by (le, destination_version) "
    "(rate(istio_request_duration_milliseconds_bucket[30s])))"
)
SLOW_CANARY = {"v1": VersionProfile(latency_ms=40.0), "v2": VersionProfile(latency_ms=400.0)}


@pytest.fixture
def weather_traffic(
    sandbox: SandboxApiServer,
    scraped_traffic: Callable[..., TrafficSimulator],
) -> TrafficSimulator:
    """200 requests/s to weather-service (v1 90%, v2 10%, slow), scraped by `prometheus`."""
    [weather] = [p for p in bundled_seed_paths() if p.name == "weather.yaml"]
    seed(sandbox, load_yaml_documents([weather]))
    return scraped_traffic(
        api=sandbox.url,
        namespace="default",
        vs="weather",
        service="weather-service",
        rate=200.0,
        versions=SLOW_CANARY,
        seed=11,
        tick=0.05,
    )


def per_version(prometheus: PrometheusServer, query: str, *, scrapes: int = 2) -> dict[str, float]:
    """`query`'s value per destination_version, once both versions have `scrapes` samples."""
    scraped = f'count_over_time(istio_requests_total{{reporter="destination"}}[30s]) >= {scrapes}'
    prometheus.wait_for_series(f"count({scraped}) >= 2")
    result = prometheus.query(query)
    return {r["metric"]["destination_version"]: float(r["value"][1]) for r in result}


# Against the session's Prometheus


@pytest.mark.usefixtures("weather_traffic")
def test_request_rates_per_version_follow_the_split(prometheus: PrometheusServer) -> None:
    rates = per_version(prometheus, RATES, scrapes=8)

    # rate() divides by the whole 30 s window, so while it fills only the shares are exact. A
    # series a scrape younger than the other is extrapolated differently: with three samples
    # that skewed the share by a fifth once; with eight, by a few percent at most.
    canary_share = rates["v2"] / (rates["v1"] + rates["v2"])
    assert canary_share == pytest.approx(0.10, abs=0.02)
    assert 0 < rates["v1"] + rates["v2"] <= 200 * 1.1


@pytest.mark.usefixtures("weather_traffic")
def test_p99_latency_is_higher_for_the_slow_version(prometheus: PrometheusServer) -> None:
    p99 = per_version(prometheus, P99)

    # Medians 40 ms and 400 ms with σ 0.3: p99 about 80 ms and 800 ms.
    assert 50 < p99["v1"] <= 100
    assert 500 < p99["v2"] <= 1000


def test_a_bad_query_is_a_400_with_bad_data(prometheus: PrometheusServer) -> None:
    query = urllib.parse.urlencode({"query": "sum(rate(istio_requests_total[30s])"})

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{prometheus.url}/api/v1/query?{query}", timeout=5)

    assert refused.value.code == 400
    body = json.load(refused.value)
    assert (body["status"], body["errorType"]) == ("error", "bad_data")
    with pytest.raises(PrometheusServerError, match=r"answered 400.*bad_data"):
        prometheus.query("sum(rate(istio_requests_total[30s])")


def test_stop_and_start_again_keeps_the_address_the_data_and_the_targets(
    prometheus: PrometheusServer, weather_traffic: TrafficSimulator
) -> None:
    prometheus.wait_for_series('istio_requests_total{destination_version="v2"}')
    url, targets = prometheus.url, prometheus.targets

    prometheus.stop()
    assert not prometheus.running
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/-/ready", timeout=1)
    restarted_at = time.time()
    prometheus.start()

    assert (prometheus.url, prometheus.targets) == (url, targets)
    assert prometheus.query("count(last_over_time(istio_requests_total[5m]))")  # the WAL
    fresh = f'timestamp(istio_requests_total{{destination_version="v2"}}) > {restarted_at}'
    prometheus.wait_for_series(fresh, timeout=20)  # scraping resumed


@pytest.mark.usefixtures("weather_traffic")
def test_clear_deletes_the_stored_samples(prometheus: PrometheusServer) -> None:
    stored = 'count_over_time(istio_requests_total{destination_version="v2"}[1h]) >= 3'
    prometheus.wait_for_series(stored)

    prometheus.clear()

    assert prometheus.query(stored) == []  # at most the one scrape since


# Starting and configuring


def test_the_generated_config_scrapes_the_targets_every_interval() -> None:
    config = scrape_config(["127.0.0.1:9100", "127.0.0.1:9101"], "2s")

    assert config["global"]["scrape_interval"] == config["global"]["scrape_timeout"] == "2s"
    [job] = config["scrape_configs"]
    assert job["job_name"] == JOB_NAME
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9100", "127.0.0.1:9101"]}]


def test_labelled_targets_are_scraped_with_their_labels() -> None:
    labels = {"127.0.0.1:9101": {"cluster": "prod-eu"}, "127.0.0.1:9102": {"cluster": "eu"}}
    config = scrape_config(["127.0.0.1:9100", "127.0.0.1:9101", "127.0.0.1:9102"], "1s", labels)

    [job] = config["scrape_configs"]
    assert job["static_configs"] == [
        {"targets": ["127.0.0.1:9100"]},
        {"targets": ["127.0.0.1:9101"], "labels": {"cluster": "prod-eu"}},
        {"targets": ["127.0.0.1:9102"], "labels": {"cluster": "eu"}},
    ]
    only_labelled = scrape_config(["127.0.0.1:9101"], "1s", labels)["scrape_configs"][0]
    assert only_labelled["static_configs"] == [
        {"targets": ["127.0.0.1:9101"], "labels": {"cluster": "prod-eu"}}
    ]


def test_a_targets_labels_come_and_go_with_set_targets(
    prometheus: PrometheusServer, weather_traffic: TrafficSimulator
) -> None:
    target = weather_traffic.target
    prometheus.set_targets([target], labels={target: {"cluster": "prod-eu"}})
    [labelled] = prometheus.active_targets()
    assert labelled["labels"]["cluster"] == "prod-eu"
    prometheus.wait_for_series('istio_requests_total{cluster="prod-eu",destination_version="v2"}')
    prometheus.set_targets([target])
    [plain] = prometheus.active_targets()
    assert "cluster" not in plain["labels"]


@pytest.mark.parametrize("target", ["http://127.0.0.1:9100/metrics", "127.0.0.1", ":9100", "h:x"])
def test_targets_must_be_host_and_port(target: str) -> None:
    with pytest.raises(ValueError, match="is not 'host:port'"):
        PrometheusServer(targets=[target])


def test_targets_are_a_sequence_not_one_string() -> None:
    with pytest.raises(TypeError, match="sequence"):
        PrometheusServer().set_targets("127.0.0.1:9100")


def test_targets_set_while_stopped_apply_at_the_next_start() -> None:
    server = PrometheusServer(targets=["127.0.0.1:9100"])
    server.set_targets(["127.0.0.1:9200"])
    assert server.targets == ("127.0.0.1:9200",)


def test_a_missing_binary_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrometheusServerError, match=r"apt-get install .*prometheus"):
        PrometheusServer().start()


def test_a_config_promtool_rejects_is_reported() -> None:
    server = PrometheusServer(scrape_interval="soon")
    with pytest.raises(PrometheusServerError, match="promtool rejected"):
        server.start()
    server.close()


def test_a_server_that_cannot_listen_reports_its_log() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = PrometheusServer(port=taken.getsockname()[1])
        with pytest.raises(PrometheusServerError, match="exited with code") as failed:
            server.start()
    server.close()
    assert "address already in use" in str(failed.value)
    assert not server.running
