"""Shared fixtures: the sandbox Kubernetes API server, a client pointing at it, real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from bot.sandbox.apiserver import SandboxApiServer
from bot.sandbox.kubeconfig import api_client_for
from bot.sandbox.prometheus import PrometheusServer
from bot.sandbox.redis_server import RedisServer


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
    """A real Prometheus on loopback (scraping nothing until a test calls set_targets)."""
    server = PrometheusServer(scrape_interval="1s").start()
    yield server
    server.close()
