"""The long fault campaign: thousands of seeded schedules against the write path's guarantees.

Each schedule interleaves, by its seed, two replicas of the engine, humans on either (sometimes
at once), the leader's steps, the lease moving, a replica frozen right before or after a write,
500s, 409 storms, hand edits and Redis resets, on the sandbox API server and a real Redis; then
checks the invariants on everything that happened (tests/support/campaign.py). Prints every
failing seed with its replay line, and writes the totals to BENCHMARKS.md.

    python bench/chaos.py [--schedules 10000] [--first 0] [--length 24] [--no-write]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.redis_server import RedisServer
from tests.support.campaign import World, describe, run_schedule

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"


def main() -> int:
    args = _arguments()
    logging.basicConfig(level=logging.CRITICAL)
    failures: list[str] = []
    ops = 0
    started = time.monotonic()
    with RedisServer() as redis_server:
        world = World(redis_server.url)
        try:
            for index, seed in enumerate(range(args.first, args.first + args.schedules), 1):
                history, problems = run_schedule(world, seed, args.length)
                ops += len(history.ops)
                if problems:
                    failures.append(describe(history, problems))
                    print(failures[-1], flush=True)
                if index % 500 == 0:
                    print(f"{index} schedules, {len(failures)} failing", flush=True)
        finally:
            world.close()
    seconds = time.monotonic() - started
    summary = _summary(args, ops, failures, seconds)
    print(summary)
    if not args.no_write:
        _write(summary)
    return 1 if failures else 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--length", type=int, default=24, help="operations per schedule")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    return parser.parse_args()


def _summary(args: argparse.Namespace, ops: int, failures: list[str], seconds: float) -> str:
    last = args.first + args.schedules - 1
    return "\n".join(
        (
            f"schedules            {args.schedules} (seeds {args.first}..{last})",
            f"operations           {ops} ({args.length} per schedule)",
            f"invariant violations {len(failures)}",
            f"wall time            {seconds:.0f} s ({seconds / args.schedules * 1000:.0f} ms a "
            "schedule)",
        )
    )


def _write(summary: str) -> None:
    day = datetime.now(UTC).date().isoformat()
    section = (
        f"{BEGIN}\n```\n{summary}\n```\n\n`python bench/chaos.py` (`make chaos`), {day}.\n{END}"
    )
    text = BENCHMARKS.read_text(encoding="utf-8")
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text += f"\n## bench/chaos.py\n\n{section}\n"
    BENCHMARKS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
