"""Continuous analysis of many held steps: looks per second, queries per look, the bot's CPU,
and the load it puts on Prometheus.

A real Redis holds `--rollouts` rollouts, each progressing at 10 % with its step held for tens
of minutes more (1-hour steps that began 5 to 45 minutes ago, so each look's window is that
long). The rollouts' VirtualServices (`svc-NNNN`) are in the sandbox API server, but their
traffic is reported under `--services` shared destination hosts (`app-NN`): each host is one
traffic simulator exporting Istio's series for v1 and v2 (90/10, `--rate` requests a second,
both versions equally healthy), and a real Prometheus scrapes them every `--scrape`. Sharing
hosts keeps the simulators' own CPU off the two cores; each look's two queries still select
one service's series, as they would with a host per rollout.

The looks run in a child process that is the bot's analysis as `canary-bot serve` composes it
on the leader: the engine on Redis and the Kubernetes adapter, the `SequentialCheck` judge
(two queries a look), and the `Analyst` run by the step scheduler every ANALYSIS_TICK_S,
looking at each held step just after each scrape, at most one a scrape and at least one every
`--every` seconds (as CANARY_SCRAPE_INTERVAL times them; `--unaligned`: every `--every` s).
After `--warmup` seconds it measures for `--duration`: looks and their outcomes, queries (and
each one's latency), the child's own CPU time (getrusage: every thread of the process, nothing
of this benchmark's) over wall time, its RSS; and from /proc, Prometheus's CPU over the same
window.

    python bench/analysis.py [--rollouts 1000] [--every 10] [--duration 180] [--json F]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fleet import NAMESPACE, service, start_sandbox

from bot.app import ANALYSIS_TICK_S, ConsoleNotifier
from bot.health.analysis import SequentialCheck
from bot.health.client import PrometheusClient, Vector
from bot.mesh.kube import KubeMesh, from_kubeconfig
from bot.ops.metrics import Metrics
from bot.rollout.analysis import Analyst
from bot.rollout.engine import Engine
from bot.rollout.model import Phase, Rollout, StepPlan, Target, Verdict
from bot.rollout.scheduler import ANALYSIS_JOB, StepScheduler
from bot.rollout.traffic import KubeTraffic
from bot.store.lease import LeaderLease
from bot.store.redis_store import RolloutStore, connect
from sandbox.kubeconfig import write_kubeconfig
from sandbox.prometheus import PrometheusServer
from sandbox.redis_server import RedisServer
from sandbox.traffic import TrafficSimulator, VersionProfile

TICKS = os.sysconf("SC_CLK_TCK")
STEP = timedelta(hours=1)


def host(i: int, services: int) -> str:
    return f"app-{i % services:02d}"


# -- The parent: Redis, the sandbox, simulators and Prometheus; then the looking child.


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="canary-analysis-"))
    sandbox, url = start_sandbox(args.rollouts, work)
    redis_server = RedisServer().start()
    sims = [simulator(host(i, args.services), args.rate) for i in range(args.services)]
    try:
        for sim in sims:
            sim.start()
        with PrometheusServer(
            targets=[s.target for s in sims], scrape_interval=args.scrape
        ) as prometheus:
            prometheus.wait_for_series('istio_requests_total{destination_version="v2"}', 60)
            store = RolloutStore(connect(redis_server.url))
            seed_rollouts(store, args)
            kubeconfig = write_kubeconfig(work / "kubeconfig", url, namespace=NAMESPACE)
            figures = watch_child(args, redis_server.url, prometheus, kubeconfig, work)
            live = [r for r in store.list_active() if r.phase is Phase.PROGRESSING]
            return figures | {"still_progressing": len(live)}
    finally:
        for sim in sims:
            sim.stop()
        sandbox.terminate()
        sandbox.wait()
        redis_server.close()


def simulator(name: str, rate: float) -> TrafficSimulator:
    route = [
        {"destination": {"host": name, "subset": s}, "weight": w}
        for s, w in (("v1", 90), ("v2", 10))
    ]
    vs = {"spec": {"hosts": [name], "http": [{"route": route}]}}
    healthy = VersionProfile(error_rate=0.005, latency_ms=40)
    return TrafficSimulator(
        api=lambda: vs,
        namespace=NAMESPACE,
        vs=name,
        service=name,
        rate=rate,
        versions={"v1": healthy, "v2": healthy},
        seed=len(name),
        tick=1.0,
    )


def seed_rollouts(store: RolloutStore, args: argparse.Namespace) -> None:
    """Rollouts at their second step (10 %), each held for 15 to 55 more minutes."""
    now, rng = datetime.now(UTC), random.Random(args.rollouts)
    steps = StepPlan(weights=(5, 10, 25, 50, 100), interval_s=int(STEP.total_seconds()))
    for i in range(args.rollouts):
        target = Target(
            namespace=NAMESPACE,
            vs=service(i),
            stable="v1",
            canary="v2",
            host=host(i, args.services),
        )
        store.create(
            Rollout(
                id=f"bench-{i:04d}",
                target=target,
                steps=steps,
                phase=Phase.PROGRESSING,
                step=1,
                weight=10,
                started_by="bench",
                created_at=now,
                updated_at=now,
                next_step_at=now + timedelta(minutes=rng.uniform(15, 55)),
            )
        )


def watch_child(
    args: argparse.Namespace,
    redis_url: str,
    prometheus: PrometheusServer,
    kubeconfig: Path,
    work: Path,
) -> dict[str, Any]:
    out = work / "looks.json"
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--looker",
            *("--redis", redis_url, "--prometheus", prometheus.url),
            *("--kubeconfig", str(kubeconfig), "--every", str(args.every)),
            *("--scrape", args.scrape, *(["--unaligned"] if args.unaligned else [])),
            *("--warmup", str(args.warmup), "--duration", str(args.duration)),
            *("--json", str(out)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and prometheus.pid is not None
    marks = []
    for line in child.stdout:  # "measuring" then "done", each as the child's window opens/closes
        marks.append((cpu_seconds(prometheus.pid), time.monotonic()))
        if line.strip() == "done":
            break
    if child.wait(timeout=120) != 0 or len(marks) != 2:
        raise SystemExit("the looking process failed")
    figures: dict[str, Any] = json.loads(out.read_text())
    (cpu0, t0), (cpu1, t1) = marks
    figures["prometheus_cpu_percent_of_a_core"] = round(100 * (cpu1 - cpu0) / (t1 - t0), 1)
    return {
        "rollouts": args.rollouts,
        "services": args.services,
        "every_s": args.every,
        "scrape": args.scrape,
        "aligned": not args.unaligned,
        **figures,
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


# -- The child: the bot's analysis, and nothing else.


class TimedClient:
    """The Prometheus client, each query's latency kept."""

    def __init__(self, client: PrometheusClient) -> None:
        self.client, self.latencies = client, list[float]()

    def query(self, promql: str, at: datetime | None = None) -> Vector:
        start = time.perf_counter()
        try:
            return self.client.query(promql, at=at)
        finally:
            self.latencies.append(time.perf_counter() - start)


class CountingAnalyst(Analyst):
    def __init__(
        self, engine: Engine, store: RolloutStore, every: timedelta, scrape: timedelta | None
    ) -> None:
        super().__init__(engine, store.due, every=every, scrape=scrape)
        self.outcomes: list[str] = []
        self.failed: list[str] = []  # the first few failing looks' summaries

    def look(self, rollout_id: str) -> Verdict | None:
        verdict = super().look(rollout_id)
        self.outcomes.append("none" if verdict is None else verdict.outcome)
        if verdict is not None and verdict.outcome == "fail" and len(self.failed) < 5:
            self.failed.append(f"{rollout_id}: {verdict.summary}")
        return verdict


def look(args: argparse.Namespace) -> None:
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # a long pass skips ticks
    redis = connect(args.redis)
    lease = LeaderLease(redis, identity="bench-analysis", ttl_ms=3_600_000)
    token = lease.try_acquire()
    client = TimedClient(PrometheusClient(args.prometheus))
    mesh = KubeMesh(from_kubeconfig(str(args.kubeconfig)), check_pods=False)
    store = RolloutStore(redis)
    engine = Engine(
        store=store,
        traffic=KubeTraffic(mesh),
        notifier=ConsoleNotifier(lambda _: None),
        clock=lambda: datetime.now(UTC),
        health=SequentialCheck(client, service=lambda t: t.host or t.vs),
        metrics=Metrics(),
        fencing=lambda: token,
    )
    scrape = None if args.unaligned else timedelta(seconds=int(args.scrape.removesuffix("s")))
    analyst = CountingAnalyst(engine, store, timedelta(seconds=args.every), scrape)
    scheduler = StepScheduler(lambda rollout_id, step: None)
    scheduler.every(ANALYSIS_TICK_S, analyst.run, job=ANALYSIS_JOB)
    scheduler.resume()
    time.sleep(args.warmup)
    figures = measure(analyst, client, args.duration)
    scheduler.shutdown()
    args.json.write_text(json.dumps(figures) + "\n")


def measure(analyst: CountingAnalyst, client: TimedClient, duration: float) -> dict[str, Any]:
    print("measuring", flush=True)
    looks0, queries0 = len(analyst.outcomes), len(client.latencies)
    cpu0, t0 = _cpu(), time.monotonic()
    threading.Event().wait(duration)
    cpu1, t1 = _cpu(), time.monotonic()
    print("done", flush=True)
    outcomes = analyst.outcomes[looks0:]
    latencies = [s * 1000 for s in client.latencies[queries0 : queries0 + 2 * len(outcomes)]]
    queries = len(client.latencies) - queries0
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    wall = t1 - t0
    return {
        "window_s": round(wall, 1),
        "looks": len(outcomes),
        "looks_per_s": round(len(outcomes) / wall, 1),
        "queries_per_look": round(queries / max(len(outcomes), 1), 3),
        "prometheus_qps": round(queries / wall, 1),
        "query_p50_ms": round(cuts[49], 2),
        "query_p99_ms": round(cuts[98], 2),
        "bot_cpu_percent_of_a_core": round(100 * (cpu1 - cpu0) / wall, 1),
        "bot_cpu_ms_per_look": round(1000 * (cpu1 - cpu0) / max(len(outcomes), 1), 2),
        "bot_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
        "failed": analyst.failed,
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between looks")
    parser.add_argument("--services", type=int, default=20, help="destination hosts shared")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s per service")
    parser.add_argument("--scrape", default="15s", help="Prometheus' scrape interval (whole s)")
    parser.add_argument(
        "--unaligned", action="store_true", help="looks every --every s, not after each scrape"
    )
    parser.add_argument("--warmup", type=float, default=40.0)
    parser.add_argument("--duration", type=float, default=180.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--looker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--prometheus", help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.looker:
        look(args)
        return
    started = datetime.now(UTC)
    figures = run(args)
    figures["date"] = f"{started:%Y-%m-%d}"
    for key, value in figures.items():
        print(f"{key:34} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
