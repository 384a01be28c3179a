"""`canary-bot demo`: everything on loopback, and two rollouts you can watch.

Real Redis, the sandbox Kubernetes API server seeded with the weather app, a traffic simulator
exposing Istio's metrics, a real Prometheus scraping it, and the bot driven through the shell
adapter. First `weather` v2 is healthy and is promoted step by step; then v3 is bad (8% of its
requests fail) and is rolled back automatically after two failed health checks. The charts of
both rollouts are saved as PNG files.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from bot.app import Server, Settings, utcnow
from bot.chat.dispatch import Asker
from bot.chat.shell import Shell, ShellNotifier, interactive_lines
from sandbox.environment import playground
from sandbox.prometheus import PrometheusServer
from sandbox.traffic import TrafficSimulator, VersionProfile

PROFILES = {
    "v1": VersionProfile(error_rate=0.001, latency_ms=40),
    "v2": VersionProfile(error_rate=0.001, latency_ms=42),  # a good new version
    "v3": VersionProfile(error_rate=0.08, latency_ms=45),  # a bad one: 8% of requests fail
}
SCRIPT = [
    "# Part 1: weather v2 is healthy. Each step waits for a health check from Prometheus.",
    "/canary weather status",
    "/canary weather start to v2 steps 10,30,60,100 every 8s",
    ":wait weather 150",
    "# Part 2: weather v3 is bad. Two failed checks in a row roll it back on their own.",
    "/canary weather start to v3 steps 10,30,60,100 every 8s",
    ":wait weather 150",
    "/canary weather history",
]


def run_demo(
    *, interactive: bool = False, out: TextIO = sys.stdout, charts: Path = Path("demo-output")
) -> int:
    say = _printer(out)
    charts.mkdir(parents=True, exist_ok=True)
    say("Starting Redis, the sandbox Kubernetes API, the traffic simulator and Prometheus…")
    with playground(CANARY_HEALTH_WINDOW=10, CANARY_LEASE_TTL=1.0) as play:
        simulator = TrafficSimulator(
            api=play.api.url,
            namespace="default",
            vs="weather",
            service="weather-service",
            rate=120.0,
            versions=PROFILES,
        )
        with (
            simulator,
            PrometheusServer(targets=[simulator.target], scrape_interval="1s") as prometheus,
        ):
            settings = play.settings.model_copy(update={"prometheus_url": prometheus.url})
            say(
                f"  sandbox API {play.api.url} · Redis {play.redis.url} · "
                f"Prometheus {prometheus.url}\n"
            )
            _wait_for_traffic(prometheus)
            _play(settings, say, charts, interactive)
    return 0


def _play(settings: Settings, say: Callable[[str], None], charts: Path, interactive: bool) -> None:
    server = Server(settings, notifier=ShellNotifier(say, utcnow, charts=charts), serve_http=False)
    shell = Shell(server.parts.dispatcher, Asker("U0DEMO", "C0DEMO"), say)
    server.start()
    try:
        shell.run(_echoed(SCRIPT, say))
        if interactive:
            say("\nThe sandbox is still running: type commands (help, :quit to leave).")
            shell.run(interactive_lines())
    finally:
        server.stop()
    say(f"\nCharts saved in {charts.resolve()}:")
    for path in sorted(charts.glob("*.png"), key=lambda p: p.stat().st_mtime):
        say(f"  {path.resolve()}")


def _echoed(lines: Iterable[str], say: Callable[[str], None]) -> Iterable[str]:
    for line in lines:
        if line.startswith("#"):
            say(f"\n{line[2:]}")
        elif not line.startswith(":"):
            say(f"\n$ {line}")
        yield line


def _wait_for_traffic(prometheus: PrometheusServer) -> None:
    prometheus.wait_for_series('istio_requests_total{reporter="destination"}', timeout=30)
    time.sleep(2)  # a few scrapes, so the first rate() has something to work with


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    return say
