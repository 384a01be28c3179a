"""The traffic simulator: live VirtualService weights in, Istio's standard metrics out."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bot.mesh.cohort import cohort_route
from commands.cohort import Cohort
from sandbox.apiserver import SandboxApiServer
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed
from sandbox.traffic import (
    REST,
    RequestShare,
    TrafficSimulator,
    VersionProfile,
    mirrored_weights,
    route_matches,
    route_weights,
)
from tests.support.harness import wait_until

VS = "virtualservices"
WEATHER_FQDN = "weather-service.default.svc.cluster.local"
# Istio's standard metric labels (istio.io, "Istio Standard Metrics"), as the bot queries them.
ISTIO_LABELS = {
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
}
# Envoy's default histogram buckets, which Istio's request duration uses.
ENVOY_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]
ENVOY_BUCKETS += [60000, 300000, 600000, 1800000, 3600000, float("inf")]


def seed_file(name: str) -> list[dict[str, Any]]:
    [path] = [p for p in bundled_seed_paths() if p.name == name]
    return load_yaml_documents([path])


@pytest.fixture
def weather(sandbox: SandboxApiServer) -> SandboxApiServer:
    """The sandbox API with the weather app: VS `weather`, v1 90% and v2 10%."""
    seed(sandbox, seed_file("weather.yaml"))
    return sandbox


@pytest.fixture
def make_simulator(weather: SandboxApiServer) -> Iterator[Callable[..., TrafficSimulator]]:
    """Started simulators of weather-service; by default the clock never ticks on its own."""
    started: list[TrafficSimulator] = []

    def make(**overrides: Any) -> TrafficSimulator:
        options: dict[str, Any] = {
            "api": weather.url,
            "namespace": "default",
            "vs": "weather",
            "service": "weather-service",
            "rate": 100.0,
            "seed": 7,
            "tick": 3600.0,
        }
        simulator = TrafficSimulator(**(options | overrides)).start()
        started.append(simulator)
        return simulator

    yield make
    for simulator in started:
        simulator.stop()


def set_weights(api: SandboxApiServer, v1: int, v2: int) -> None:
    def edit(vs: dict[str, Any]) -> None:
        route = vs["spec"]["http"][0]["route"]
        route[0]["weight"], route[1]["weight"] = v1, v2

    api.mutate("default", VS, "weather", edit)


def scrape(simulator: TrafficSimulator) -> list[Sample]:
    with urllib.request.urlopen(simulator.metrics_url, timeout=5) as reply:
        text = reply.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


# Splitting by the live weights


def test_requests_follow_the_live_weights(
    weather: SandboxApiServer, make_simulator: Callable[..., TrafficSimulator]
) -> None:
    simulator = make_simulator(rate=100.0)

    simulator.simulate(10)
    assert simulator.counts() == {"v1": 900, "v2": 100}

    set_weights(weather, 50, 50)
    simulator.simulate(10)
    assert simulator.counts() == {"v1": 1400, "v2": 600}
    assert simulator.weights() == {"v1": 50.0, "v2": 50.0}


def test_a_running_simulator_follows_a_weight_change(
    weather: SandboxApiServer, make_simulator: Callable[..., TrafficSimulator]
) -> None:
    simulator = make_simulator(rate=1000.0, tick=0.02)
    wait_until(lambda: simulator.counts().get("v2", 0) > 0)
    assert simulator.weights() == {"v1": 90.0, "v2": 10.0}

    set_weights(weather, 50, 50)
    wait_until(lambda: simulator.weights() == {"v1": 50.0, "v2": 50.0})
    before = simulator.counts()
    wait_until(lambda: sum(simulator.counts().values()) - sum(before.values()) >= 300)

    after = simulator.counts()
    moved = {version: after[version] - before[version] for version in after}
    assert abs(moved["v1"] - moved["v2"]) <= 1  # equal shares; carries differ by < 1 request


def test_low_weights_get_their_exact_share(
    weather: SandboxApiServer, make_simulator: Callable[..., TrafficSimulator]
) -> None:
    set_weights(weather, 99, 1)
    simulator = make_simulator(rate=50.0)

    for _ in range(50):  # 0.2 s ticks: 10 requests a tick, so v2 is owed 0.1 a tick
        simulator.simulate(0.2)

    assert simulator.counts() == {"v1": 495, "v2": 5}


def test_a_version_at_zero_percent_gets_nothing_and_has_no_series(
    weather: SandboxApiServer, make_simulator: Callable[..., TrafficSimulator]
) -> None:
    set_weights(weather, 100, 0)
    simulator = make_simulator()

    simulator.simulate(5)

    assert simulator.counts() == {"v1": 500}
    versions = {s.labels["destination_version"] for s in scrape(simulator)}
    assert versions == {"v1"}


def test_an_unreadable_virtual_service_keeps_the_last_split(
    weather: SandboxApiServer, make_simulator: Callable[..., TrafficSimulator]
) -> None:
    simulator = make_simulator()
    simulator.simulate(1)

    weather.fail_next(1, 503, method="GET", path_contains="/virtualservices/weather")
    simulator.simulate(1)
    weather.stop()
    simulator.simulate(1)

    assert simulator.counts() == {"v1": 270, "v2": 30}


def test_the_virtual_service_can_come_from_a_callable() -> None:
    vs = {"spec": {"http": [{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]}}
    reads: list[int] = []

    def read() -> Mapping[str, Any]:
        reads.append(1)
        if len(reads) > 1:
            raise OSError("the API went away")
        return vs

    with TrafficSimulator(
        api=read, namespace="default", vs="reviews", service="reviews", tick=3600
    ) as sim:
        sim.simulate(1)
        sim.simulate(1)
    assert sim.counts() == {"v2": 100}
    assert len(reads) == 2


def test_mirrored_copies_are_served_by_the_mirror_subset(sandbox: SandboxApiServer) -> None:
    seed(sandbox, seed_file("bookinfo-reviews-mirroring.yaml"))
    with TrafficSimulator(
        api=sandbox.url, namespace="default", vs="reviews", service="reviews", rate=10.0, tick=3600
    ) as simulator:
        simulator.simulate(10)
        assert simulator.counts() == {"v1": 100, "v2": 100}

        def mirror_a_quarter(vs: dict[str, Any]) -> None:
            vs["spec"]["http"][0]["mirrorPercentage"] = {"value": 25.0}

        sandbox.mutate("default", VS, "reviews", mirror_a_quarter)
        simulator.simulate(10)
        assert simulator.counts() == {"v1": 200, "v2": 125}


def test_a_destination_without_subset_spreads_over_the_versions() -> None:
    vs = {"spec": {"http": [{"route": [{"destination": {"host": "httpbin"}}]}]}}
    profiles = {"v1": VersionProfile(), "v2": VersionProfile()}
    with TrafficSimulator(
        api=lambda: vs,
        namespace="default",
        vs="httpbin",
        service="httpbin",
        versions=profiles,
        tick=3600,
    ) as simulator:
        simulator.simulate(2)
    assert simulator.counts() == {"v1": 50, "v2": 50}


# Which route and which weights


def destination(host: str, subset: str | None = None, weight: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"destination": {"host": host}}
    if subset is not None:
        found["destination"]["subset"] = subset
    if weight is not None:
        found["weight"] = weight
    return found


def virtual_service(*routes: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"hosts": ["reviews"], "http": list(routes)}}


TESTERS = {"match": [{"headers": {"end-user": {"exact": "jason"}}}]}


@pytest.mark.parametrize(
    ("vs", "expected"),
    [
        pytest.param(
            virtual_service({"route": [destination("reviews", "v1")]}), {"v1": 100.0}, id="lone"
        ),
        pytest.param(
            virtual_service(
                {"route": [destination("reviews", "v1", 75), destination("reviews", "v3", 25)]}
            ),
            {"v1": 75.0, "v3": 25.0},
            id="weighted",
        ),
        pytest.param(
            virtual_service(
                {"route": [destination("reviews.default.svc.cluster.local", "v2")]},
            ),
            {"v2": 100.0},
            id="fqdn-host",
        ),
        pytest.param(
            virtual_service(
                {**TESTERS, "route": [destination("reviews", "v2")]},
                {"route": [destination("reviews", "v1")]},
            ),
            {"v1": 100.0},
            id="the-testers-route-is-skipped",
        ),
        pytest.param(
            virtual_service({**TESTERS, "route": [destination("reviews", "v2")]}),
            {"v2": 100.0},
            id="only-a-matching-route",
        ),
        pytest.param(
            virtual_service(
                {"route": [destination("reviews", "v1", 80), destination("ratings", "v1", 20)]}
            ),
            {"v1": 100.0},
            id="other-hosts-left-out",
        ),
        pytest.param(
            virtual_service({"route": [destination("reviews.prod.svc.cluster.local", "v1")]}),
            {},
            id="same-name-other-namespace",
        ),
        pytest.param(virtual_service(), {}, id="no-routes"),
        pytest.param({"spec": {"tcp": []}}, {}, id="tcp-only"),
        pytest.param(
            virtual_service({"route": [destination("reviews")]}), {"": 100.0}, id="no-subset"
        ),
    ],
)
def test_route_weights(vs: dict[str, Any], expected: dict[str, float]) -> None:
    assert route_weights(vs, "reviews", "default") == expected


def test_route_weights_of_the_bundled_seeds() -> None:
    weather = next(d for d in seed_file("weather.yaml") if d["kind"] == "VirtualService")
    reviews = seed_file("bookinfo-reviews-50-50.yaml")[0]

    assert route_weights(weather, "weather-service", "default") == {"v1": 90.0, "v2": 10.0}
    assert route_weights(reviews, "reviews", "default") == {"v1": 50.0, "v3": 50.0}


def test_mirrored_weights() -> None:
    mirrored = seed_file("bookinfo-reviews-mirroring.yaml")[0]
    assert mirrored_weights(mirrored, "reviews", "default") == {"v2": 100.0}
    mirrored["spec"]["http"][0]["mirrorPercent"] = 10  # the deprecated integer field
    assert mirrored_weights(mirrored, "reviews", "default") == {"v2": 10.0}
    mirrored["spec"]["http"][0]["mirrorPercentage"] = {"value": 0.5}
    assert mirrored_weights(mirrored, "reviews", "default") == {"v2": 0.5}
    assert mirrored_weights(mirrored, "ratings", "default") == {}


# Which route takes a request: Istio's first match wins

BETA = {"x-beta": "1"}


@pytest.mark.parametrize(
    ("match", "headers", "taken"),
    [
        pytest.param(None, {}, True, id="no-match-takes-all"),
        pytest.param([{}], {}, True, id="empty-match"),
        pytest.param([{"uri": {"prefix": "/"}}], {}, True, id="uri-prefix-slash"),
        pytest.param([{"uri": {"exact": "/api"}}], {}, False, id="another-path"),
        pytest.param([{"uri": {"regex": "/.*"}}], {}, True, id="uri-regex"),
        pytest.param([{"headers": {"x-beta": {"exact": "1"}}}], BETA, True, id="exact"),
        pytest.param(
            [{"headers": {"x-beta": {"exact": "1"}}}], {"x-beta": "10"}, False, id="not-exact"
        ),
        pytest.param([{"headers": {"x-beta": {"exact": "1"}}}], {}, False, id="header-missing"),
        pytest.param([{"headers": {"X-Beta": {"exact": "1"}}}], BETA, True, id="names-any-case"),
        pytest.param(
            [{"headers": {"x-beta": {"prefix": "1"}}}], {"x-beta": "12"}, True, id="prefix"
        ),
        pytest.param(
            [{"headers": {"x-beta": {"regex": "1|2"}}}], {"x-beta": "2"}, True, id="regex"
        ),
        pytest.param(
            [{"headers": {"x-beta": {"regex": "1"}}}], {"x-beta": "12"}, False, id="regex-whole"
        ),
        pytest.param([{"headers": {"x-beta": {}}}], {"x-beta": ""}, True, id="present"),
        pytest.param([{"withoutHeaders": {"x-beta": {}}}], BETA, False, id="without"),
        pytest.param([{"withoutHeaders": {"x-beta": {}}}], {}, True, id="without-absent"),
        pytest.param(
            [{"headers": {"x-beta": {"exact": "1"}, "end-user": {"exact": "jason"}}}],
            BETA,
            False,
            id="all-conditions-of-one-match",
        ),
        pytest.param(
            [
                {"headers": {"end-user": {"exact": "jason"}}},
                {"headers": {"x-beta": {"exact": "1"}}},
            ],
            BETA,
            True,
            id="any-of-the-matches",
        ),
        pytest.param([{"method": {"exact": "GET"}}], {}, False, id="unjudged-condition"),
    ],
)
def test_route_matches(
    match: list[dict[str, Any]] | None, headers: dict[str, str], taken: bool
) -> None:
    route = {"route": [destination("reviews", "v1")]} | ({"match": match} if match else {})
    assert route_matches(route, headers) is taken


CANARY = {"host": "reviews", "subset": "v2"}


@pytest.mark.parametrize(
    ("cohort", "headers", "taken"),
    [
        (Cohort(by="header", name="x-beta", value="1"), BETA, True),
        (Cohort(by="header", name="x-beta", value="1"), {"x-beta": "2"}, False),
        (Cohort(by="user", name="end-user", value="jason"), {"end-user": "jason"}, True),
        (Cohort(by="user", name="end-user", value="jason"), {"end-user": "jasonb"}, False),
        (
            Cohort(by="cookie", name="beta", value="1"),
            RequestShare.cookie("beta", "1", 0).headers,
            True,
        ),
        (Cohort(by="cookie", name="beta", value="1"), {"cookie": "beta=1"}, True),
        (Cohort(by="cookie", name="beta", value="1"), {"cookie": "a=b;beta=1"}, True),
        (Cohort(by="cookie", name="beta", value="1"), {"cookie": "beta=10"}, False),
        (Cohort(by="cookie", name="beta", value="1"), {"cookie": "xbeta=1"}, False),
        (Cohort(by="cookie", name="beta", value="1"), {"x-beta": "1"}, False),
    ],
)
def test_the_bots_cohort_routes_take_their_cohort_only(
    cohort: Cohort, headers: dict[str, str], taken: bool
) -> None:
    assert route_matches(cohort_route(cohort, CANARY), headers) is taken


def test_each_request_goes_by_the_first_route_that_takes_it() -> None:
    cohort = cohort_route(Cohort(by="header", name="x-beta", value="1"), CANARY)
    catch_all = {"route": [destination("reviews", "v1", 90), destination("reviews", "v2", 10)]}
    vs = virtual_service(cohort, catch_all)

    assert route_weights(vs, "reviews", "default", BETA) == {"v2": 100.0}
    assert route_weights(vs, "reviews", "default", {"x-beta": "0"}) == {"v1": 90.0, "v2": 10.0}
    assert route_weights(vs, "reviews", "default") == {"v1": 90.0, "v2": 10.0}
    elsewhere = {**TESTERS, "route": [destination("ratings", "v1")]}
    assert (
        route_weights(
            virtual_service(elsewhere, catch_all), "reviews", "default", {"end-user": "jason"}
        )
        == {}
    )


def test_a_request_no_route_takes_goes_by_the_carrying_route() -> None:
    api_only = {"match": [{"uri": {"prefix": "/api"}}], "route": [destination("reviews", "v3")]}
    assert route_weights(virtual_service(api_only), "reviews", "default", BETA) == {"v3": 100.0}


def add_cohort_route(api: SandboxApiServer, match: list[dict[str, Any]]) -> None:
    def edit(vs: dict[str, Any]) -> None:
        canary = {"destination": {"host": "weather-service", "subset": "v2"}}
        vs["spec"]["http"].insert(0, {"name": "beta", "match": match, "route": [canary]})

    api.mutate("default", VS, "weather", edit)


def test_only_the_share_with_the_header_reaches_the_cohort_route(
    weather: SandboxApiServer, make_simulator: Callable[..., TrafficSimulator]
) -> None:
    set_weights(weather, 100, 0)
    add_cohort_route(weather, [{"headers": {"x-beta": {"exact": "1"}}}])
    simulator = make_simulator(rate=100.0, shares=[RequestShare(BETA, 0.2)])

    simulator.simulate(10)

    assert simulator.reached() == {"x-beta=1": {"v2": 200}, REST: {"v1": 800}}
    assert simulator.counts() == {"v1": 800, "v2": 200}
    assert simulator.weights() == {"v1": 80.0, "v2": 20.0}
    by_version = {
        s.labels["destination_version"]: s.value
        for s in scrape(simulator)
        if s.name == "istio_requests_total"
    }
    assert by_version == {"v1": 800, "v2": 200}


def test_shares_by_cookie_and_user_each_go_their_own_way(
    weather: SandboxApiServer, make_simulator: Callable[..., TrafficSimulator]
) -> None:
    add_cohort_route(weather, [{"headers": {"end-user": {"exact": "jason"}}}])
    shares = [RequestShare.user("jason", 0.1), RequestShare.cookie("beta", "1", 0.3)]
    simulator = make_simulator(rate=100.0, shares=shares)

    simulator.simulate(10)

    assert simulator.reached() == {
        "end-user=jason": {"v2": 100},
        "beta=1": {"v1": 270, "v2": 30},
        REST: {"v1": 540, "v2": 60},
    }


def test_mirrored_copies_are_counted_per_version_but_not_as_reached(
    sandbox: SandboxApiServer,
) -> None:
    seed(sandbox, seed_file("bookinfo-reviews-mirroring.yaml"))
    with TrafficSimulator(
        api=sandbox.url, namespace="default", vs="reviews", service="reviews", rate=10.0, tick=3600
    ) as simulator:
        simulator.simulate(10)
    assert simulator.counts() == {"v1": 100, "v2": 100}
    assert simulator.reached() == {REST: {"v1": 100}}


@pytest.mark.parametrize(
    ("shares", "said"),
    [
        ([RequestShare(BETA, 0.6), RequestShare({"x-alpha": "1"}, 0.5)], "more than all"),
        ([RequestShare(BETA, 0.1), RequestShare(BETA, 0.1)], "its own name"),
        ([RequestShare(BETA, 0.1, REST)], "no share claims"),
    ],
)
def test_impossible_shares_are_refused(shares: list[RequestShare], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        TrafficSimulator(api=lambda: {}, namespace="d", vs="w", service="s", shares=shares)


@pytest.mark.parametrize(("headers", "share"), [(BETA, 1.5), ({"X-Beta": "1"}, 0.1)])
def test_impossible_request_shares_are_refused(headers: dict[str, str], share: float) -> None:
    with pytest.raises(ValueError, match=r"share|lower-case"):
        RequestShare(headers, share)


# The metrics, as Istio exposes them


def test_metrics_use_istio_names_labels_and_buckets(
    make_simulator: Callable[..., TrafficSimulator],
) -> None:
    simulator = make_simulator()
    simulator.simulate(1)

    samples = scrape(simulator)

    names = {s.name for s in samples}
    assert names == {
        "istio_requests_total",
        "istio_request_duration_milliseconds_bucket",
        "istio_request_duration_milliseconds_sum",
        "istio_request_duration_milliseconds_count",
    }
    requests = [s for s in samples if s.name == "istio_requests_total"]
    assert all(set(s.labels) == ISTIO_LABELS for s in requests)
    [v2] = [s for s in requests if s.labels["destination_version"] == "v2"]
    assert v2.labels == {
        "reporter": "destination",
        "source_workload": "istio-ingressgateway",
        "source_workload_namespace": "istio-system",
        "destination_workload": "weather-v2",
        "destination_workload_namespace": "default",
        "destination_service": WEATHER_FQDN,
        "destination_service_name": "weather-service",
        "destination_service_namespace": "default",
        "destination_version": "v2",
        "destination_app": "weather",
        "request_protocol": "http",
        "response_code": "200",
        "response_flags": "-",
        "connection_security_policy": "mutual_tls",
    }
    v1_buckets = [
        s for s in samples if s.name.endswith("_bucket") and s.labels["destination_version"] == "v1"
    ]
    assert [float(s.labels["le"]) for s in v1_buckets] == ENVOY_BUCKETS
    assert v1_buckets[-1].value == 90


def test_error_rates_and_latencies_show_in_the_metrics(
    make_simulator: Callable[..., TrafficSimulator],
) -> None:
    slow_and_failing = VersionProfile(error_rate=0.2, latency_ms=400.0)
    simulator = make_simulator(
        versions={"v1": VersionProfile(latency_ms=20.0), "v2": slow_and_failing}
    )
    simulator.simulate(10)

    samples = scrape(simulator)

    requests = "istio_requests_total"
    assert total(samples, requests, destination_version="v1", response_code="200") == 900
    assert total(samples, requests, destination_version="v1", response_code="503") == 0
    assert total(samples, requests, destination_version="v2", response_code="200") == 80
    assert total(samples, requests, destination_version="v2", response_code="503") == 20
    duration = "istio_request_duration_milliseconds"
    for version, median in (("v1", 20.0), ("v2", 400.0)):
        mean = total(samples, f"{duration}_sum", destination_version=version) / total(
            samples, f"{duration}_count", destination_version=version
        )
        assert median < mean < 1.15 * median  # a lognormal's mean is median · e^(σ²/2)
    within_250ms = total(samples, f"{duration}_bucket", destination_version="v2", le="250")
    assert within_250ms < 0.1 * 100
    within_50ms = total(samples, f"{duration}_bucket", destination_version="v1", le="50")
    assert within_50ms > 0.99 * 900


def test_set_profile_takes_effect_while_running(
    make_simulator: Callable[..., TrafficSimulator],
) -> None:
    simulator = make_simulator(rate=1000.0, tick=0.02)
    wait_until(lambda: simulator.counts().get("v1", 0) > 0)
    assert total(scrape(simulator), "istio_requests_total", response_code="503") == 0

    simulator.set_profile("v1", VersionProfile(error_rate=0.5))

    def v1_errors() -> float:
        return total(
            scrape(simulator), "istio_requests_total", destination_version="v1", response_code="503"
        )

    wait_until(lambda: v1_errors() >= 100)


def test_set_rate_changes_the_volume(make_simulator: Callable[..., TrafficSimulator]) -> None:
    simulator = make_simulator(rate=100.0)
    simulator.simulate(1)
    simulator.set_rate(0)
    simulator.simulate(10)
    simulator.set_rate(20)
    simulator.simulate(5)
    assert simulator.counts() == {"v1": 180, "v2": 20}


def test_unknown_paths_are_404(make_simulator: Callable[..., TrafficSimulator]) -> None:
    simulator = make_simulator()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://{simulator.target}/", timeout=5)
    assert missing.value.code == 404
    missing.value.close()


# Lifecycle and arguments


def test_target_and_metrics_url_need_a_started_simulator() -> None:
    simulator = TrafficSimulator(api="http://127.0.0.1:1", namespace="d", vs="w", service="s")
    with pytest.raises(RuntimeError, match="not started"):
        simulator.target  # noqa: B018 - the property raises
    simulator.start()
    assert simulator.metrics_url == f"http://{simulator.target}/metrics"
    simulator.stop()
    simulator.stop()  # stopping twice is harmless


@pytest.mark.parametrize(
    "profile",
    [
        {"error_rate": -0.1},
        {"error_rate": 1.5},
        {"latency_ms": 0},
        {"spread": -1},
    ],
)
def test_impossible_profiles_are_refused(profile: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"error_rate|latency_ms"):
        VersionProfile(**profile)
