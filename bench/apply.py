"""Plan + guarded apply latency against the sandbox API server, and Kubernetes calls per apply.

The sandbox runs in its own process (as a cluster would), the adapter here talks to it over
loopback with the official client. Each apply changes the weight, so each one really patches.

    python bench/apply.py [--applies 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bot.mesh.kube import KubeMesh
from bot.mesh.request import SplitRequest
from sandbox.kubeconfig import api_client_for

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "sandbox" / "seeds" / "weather.yaml"


def start_sandbox() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.apiserver", "--seed", str(SEED)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def request_counts(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/sandbox/requests") as reply:
        counts: dict[str, int] = json.load(reply)["byMethod"]
    return counts


def run(applies: int, watch: bool) -> dict[str, float]:
    proc, url = start_sandbox()
    try:
        mesh = KubeMesh(api_client_for(url), watch_destination_rules=watch)
        mesh.apply(SplitRequest.build(vs="weather", weight=1))  # discovery + warm caches
        before = request_counts(url)
        samples = []
        for i in range(applies):
            request = SplitRequest.build(vs="weather", weight=2 + i % 98)  # never a no-op
            start = time.perf_counter()
            mesh.apply(request)
            samples.append((time.perf_counter() - start) * 1000)
        after = request_counts(url)
        mesh.close()
    finally:
        proc.terminate()
        proc.wait()
    calls = sum(after.values()) - sum(before.values())
    cuts = statistics.quantiles(samples, n=100)
    return {
        "applies": applies,
        "p50_ms": round(cuts[49], 2),
        "p99_ms": round(cuts[98], 2),
        "calls_per_apply": round(calls / applies, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--applies", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {
        "watched DestinationRules": run(args.applies, watch=True),
        "listed DestinationRules": run(args.applies, watch=False),
    }
    for name, figures in results.items():
        print(f"{name:26} " + "  ".join(f"{k}={v}" for k, v in figures.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
