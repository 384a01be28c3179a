"""The fault injectors of the fault campaign: the TCP fault proxy, child processes that can be
paused and killed, and the recorder of everything a run did."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.sandbox.apiserver import SandboxApiServer
from tests.support.faultproxy import FaultProxy
from tests.support.processes import ChildExited, ChildProcess, cli, serve, serve_env


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


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
        wait_until(lambda: direct.info("clients")["blocked_clients"] == 1, "BLPOP to block")
        redis_proxy.reset_all()
        assert isinstance(waiting.exception(), redis.ConnectionError)
    assert client.ping()  # a new connection through the proxy
    wait_until(lambda: direct.info("clients")["blocked_clients"] == 0, "Redis to see the reset")


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
        wait_until(lambda: redis_proxy.swallowed == 6, "the hole to eat the PING")
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
