"""A real Prometheus server on loopback, for the tests and the demo.

No fake: Debian's `prometheus` binary with a generated config, its TSDB in a private temp dir,
listening on 127.0.0.1 on a free port. Targets can be changed while it runs (config rewrite and
`/-/reload`), so one server started per test session can scrape each test's traffic simulator.
`stop()` then `start()` brings it back on the same address with the same data, so tests can take
Prometheus away mid-rollout.

Prometheus applies new scrape targets on a 5-second tick of its own (discovery and scrape
managers), so a new target is scraped 0 to ~10 s after `start()` or `set_targets()`; reusing a
target address keeps the config unchanged and costs nothing. A target may carry labels that
every series scraped from it gets (`cluster="prod-eu"`), as one Prometheus that several
clusters share tells their series apart.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from sandbox.process import ServerProcess
from sandbox.redis_server import free_port

TARGETS_TIMEOUT_S = 20.0
JOB_NAME = "sandbox"
_POLL_INTERVAL_S = 0.05
_HTTP_TIMEOUT_S = 5.0
_LOG_TAIL_CHARS = 2_000


class PrometheusServerError(RuntimeError):
    """The prometheus binary is missing, it did not come up, or it refused a request."""


def find_binary(name: str) -> str:
    """The path of `prometheus` or `promtool` on PATH."""
    found = shutil.which(name)
    if not found:
        raise PrometheusServerError(
            f"no {name} binary found on PATH: "
            "`apt-get install --no-install-recommends prometheus` provides it"
        )
    return found


TargetLabels = Mapping[str, Mapping[str, str]]  # "host:port" -> the labels its series get


def scrape_config(
    targets: Sequence[str], scrape_interval: str, labels: TargetLabels | None = None
) -> dict[str, Any]:
    """A Prometheus config scraping `targets` ("host:port") at /metrics, those in `labels`
    with their labels on every series."""
    interval = {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval}
    labelled = [t for t in targets if labels and labels.get(t)]
    static: list[dict[str, Any]] = [{"targets": [t for t in targets if t not in labelled]}]
    static += [{"targets": [t], "labels": dict((labels or {})[t])} for t in labelled]
    if labelled and not static[0]["targets"]:
        del static[0]
    return {
        "global": {**interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [{"job_name": JOB_NAME, "static_configs": static}],
    }


def _checked_targets(targets: Sequence[str]) -> tuple[str, ...]:
    if isinstance(targets, str):
        raise TypeError("targets is a sequence of 'host:port' strings, not one string")
    for target in targets:
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit() or "/" in target:
            raise ValueError(f"scrape target {target!r} is not 'host:port' (e.g. 127.0.0.1:9100)")
    return tuple(targets)


class PrometheusServer(ServerProcess):
    """One prometheus child process. `start()` returns self; also a context manager."""

    program = "prometheus"
    not_ready = "was not ready"
    error = PrometheusServerError
    ready_timeout_s = 15.0
    stop_timeout_s = 10.0  # SIGTERM: Prometheus flushes its head block and exits
    poll_interval_s = _POLL_INTERVAL_S

    def __init__(
        self, *, targets: Sequence[str] = (), scrape_interval: str = "1s", port: int = 0
    ) -> None:
        super().__init__()
        self._targets = _checked_targets(targets)
        self._labels: dict[str, dict[str, str]] = {}
        self._scrape_interval = scrape_interval
        self._port = port or None
        self._validated = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise PrometheusServerError("Prometheus has no port yet: call start() first")
        return self._port

    @property
    def targets(self) -> tuple[str, ...]:
        return self._targets

    # Lifecycle

    def start(self) -> Self:
        if self.running:
            return self
        binary = find_binary("prometheus")
        workdir = self._ensure_workdir()
        if self._port is None:
            self._port = free_port()
        self._write_config()
        self._spawn([binary, *self._flags(workdir)])
        return self

    def close(self) -> None:
        """Stop the server and remove its temp dir, data included."""
        super().close()
        self._validated = False

    # Targets and data

    def set_targets(self, targets: Sequence[str], *, labels: TargetLabels | None = None) -> None:
        """Scrape exactly `targets` from now on, those in `labels` with those labels on every
        series; returns once Prometheus lists them as active, with their labels.

        When stopped, the new targets apply at the next `start()`.
        """
        wanted = _checked_targets(targets)
        wanted_labels = {t: dict(labels[t]) for t in wanted if labels and labels.get(t)}
        changed = set(wanted) != set(self._targets) or wanted_labels != self._labels
        self._targets, self._labels = wanted, wanted_labels
        if not (changed and self.running):
            return
        self._write_config()
        self._request("POST", "/-/reload")
        self._wait_for_targets(self._scraped())

    def active_targets(self) -> list[dict[str, Any]]:
        """The `activeTargets` of /api/v1/targets: address, health, last error, ..."""
        data = self._api("/api/v1/targets?state=active")
        targets: list[dict[str, Any]] = data["activeTargets"]
        return targets

    def query(self, query: str) -> list[dict[str, Any]]:
        """The `result` of an instant query evaluated now: one {metric, value} per series."""
        data = self._api("/api/v1/query?" + urllib.parse.urlencode({"query": query}))
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for_series(self, query: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Poll `query` until its result is non-empty, and return that result."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(query)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise PrometheusServerError(
                    f"{query!r} returned no series within {timeout:.0f} s; "
                    f"targets: {self._target_health()}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def clear(self) -> None:
        """Delete every stored series (admin API), so a test sees only its own data."""
        match = urllib.parse.urlencode({"match[]": '{__name__=~".+"}'})
        self._request("POST", f"/api/v1/admin/tsdb/delete_series?{match}")

    # Internals

    @property
    def _config_path(self) -> Path:
        return self._ensure_workdir() / "prometheus.yml"

    def _flags(self, workdir: Path) -> list[str]:
        return [
            f"--config.file={self._config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
        ]

    def _write_config(self) -> None:
        # JSON is YAML: no template to get wrong.
        config = scrape_config(self._targets, self._scrape_interval, self._labels)
        self._config_path.write_text(json.dumps(config, indent=2) + "\n")
        if not self._validated:
            self._validate_config()
            self._validated = True

    def _validate_config(self) -> None:
        checked = subprocess.run(  # noqa: S603 - our own binary and config, no shell
            [find_binary("promtool"), "check", "config", str(self._config_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if checked.returncode != 0:
            raise PrometheusServerError(
                f"promtool rejected the generated config {self._config_path}:\n"
                f"{checked.stdout}{checked.stderr}"
            )

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as response:
                return bool(response.status == 200)
        except OSError:  # refused, or 503 while it replays its WAL
            return False

    def _scraped(self) -> dict[str, dict[str, str]]:
        """Each target as Prometheus should list it: its address and its own labels."""
        return {t: self._labels.get(t, {}) for t in self._targets}

    def _active(self) -> dict[str, dict[str, str]]:
        own = ("job", "instance")
        return {
            t["discoveredLabels"]["__address__"]: {
                k: v for k, v in t["labels"].items() if k not in own
            }
            for t in self.active_targets()
        }

    def _wait_for_targets(self, wanted: dict[str, dict[str, str]]) -> None:
        deadline = time.monotonic() + TARGETS_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._active() == wanted:
                return
            time.sleep(_POLL_INTERVAL_S)
        raise PrometheusServerError(
            f"Prometheus at {self.url} did not pick up targets {wanted} within "
            f"{TARGETS_TIMEOUT_S:.0f} s (it has {self._target_health()}); its log ends with:\n"
            f"{self._log_tail()}"
        )

    def _target_health(self) -> list[str]:
        return [
            f"{t['scrapeUrl']} {t['health']} {t['lastError']}".strip()
            for t in self.active_targets()
        ]

    def _api(self, path_and_query: str) -> dict[str, Any]:
        body = json.loads(self._request("GET", path_and_query))
        data: dict[str, Any] = body["data"]
        return data

    def _request(self, method: str, path_and_query: str) -> bytes:
        request = urllib.request.Request(f"{self.url}{path_and_query}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_S) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read()[:_LOG_TAIL_CHARS].decode(errors="replace")
            raise PrometheusServerError(
                f"{method} {path_and_query} answered {error.code}: {detail}"
            ) from error
        except OSError as error:
            raise PrometheusServerError(
                f"{method} {self.url}{path_and_query} failed: {error}"
            ) from error
