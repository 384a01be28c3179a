"""`canary-bot demo` from start to end, as `make demo` runs it: real Redis, Prometheus, the
sandbox API servers (the bot's and the wave's two clusters), the traffic simulators and the bot
through the shell adapter. The demo runs once; each test reads its own parts of what it showed."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import pytest

from sandbox.demo import run_demo

# The demo walks its rollouts in real time (about a minute and a half, the wave's 17 s in it),
# inside whichever test asks for it first: the suite's 120 s guard against a hang is too close.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
TRAFFIC = re.compile(r"^ +(with x-beta: 1|all the others) +→ (.*)$", re.MULTILINE)
ROUTES = re.compile(r"^ +(canary-eu|prod-eu) +→ (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Shown:
    parts: dict[str, str]  # what the demo printed, by part: "1" is from "Part 1:" on
    charts: int  # the charts it saved


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> Shown:
    charts = tmp_path_factory.mktemp("charts")
    out = io.StringIO()
    assert run_demo(out=out, charts=charts) == 0
    _, *split = re.split(r"^Part (\d):", out.getvalue(), flags=re.MULTILINE)
    parts = dict(zip(split[::2], split[1::2], strict=True))
    return Shown(parts, len(list(charts.glob("*.png"))))


def went(line: str) -> dict[str, int]:
    """`v2 44, v3 5` → {"v2": 44, "v3": 5}."""
    pairs = [part.split() for part in line.split(", ")]
    return {version: int(count) for version, count in pairs}


def test_the_demo_promotes_v2_rolls_back_v3_and_routes_a_cohort(shown: Shown) -> None:
    part1, part2, part3 = (shown.parts[n] for n in "123")
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
    assert shown.charts >= 4  # two rollouts here, one on each cluster of the wave


def test_the_demo_promotes_a_wave_on_canary_eu_then_on_prod_eu(shown: Shown) -> None:
    part4 = shown.parts["4"]
    assert "$ /canary weather start to v2 clusters canary-eu,prod-eu steps 50,100 every 4s" in part4
    lines = part4.splitlines()

    def first(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    canary_eu_started = first("cluster: canary-eu (wave: canary-eu → prod-eu)")
    canary_eu_promoted = first("[canary-eu] weather promoted: v2 now takes all traffic")
    prod_eu_started = first("cluster: prod-eu (wave: canary-eu ✓ → prod-eu)")
    prod_eu_promoted = first("[prod-eu] weather promoted: v2 now takes all traffic")
    assert canary_eu_started < canary_eu_promoted < prod_eu_started < prod_eu_promoted
    assert first("[prod-eu] ") > canary_eu_promoted  # nothing on prod-eu before that
    for cluster in ("canary-eu", "prod-eu"):
        assert f"↳ [{cluster}] weather: 100% to v2 (step 2 of 2)" in part4
        # the check's table, led by the cluster, as the shell shows every check
        assert re.search(rf"^    \[{cluster}\] ✅ health check at step 1: pass", part4, re.M)
    assert "The wave is done: weather promoted on canary-eu, then prod-eu." in part4
    routes = part4.split("The VirtualService weather as each cluster's API server has it now:")[1]
    assert dict(ROUTES.findall(routes)) == {"canary-eu": "v2 100%", "prod-eu": "v2 100%"}
