"""`canary-bot demo` from start to end, as `make demo` runs it: real Redis, Prometheus, the
sandbox API server, the traffic simulator and the bot through the shell adapter."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from sandbox.demo import run_demo

pytestmark = pytest.mark.slow
TRAFFIC = re.compile(r"^ +(with x-beta: 1|all the others) +→ (.*)$", re.MULTILINE)


def went(line: str) -> dict[str, int]:
    """`v2 44, v3 5` → {"v2": 44, "v3": 5}."""
    pairs = [part.split() for part in line.split(", ")]
    return {version: int(count) for version, count in pairs}


def test_the_demo_promotes_v2_rolls_back_v3_and_routes_a_cohort(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_demo(out=out, charts=tmp_path) == 0
    text = out.getvalue()

    part1, rest = text.split("Part 2:")
    part2, part3 = rest.split("Part 3:")
    assert "weather promoted" in part1
    assert "weather back on v2" in part2
    assert "$ /canary weather cohort header x-beta=1 to v3" in part3
    assert "weather: cohort header x-beta=1 sent to v3" in part3
    status = part3.split("$ /canary weather status")[1].split("Requests in the last")[0]
    assert "cohort header x-beta=1 sent to v3" in status
    with_cohort, after_off = [
        dict((who, went(counts)) for who, counts in TRAFFIC.findall(block))
        for block in part3.split("$ /canary weather cohort off")
    ]
    assert set(with_cohort["with x-beta: 1"]) == {"v3"}
    assert set(with_cohort["all the others"]) == {"v2"}
    assert set(after_off["with x-beta: 1"]) == {"v2"}
    assert set(after_off["all the others"]) == {"v2"}
    assert len(list(tmp_path.glob("*.png"))) >= 2
