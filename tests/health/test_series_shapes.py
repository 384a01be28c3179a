"""The health query finds its series for the traffic shapes it is asked about: two Services
(host-based: Flagger's podinfo-primary/podinfo-canary) told apart by destination_service_name,
and ambient mode, where the waypoint reports the requests. A real Prometheus scrapes a small
exporter of Istio's metrics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from bot.app import Settings, health_check
from bot.health.analysis import SequentialCheck
from bot.health.check import HealthCheck
from bot.health.client import PrometheusClient
from bot.health.promql import UnsafeLabel, requests_by_class
from bot.ops.metrics import Metrics
from bot.rollout.model import Target
from sandbox.prometheus import PrometheusServer

pytestmark = pytest.mark.slow
LABELS = ("reporter", "destination_service_namespace", "destination_service_name", "response_code")
PODINFO = Target(
    namespace="test", vs="podinfo", stable="podinfo-primary", canary="podinfo-canary", by="host"
)
WINDOW = timedelta(minutes=5)


class Exporter:
    """Istio's request metrics for the podinfo Services, as one reporter would report them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("istio_requests", "", LABELS, registry=self.registry)
        self.durations = Histogram(
            "istio_request_duration_milliseconds", "", LABELS, registry=self.registry
        )

    def serve(self, reporter: str, service: str, count: int, errors: int = 0) -> None:
        for code, n in (("200", count - errors), ("503", errors)):
            labels = (reporter, "test", service, code)
            self.requests.labels(*labels).inc(n)
            for _ in range(n):
                self.durations.labels(*labels).observe(40)


@pytest.fixture
def exporter(prometheus: PrometheusServer) -> Iterator[Exporter]:
    found = Exporter()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=found.registry)
    prometheus.set_targets([f"127.0.0.1:{server.server_port}"])
    yield found
    server.shutdown()
    server.server_close()
    thread.join()


def scraped_twice(prometheus: PrometheusServer, exporter: Exporter, reporter: str) -> None:
    """Two scrapes of the traffic, so that `increase` over the window has something to see."""
    for total in (100, 200):
        exporter.serve(reporter, "podinfo-primary", 90)
        exporter.serve(reporter, "podinfo-canary", 10, errors=1)
        prometheus.wait_for_series(f'sum(istio_requests_total{{reporter="{reporter}"}}) >= {total}')


def test_a_host_based_canary_is_found_by_its_service_name(
    prometheus: PrometheusServer, exporter: Exporter
) -> None:
    scraped_twice(prometheus, exporter, "destination")
    check = HealthCheck(PrometheusClient(prometheus.url), window=WINDOW)
    figures = check.figures(check.subject(PODINFO), WINDOW, datetime.now(UTC))
    assert figures.canary.requests and figures.stable.requests
    assert figures.canary.requests < figures.stable.requests
    assert figures.canary.errors and not figures.stable.errors
    assert figures.canary.p99_ms is not None and figures.stable.p99_ms is not None


def test_ambient_mode_reads_the_waypoints_reports(
    prometheus: PrometheusServer, exporter: Exporter
) -> None:
    scraped_twice(prometheus, exporter, "waypoint")
    settings = Settings(PROMETHEUS_URL=prometheus.url, CANARY_HEALTH_REPORTER="waypoint")
    sequential = health_check(settings, Metrics(), None)
    assert isinstance(sequential, SequentialCheck)
    canary, stable = sequential.counts(sequential.subject(PODINFO), WINDOW, datetime.now(UTC))
    assert canary.requests and stable.requests and canary.buckets and stable.buckets
    settings = settings.model_copy(update={"judge": "thresholds"})
    check = health_check(settings, Metrics(), None)
    assert isinstance(check, HealthCheck)
    figures = check.figures(check.subject(PODINFO), WINDOW, datetime.now(UTC))
    assert figures.canary.requests and figures.stable.requests
    sidecar = HealthCheck(PrometheusClient(prometheus.url), window=WINDOW)
    nothing = sidecar.figures(sidecar.subject(PODINFO), WINDOW, datetime.now(UTC))
    assert nothing.canary.requests is None  # the sidecar reporter has no series here


def test_a_reporter_istio_does_not_have_is_refused_before_any_query() -> None:
    check = HealthCheck(PrometheusClient("http://127.0.0.1:9"), reporter='x"} or vector(1)')
    with pytest.raises(UnsafeLabel, match="reporter"):
        requests_by_class(check.subject(PODINFO), WINDOW)
    with pytest.raises(ValueError, match="CANARY_HEALTH_REPORTER"):
        Settings(CANARY_HEALTH_REPORTER="ztunnel")
