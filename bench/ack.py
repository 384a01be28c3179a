"""Slack's view of the bot: signed slash commands at a steady rate into the HTTP app.

The bot (`canary-bot serve` in HTTP mode), the sandbox API server and Redis each run in their
own process; the fake Slack Web API the bot posts to runs here. Each command sets a canary
weight on its own service, so each one really patches a VirtualService. Reported:

- ack latency: from sending the signed request to its HTTP 200, over the commands sent after
  the first `--warmup` seconds (those, sent while the bot is cold, are reported apart), with
  the slowest acks and when they were sent, which shows what the tail lines up with;
- command → VirtualService patched: from sending to the sandbox receiving the guarded PATCH;
- rollback click → canary at 0%: a signed Rollback button press on a card, while the rollouts
  made by the commands are active, until the sandbox receives the PATCH to 0%.

Each run records the machine's load average, since other work on it moves the tail.

    python bench/ack.py [--rate 50] [--seconds 30] [--warmup 1] [--clicks 100] [--runs 1]
                        [--json F]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleet import NAMESPACE, service, start_sandbox
from slack_sdk.signature import SignatureVerifier

from bot.store.redis_store import RolloutStore, connect
from sandbox.kubeconfig import write_kubeconfig
from sandbox.redis_server import RedisServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fake Slack lives in tests/
from tests.support.fake_slack import FakeSlack

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench"
CHANNEL = "C0BENCH"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sender:
    """Signed POSTs over one keep-alive connection per thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()
        self.verifier = SignatureVerifier(SECRET)

    def post(self, body: str) -> tuple[float, int]:
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": self.verifier.generate_signature(timestamp=ts, body=body),
        }
        conn = self._conn()
        start = time.perf_counter()
        conn.request("POST", "/slack/events", body=body.encode(), headers=headers)
        reply = conn.getresponse()
        reply.read()
        return (time.perf_counter() - start) * 1000, reply.status

    def _conn(self) -> http.client.HTTPConnection:
        if not hasattr(self.local, "conn"):
            self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn: http.client.HTTPConnection = self.local.conn
        return conn


def command_body(service: str, weight: int, slack: FakeSlack, trigger: str) -> str:
    return urllib.parse.urlencode(
        {
            "team_id": "T0BENCH",
            "channel_id": CHANNEL,
            "user_id": "U0BENCH",
            "command": "/canary",
            "text": f"{service} {weight}%",
            "response_url": slack.response_url("bench"),
            "trigger_id": trigger,
        }
    )


def click_body(rollout_id: str, slack: FakeSlack, trigger: str) -> str:
    payload = {
        "type": "block_actions",
        "user": {"id": "U0ONCALL"},
        "team": {"id": "T0BENCH"},
        "channel": {"id": CHANNEL},
        "trigger_id": trigger,
        "response_url": slack.response_url("click"),
        "actions": [
            {
                "type": "button",
                "action_id": "canary:rollback",
                "value": f"{rollout_id}:1",
                "block_id": "b",
                "action_ts": "1",
            }
        ],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def api_calls(sandbox_url: str) -> int:
    with urllib.request.urlopen(f"{sandbox_url}/sandbox/requests") as reply:
        return sum(json.load(reply)["byMethod"].values())


def patches(sandbox_url: str) -> dict[str, list[tuple[float, str]]]:
    """Successful VirtualService PATCHes per service: (wall-clock time, body)."""
    with urllib.request.urlopen(f"{sandbox_url}/sandbox/requests") as reply:
        writes = json.load(reply)["writes"]
    found: dict[str, list[tuple[float, str]]] = {}
    for write in writes:
        if write["method"] == "PATCH" and "/virtualservices/" in write["path"]:
            found.setdefault(write["path"].rsplit("/", 1)[1], []).append(
                (write["at"], write["body"])
            )
    return found


def cuts(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100)
    return round(q[49], 2), round(q[98], 2)


def run(rate: int, seconds: int, warmup: float, clicks: int) -> dict[str, Any]:
    cold, count = int(rate * warmup), rate * seconds
    work = Path(tempfile.mkdtemp(prefix="canary-ack-"))
    sandbox, sandbox_url = start_sandbox(cold + count, work)
    load_before = os.getloadavg()[0]
    port = free_port()
    with RedisServer() as redis_server, FakeSlack(token=TOKEN) as slack:
        env = {
            **os.environ,
            "REDIS_URL": redis_server.url,
            "CANARY_DEFAULT_NAMESPACE": NAMESPACE,
            "KUBECONFIG": str(write_kubeconfig(work / "kubeconfig", sandbox_url)),
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": f"{slack.url}/api/",
            "CANARY_HTTP_PORT": str(port),
            "CANARY_WORKERS": "16",
        }
        bot = subprocess.Popen(
            [str(Path(sys.executable).with_name("canary-bot")), "serve"],
            env=env,
            stderr=(work / "serve.log").open("w"),
        )
        try:
            _wait_for_port(port)
            figures = _load(Sender(port), slack, sandbox_url, rate, cold, count)
            figures |= _clicks(Sender(port), slack, sandbox_url, redis_server.url, clicks)
        finally:
            bot.terminate()
            bot.wait(timeout=30)
            sandbox.terminate()
            sandbox.wait()
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return {"rate_per_s": rate, "seconds": seconds, "load_avg_1m": load, **figures}


def _load(
    sender: Sender, slack: FakeSlack, sandbox_url: str, rate: int, cold: int, count: int
) -> dict[str, Any]:
    sent_at: dict[str, float] = {}
    acks: list[tuple[float, int, int]] = []  # (ms, command number, status)

    def send(i: int, due: float) -> None:
        time.sleep(max(0.0, due - time.monotonic()))
        name = service(i)
        sent_at[name] = time.time()
        ms, status = sender.post(command_body(name, 10, slack, f"cmd-{i}"))
        acks.append((ms, i, status))

    calls_before = api_calls(sandbox_url)
    start = time.monotonic() + 0.5
    with ThreadPoolExecutor(max_workers=32) as pool:
        for i in range(cold + count):
            pool.submit(send, i, start + i / rate)
    time.sleep(3)  # the work after the acks
    calls = api_calls(sandbox_url) - calls_before
    done = patches(sandbox_url)
    to_patch = [(done[s][0][0] - t) * 1000 for s, t in sent_at.items() if s in done]
    warm = sorted(a for a in acks if a[1] >= cold)
    ack50, ack99 = cuts([ms for ms, _, _ in warm])
    patch50, patch99 = cuts(to_patch)
    cold_ms = sorted(ms for ms, i, _ in acks if i < cold)
    return {
        "commands": cold + count,
        "non_200": sum(1 for _, _, status in acks if status != 200),
        "kube_calls_per_command": round(calls / (cold + count), 2),
        "cold_commands": cold,
        "cold_ack_p50_ms": round(statistics.median(cold_ms), 2) if cold_ms else None,
        "cold_ack_max_ms": round(cold_ms[-1], 2) if cold_ms else None,
        "ack_p50_ms": ack50,
        "ack_p99_ms": ack99,
        "ack_slowest_ms_at_s": [(round(ms, 1), round(i / rate, 2)) for ms, i, _ in warm[-8:]],
        "patched": len(to_patch),
        "command_to_patch_p50_ms": patch50,
        "command_to_patch_p99_ms": patch99,
    }


def _clicks(
    sender: Sender, slack: FakeSlack, sandbox_url: str, redis_url: str, clicks: int
) -> dict[str, Any]:
    store = RolloutStore(connect(redis_url))
    active = len(store.list_active())
    sent_at: dict[str, float] = {}
    for i in range(clicks):
        name = service(i)
        rollout = store.active_for(NAMESPACE, name)
        if rollout is None:
            continue
        sent_at[name] = time.time()
        sender.post(click_body(rollout.id, slack, f"click-{i}"))
        time.sleep(0.1)
    time.sleep(2)
    done = patches(sandbox_url)
    latencies = [
        (done[s][-1][0] - t) * 1000 for s, t in sent_at.items() if len(done.get(s, [])) >= 2
    ]
    p50, p99 = cuts(latencies)
    return {
        "active_rollouts": active,
        "clicks": len(latencies),
        "rollback_p50_ms": p50,
        "rollback_p99_ms": p99,
    }


def _wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the bot did not start listening")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--clicks", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = []
    for number in range(1, args.runs + 1):
        runs.append(run(args.rate, args.seconds, args.warmup, args.clicks))
        print(f"run {number}")
        for key, value in runs[-1].items():
            print(f"  {key:26} {value}")
    figures = {"date": f"{datetime.now(UTC):%Y-%m-%d}", "runs": runs, "spread": spread(runs)}
    print("spread over the runs (min, median, max)")
    for key, value in figures["spread"].items():
        print(f"  {key:26} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def spread(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    keys = ["ack_p50_ms", "ack_p99_ms", "cold_ack_max_ms", "command_to_patch_p99_ms"]
    keys += ["rollback_p99_ms"]
    found = {k: sorted(r[k] for r in runs if r.get(k) is not None) for k in keys}
    return {k: [v[0], statistics.median(v), v[-1]] for k, v in found.items() if v}


if __name__ == "__main__":
    main()
