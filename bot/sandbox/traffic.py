"""A traffic simulator that serves Istio's standard metrics for a service's versions.

Requests are split by the live VirtualService weights, read from the sandbox API server every
tick, and each version has its own error rate and latency distribution, which a test or the
demo can change while it runs. Prometheus scrapes `/metrics` as it would scrape an Envoy
sidecar.
"""

from __future__ import annotations

import json
import math
import random
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any, Self

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

# Istio's default buckets for istio_request_duration_milliseconds (its stats filter), in ms.
ISTIO_BUCKETS_MS = (
    0.5,
    1,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
    600000,
    1800000,
    3600000,
)
LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "destination_workload",
    "destination_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_version",
    "destination_app",
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
)


@dataclass
class VersionProfile:
    error_rate: float = 0.0  # share of requests answered 503
    latency_ms: float = 50.0  # median of a lognormal
    spread: float = 0.3  # its sigma


class TrafficSimulator:
    def __init__(
        self,
        *,
        api: str,
        namespace: str,
        vs: str,
        service: str,
        rate: float = 50.0,
        versions: dict[str, VersionProfile] | None = None,
        seed: int | None = None,
        tick: float = 0.2,
    ) -> None:
        self._api, self._namespace, self._vs, self._service = api, namespace, vs, service
        self._rate, self._tick = rate, tick
        self._profiles = dict(versions or {})
        self._random = random.Random(seed)  # noqa: S311 - simulated traffic, not secrets
        self._lock = threading.Lock()
        self._carry: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._split: dict[str, int] = {}
        self._stop = threading.Event()
        self._registry = CollectorRegistry()
        self._requests = Counter(
            "istio_requests", "Requests (simulated)", LABELS, registry=self._registry
        )
        self._duration = Histogram(
            "istio_request_duration_milliseconds",
            "Request duration (simulated)",
            LABELS,
            buckets=ISTIO_BUCKETS_MS,
            registry=self._registry,
        )
        self._server: Any = None

    @property
    def metrics_url(self) -> str:
        return f"http://{self.target}/metrics"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self._server.server_port}"

    def start(self) -> Self:
        self._server, _ = start_http_server(0, addr="127.0.0.1", registry=self._registry)
        threading.Thread(target=self._run, daemon=True, name="traffic").start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_profile(self, version: str, profile: VersionProfile) -> None:
        with self._lock:
            self._profiles[version] = profile

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._rate = rate

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            self._split = self._read_split() or self._split
            self._simulate()

    def _read_split(self) -> dict[str, int]:
        url = (
            f"{self._api}/apis/networking.istio.io/v1/namespaces/{self._namespace}/"
            f"virtualservices/{self._vs}"
        )
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                vs = json.load(reply)
        except (OSError, ValueError):
            return {}  # keep the last split while the API is away
        return split_of(vs, self._service)

    def _simulate(self) -> None:
        with self._lock:
            rate, profiles = self._rate, dict(self._profiles)
        for version, weight in self._split.items():
            owed = self._carry.get(version, 0.0) + rate * self._tick * weight / 100
            count = int(owed)
            self._carry[version] = owed - count
            if count:
                self._serve(version, count, profiles.get(version, VersionProfile()))

    def _serve(self, version: str, count: int, profile: VersionProfile) -> None:
        errors = sum(1 for _ in range(count) if self._random.random() < profile.error_rate)
        mu = math.log(max(profile.latency_ms, 0.01))
        for code, n in (("503", errors), ("200", count - errors)):
            if not n:
                continue
            labels = self._labels(version, code)
            self._requests.labels(*labels).inc(n)
            histogram = self._duration.labels(*labels)
            for _ in range(n):
                histogram.observe(self._random.lognormvariate(mu, profile.spread))
        with self._lock:
            self._counts[version] = self._counts.get(version, 0) + count

    def _labels(self, version: str, code: str) -> tuple[str, ...]:
        ns, svc = self._namespace, self._service
        return (
            "destination",
            "istio-ingressgateway",
            "istio-system",
            f"{svc}-{version}",
            ns,
            f"{svc}.{ns}.svc.cluster.local",
            svc,
            ns,
            version,
            svc,
            "http",
            code,
            "-",
            "mutual_tls",
        )


def split_of(vs: dict[str, Any], service: str) -> dict[str, int]:
    """Weight per subset in the first http route that sends traffic to `service`."""
    for route in vs.get("spec", {}).get("http", []):
        ours = [
            d for d in route.get("route", []) if d["destination"]["host"].split(".")[0] == service
        ]
        if ours:
            lone = len(route["route"]) == 1
            return {
                str(d["destination"].get("subset", "")): 100 if lone else d.get("weight", 0)
                for d in ours
            }
    return {}
