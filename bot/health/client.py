"""A small Prometheus HTTP API client: instant queries, bounded retries, clear errors.

Built on `urllib.request` so the bot needs no HTTP library. Only `/api/v1/query` is used.
Connection errors, timeouts and 5xx answers are retried (3 tries, backoff 0.1 s, 0.2 s, ...
plus jitter); a 4xx answer is the query's fault and is raised at once.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

Labels = tuple[tuple[str, str], ...]
"""A series' labels as sorted (name, value) pairs: hashable, and stable across calls."""
Vector = dict[Labels, float]

_SPECIAL_VALUES = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}
_BODY_EXCERPT = 200


class PrometheusError(Exception):
    """Any failure to get an answer out of Prometheus."""


class PrometheusUnreachable(PrometheusError):
    """No usable answer from the server after every try (refused, timed out, 5xx)."""

    def __init__(self, url: str, reason: str, tries: int) -> None:
        super().__init__(f"Prometheus at {url} is unreachable after {tries} tries: {reason}")
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
    appear in errors or logs. `queries` counts calls to `query`, `attempts` the HTTP requests.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        tries: int = 3,
        backoff: float = 0.1,
        jitter: float = 0.05,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url, auth = _without_credentials(url.rstrip("/"))
        self.timeout, self.tries = timeout, max(tries, 1)
        self.backoff, self.jitter = backoff, jitter
        self._headers = {"Accept": "application/json", **(headers or {}), **auth}
        self._sleep = sleep
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
        reason = ""
        for attempt in range(self.tries):
            if attempt:
                self._sleep(self.backoff * 2 ** (attempt - 1) + random.uniform(0, self.jitter))  # noqa: S311
            try:
                return self._attempt(path, body)
            except _Retry as e:
                reason = str(e)
        raise PrometheusUnreachable(self.url, reason, self.tries)

    def _attempt(self, path: str, body: bytes) -> Any:
        with self._lock:
            self.attempts += 1
        request = urllib.request.Request(  # noqa: S310 - the URL is the configured server's
            self.url + path, data=body, headers=self._headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return _decode(response.read(), response.status)
        except urllib.error.HTTPError as e:
            return _http_error(e)
        except (OSError, http.client.HTTPException) as e:  # URLError is an OSError
            raise _Retry(_describe(e)) from e


def _http_error(e: urllib.error.HTTPError) -> Any:
    raw = e.read()
    if e.code >= 500:
        raise _Retry(f"HTTP {e.code} {_error_text(raw)}")
    return _decode(raw, e.code)


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
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, TimeoutError):
        return "timed out"
    return str(reason) or type(reason).__name__


def _excerpt(raw: bytes) -> str:
    return raw[:_BODY_EXCERPT].decode("utf-8", "replace")
