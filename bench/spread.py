"""Run one benchmark several times and print the spread of each of its figures.

    python bench/spread.py [--runs 5] bench/apply.py [its arguments...]

Each run writes its figures with `--json`; every numeric figure is shown as
min / median / max over the runs, next to the values of each run, so a claim in BENCHMARKS.md
can be checked against what this machine does today.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("bench", type=Path)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    runs = [_run(args.bench, args.args) for _ in range(args.runs)]
    print(f"{args.bench} {' '.join(args.args)}: {args.runs} runs (min / median / max; each run)")
    for key, values in _numbers(runs).items():
        low, mid, high = min(values), statistics.median(values), max(values)
        each = ", ".join(_show(v) for v in values)
        print(f"  {key:34} {_show(low)} / {_show(mid)} / {_show(high)}   [{each}]")
    return 0


def _run(bench: Path, args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        out = Path(workdir) / "figures.json"
        subprocess.run([sys.executable, str(bench), *args, "--json", str(out)], check=True)
        figures: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return figures


def _numbers(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Every numeric figure, flattened (`section.figure`), in the order of the first run."""
    flat = [_flatten(run) for run in runs]
    return {key: [f[key] for f in flat if key in f] for key in flat[0]}


def _flatten(figures: dict[str, Any], prefix: str = "") -> dict[str, float]:
    found: dict[str, float] = {}
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found |= _flatten(value, f"{name}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found[name] = float(value)
    return found


def _show(value: float) -> str:
    return f"{value:.0f}" if value == int(value) and abs(value) >= 100 else f"{value:.3g}"


if __name__ == "__main__":
    raise SystemExit(main())
