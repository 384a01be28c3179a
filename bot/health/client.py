"""A small Prometheus HTTP API client: instant queries, bounded retries, a deadline, clear errors.

Built on `http.client` so the bot needs no HTTP library. Only `/api/v1/query` is used.
Connection errors, timeouts and 5xx answers are retried (3 tries, backoff 0.1 s, 0.2 s, ...
plus jitter); a 4xx answer is the query's fault and is raised at once. A query has a total
deadline (5 s) covering connect, send, every byte of the answer and the retries: a server that
trickles its answer cannot stretch it, and an answer larger than 4 MiB is refused.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import math
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

Labels = tuple[tuple[str, str], ...]
"""A series' labels as sorted (name, value) pairs: hashable, and stable across calls."""
Vector = dict[Labels, float]

DEADLINE_S = 5.0
MAX_BODY = 4 * 2**20  # our queries answer with a few series; more is a wrong query or server
_CHUNK = 64 * 1024
_SPECIAL_VALUES = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}
_BODY_EXCERPT = 200
_CONNECTIONS: dict[str, type[http.client.HTTPConnection]] = {
    "http": http.client.HTTPConnection,
    "https": http.client.HTTPSConnection,
}


class PrometheusError(Exception):
    """Any failure to get an answer out of Prometheus."""


class PrometheusUnreachable(PrometheusError):
    """No usable answer from the server in time (refused, timed out, 5xx)."""

    def __init__(self, url: str, reason: str, tries: int) -> None:
        plural = "try" if tries == 1 else "tries"
        super().__init__(f"Prometheus at {url} is unreachable after {tries} {plural}: {reason}")
        self.url, self.reason, self.tries = url, reason, tries


class PrometheusQueryError(PrometheusError):
    """Prometheus answered, with an error (`bad_data`, `execution`, ...) or an unusable body."""

    def __init__(self, error_type: str, error: str, *, status: int | None = None) -> None:
        where = f" (HTTP {status})" if status else ""
        super().__init__(f"Prometheus rejected the query{where}: {error_type}: {error}")
        self.error_type, self.error, self.status = error_type, error, status


class _Retry(Exception):
    """An attempt failed in a way that another try may fix."""


class PrometheusClient:
    """Instant queries against one Prometheus server. Thread-safe.

    `url` may carry `user:password@`; the credentials become a Basic auth header and never
    appear in errors or logs. `timeout` bounds one attempt, `deadline` the whole query.
    `queries` counts calls to `query`, `attempts` the HTTP requests.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        deadline: float = DEADLINE_S,
        max_body: int = MAX_BODY,
        tries: int = 3,
        backoff: float = 0.1,
        jitter: float = 0.05,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url, auth = _without_credentials(url.rstrip("/"))
        self._server = urllib.parse.urlsplit(self.url)
        self.timeout, self.deadline, self.max_body = timeout, deadline, max_body
        self.tries, self.backoff, self.jitter = max(tries, 1), backoff, jitter
        self._headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
            **(headers or {}),
            **auth,
        }
        self._sleep, self._clock = sleep, clock
        self._lock = threading.Lock()
        self.queries = 0
        self.attempts = 0

    def query(self, promql: str, at: datetime | None = None) -> Vector:
        """Evaluate `promql` at `at` (default: the server's now); an instant vector or scalar."""
        with self._lock:
            self.queries += 1
        form = {"query": promql}
        if at is not None:
            form["time"] = f"{at.timestamp():.3f}"
        return _parse_data(self._post("/api/v1/query", form))

    def _post(self, path: str, form: Mapping[str, str]) -> Any:
        body = urllib.parse.urlencode(form).encode()
        until = self._clock() + self.deadline
        for attempt in range(1, self.tries + 1):
            try:
                return self._attempt(path, body, min(self._clock() + self.timeout, until))
            except _Retry as e:
                reason = str(e)
            pause = self.backoff * 2 ** (attempt - 1) + random.uniform(0, self.jitter)  # noqa: S311
            if attempt == self.tries or self._clock() + pause >= until:
                break
            self._sleep(pause)
        if self._clock() >= until:
            reason = f"timed out after {self.deadline:g} s"
        raise PrometheusUnreachable(self.url, reason, attempt)

    def _attempt(self, path: str, body: bytes, until: float) -> Any:
        with self._lock:
            self.attempts += 1
        try:
            connection = self._connect(until)
        except OSError as e:
            raise _Retry(_describe(e)) from e
        try:
            connection.request("POST", self._server.path + path, body, self._headers)
            status, raw = self._receive(connection, until)
        except (OSError, http.client.HTTPException) as e:
            raise _Retry(_describe(e)) from e
        finally:
            connection.close()
        if status >= 500:
            raise _Retry(f"HTTP {status} {_error_text(raw)}")
        return _decode(raw, status)

    def _connect(self, until: float) -> http.client.HTTPConnection:
        connection = _CONNECTIONS[self._server.scheme](
            self._server.hostname or "",
            self._server.port,
            timeout=max(until - self._clock(), 0.001),
        )
        connection.connect()
        return connection

    def _receive(self, connection: http.client.HTTPConnection, until: float) -> tuple[int, bytes]:
        """The status and body, each socket read given only what is left of the deadline."""
        response = http.client.HTTPResponse(connection.sock, method="POST")
        response.fp.close()
        response.fp = io.BufferedReader(_DeadlineReader(connection.sock, until, self._clock))
        response.begin()
        chunks, size = [], 0
        while chunk := response.read1(_CHUNK):
            size += len(chunk)
            if size > self.max_body:
                raise PrometheusQueryError(
                    "bad_response", f"the answer is larger than {self.max_body / 2**20:g} MiB"
                )
            chunks.append(chunk)
        return response.status, b"".join(chunks)


class _DeadlineReader(io.RawIOBase):
    """Socket reads that give up at a monotonic deadline, however slowly the bytes come."""

    def __init__(self, sock: socket.socket, until: float, clock: Callable[[], float]) -> None:
        self._sock, self._until, self._clock = sock, until, clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        left = self._until - self._clock()
        if left <= 0:
            raise TimeoutError("timed out")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


def _decode(raw: bytes, status: int) -> Any:
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise PrometheusQueryError(
            "bad_response", f"not JSON: {_excerpt(raw)!r}", status=status
        ) from None
    if not isinstance(payload, dict) or payload.get("status") != "success":
        error_type, error = _error_fields(payload)
        raise PrometheusQueryError(error_type, error, status=status)
    return payload.get("data")


def _error_fields(payload: Any) -> tuple[str, str]:
    if not isinstance(payload, dict):
        return "bad_response", f"unexpected body {_excerpt(json.dumps(payload).encode())!r}"
    return str(payload.get("errorType", "bad_response")), str(payload.get("error", "no error"))


def _error_text(raw: bytes) -> str:
    try:
        return ": ".join(_error_fields(json.loads(raw)))
    except (ValueError, UnicodeDecodeError):
        return repr(_excerpt(raw))


def _parse_data(data: Any) -> Vector:
    result_type = data.get("resultType") if isinstance(data, dict) else None
    try:
        if result_type == "vector":
            return {_labels(s["metric"]): _number(s["value"][1]) for s in data["result"]}
        if result_type == "scalar":
            return {(): _number(data["result"][1])}
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise PrometheusQueryError("bad_response", f"malformed {result_type} result: {e}") from e
    raise PrometheusQueryError(
        "bad_response", f"expected an instant vector or a scalar, got {result_type!r}"
    )


def _labels(metric: Mapping[str, str]) -> Labels:
    return tuple(sorted(metric.items()))


def _number(text: str) -> float:
    return _SPECIAL_VALUES[text] if text in _SPECIAL_VALUES else float(text)


def _without_credentials(url: str) -> tuple[str, dict[str, str]]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "a Prometheus URL is http(s)://host[:port][/prefix], like http://prometheus:9090"
        )
    if parts.username is None:
        return url, {}
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    userinfo = (
        f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    )
    token = base64.b64encode(userinfo.encode()).decode()
    return parts._replace(netloc=netloc).geturl(), {"Authorization": f"Basic {token}"}


def _describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__


def _excerpt(raw: bytes) -> str:
    return raw[:_BODY_EXCERPT].decode("utf-8", "replace")
