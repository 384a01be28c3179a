"""Many concurrent staged rollouts on one `canary-bot serve` process.

The sandbox API server, Redis and the bot each run in their own process. The benchmark seeds
N VirtualService/DestinationRule pairs, starts a rollout on each (30-second steps by default;
the starts spread evenly over one interval, as rollouts started independently are, so that the
steps fall due at N / interval a second, the budget's "about 33 steps a second"; `--burst`
starts them back to back instead, and the steps then fall due in a burst each interval),
lets the bot drive them for the given duration, and meanwhile rolls some back by hand, timing
each rollback until the canary is at 0% in the API. Reported:

- step lateness: for consecutive steps of a rollout, (time between them) - interval, from the
  audit trail the bot writes as it takes each step;
- the bot process's CPU (user + system time over the window) and peak RSS (VmHWM);
- Kubernetes calls and Redis round trips per step (the sandbox's request count, and the
  store's own count, which the bot prints when it stops);
- rollback latency while all that runs.

    python bench/rollouts.py [--rollouts 1000] [--interval 30] [--duration 180] [--json F]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleet import NAMESPACE, service, start_sandbox

from bot.app import ConsoleNotifier, Settings, build
from bot.rollout.model import Rollback, StepPlan
from sandbox.kubeconfig import write_kubeconfig
from sandbox.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def api_calls(url: str) -> int:
    with urllib.request.urlopen(f"{url}/sandbox/requests") as reply:
        return sum(json.load(reply)["byMethod"].values())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def cuts(samples: list[float]) -> tuple[float, float]:
    if len(samples) < 2:
        return (samples[0], samples[0]) if samples else (float("nan"), float("nan"))
    q = statistics.quantiles(samples, n=100)
    return q[49], q[98]


def run(
    count: int, interval: int, duration: float, rollbacks: int, *, burst: bool = False
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="canary-bench-"))
    sandbox, url = start_sandbox(count, work)
    redis_server = RedisServer().start()
    kubeconfig = write_kubeconfig(work / "kubeconfig", url, namespace=NAMESPACE)
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "KUBECONFIG": str(kubeconfig),
        "CANARY_DEFAULT_NAMESPACE": NAMESPACE,
    }
    os.environ.update(env)
    bot_log = (work / "serve.log").open("w")
    bot = subprocess.Popen(
        [str(Path(sys.executable).with_name("canary-bot")), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=bot_log,
    )
    try:
        return _measure(count, interval, duration, rollbacks, url, bot, work, burst=burst)
    finally:
        if bot.poll() is None:
            bot.kill()
        sandbox.terminate()
        sandbox.wait()
        redis_server.close()


def _measure(
    count: int,
    interval: int,
    duration: float,
    rollbacks: int,
    url: str,
    bot: subprocess.Popen[bytes],
    work: Path,
    *,
    burst: bool,
) -> dict[str, Any]:
    parts = build(Settings(), notifier=ConsoleNotifier(lambda _: None), watch=True)
    steps = StepPlan(weights=(*tuple(range(2, 100, 2)), 100), interval_s=interval)
    ids = []
    began, pace = time.monotonic(), 0.0 if burst else interval / count
    for i in range(count):
        time.sleep(max(0.0, began + i * pace - time.monotonic()))
        rollout = parts.engine.start(
            namespace=NAMESPACE,
            vs=service(i),
            to="v2",
            steps=steps,
            actor="bench",
            channel=None,
        )
        ids.append(rollout.id)
    time.sleep(interval)  # let every rollout reach the bot's schedule once
    calls0, cpu0, t0 = api_calls(url), cpu_seconds(bot.pid), time.monotonic()
    audit0 = len(parts.store.global_history(count=1_000_000))
    rollback_ms = _rollbacks_while_running(parts, rollbacks, duration)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(bot.pid) - cpu0
    calls = api_calls(url) - calls0
    rss = peak_rss_mb(bot.pid)
    entries = parts.store.global_history(count=1_000_000)
    window = [e for e in entries[audit0:] if e.action == "step"]
    rollback_calls = 2 * len(rollback_ms)  # each rollback is a GET and a guarded PATCH
    bot.send_signal(signal.SIGTERM)
    bot.wait(timeout=30)
    trips = _round_trips(work / "serve.log")
    lateness = _lateness(entries, interval)
    late50, late99 = cuts(lateness)
    rb50, rb99 = cuts(rollback_ms)
    return {
        "rollouts": count,
        "starts": "back to back" if burst else f"spread over {interval} s",
        "interval_s": interval,
        "window_s": round(elapsed, 1),
        "steps_in_window": len(window),
        "steps_per_s": round(len(window) / elapsed, 1),
        "lateness_p50_s": round(late50, 3),
        "lateness_p99_s": round(late99, 3),
        "bot_cpu_percent_of_a_core": round(100 * cpu / elapsed, 1),
        "bot_peak_rss_mb": round(rss, 1),
        "kube_calls_per_step": round((calls - rollback_calls) / max(len(window), 1), 2),
        "redis_round_trips_per_step": trips and round(trips / max(_all_steps(entries), 1), 1),
        "rollbacks": len(rollback_ms),
        "rollback_p50_ms": round(rb50, 1),
        "rollback_p99_ms": round(rb99, 1),
    }


def _rollbacks_while_running(parts: Any, count: int, duration: float) -> list[float]:
    """Roll back `count` rollouts spread over the window, timing each until it is at 0%."""
    samples, pause = [], duration / max(count, 1)
    for i in range(count):
        time.sleep(pause)
        start = time.perf_counter()
        parts.engine.act(NAMESPACE, service(i), Rollback(actor="bench"))
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _lateness(entries: list[Any], interval: int) -> list[float]:
    by_rollout: dict[str, list[datetime]] = {}
    for entry in entries:
        if entry.action in ("start", "step"):
            by_rollout.setdefault(entry.rollout_id, []).append(entry.at)
    late = []
    for times in by_rollout.values():
        for before, after in itertools.pairwise(times):
            late.append((after - before).total_seconds() - interval)
    return late


def _all_steps(entries: list[Any]) -> int:
    return sum(1 for e in entries if e.action == "step")


def _round_trips(log: Path) -> int:
    match = re.findall(r"redis round trips: (\d+)", log.read_text())
    return int(match[-1]) if match else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--duration", type=float, default=180)
    parser.add_argument("--rollbacks", type=int, default=100)
    parser.add_argument("--burst", action="store_true", help="start the rollouts back to back")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = datetime.now(UTC)
    figures = run(args.rollouts, args.interval, args.duration, args.rollbacks, burst=args.burst)
    figures["date"] = f"{started:%Y-%m-%d}"
    for key, value in figures.items():
        print(f"{key:30} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
