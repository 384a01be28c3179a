"""The fault injectors of the fault campaign: the TCP fault proxy, child processes that can be
paused and killed, and the recorder of everything a run did."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from slack_sdk import WebClient

from bot.rollout.model import Phase, Rollout, StepPlan, Target
from bot.store.errors import VersionConflict
from bot.store.lease import LeaderLease
from bot.store.redis_store import RolloutStore, connect
from sandbox.apiserver import SandboxApiServer
from sandbox.redis_server import RedisServer
from tests.support.fake_slack import FakeSlack
from tests.support.faultproxy import FaultProxy
from tests.support.harness import wait_until
from tests.support.history import HistoryRecorder, LeaseChange
from tests.support.processes import ChildExited, ChildProcess, cli, serve, serve_env


def client_through(proxy: FaultProxy, **options: Any) -> redis.Redis:
    """A redis-py client that reports every connection error instead of retrying."""
    return redis.Redis(port=proxy.port, retry=Retry(NoBackoff(), 0), **options)


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(redis_url) as proxy:
        yield proxy


# --- The fault proxy -------------------------------------------------------------------------


def test_the_proxy_passes_everything_through(redis_proxy: FaultProxy) -> None:
    assert redis_proxy.url == f"redis://127.0.0.1:{redis_proxy.port}/0"
    with redis.Redis.from_url(redis_proxy.url) as client:
        client.set("k", "v")
        assert client.get("k") == b"v"


def test_a_reset_breaks_the_command_in_flight_and_the_client_reconnects(
    redis_proxy: FaultProxy, redis_url: str
) -> None:
    direct = redis.Redis.from_url(redis_url)
    client = client_through(redis_proxy, socket_timeout=None)
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(client.blpop, ["nothing"], 0)
        wait_until(lambda: direct.info("clients")["blocked_clients"] == 1, 10, "BLPOP to block")
        redis_proxy.reset_all()
        assert isinstance(waiting.exception(), redis.ConnectionError)
    assert client.ping()  # a new connection through the proxy
    wait_until(lambda: direct.info("clients")["blocked_clients"] == 0, 10, "Redis to see the reset")


def test_a_reset_is_an_rst_not_a_clean_close(redis_proxy: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", redis_proxy.port)) as raw:
        raw.sendall(b"PING\r\n")
        assert raw.recv(64) == b"+PONG\r\n"
        redis_proxy.reset_all()
        with pytest.raises(ConnectionResetError):
            raw.recv(64)


def test_a_black_hole_swallows_until_cleared_then_resets_what_it_broke(
    redis_proxy: FaultProxy,
) -> None:
    redis_proxy.black_hole()
    with socket.create_connection(("127.0.0.1", redis_proxy.port)) as raw:
        raw.sendall(b"PING\r\n")
        wait_until(lambda: redis_proxy.swallowed == 6, 10, "the hole to eat the PING")
        redis_proxy.clear_faults()
        with pytest.raises(ConnectionResetError):
            raw.recv(64)
    assert client_through(redis_proxy).ping()


def test_a_redis_client_times_out_in_a_black_hole(redis_proxy: FaultProxy) -> None:
    client = client_through(redis_proxy, socket_timeout=0.2)
    assert client.ping()
    redis_proxy.black_hole()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    redis_proxy.clear_faults()
    assert client.ping()


def test_refusing_turns_new_connections_away_and_keeps_open_ones(redis_proxy: FaultProxy) -> None:
    client = client_through(redis_proxy)
    assert client.ping()
    redis_proxy.refuse_new()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", redis_proxy.port))
    assert client.ping()  # its connection was open before
    redis_proxy.clear_faults()
    assert client_through(redis_proxy).ping()


def test_latency_delays_each_way(redis_proxy: FaultProxy) -> None:
    client = client_through(redis_proxy)
    assert client.ping()
    redis_proxy.set_latency(0.05)
    started = time.monotonic()
    assert client.ping()
    assert time.monotonic() - started >= 0.1


def test_nothing_upstream_is_a_reset_for_the_client() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with FaultProxy(f"redis://127.0.0.1:{closed_port}/0") as proxy:
        with pytest.raises(redis.ConnectionError):
            client_through(proxy).ping()


BODY = bytes(range(48, 48 + 64))


class _Body(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Body)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_trickled_reply_arrives_in_pieces(http_url: str) -> None:
    no_env_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with FaultProxy(http_url) as proxy:
        proxy.trickle(0.002)
        with no_env_proxy.open(proxy.url, timeout=60) as response:
            pieces = list(iter(lambda: response.read1(1024), b""))
    assert b"".join(pieces) == BODY
    assert len(pieces) > 1


# --- Child processes -------------------------------------------------------------------------

TICKER = """
import itertools, time
for n in itertools.count():
    print("tick", n, flush=True)
    time.sleep(0.01)
"""

POLITE = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (print("bye", flush=True), sys.exit(3)))
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def python(tmp_path: Path, script: str) -> ChildProcess:
    return ChildProcess([sys.executable, "-c", script], env=os.environ, log=tmp_path / "child.log")


def test_a_child_can_be_paused_resumed_and_killed(tmp_path: Path) -> None:
    with python(tmp_path, TICKER) as child:
        child.wait_for_line(r"^tick 1$")
        child.pause()
        assert child.paused
        mark = child.mark()
        child.resume()
        assert not child.paused
        child.wait_for_line("tick", since=mark)
        assert child.kill() == -signal.SIGKILL
        assert not child.running


def test_a_paused_child_can_be_killed(tmp_path: Path) -> None:
    with python(tmp_path, TICKER) as child:
        child.wait_for_line("tick")
        child.pause()
        assert child.kill() == -signal.SIGKILL


def test_terminate_reaches_a_paused_child(tmp_path: Path) -> None:
    with python(tmp_path, POLITE) as child:
        child.wait_for_line("ready")
        child.pause()
        assert child.terminate() == 3
        assert child.text().splitlines() == ["ready", "bye"]


def test_waiting_on_a_child_that_exited_fails_at_once(tmp_path: Path) -> None:
    with python(tmp_path, "print('oops'); raise SystemExit(4)") as child:
        with pytest.raises(ChildExited, match=r"exited with 4; its log ends with:\noops"):
            child.wait_for_line("never", timeout=600)


def test_a_serve_replica_leads_and_stops_cleanly(
    tmp_path: Path, sandbox: SandboxApiServer, redis_url: str
) -> None:
    env = serve_env(tmp_path, kube_url=sandbox.url, redis_url=redis_url, user="replica-1")
    with serve(env, tmp_path / "replica-1.log") as replica:
        replica.wait_for_line("leading now")
        listed = cli(env, "rollout", "list")
        assert (listed.returncode, listed.stdout) == (0, "")
        assert replica.terminate() == 0
    assert {r.user for r in sandbox.requests} == {"replica-1"}  # its kubeconfig names it


# --- The history recorder --------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
IDENTITY = "canary-host:4242:a1b2c3"
TRICKY = 'Zoë says "ship it" \\ later\nand\ttabs'  # every escape MONITOR uses


def a_rollout(**changes: Any) -> Rollout:
    fields: dict[str, Any] = {
        "id": "r1",
        "target": Target(namespace="default", vs="weather", stable="v1", canary="v2"),
        "steps": StepPlan(),
        "phase": Phase.PROGRESSING,
        "step": 0,
        "weight": 5,
        "started_by": "U-alice",
        "created_at": NOW,
        "updated_at": NOW,
    }
    return Rollout(**(fields | changes))


def weather_vs() -> dict[str, Any]:
    route = [
        {"destination": {"host": "weather", "subset": subset}, "weight": weight}
        for subset, weight in (("v1", 95), ("v2", 5))
    ]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "weather"},
        "spec": {"hosts": ["weather"], "http": [{"route": route}]},
    }


def patch_weights_as(user: str, tmp_path: Path, sandbox: SandboxApiServer, canary: int) -> None:
    """An unguarded weight PATCH through the kubeconfig `serve_env` writes for `user`."""
    env = serve_env(tmp_path, kube_url=sandbox.url, redis_url="", user=user)
    load: Any = kubernetes.config.load_kube_config
    configuration = kubernetes.client.Configuration()
    load(config_file=env["KUBECONFIG"], client_configuration=configuration)
    configuration.proxy = None  # the client reads HTTP(S)_PROXY; loopback needs none
    ops = [
        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 100 - canary},
        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": canary},
    ]
    with kubernetes.client.ApiClient(configuration) as api:
        kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object(
            "networking.istio.io",
            "v1",
            "default",
            "virtualservices",
            "weather",
            ops,
            _content_type="application/json-patch+json",
        )


def test_the_history_has_each_request_version_lease_change_audit_entry_and_message(
    tmp_path: Path, sandbox: SandboxApiServer, redis_url: str
) -> None:
    sandbox.put_object(weather_vs())
    store = RolloutStore(connect(redis_url))
    lease = LeaderLease(connect(redis_url), identity=IDENTITY, ttl_ms=60_000)
    with (
        FakeSlack() as slack,
        HistoryRecorder(sandbox=sandbox, redis_url=redis_url, slack=slack) as recorder,
    ):
        token = lease.try_acquire()
        first = store.create(a_rollout())
        patch_weights_as("replica-7", tmp_path, sandbox, 10)
        second = store.save(
            first.model_copy(update={"weight": 10, "reason": TRICKY}),
            expected_version=1,
            token=token,
        )
        with pytest.raises(VersionConflict):  # refused: not a version
            store.save(first.model_copy(update={"weight": 99}), expected_version=1, token=token)
        store.audit(
            namespace="default",
            vs="weather",
            action="step",
            actor="scheduler",
            at=NOW,
            weight_before=5,
            weight_after=10,
            rollout_id="r1",
        )
        WebClient(token=slack.token, base_url=slack.url + "/api/").chat_postMessage(
            channel="C1", text="weather at 10%"
        )
        assert lease.renew()
        lease.release()
    history = recorder.history()

    versions = history.record_versions("r1")
    assert [(v.version, v.record["weight"]) for v in versions] == [(1, 5), (2, 10)]
    assert versions[-1].record["reason"] == TRICKY
    assert history.records == {"r1": json.loads(second.model_dump_json())}
    (patch,) = [r for r in history.requests if r.method == "PATCH"]
    assert (patch.user, patch.status) == ("replica-7", 200)
    assert versions[0].at < patch.at < versions[1].at
    changes = [(e.change, e.holder) for e in history.lease_events()]
    assert changes == [
        (LeaseChange.ACQUIRED, IDENTITY),
        (LeaseChange.RENEWED, IDENTITY),
        (LeaseChange.RELEASED, IDENTITY),
    ]
    assert history.lease_holder(patch.at) == IDENTITY
    assert history.lease_holder(time.time()) is None
    assert [(a.action, a.weight_after) for a in history.audit] == [("step", 10)]
    assert [c.body["text"] for c in history.slack_calls] == ["weather at 10%"]
    final = history.virtual_services["default/weather"]["spec"]["http"][0]["route"]
    assert [d["weight"] for d in final] == [90, 10]
    assert history.gaps == ()


def test_the_history_keeps_recording_across_a_redis_restart(
    tmp_path: Path, sandbox: SandboxApiServer
) -> None:
    with RedisServer(persist_dir=tmp_path / "redis") as server:
        store = RolloutStore(connect(server.url))
        with HistoryRecorder(sandbox=sandbox, redis_url=server.url) as recorder:
            first = store.create(a_rollout())
            server.stop()
            server.start()
            wait_until(lambda: len(recorder.history().gaps) == 1, 10, "MONITOR to come back")
            store.save(first.model_copy(update={"weight": 10}), expected_version=1)
        history = recorder.history()
    assert [v.version for v in history.record_versions()] == [1, 2]
    (gap,) = history.gaps
    assert gap.start < gap.end < history.record_versions()[1].at
