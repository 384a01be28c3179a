"""A cohort's requests, and only they, reach the canary: signed slash commands into the running
bot, the sandbox API server, the traffic simulator reading the live VirtualService (a quarter of
its requests carry `x-beta: 1`) and a real Prometheus scraping it."""

from __future__ import annotations

import pytest

from sandbox.prometheus import PrometheusServer
from sandbox.traffic import REST, RequestShare, TrafficSimulator
from tests.conftest import ScrapedTraffic
from tests.support.harness import Bot, wait_until
from tests.support.live_routes import cohort_route

pytestmark = pytest.mark.slow
BETA = RequestShare({"x-beta": "1"}, 0.25)
PER_VERSION = 'sum by (destination_version) (istio_requests_total{reporter="destination"})'


@pytest.fixture
def simulator(bot: Bot, scraped_traffic: ScrapedTraffic) -> TrafficSimulator:
    """100 requests/s to weather-service, simulated only when the test says (the clock never
    ticks on its own), so every count is exact."""
    return scraped_traffic(
        api=bot.cluster.url,
        namespace="default",
        vs="weather",
        service="weather-service",
        rate=100.0,
        shares=[BETA],
        seed=3,
        tick=3600.0,
    )


def in_prometheus(prometheus: PrometheusServer, expected: dict[str, int]) -> None:
    """Until Prometheus holds the simulator's requests per version as `expected`."""

    def scraped() -> dict[str, float]:
        found = prometheus.query(PER_VERSION)
        return {r["metric"]["destination_version"]: float(r["value"][1]) for r in found}

    wait_until(lambda: scraped() == expected, timeout=30, what=f"{expected} in Prometheus")


def test_only_requests_with_the_header_reach_the_canary_until_cohort_off(
    bot: Bot, simulator: TrafficSimulator, prometheus: PrometheusServer
) -> None:
    simulator.simulate(10)
    assert simulator.reached() == {BETA.name: {"v1": 250}, REST: {"v1": 750}}

    assert bot.post(bot.command("weather cohort header x-beta=1 to v2")) == 200
    wait_until(lambda: cohort_route(bot) is not None, what="the cohort route")
    simulator.simulate(10)
    assert simulator.reached() == {BETA.name: {"v1": 250, "v2": 250}, REST: {"v1": 1500}}
    in_prometheus(prometheus, {"v1": 1750, "v2": 250})

    assert bot.post(bot.command("weather cohort off")) == 200
    wait_until(lambda: cohort_route(bot) is None, what="the cohort route gone")
    simulator.simulate(10)
    assert simulator.reached() == {BETA.name: {"v1": 500, "v2": 250}, REST: {"v1": 2250}}
    in_prometheus(prometheus, {"v1": 2750, "v2": 250})
