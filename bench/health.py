"""Health check latency against a local Prometheus, and Prometheus queries per check.

The traffic simulator serves Istio's metrics for weather v1/v2 split by the sandbox's live
VirtualService; a real Prometheus scrapes it every second. Then the bot's HealthCheck runs
`--checks` times in a row.

    python bench/health.py [--checks 500] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.health.check import HealthCheck
from bot.health.client import PrometheusClient
from bot.rollout.model import Phase, Rollout, StepPlan, Target
from sandbox.apiserver import SandboxApiServer
from sandbox.prometheus import PrometheusServer
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed
from sandbox.traffic import TrafficSimulator, VersionProfile


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    now = datetime.now(UTC)
    rollout = Rollout(
        id="bench",
        target=Target(
            namespace="default", vs="weather", stable="v1", canary="v2", host="weather-service"
        ),
        steps=StepPlan(weights=(50, 100), interval_s=60),
        phase=Phase.PROGRESSING,
        step=0,
        weight=10,
        started_by="bench",
        created_at=now,
        updated_at=now,
    )
    with SandboxApiServer() as api:
        seed(api, load_yaml_documents([p for p in bundled_seed_paths() if p.stem == "weather"]))
        profiles = {"v1": VersionProfile(latency_ms=40), "v2": VersionProfile(latency_ms=45)}
        with (
            TrafficSimulator(
                api=api.url,
                namespace="default",
                vs="weather",
                service="weather-service",
                rate=200,
                versions=profiles,
            ) as sim,
            PrometheusServer(targets=[sim.target]) as prometheus,
        ):
            prometheus.wait_for_series('istio_requests_total{destination_version="v2"}', 30)
            time.sleep(5)
            client = PrometheusClient(prometheus.url)
            check = HealthCheck(
                client, window=timedelta(minutes=1), service=lambda t: t.host or t.vs
            )
            samples, outcomes = [], []
            for _ in range(args.checks):
                start = time.perf_counter()
                outcomes.append(check.check(rollout, datetime.now(UTC)).outcome)
                samples.append((time.perf_counter() - start) * 1000)
    cuts = statistics.quantiles(samples, n=100)
    figures = {
        "date": f"{now:%Y-%m-%d}",
        "checks": args.checks,
        "check_p50_ms": round(cuts[49], 2),
        "check_p99_ms": round(cuts[98], 2),
        "queries_per_check": round(client.queries / args.checks, 2),
        "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
    }
    for key, value in figures.items():
        print(f"{key:20} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
