from __future__ import annotations

import base64
import json
import math
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bot.health.check import HealthCheck
from bot.health.client import PrometheusClient, PrometheusQueryError, PrometheusUnreachable
from tests.health import NOW, labels, make_rollout

HANG = (0, b"")  # the server reads the request and never answers


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def vector(*series: tuple[dict[str, str], str]) -> tuple[int, bytes]:
    result = [{"metric": metric, "value": [1700000000.0, value]} for metric, value in series]
    return 200, body({"status": "success", "data": {"resultType": "vector", "result": result}})


def error(status: int, error_type: str, message: str) -> tuple[int, bytes]:
    return status, body({"status": "error", "errorType": error_type, "error": message})


@dataclass
class Received:
    path: str
    form: dict[str, list[str]]
    headers: dict[str, str]


class ScriptedPrometheus:
    """A real HTTP server on loopback that answers from a script and records each request."""

    def __init__(self, *replies: tuple[int, bytes]) -> None:
        self.replies = list(replies)
        self.received: list[Received] = []
        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        serve = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        serve.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                form = urllib.parse.parse_qs(raw.decode())
                script.received.append(Received(self.path, form, dict(self.headers)))
                status, payload = script.replies.pop(0) if script.replies else vector()
                if (status, payload) == HANG:
                    script.release.wait(10)
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def scripted() -> Iterator[type[ScriptedPrometheus]]:
    started: list[ScriptedPrometheus] = []

    class Started(ScriptedPrometheus):
        def __init__(self, *replies: tuple[int, bytes]) -> None:
            super().__init__(*replies)
            started.append(self)

    yield Started
    for server in started:
        server.close()


class Sleeps(list[float]):
    """Records the backoff instead of sleeping it."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_503_then_200_is_retried_once(scripted: type[ScriptedPrometheus]) -> None:
    server = scripted(
        error(503, "unavailable", "too many queries"),
        vector(({"destination_version": "v2"}, "12.5")),
    )
    sleeps = Sleeps()
    client = PrometheusClient(server.url, sleep=sleeps)
    assert client.query("up") == {labels(destination_version="v2"): 12.5}
    assert (client.queries, client.attempts, len(server.received)) == (1, 2, 2)
    assert 0.1 <= sleeps[0] <= 0.15


def test_5xx_every_time_is_unreachable_after_three_tries(
    scripted: type[ScriptedPrometheus],
) -> None:
    server = scripted(
        error(503, "timeout", "query timed out"),
        (500, b"internal"),
        (502, b"<html>Bad Gateway</html>"),
    )
    sleeps = Sleeps()
    client = PrometheusClient(server.url, sleep=sleeps)
    with pytest.raises(PrometheusUnreachable) as unreachable:
        client.query("up")
    message = str(unreachable.value)
    assert message.startswith(f"Prometheus at {server.url} is unreachable after 3 tries")
    assert "HTTP 502" in message
    assert client.attempts == 3
    assert len(sleeps) == 2
    assert 0.1 <= sleeps[0] <= 0.15
    assert 0.2 <= sleeps[1] <= 0.25


def test_bad_data_is_not_retried(scripted: type[ScriptedPrometheus]) -> None:
    server = scripted(error(400, "bad_data", 'parse error: unexpected "}"'))
    sleeps = Sleeps()
    client = PrometheusClient(server.url, sleep=sleeps)
    with pytest.raises(PrometheusQueryError) as rejected:
        client.query("up}")
    assert (rejected.value.error_type, rejected.value.status) == ("bad_data", 400)
    assert 'parse error: unexpected "}"' in str(rejected.value)
    assert (client.attempts, sleeps) == (1, [])


def test_execution_error_is_not_retried(scripted: type[ScriptedPrometheus]) -> None:
    server = scripted(error(422, "execution", "many-to-many matching not allowed"))
    client = PrometheusClient(server.url, sleep=Sleeps())
    with pytest.raises(PrometheusQueryError, match="execution: many-to-many"):
        client.query("a / b")
    assert client.attempts == 1


def test_hanging_server_times_out(scripted: type[ScriptedPrometheus]) -> None:
    server = scripted(HANG, HANG)
    client = PrometheusClient(server.url, timeout=0.2, tries=2, sleep=Sleeps())
    started = time.monotonic()
    with pytest.raises(PrometheusUnreachable, match="unreachable after 2 tries: timed out"):
        client.query("up")
    assert time.monotonic() - started < 2


def test_a_timeout_is_retried(scripted: type[ScriptedPrometheus]) -> None:
    server = scripted(HANG, vector(({}, "1")))
    client = PrometheusClient(server.url, timeout=0.2, sleep=Sleeps())
    assert client.query("vector(1)") == {(): 1.0}
    assert client.attempts == 2


@pytest.mark.parametrize(
    ("reply", "complaint"),
    [
        ((200, b'{"status": "success", "data": '), "bad_response: not JSON"),
        ((200, b"<html>hello</html>"), "bad_response: not JSON"),
        ((200, b"[1, 2]"), "bad_response: unexpected body"),
        (
            (200, body({"status": "success", "data": {"resultType": "matrix", "result": []}})),
            "expected an instant vector or a scalar, got 'matrix'",
        ),
        (
            (200, body({"status": "success", "data": {"resultType": "vector", "result": [{}]}})),
            "malformed vector result",
        ),
        ((200, body({"status": "error"})), "bad_response: no error"),
    ],
)
def test_malformed_answers_are_query_errors_without_retry(
    scripted: type[ScriptedPrometheus], reply: tuple[int, bytes], complaint: str
) -> None:
    server = scripted(reply)
    client = PrometheusClient(server.url, sleep=Sleeps())
    with pytest.raises(PrometheusQueryError, match=complaint):
        client.query("up")
    assert client.attempts == 1


def test_special_values_parse(scripted: type[ScriptedPrometheus]) -> None:
    server = scripted(
        vector(({"v": "a"}, "NaN"), ({"v": "b"}, "+Inf"), ({"v": "c"}, "-Inf"), ({"v": "d"}, "1e3"))
    )
    result = PrometheusClient(server.url).query("x")
    assert math.isnan(result[labels(v="a")])
    assert result[labels(v="b")] == math.inf
    assert result[labels(v="c")] == -math.inf
    assert result[labels(v="d")] == 1000.0


def test_scalar_result(scripted: type[ScriptedPrometheus]) -> None:
    payload = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "1.5"]}}
    server = scripted((200, body(payload)))
    assert PrometheusClient(server.url).query("1.5") == {(): 1.5}


def test_the_query_is_posted_with_its_time(scripted: type[ScriptedPrometheus]) -> None:
    server = scripted()
    client = PrometheusClient(server.url + "/")
    client.query('up{job="x"}', at=datetime(2023, 11, 14, 22, 13, 20, 500_000, tzinfo=UTC))
    client.query("up")
    first, second = server.received
    assert first.path == "/api/v1/query"
    assert first.form == {"query": ['up{job="x"}'], "time": ["1700000000.500"]}
    assert second.form == {"query": ["up"]}


def test_credentials_become_a_header_and_never_an_error_message(
    scripted: type[ScriptedPrometheus],
) -> None:
    server = scripted()
    host = server.url.removeprefix("http://")
    PrometheusClient(f"http://bot:s%40cret@{host}").query("up")
    token = base64.b64encode(b"bot:s@cret").decode()
    assert server.received[0].headers["Authorization"] == f"Basic {token}"

    client = PrometheusClient(f"http://bot:s%40cret@127.0.0.1:{free_port()}", sleep=Sleeps())
    with pytest.raises(PrometheusUnreachable) as unreachable:
        client.query("up")
    assert "cret" not in str(unreachable.value)
    assert "bot" not in unreachable.value.url


@pytest.mark.parametrize("url", ["file:///etc/passwd", "prometheus:9090", "http://u:p@/x"])
def test_only_http_urls_are_accepted(url: str) -> None:
    with pytest.raises(ValueError, match="like http://prometheus:9090") as refused:
        PrometheusClient(url)
    assert "p@" not in str(refused.value)


def test_connection_refused_is_unreachable_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    sleeps = Sleeps()
    client = PrometheusClient(url, sleep=sleeps)
    with pytest.raises(PrometheusUnreachable) as unreachable:
        client.query("up")
    assert unreachable.value.url == url
    assert url in str(unreachable.value)
    assert "refused" in str(unreachable.value).lower()
    assert (client.attempts, len(sleeps)) == (3, 2)


def test_unreachable_prometheus_makes_the_check_inconclusive() -> None:
    client = PrometheusClient(f"http://127.0.0.1:{free_port()}", sleep=Sleeps())
    verdict = HealthCheck(client).check(make_rollout(), NOW)
    assert verdict.outcome == "inconclusive"
    assert verdict.summary.startswith("no health data: Prometheus at http://127.0.0.1:")
    assert client.queries == 1


# Against the real Prometheus


def test_real_vector_result_parses(prometheus_server: Any) -> None:
    client = PrometheusClient(prometheus_server.url)
    query = 'label_replace(vector(2.5), "destination_version", "v2", "", "")'
    assert client.query(query) == {labels(destination_version="v2"): 2.5}
    assert client.query("vector(1)") == {(): 1.0}
    assert client.query("1.5") == {(): 1.5}


def test_real_special_values_parse(prometheus_server: Any) -> None:
    client = PrometheusClient(prometheus_server.url)
    assert math.isnan(client.query("vector(0/0)")[()])
    assert client.query("vector(1/0)") == {(): math.inf}
    assert client.query("vector(-1/0)") == {(): -math.inf}


def test_real_p99_beyond_the_last_bucket_is_the_largest_finite_bound(
    prometheus_server: Any,
) -> None:
    """What verdict.py relies on: all requests in +Inf give the largest finite `le`, not +Inf."""
    buckets = (
        'label_replace(vector(0), "le", "250", "", "")'
        ' or label_replace(vector(0), "le", "500", "", "")'
        ' or label_replace(vector(10), "le", "+Inf", "", "")'
    )
    client = PrometheusClient(prometheus_server.url)
    assert client.query(f"histogram_quantile(0.99, {buckets})") == {(): 500.0}


def test_real_bad_query_is_bad_data(prometheus_server: Any) -> None:
    client = PrometheusClient(prometheus_server.url)
    with pytest.raises(PrometheusQueryError) as rejected:
        client.query('up{job="x"')
    assert (rejected.value.error_type, rejected.value.status) == ("bad_data", 400)
    assert client.attempts == 1


def test_real_check_without_traffic_is_inconclusive_in_two_queries(prometheus_server: Any) -> None:
    client = PrometheusClient(prometheus_server.url)
    verdict = HealthCheck(client).check(make_rollout(vs="nothing-here"), datetime.now(UTC))
    assert verdict.outcome == "inconclusive"
    assert verdict.summary == "no canary traffic in Prometheus in the last 5m"
    assert client.queries == 2
