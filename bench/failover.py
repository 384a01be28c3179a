"""Failover: how long a follower takes to lead once the leader is gone.

Each run starts two `canary-bot serve` replicas against the sandbox API server and a real
Redis, waits for the first to lead and the second to listen, then ends the leader:

- SIGKILL, with a 1 s lease TTL: the follower takes the lease once it expires;
- SIGTERM, with a 30 s lease TTL: the leader hands the lease over as it stops.

The leader is ended at a random moment, so at any phase of the lease's renewals and the
follower's looks. Reported: from the signal to the follower's "leading now" log line (its own
timestamp), p50 and p99 over the runs.

    python bench/failover.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.apiserver import SandboxApiServer
from sandbox.redis_server import RedisServer
from tests.support.processes import serve, serve_env

CASES = {"SIGKILL": "1", "SIGTERM": "30"}  # how the leader ends: the lease TTL for the run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    rng = random.Random(20261201)
    with SandboxApiServer() as cluster, RedisServer() as redis_server:
        for case, ttl in CASES.items():
            took = [takeover(cluster.url, redis_server.url, case, ttl, rng) for _ in range(runs)]
            print(f"{case} (lease TTL {ttl} s): {summary(took)}")
    return 0


def takeover(kube_url: str, redis_url: str, case: str, ttl: str, rng: random.Random) -> float:
    """Seconds from ending the leader to the follower's "leading now"."""
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = [
            serve_env(work, kube_url=kube_url, redis_url=redis_url, user=u, CANARY_LEASE_TTL=ttl)
            for u in ("leader", "follower")
        ]
        with serve(env[0], work / "leader.log") as leader:
            leader.wait_for_line("leading now")
            with serve(env[1], work / "follower.log") as follower:
                follower.wait_for_line("listening on")
                time.sleep(rng.uniform(0, 1))  # at any phase of the lease's renewals and looks
                ended_at = time.time()
                if case == "SIGKILL":
                    leader.kill()
                else:
                    leader.terminate()
                line = follower.wait_for_line("leading now", timeout=2 * float(ttl) + 10)
    return datetime.fromisoformat(json.loads(line)["ts"]).timestamp() - ended_at


def summary(seconds: list[float]) -> str:
    p50 = statistics.median(seconds)
    p99 = statistics.quantiles(seconds, n=100, method="inclusive")[98]
    return f"p50 {p50:.3f} s, p99 {p99:.3f} s, max {max(seconds):.3f} s over {len(seconds)} runs"


if __name__ == "__main__":
    raise SystemExit(main())
