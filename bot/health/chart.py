"""The end-of-rollout chart: the canary's weight step by step, and canary vs stable success rate
and p99 over the rollout's life with the hard limits they were judged against.

Drawn from the figures each health check kept on the rollout record, so it costs no query.
Uses matplotlib's object API on the Agg canvas: no display, no global pyplot state. Drawing
holds the GIL for a second or more (4.5 s on a loaded replica), long enough to starve the
leader's lease renewal, so the bot draws in a child process (`chart_png_isolated`).
"""

from __future__ import annotations

import io
import math
import subprocess
import sys
from typing import TYPE_CHECKING

from bot.rollout.model import Rollout, Verdict

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DRAW_DEADLINE_S = 30.0
COLOURS = {"canary": "#d9534f", "stable": "#337ab7"}
MARKERS = {"pass": "o", "fail": "X", "inconclusive": "s"}
LIMIT_COLOUR = "#555555"


class ChartError(Exception):
    """The chart could not be drawn, or not in time."""


def chart_png_isolated(rollout: Rollout, *, deadline_s: float = DRAW_DEADLINE_S) -> bytes:
    """`chart_png(rollout)`, drawn in a child process that is killed at the deadline."""
    try:
        drawn = subprocess.run(
            [sys.executable, "-m", "bot.health.chart"],
            input=rollout.model_dump_json().encode(),
            capture_output=True,
            timeout=deadline_s,
            check=True,
        )
    except subprocess.TimeoutExpired as e:
        raise ChartError(f"drawing the chart took more than {deadline_s:g} s") from e
    except subprocess.CalledProcessError as e:
        lines = e.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        raise ChartError(f"drawing the chart failed: {lines[-1]}") from e
    except OSError as e:
        raise ChartError(f"could not start drawing the chart: {e}") from e
    return drawn.stdout


def chart_png(rollout: Rollout) -> bytes:
    # matplotlib costs about 50 MB and 0.2 s to import: load it when a rollout ends, not at
    # start-up in every replica.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=(8, 7.5), dpi=100)
    FigureCanvasAgg(figure)
    weight, success, latency = figure.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": (1, 2, 2)}
    )
    verdicts = [v for v in rollout.verdicts if v.figures]
    start = rollout.created_at
    times = [(v.at - start).total_seconds() for v in verdicts]
    _staircase(weight, rollout)
    for side in ("canary", "stable"):
        _plot(success, times, verdicts, f"{side}_success_rate", side)
        _plot(latency, times, verdicts, f"{side}_p99_ms", side)
    _limit(success, times, verdicts, "min_success_rate", "min success rate")
    _limit(latency, times, verdicts, "max_p99_ms", "max p99")
    weight.set_ylabel("canary weight (%)")
    success.set_ylabel("success rate (%)")
    latency.set_ylabel("p99 latency (ms)")
    latency.set_xlabel("seconds since the rollout started")
    success.legend(loc="lower left")
    target = rollout.target
    figure.suptitle(
        f"{target.service}: {target.stable} → {target.canary}, "
        f"{rollout.phase.value} at {rollout.weight}%"
    )
    for axes in (weight, success, latency):
        axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _plot(axes: Axes, times: list[float], verdicts: list[Verdict], key: str, side: str) -> None:
    points = [(t, v.figures.get(key), v.outcome) for t, v in zip(times, verdicts, strict=True)]
    shown = [(t, y, o) for t, y, o in points if y is not None and math.isfinite(y)]
    xs, ys = [t for t, _, _ in shown], [y for _, y, _ in shown]
    axes.plot(xs, ys, color=COLOURS[side], label=side, linewidth=1.5)
    for t, y, outcome in shown:
        axes.scatter([t], [y], color=COLOURS[side], marker=MARKERS[outcome])


def staircase(rollout: Rollout) -> list[tuple[float, int]]:
    """(seconds since the start, canary weight): the weight at each check (its step's), then
    where the rollout ended."""
    start, weights = rollout.created_at, rollout.steps.weights
    points = [
        ((v.at - start).total_seconds(), weights[v.step])
        for v in rollout.verdicts
        if 0 <= v.step < len(weights)
    ]
    return [*points, ((rollout.updated_at - start).total_seconds(), rollout.weight)]


def _staircase(axes: Axes, rollout: Rollout) -> None:
    points = staircase(rollout)
    xs, ys = [t for t, _ in points], [w for _, w in points]
    axes.step(xs, ys, where="post", color=COLOURS["canary"], linewidth=1.5)
    axes.set_ylim(-5, 105)


def _limit(axes: Axes, times: list[float], verdicts: list[Verdict], key: str, label: str) -> None:
    """The hard limit each check was judged against (a flat line unless the policy changed)."""
    shown = [(t, v.figures.get(key)) for t, v in zip(times, verdicts, strict=True)]
    points = [(t, y) for t, y in shown if y is not None and math.isfinite(y)]
    if points:
        axes.step(
            [t for t, _ in points],
            [y for _, y in points],
            where="post",
            label=label,
            color=LIMIT_COLOUR,
            linestyle="--",
            linewidth=1.0,
        )
        axes.legend(loc="lower left")


def main() -> None:
    """Read a rollout as JSON on stdin, write its chart as PNG on stdout."""
    sys.stdout.buffer.write(chart_png(Rollout.model_validate_json(sys.stdin.buffer.read())))


if __name__ == "__main__":
    main()
