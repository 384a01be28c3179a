"""Shared fixtures: the sandbox Kubernetes API and a client for it, real Redis, real Prometheus."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings

from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.prometheus import PrometheusServer
from sandbox.redis_server import RedisServer, free_port
from sandbox.traffic import TrafficSimulator

# Property tests judge behaviour, not speed: no per-example deadline on a loaded 2-core machine.
settings.register_profile("canary", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("canary")


@pytest.fixture
def sandbox() -> Iterator[SandboxApiServer]:
    """A started, empty sandbox API server; stopped after the test."""
    with SandboxApiServer() as server:
        yield server


@pytest.fixture
def api_client(sandbox: SandboxApiServer) -> Iterator[Any]:
    """A `kubernetes.client.ApiClient` for `sandbox`, closed after the test."""
    client = api_client_for(sandbox.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, shared by the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL, with its database emptied for this test."""
    redis_server.start()  # a test that stopped it without restarting must not break the next
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    return redis_server.url


@pytest.fixture(scope="session")
def prometheus_server() -> Iterator[PrometheusServer]:
    """A real Prometheus on loopback, scraping every second; nothing until a test sets targets."""
    with PrometheusServer(scrape_interval="1s") as server:
        yield server


@pytest.fixture
def prometheus(prometheus_server: PrometheusServer) -> PrometheusServer:
    """The shared Prometheus, running, with every stored series deleted for this test."""
    prometheus_server.start()  # a test that stopped it without restarting must not break the next
    prometheus_server.clear()
    return prometheus_server


@pytest.fixture(scope="session")
def traffic_port() -> int:
    """The one port every `scraped_traffic` simulator listens on.

    Prometheus takes 5-10 s to pick up a new target; one address for the whole session keeps
    its config unchanged from test to test.
    """
    return free_port()


ScrapedTraffic = Callable[..., TrafficSimulator]


@pytest.fixture
def scraped_traffic(prometheus: PrometheusServer, traffic_port: int) -> Iterator[ScrapedTraffic]:
    """Start a `TrafficSimulator(**kwargs)` that `prometheus` scrapes; stopped after the test.

    One simulator per test (they share a port). `prometheus.wait_for_series(...)` then waits
    for its first samples.
    """
    started: list[TrafficSimulator] = []

    def start(**kwargs: Any) -> TrafficSimulator:
        if started:
            raise RuntimeError("scraped_traffic starts one simulator per test")
        simulator = TrafficSimulator(port=traffic_port, **kwargs).start()
        started.append(simulator)
        prometheus.set_targets([simulator.target])
        return simulator

    yield start
    for simulator in started:
        simulator.stop()
