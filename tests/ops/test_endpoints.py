"""The bot's own endpoints: /healthz, /readyz (Redis, Kubernetes), /metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import Server, Settings
from bot.rollout.model import Rollback, StepPlan
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import write_kubeconfig
from sandbox.redis_server import RedisServer
from sandbox.seeding import load_yaml_documents, seed
from tests.support.harness import get, seed_file, wait_until


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, RedisServer]]:
    with SandboxApiServer() as cluster, RedisServer(persist_dir=tmp_path / "redis") as redis:
        seed(cluster, load_yaml_documents([seed_file("weather")]))
        settings = Settings.model_validate(
            {
                "REDIS_URL": redis.url,
                "CANARY_HTTP_PORT": 0,
                "CANARY_LEASE_TTL": 1.0,
                "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", cluster.url)),
            }
        )
        bot = Server(settings)
        bot.start()
        try:
            yield bot, redis
        finally:
            bot.stop()


def test_healthz_is_ok_while_the_process_lives(server: tuple[Server, RedisServer]) -> None:
    bot, _ = server
    assert bot.http is not None
    assert get(bot.http.url + "/healthz") == (200, "ok\n")


def test_readyz_fails_while_redis_is_down_and_recovers(server: tuple[Server, RedisServer]) -> None:
    bot, redis = server
    assert bot.http is not None
    status, body = get(bot.http.url + "/readyz")
    assert status == 200 and json.loads(body) == {"ready": True, "problems": []}
    redis.stop()
    status, body = get(bot.http.url + "/readyz")
    assert status == 503
    [problem] = json.loads(body)["problems"]
    assert problem.startswith("redis: Redis at") and "cannot be reached" in problem
    redis.start()
    wait_until(lambda: get(bot.http.url + "/readyz")[0] == 200, 10, "ready again")


def test_metrics_expose_the_named_series(server: tuple[Server, RedisServer]) -> None:
    bot, _ = server
    assert bot.http is not None
    steps = StepPlan(weights=(20, 100), interval_s=3600)
    bot.engine.start(
        namespace="default", vs="weather", to=None, steps=steps, actor="U1", channel=None
    )
    bot.engine.act("default", "weather", Rollback(actor="U1"))
    wait_until(lambda: bot.parts.metrics.leader._value.get() == 1, 5, "leading")
    status, text = get(bot.http.url + "/metrics")
    assert status == 200
    for series in (
        "canary_commands_total",
        "canary_ack_seconds_bucket",
        'canary_rollbacks_total{cause="manual"} 1.0',
        "canary_steps_applied_total",
        "canary_health_verdicts_total",
        "canary_leader 1.0",
        'canary_kube_request_seconds_count{verb="patch"}',
        "canary_kube_errors_total",
        "canary_prometheus_query_seconds_bucket",
        "canary_prometheus_errors_total",
    ):
        assert series in text, series
