"""A Prometheus that is slow on purpose cannot hold a query past its deadline.

Each server here is a real TCP server on loopback that reads the request and then misbehaves:
it trickles its answer a byte a second, never answers, or sends 100 MiB. The tests assert on
the error the query raises and on the server having seen the client hang up; how long that
takes is measured in bench/, not here.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from bot.health.check import HealthCheck
from bot.health.client import PrometheusClient, PrometheusQueryError, PrometheusUnreachable
from tests.health import NOW, make_rollout

HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
HUGE = 100 * 2**20
Behaviour = Callable[[socket.socket, threading.Event], None]


class MisbehavingServer:
    """Accepts connections, reads each request, then runs `behaviour` on it.

    `hung_up` is set once the server sees the client close its end (a failed write, or a read
    that returns nothing).
    """

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.hung_up = threading.Event()
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.listener.accept()
                threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(4096)
            try:
                self.behaviour(connection, self.stopped)
            except OSError:  # broken pipe, connection reset: the client is gone
                self.hung_up.set()


def trickle_body(connection: socket.socket, stopped: threading.Event) -> None:
    connection.sendall(HEADERS % 1000)
    while not stopped.wait(1):
        connection.sendall(b" ")


def trickle_headers(connection: socket.socket, stopped: threading.Event) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\n")
    while not stopped.wait(1):
        connection.sendall(b"X")


def never_answer(connection: socket.socket, stopped: threading.Event) -> None:
    while connection.recv(4096):
        pass
    raise ConnectionResetError("the client closed the connection")


def send_100_mib(connection: socket.socket, stopped: threading.Event) -> None:
    connection.sendall(HEADERS % HUGE)
    chunk = b"[" * 2**16
    for _ in range(HUGE // len(chunk)):
        connection.sendall(chunk)


@pytest.fixture
def misbehaving() -> Iterator[Callable[[Behaviour], MisbehavingServer]]:
    started: list[MisbehavingServer] = []

    def start(behaviour: Behaviour) -> MisbehavingServer:
        started.append(MisbehavingServer(behaviour))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.mark.parametrize("behaviour", [trickle_body, trickle_headers, never_answer])
def test_a_slow_server_times_out_at_the_deadline_and_is_hung_up_on(
    misbehaving: Callable[[Behaviour], MisbehavingServer], behaviour: Behaviour
) -> None:
    server = misbehaving(behaviour)
    client = PrometheusClient(server.url, deadline=1.0)
    with pytest.raises(PrometheusUnreachable) as unreachable:
        client.query("up")
    assert str(unreachable.value) == (
        f"Prometheus at {server.url} is unreachable after 1 try: timed out after 1 s"
    )
    assert server.hung_up.wait(10), "the client never closed the connection"


def test_the_deadline_is_five_seconds_unless_configured() -> None:
    assert PrometheusClient("http://prometheus:9090").deadline == 5.0


def test_a_huge_answer_is_refused_without_reading_it_all(
    misbehaving: Callable[[Behaviour], MisbehavingServer],
) -> None:
    server = misbehaving(send_100_mib)
    client = PrometheusClient(server.url)
    with pytest.raises(PrometheusQueryError, match="the answer is larger than 4 MiB"):
        client.query("up")
    assert client.attempts == 1
    assert server.hung_up.wait(10), "the client read the whole body"


def test_a_trickling_prometheus_makes_the_check_inconclusive(
    misbehaving: Callable[[Behaviour], MisbehavingServer],
) -> None:
    server = misbehaving(trickle_body)
    client = PrometheusClient(server.url, deadline=1.0)
    verdict = HealthCheck(client).check(make_rollout(), NOW)
    assert verdict.outcome == "inconclusive"
    assert verdict.summary == (
        f"no health data: Prometheus at {server.url} is unreachable after 1 try: "
        "timed out after 1 s"
    )
