"""`canary-bot demo`: everything on loopback: two rollouts, a cohort and a wave you can watch.

Real Redis, the sandbox Kubernetes API server seeded with the weather app, a traffic simulator
exposing Istio's metrics, a real Prometheus scraping it, and the bot driven through the shell
adapter. First `weather` v2 is healthy and is promoted step by step; then v3 is bad (8% of its
requests fail) and is rolled back automatically once its health checks fail. Last, a cohort:
only requests with the header `x-beta: 1` (a tenth of them) are sent to v3, as the simulator's
counts show, until `cohort off` takes the route away. Then a wave over two more clusters,
canary-eu and prod-eu (each a sandbox API server with its own traffic and Prometheus, a kube
context each in CANARY_CLUSTERS): v2 is rolled out and promoted on canary-eu, and only then on
prod-eu, and both clusters' VirtualServices are shown. The charts of the rollouts are saved as
PNG files.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TextIO

from bot.app import Server, Settings, utcnow
from bot.chat.dispatch import Asker
from bot.chat.shell import Shell, ShellNotifier, interactive_lines
from bot.rollout.waves import Wave, WaveState
from bot.service.waves import WaveBook
from bot.store.redis_store import connect
from bot.store.waves import WaveStore
from sandbox.clusters import SandboxClusters, sandbox_clusters
from sandbox.environment import playground
from sandbox.prometheus import PrometheusServer
from sandbox.traffic import REST, RequestShare, TrafficSimulator, VersionProfile

PROFILES = {
    "v1": VersionProfile(error_rate=0.001, latency_ms=40),
    "v2": VersionProfile(error_rate=0.001, latency_ms=42),  # a good new version
    "v3": VersionProfile(error_rate=0.08, latency_ms=45),  # a bad one: 8% of requests fail
}
_SETTLE_S = 1.0
BETA = RequestShare({"x-beta": "1"}, 0.1, name="x-beta: 1")
SCRIPT = [
    "# Part 1: weather v2 is healthy. Each step waits for a health check from Prometheus.",
    "/canary weather status",
    "/canary weather start to v2 steps 10,30,60,100 every 8s",
    ":wait weather 150",
    "# Part 2: weather v3 is bad. Failing health checks roll it back on their own.",
    "/canary weather start to v3 steps 10,30,60,100 every 8s",
    ":wait weather 150",
    "/canary weather history",
    "# Part 3: a cohort. Only requests with the header x-beta: 1 go to v3; the rest stay on v2."
    " (`start cohort header x-beta=1` makes this the first step of a rollout.)",
    "/canary weather cohort header x-beta=1 to v3",
    "/canary weather status",
    ":traffic 4",
    "/canary weather cohort off",
    ":traffic 4",
    "# Part 4: a wave over two more clusters, canary-eu then prod-eu, each with its own traffic"
    " and Prometheus. prod-eu starts only once canary-eu is promoted.",
    "/canary weather start to v2 clusters canary-eu,prod-eu steps 50,100 every 4s",
    ":wave weather 60",
    ":routes",
]
WAVE = ("canary-eu", "prod-eu")


def run_demo(
    *, interactive: bool = False, out: TextIO = sys.stdout, charts: Path = Path("demo-output")
) -> int:
    say = _printer(out)
    charts.mkdir(parents=True, exist_ok=True)
    say(
        "Starting Redis, the sandbox Kubernetes API, the traffic simulator and Prometheus, "
        f"and the same for the clusters {' and '.join(WAVE)}…"
    )
    with (
        playground(CANARY_HEALTH_WINDOW=10, CANARY_LEASE_TTL=1.0) as play,
        sandbox_clusters(WAVE, versions=PROFILES, rate=60.0) as clusters,
    ):
        simulator = TrafficSimulator(
            api=play.api.url,
            namespace="default",
            vs="weather",
            service="weather-service",
            rate=120.0,
            versions=PROFILES,
            shares=[BETA],
        )
        with (
            simulator,
            PrometheusServer(targets=[simulator.target], scrape_interval="1s") as prometheus,
        ):
            settings = play.settings.model_copy(
                update={"prometheus_url": prometheus.url, "clusters": clusters.settings()}
            )
            say(
                f"  sandbox API {play.api.url} · Redis {play.redis.url} · "
                f"Prometheus {prometheus.url}"
            )
            for c in clusters.members:
                say(f"  {c.name}: sandbox API {c.api.url} · Prometheus {c.prometheus.url}")
            say("")
            _wait_for_traffic(prometheus, *(c.prometheus for c in clusters.members))
            _play(
                settings,
                say,
                charts,
                interactive=interactive,
                simulator=simulator,
                clusters=clusters,
            )
    return 0


def _play(
    settings: Settings,
    say: Callable[[str], None],
    charts: Path,
    *,
    interactive: bool,
    simulator: TrafficSimulator,
    clusters: SandboxClusters,
) -> None:
    redis = connect(settings.redis_url)
    waves = WaveStore(redis)
    notifier = ShellNotifier(say, utcnow, charts=charts, waves=waves)
    server = Server(settings, notifier=notifier, serve_http=False)
    shell = Shell(server.parts.dispatcher, Asker("U0DEMO", "C0DEMO"), say)
    own: dict[str, Callable[[list[str]], None]] = {
        ":traffic": lambda args: _show_traffic(simulator, float(args[0]), say),
        ":wave": lambda args: _wait_for_wave(waves, args[0], float(args[1]), say),
        ":routes": lambda args: _show_routes(clusters, say),
    }
    server.start()
    try:
        shell.run(_echoed(SCRIPT, say, own))
        if interactive:
            say("\nThe sandbox is still running: type commands (help, :quit to leave).")
            shell.run(interactive_lines())
    finally:
        server.stop()
        redis.close()
    say(f"\nCharts saved in {charts.resolve()}:")
    for path in sorted(charts.glob("*.png"), key=lambda p: p.stat().st_mtime):
        say(f"  {path.resolve()}")


def _echoed(
    lines: Iterable[str],
    say: Callable[[str], None],
    own: Mapping[str, Callable[[list[str]], None]],
) -> Iterable[str]:
    """The script's lines for the shell, each shown as typed; the demo's own commands run here:
    `:traffic N` (where the requests of the next N seconds went), `:wave SERVICE SECONDS`
    (until the service's wave ends) and `:routes` (the wave clusters' VirtualServices)."""
    for line in lines:
        name, *args = line.split()
        if name in own:
            own[name](args)
            continue
        if line.startswith("#"):
            say(f"\n{line[2:]}")
        elif not line.startswith(":"):
            say(f"\n$ {line}")
        yield line


def _show_traffic(simulator: TrafficSimulator, seconds: float, say: Callable[[str], None]) -> None:
    time.sleep(_SETTLE_S)  # a tick that read the routes before the change has been counted
    before = simulator.reached()
    time.sleep(seconds)
    after = simulator.reached()
    say(f"\n  Requests in the last {seconds:g} s, by the version that served them:")
    for share, label in ((BETA.name, f"with {BETA.name}"), (REST, "all the others")):
        went = {v: n - before.get(share, {}).get(v, 0) for v, n in after.get(share, {}).items()}
        shown = ", ".join(f"{v} {n}" for v, n in sorted(went.items()) if n) or "none"
        say(f"    {label:<15} → {shown}")


def _wait_for_wave(
    waves: WaveBook, service: str, limit_s: float, say: Callable[[str], None]
) -> None:
    """Until the service's running wave ends (the server's leader carries it from one cluster
    to the next), then how it ended."""
    wave = waves.for_service("default", service)
    deadline = time.monotonic() + limit_s
    while wave is not None and wave.state is WaveState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
        wave = waves.load(wave.id)
    say(f"\n  {_wave_end(service, wave)}")


def _wave_end(service: str, wave: Wave | None) -> str:
    if wave is None:
        return f"{service} has no wave going on"
    promoted = ", then ".join(wave.promoted) or "none"
    if wave.state is WaveState.DONE:
        return f"The wave is done: {service} promoted on {promoted}."
    if wave.state is WaveState.HALTED:
        return f"The wave halted: {wave.reason}. Promoted on: {promoted}."
    return f"The wave is still going, on {wave.cluster}; promoted on: {promoted}."


def _show_routes(clusters: SandboxClusters, say: Callable[[str], None]) -> None:
    say("\n  The VirtualService weather as each cluster's API server has it now:")
    for c in clusters.members:
        shown = ", ".join(f"{v} {w:g}%" for v, w in sorted(c.weights().items()))
        say(f"    {c.name:<10} → {shown or 'no route to weather-service'}")


def _wait_for_traffic(*servers: PrometheusServer) -> None:
    for prometheus in servers:
        prometheus.wait_for_series('istio_requests_total{reporter="destination"}', timeout=30)
    time.sleep(2)  # a few scrapes, so the first rate() has something to work with


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    return say
