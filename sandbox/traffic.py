"""Simulated requests to a service's versions, exposed as Istio's standard metrics.

Each tick the simulator reads the live VirtualService from the sandbox API server, splits the
service's request rate by the weights of the route that carries its traffic (plus the copies
it mirrors), and records every request as the destination sidecar would:
`istio_requests_total` and `istio_request_duration_milliseconds`, with Istio's label names.
Each version has an error rate and a latency distribution that a test or the demo can change
while it runs. Prometheus scrapes `/metrics` (text format 0.0.4, as Envoy serves it).

Requests go as Istio's routing sends them: the first http route with a match that holds takes a
request (first match wins). Simulated requests carry no headers unless a `RequestShare` says a
share of them carries some (a cohort's header, cookie or `end-user`); the simulator counts which
version each share reached. It judges the matches the bot writes and plain ones (headers by
exact, prefix or regex, withoutHeaders, uri against the path "/"); a match on anything else
never holds, and a request no route takes goes as the route carrying the traffic sends it.

Request counts and error counts are deterministic (fractional requests carry over from tick to
tick, so a 1% version gets exactly 1% of the traffic and a 2% error rate fails exactly every
50th request); latencies are drawn from a lognormal distribution.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

# Istio's stats filter records request durations into Envoy histograms, whose default bucket
# bounds are Envoy's (source/common/stats/histogram_impl.cc,
# HistogramStatisticsImpl::supportedBuckets) unless a pod's
# `sidecar.istio.io/statsHistogramBuckets` annotation overrides them. In milliseconds.
ISTIO_DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
    60000, 300000, 600000, 1800000, 3600000,
)  # fmt: skip

# Istio's standard labels of the HTTP request metrics (those the bot and dashboards use).
REQUEST_LABELS = (
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

# Istio's TCP metrics carry the same labels but response_code (a connection has none).
CONNECTION_LABELS = tuple(label for label in REQUEST_LABELS if label != "response_code")

VS_API_PATH = "/apis/networking.istio.io/v1/namespaces/{namespace}/virtualservices/{name}"
VirtualServiceSource = str | Callable[[], Mapping[str, Any]]

# Who sends the traffic: the ingress gateway, as in the seed's weather app.
_SOURCE_WORKLOAD = ("istio-ingressgateway", "istio-system")
_UNKNOWN_VERSION = "unknown"  # what Istio reports for a pod without a version label
_CATCH_UP_TICKS = 5  # after a stall, simulate at most this many ticks' worth of traffic
_FETCH_TIMEOUT_S = 1.0
_PATH = "/"  # every simulated request's path
# What an HTTPMatchRequest may hold and still be judged here; other conditions never hold.
_JUDGED_MATCH_KEYS = frozenset({"name", "headers", "withoutHeaders", "uri", "ignoreUriCase"})
REST = "rest"  # the name of the requests no RequestShare claims
_SERVE_POLL_S = 0.05


@dataclass(frozen=True)
class VersionProfile:
    """How one version behaves: its share of 503s and its latency distribution."""

    error_rate: float = 0.0  # share of requests answered 503
    latency_ms: float = 50.0  # median of a lognormal distribution
    spread: float = 0.3  # the lognormal's sigma

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate is a share between 0 and 1, not {self.error_rate}")
        if self.latency_ms <= 0 or self.spread < 0:
            raise ValueError(
                f"latency_ms must be > 0 and spread >= 0, not {self.latency_ms}, {self.spread}"
            )

    def latencies(self, count: int, rng: random.Random) -> list[float]:
        mu = math.log(self.latency_ms)
        return [rng.lognormvariate(mu, self.spread) for _ in range(count)]


@dataclass(frozen=True)
class RequestShare:
    """A share of the simulated requests that carry `headers` (lower-case names), counted
    under `name` (default: the headers as `name=value`)."""

    headers: Mapping[str, str]
    share: float
    name: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"a share of the requests is between 0 and 1, not {self.share}")
        if any(key != key.lower() for key in self.headers):
            raise ValueError(f"header names are lower-case, as HTTP/2 sends them: {self.headers}")
        if not self.name:
            named = ",".join(f"{k}={v}" for k, v in self.headers.items())
            object.__setattr__(self, "name", named)

    @classmethod
    def cookie(cls, name: str, value: str, share: float) -> RequestShare:
        """Requests whose Cookie header holds `name=value` among other cookies."""
        return cls({"cookie": f"session=7; {name}={value}; theme=dark"}, share, f"{name}={value}")

    @classmethod
    def user(cls, user: str, share: float) -> RequestShare:
        """Requests of a signed-in user, as Bookinfo's productpage tells the services."""
        return cls({"end-user": user}, share, f"end-user={user}")


# --- Which versions get the traffic ---------------------------------------------------------


def route_weights(
    vs: Mapping[str, Any],
    service: str,
    namespace: str,
    headers: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Percent of `service`'s requests with `headers` per subset ("" for no subset).

    Taken from the route that takes those requests (see `request_route`). A lone destination
    takes 100%; otherwise weights are normalised over the service's destinations. Empty if
    that route sends nothing to the service.
    """
    route = request_route(vs, service, namespace, headers or {})
    if route is None:
        return {}
    lone = len(route.get("route") or []) == 1
    weights: dict[str, float] = {}
    for destination in _service_destinations(route, service, namespace):
        subset = str(destination["destination"].get("subset", ""))
        weight = 100.0 if lone else float(destination.get("weight") or 0)
        weights[subset] = weights.get(subset, 0.0) + weight
    total = sum(weights.values())
    return {s: 100.0 * w / total for s, w in weights.items()} if total else {}


def mirrored_weights(
    vs: Mapping[str, Any],
    service: str,
    namespace: str,
    headers: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Percent of `service`'s requests with `headers` copied to a mirror subset of it by the
    route that takes them. The mirror's sidecar reports those copies as requests like any other.
    """
    route = request_route(vs, service, namespace, headers or {})
    mirror = route.get("mirror") if route is not None else None
    if route is None or not _is_host_of(mirror, service, namespace):
        return {}
    percentage = route.get("mirrorPercentage")
    if isinstance(percentage, Mapping):
        percent = float(percentage.get("value") or 0)
    else:
        percent = float(route.get("mirrorPercent", 100))  # the deprecated integer field
    subset = str(mirror.get("subset", "")) if isinstance(mirror, Mapping) else ""
    return {subset: percent} if percent > 0 else {}


def carrying_route(vs: Mapping[str, Any], service: str, namespace: str) -> Mapping[str, Any] | None:
    """The http route that carries (almost) all of `service`'s traffic.

    The first catch-all route that sends traffic to the service (a route for testers that
    matches a header carries almost nothing), else the first route that does.
    """
    routes = [r for r in _http_routes(vs) if _service_destinations(r, service, namespace)]
    return next((r for r in routes if _is_catch_all(r)), routes[0] if routes else None)


def request_route(
    vs: Mapping[str, Any], service: str, namespace: str, headers: Mapping[str, str]
) -> Mapping[str, Any] | None:
    """The http route that takes a request to "/" with `headers`: the first whose match holds
    (Istio's first match wins), else the carrying route (the request matches a condition the
    simulator does not judge)."""
    taking = next((r for r in _http_routes(vs) if route_matches(r, headers)), None)
    return taking if taking is not None else carrying_route(vs, service, namespace)


def route_matches(route: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """Whether an http route takes a request to "/" with `headers`: it has no match, or one of
    its HTTPMatchRequests holds (the conditions within one all hold)."""
    matches = route.get("match")
    if not matches:
        return True
    return any(_match_holds(m, headers) for m in matches if isinstance(m, Mapping))


def _match_holds(match: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    if not set(match) <= _JUDGED_MATCH_KEYS:
        return False
    wanted, unwanted = match.get("headers") or {}, match.get("withoutHeaders") or {}
    uri = match.get("uri")
    return (
        all(_header_holds(headers, name, rule) for name, rule in wanted.items())
        and not any(_header_holds(headers, name, rule) for name, rule in unwanted.items())
        and (uri is None or string_matches(uri, _PATH, fold=bool(match.get("ignoreUriCase"))))
    )


def _header_holds(headers: Mapping[str, str], name: str, rule: Any) -> bool:
    value = headers.get(name.lower())
    return value is not None and isinstance(rule, Mapping) and string_matches(rule, value)


def string_matches(rule: Mapping[str, Any], value: str, *, fold: bool = False) -> bool:
    """Istio's StringMatch: exact, prefix or regex (RE2, the whole value); an empty one holds
    for any value that is there."""
    if fold:
        value = value.lower()
    if "exact" in rule:
        return value == (str(rule["exact"]).lower() if fold else str(rule["exact"]))
    if "prefix" in rule:
        return value.startswith(str(rule["prefix"]).lower() if fold else str(rule["prefix"]))
    if "regex" in rule:
        return re.fullmatch(str(rule["regex"]), value) is not None
    return not rule


def _http_routes(vs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The routes traffic takes: the http routes, else (a TCP service) the tcp routes, else
    the tls routes, as the bot's planner picks them."""
    spec = vs.get("spec")
    if not isinstance(spec, Mapping):
        return []
    for kind in ("http", "tcp", "tls"):
        routes = [r for r in spec.get(kind) or [] if isinstance(r, Mapping)]
        if routes:
            return routes
    return []


def carries_connections(vs: Mapping[str, Any]) -> bool:
    """Whether the service is TCP (its VirtualService has tcp or tls routes and no http)."""
    spec = vs.get("spec")
    return (
        isinstance(spec, Mapping)
        and not spec.get("http")
        and bool(spec.get("tcp") or spec.get("tls"))
    )


def _service_destinations(
    route: Mapping[str, Any], service: str, namespace: str
) -> list[Mapping[str, Any]]:
    return [
        d
        for d in route.get("route") or []
        if isinstance(d, Mapping) and _is_host_of(d.get("destination"), service, namespace)
    ]


def _is_host_of(destination: Any, service: str, namespace: str) -> bool:
    if not isinstance(destination, Mapping):
        return False
    name, _, rest = str(destination.get("host", "")).partition(".")
    return name == service and (not rest or rest.split(".")[0] == namespace)


def _is_catch_all(route: Mapping[str, Any]) -> bool:
    matches = route.get("match")
    if not matches:
        return True
    return any(m in ({}, {"uri": {"prefix": "/"}}) for m in matches)


# --- The metrics, as a destination sidecar would expose them ---------------------------------


@dataclass
class _Series:
    """One label set's counts: requests, per-bucket durations (non-cumulative), their sum."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(ISTIO_DURATION_BUCKETS_MS) + 1))
    total_ms: float = 0.0
    requests: int = 0

    def record(self, latencies: Iterable[float]) -> None:
        for latency in latencies:
            self.buckets[bisect.bisect_left(ISTIO_DURATION_BUCKETS_MS, latency)] += 1
            self.total_ms += latency
            self.requests += 1

    def cumulative(self) -> list[tuple[str, float]]:
        bounds = [f"{bound:g}" for bound in ISTIO_DURATION_BUCKETS_MS] + ["+Inf"]
        running, points = 0, []
        for bound, count in zip(bounds, self.buckets, strict=True):
            running += count
            points.append((bound, float(running)))
        return points


class IstioMetrics:
    """A prometheus-client collector of Istio's request metrics, recorded a batch at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], _Series] = {}
        self._closed: dict[tuple[str, ...], int] = {}  # TCP connections closed, by labels

    def record_connections(self, labels: tuple[str, ...], count: int) -> None:
        if count:
            with self._lock:
                self._closed[labels] = self._closed.get(labels, 0) + count

    def record(self, labels: tuple[str, ...], latencies_ms: Sequence[float]) -> None:
        if not latencies_ms:
            return  # as in Istio, a label set has no series until a request has it
        with self._lock:
            self._series.setdefault(labels, _Series()).record(latencies_ms)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "istio_requests", "Requests (simulated).", labels=REQUEST_LABELS
        )
        durations = HistogramMetricFamily(
            "istio_request_duration_milliseconds",
            "Request durations in milliseconds (simulated).",
            labels=REQUEST_LABELS,
        )
        closed = CounterMetricFamily(
            "istio_tcp_connections_closed",
            "TCP connections closed (simulated).",
            labels=CONNECTION_LABELS,
        )
        with self._lock:
            for labels, series in self._series.items():
                requests.add_metric(labels, series.requests)
                durations.add_metric(labels, series.cumulative(), series.total_ms)
            for labels, count in self._closed.items():
                closed.add_metric(labels, count)
        yield requests
        yield durations
        yield closed


class _Carry:
    """Fractional amounts owed per key, paid out in whole units."""

    def __init__(self) -> None:
        self._owed: dict[Hashable, float] = {}

    def take(self, key: Hashable, amount: float) -> int:
        owed = self._owed.get(key, 0.0) + amount
        whole = math.floor(owed + 1e-9)  # 0.1 * 10 is 0.9999999999999999, owed 1
        self._owed[key] = owed - whole
        return whole


def _metrics_handler(registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: Prometheus scrapes every second."""

    return MetricsHandler


# --- The simulator ---------------------------------------------------------------------------

# Percent of the whole rate per version, by (share name, mirrored copies or not).
_Split = dict[tuple[str, bool], dict[str, float]]


def _with_rest(shares: Sequence[RequestShare]) -> tuple[RequestShare, ...]:
    """`shares` and the requests they leave over, which carry no headers."""
    rest = 1.0 - sum(share.share for share in shares)
    if rest < -1e-9:
        raise ValueError(f"the shares of the requests add up to more than all of them: {shares}")
    names = [share.name for share in shares]
    if REST in names:
        raise ValueError(f"{REST!r} names the requests no share claims")
    if len(set(names)) < len(names):
        raise ValueError(f"each share of the requests needs its own name: {names}")
    return (*shares, RequestShare({}, max(0.0, rest), REST))


def _total(split: _Split) -> dict[str, float]:
    totals: dict[str, float] = {}
    for weights in split.values():
        for version, percent in weights.items():
            totals[version] = totals.get(version, 0.0) + percent
    return totals


class TrafficSimulator:
    """Requests to `service` split by VirtualService `vs`'s live weights, served as metrics.

    `api` is the sandbox API server's base URL, or a callable returning the VirtualService.
    `rate` is the service's requests per second in all. Versions not in `versions` behave as
    `VersionProfile()`. `shares` are the requests that carry headers (a cohort's); the rest
    carry none. `app` is the pods' app label (default: `service` without "-service"), and
    workloads are named `{app}-{version}`. `start()` returns self; also a context manager.
    """

    def __init__(
        self,
        *,
        api: VirtualServiceSource,
        namespace: str,
        vs: str,
        service: str,
        rate: float = 50.0,
        versions: Mapping[str, VersionProfile] | None = None,
        seed: int | None = None,
        shares: Sequence[RequestShare] = (),
        tick: float = 0.2,
        app: str | None = None,
        port: int = 0,
    ) -> None:
        self._source = api
        self._namespace, self._vs, self._service = namespace, vs, service
        self._app = app or service.removesuffix("-service")
        self._rate, self._tick, self._port = rate, tick, port
        self._profiles = dict(versions or {})
        self._shares = _with_rest(shares)
        self._rng = random.Random(seed)  # noqa: S311 - simulated latencies, not secrets
        self._lock = threading.Lock()
        self._weights: dict[str, float] = {}
        self._split: _Split = {}
        self._requests_owed, self._errors_owed = _Carry(), _Carry()
        self._counts: dict[str, int] = {}
        self._reached: dict[str, dict[str, int]] = {}
        self._metrics = IstioMetrics()
        self._tcp = False  # the service is TCP: connections are counted, not requests
        self._registry = CollectorRegistry(auto_describe=True)
        self._registry.register(self._metrics)
        self._http: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def target(self) -> str:
        """The "host:port" Prometheus scrapes."""
        if self._http is None:
            raise RuntimeError("the traffic simulator is not started")
        host, port = self._http.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.target}/metrics"

    # Lifecycle

    def start(self) -> Self:
        if self._http is not None:
            return self
        self._stopping.clear()
        self._http = ThreadingHTTPServer(
            ("127.0.0.1", self._port), _metrics_handler(self._registry)
        )
        self._http.daemon_threads = True
        serve = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": _SERVE_POLL_S},
            name="traffic-metrics",
            daemon=True,
        )
        simulate = threading.Thread(target=self._run, name="traffic-simulator", daemon=True)
        self._threads = [serve, simulate]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        if self._http is None:
            return
        self._stopping.set()
        self._http.shutdown()
        self._http.server_close()
        for thread in self._threads:
            thread.join()
        self._http, self._threads = None, []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Knobs and readings

    def set_profile(self, version: str, profile: VersionProfile) -> None:
        with self._lock:
            self._profiles[version] = profile

    def set_rate(self, rate: float) -> None:
        if rate < 0:
            raise ValueError(f"the request rate cannot be negative: {rate}")
        with self._lock:
            self._rate = rate

    def counts(self) -> dict[str, int]:
        """Requests simulated per version so far (mirrored copies included)."""
        with self._lock:
            return dict(self._counts)

    def reached(self) -> dict[str, dict[str, int]]:
        """Requests per version so far, by the share that sent them (`REST` for the requests
        with no headers); mirrored copies left out."""
        with self._lock:
            return {share: dict(counts) for share, counts in self._reached.items()}

    def weights(self) -> dict[str, float]:
        """Percent of the rate each version served at the last tick (mirrored copies added)."""
        with self._lock:
            return dict(self._weights)

    def simulate(self, seconds: float) -> None:
        """Serve `seconds` worth of requests now, split by the live weights.

        The background thread calls this every tick; tests may call it directly.
        """
        split = self._live_split()
        with self._lock:
            self._weights = _total(split)
            for (share, mirrored), weights in split.items():
                for version, percent in weights.items():
                    owed = self._rate * seconds * percent / 100
                    count = self._requests_owed.take((share, mirrored, version), owed)
                    if count:
                        self._serve(version, count)
                    if count and not mirrored:
                        reached = self._reached.setdefault(share, {})
                        reached[version] = reached.get(version, 0) + count

    # Internals

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stopping.wait(self._tick):
            now = time.monotonic()
            self.simulate(min(now - last, _CATCH_UP_TICKS * self._tick))
            last = now

    def _live_split(self) -> _Split:
        """Percent of the rate each version serves, by share and whether mirrored; the last
        split if the VS cannot be read."""
        try:
            vs = self._read_virtual_service()
        except (OSError, ValueError, LookupError):
            with self._lock:
                return self._split
        split: _Split = {}
        tcp = carries_connections(vs)
        for share in self._shares:
            args = (vs, self._service, self._namespace, share.headers)
            for mirrored, weights in (
                (False, route_weights(*args)),
                (True, mirrored_weights(*args)),
            ):
                by_version = self._by_version(weights)
                split[share.name, mirrored] = {v: w * share.share for v, w in by_version.items()}
        with self._lock:
            self._split, self._tcp = split, tcp
        return split

    def _read_virtual_service(self) -> Mapping[str, Any]:
        if callable(self._source):
            return self._source()
        path = VS_API_PATH.format(namespace=self._namespace, name=self._vs)
        with urllib.request.urlopen(self._source + path, timeout=_FETCH_TIMEOUT_S) as reply:
            vs: Mapping[str, Any] = json.load(reply)
        return vs

    def _by_version(self, by_subset: Mapping[str, float]) -> dict[str, float]:
        # A destination without a subset reaches every version's pods alike.
        weights = {s: w for s, w in by_subset.items() if s}
        unsubsetted = by_subset.get("", 0.0)
        if unsubsetted:
            with self._lock:
                versions = list(self._profiles) or [_UNKNOWN_VERSION]
            for version in versions:
                weights[version] = weights.get(version, 0.0) + unsubsetted / len(versions)
        return weights

    def _serve(self, version: str, count: int) -> None:
        profile = self._profiles.get(version) or VersionProfile()
        errors = min(count, self._errors_owed.take(version, count * profile.error_rate))
        if self._tcp:  # connections: failed ones flagged UF (upstream connect failure)
            self._metrics.record_connections(self._tcp_labels(version, "UF"), errors)
            self._metrics.record_connections(self._tcp_labels(version, "-"), count - errors)
            self._counts[version] = self._counts.get(version, 0) + count
            return
        latencies = profile.latencies(count, self._rng)
        self._metrics.record(self._labels(version, "503"), latencies[:errors])
        self._metrics.record(self._labels(version, "200"), latencies[errors:])
        self._counts[version] = self._counts.get(version, 0) + count

    def _tcp_labels(self, version: str, flags: str) -> tuple[str, ...]:
        labels = dict(zip(REQUEST_LABELS, self._labels(version, ""), strict=True))
        labels |= {"request_protocol": "tcp", "response_flags": flags}
        return tuple(labels[name] for name in CONNECTION_LABELS)

    def _labels(self, version: str, response_code: str) -> tuple[str, ...]:
        namespace, service = self._namespace, self._service
        return (
            "destination",
            *_SOURCE_WORKLOAD,
            f"{self._app}-{version}",
            namespace,
            f"{service}.{namespace}.svc.cluster.local",
            service,
            namespace,
            version,
            self._app,
            "http",
            response_code,
            "-",
            "mutual_tls",
        )
