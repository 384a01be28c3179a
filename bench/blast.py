"""Blast radius of a bad canary, and false rollbacks of healthy ones, in virtual time.

Seeded traffic is counted in 5-second ticks as Prometheus would count it (requests, 5xx,
Istio's latency buckets; Prometheus scrapes every 15 s at a phase of its own, so a look sees
the data of its last scrape, 5 to 15 s old), for a staged
rollout with the default steps (5, 10, 25, 50, 100 % every 5 minutes). The canary turns bad at
a random moment inside a random step below 100 %: extra 5xx (5, 2 or 1 %), or twice as slow
(p99 ×2). Three judges, on the same traffic:

- sequential: the judge of continuous analysis (bot/health/sequential.py) over the step so
  far, rolled back at the first failing look (its failures are final), each passed step's
  evidence carried into the next (`Carried.carry` on the passing verdict), as
  bot/rollout/analysis.py and the transitions do. Its looks are timed as the analyst times
  them: just after each scrape (`SETTLE`, 1 s, after it, plus half the analyst's 1-s tick on
  average), at most one a scrape and at least one per `--look` (10 s, `CANARY_ANALYSIS`);
  `--unaligned`: a look every `--look` seconds at a phase of its own, as before the analyst
  timed its looks (half a tick later on average, too);
- per step: today's fixed thresholds (bot/health/verdict.py) over the last 5 minutes when the
  step falls due, a failure retried a step later, rolled back after 2 failures;
- flagger: the same thresholds over the last minute, checked every 60 s, rolled back after 5
  failed checks (Flagger's interval and threshold), at the check after the fifth failure, as
  Flagger does: its scheduler (pkg/controller/scheduler.go, `advanceCanary`) compares the
  failed checks with the threshold before it runs the interval's analysis, so the rollback
  comes an interval after the failure that reached it.

Reported: seconds from onset to the canary at 0 %, and bad requests served (5xx above
stable's rate, or every slow canary request) until then; a bad canary promoted counts as
missed. False rollbacks: healthy rollouts (both versions alike, bursty low traffic) rolled
back, with a 95 % Wilson interval.

    python bench/blast.py [--runs 5] [--rollouts 100] [--healthy 1000] [--json F]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bot.health import sequential
from bot.health.verdict import Figures, Side, evaluate, outcome
from bot.rollout.analysis import SETTLE
from bot.rollout.model import NO_EVIDENCE, Carried, Verdict
from policies.model import HealthThresholds
from sandbox.traffic import ISTIO_DURATION_BUCKETS_MS

TICK = 5  # seconds of traffic counted at a time
SCRAPE = [3]  # ticks between Prometheus's scrapes (--scrape; 15 s in Istio's sample config)
STEPS = (5, 10, 25, 50, 100)
HOLD = 300 // TICK  # ticks a step is held (every 5m)
BOUNDS = (*ISTIO_DURATION_BUCKETS_MS, math.inf)
THRESHOLDS = HealthThresholds()
AT = datetime(2026, 1, 1, tzinfo=UTC)
BASE_ERRORS = 0.001


@dataclass(frozen=True)
class Behaviour:
    error_rate: float = BASE_ERRORS
    latency_ms: float = 50.0
    spread: float = 0.3

    def shares(self) -> np.ndarray:
        edges = np.array(ISTIO_DURATION_BUCKETS_MS)
        z = (np.log(edges) - math.log(self.latency_ms)) / (self.spread * math.sqrt(2))
        cdf = 0.5 * (1 + np.vectorize(math.erf)(z))
        shares = np.diff(np.concatenate(([0.0], cdf, [1.0])))
        return np.clip(shares, 0, None) / np.clip(shares, 0, None).sum()


@dataclass
class Ticks:
    """Per tick and version: requests, 5xx, bucket counts (non-cumulative)."""

    requests: list[np.ndarray]
    errors: list[np.ndarray]
    buckets: list[np.ndarray]
    phase: int = 0  # the scrapes fall after ticks phase, phase + SCRAPE[0], ...

    @classmethod
    def empty(cls, phase: int = 0) -> Ticks:
        return cls([], [], [], phase)

    def seen(self, tick: int) -> int:
        """Ticks a look at the end of `tick` sees: those before the last scrape. A scrape
        between two tick boundaries is taken at the earlier one, so data look 5, 10 or 15 s
        old (uniform over 0-15 s in truth: 2.5 s older on average than they would be)."""
        return tick - (tick - self.phase) % SCRAPE[0]

    def counts(self, start: int, end: int, version: int) -> sequential.Counts:
        start = max(start, 0)
        if end <= start:
            return sequential.Counts()
        n = float(sum(r[version] for r in self.requests[start:end]))
        x = float(sum(e[version] for e in self.errors[start:end]))
        b = np.cumsum(sum(bk[version] for bk in self.buckets[start:end]))
        return sequential.Counts(n, x, tuple(zip(BOUNDS, map(float, b), strict=True)))


class Traffic:
    """A rollout's traffic; the canary turns `bad` at second `onset` (None: never)."""

    def __init__(
        self,
        rng: np.random.Generator,
        rate: float,
        bad: Behaviour,
        onset: float | None,
        burst: float = 0.0,
        good: Behaviour = Behaviour(),
        phase: int = 0,
    ) -> None:
        self.rng, self.rate, self.bad, self.onset, self.burst = rng, rate, bad, onset, burst
        self.good, self.ticks = good, Ticks.empty(phase)
        self.bad_served = 0.0
        self._shares = {good: good.shares(), bad: bad.shares()}

    def serve(self, tick: int, weight: int) -> None:
        rng, seconds = self.rng, float(TICK)
        scale = rng.gamma(1 / self.burst, self.burst) if self.burst else 1.0
        total = int(rng.poisson(self.rate * seconds * scale))
        canary = int(rng.binomial(total, weight / 100))
        start = tick * TICK
        bad_part = 0.0 if self.onset is None else min(max(start + TICK - self.onset, 0), TICK)
        bad = int(rng.binomial(canary, bad_part / TICK))
        parts = ((canary - bad, self.good), (bad, self.bad), (total - canary, self.good))
        drawn = [self._draw(n, b) for n, b in parts]
        self.ticks.requests.append(np.array([canary, total - canary]))
        self.ticks.errors.append(np.array([drawn[0][0] + drawn[1][0], drawn[2][0]]))
        self.ticks.buckets.append(np.array([drawn[0][1] + drawn[1][1], drawn[2][1]]))
        self.bad_served += bad * self._badness()

    def linger(self, seconds: float, weight: int) -> None:
        """The bad requests the canary serves in `seconds` more at `weight`, as expected."""
        if self.onset is not None:
            self.bad_served += self.rate * seconds * weight / 100 * self._badness()

    def _badness(self) -> float:
        """How much of a bad canary request is bad: its extra 5xx, or all of it when slow."""
        if self.bad.error_rate > self.good.error_rate:
            return self.bad.error_rate - self.good.error_rate
        return 1.0 if self.bad.latency_ms > self.good.latency_ms else 0.0

    def _draw(self, n: int, behaviour: Behaviour) -> tuple[int, np.ndarray]:
        errors = int(self.rng.binomial(n, behaviour.error_rate))
        return errors, self.rng.multinomial(n, self._shares[behaviour])


# The judges: each says, at the end of a tick, "fail", "pass", "inconclusive" or None (no
# check now); `step_start` is the tick the step went live.

Judge = Callable[[Ticks, int, int, int], str | None]


LOOK = [2]  # ticks between the sequential judge's looks (--look seconds / TICK)
ALIGNED = [True]  # looks timed to the scrapes, as the analyst times them (--unaligned: not)
TICK_WAIT = 0.5  # seconds a look waits for the analyst's 1-s tick, on average


def late() -> float:
    """Seconds after the end of a tick that a look there decides, on average."""
    return SETTLE.total_seconds() + TICK_WAIT if ALIGNED[0] else TICK_WAIT


def sequential_look(ticks: Ticks, tick: int, step_start: int, carried: Carried) -> Verdict | None:
    end = tick + 1
    if ALIGNED[0]:  # just after a scrape: every scrape, or every few when --look is longer
        scrapes = max(1, LOOK[0] // SCRAPE[0])
        if (end - ticks.phase) % (SCRAPE[0] * scrapes):
            return None
        seen = end  # the scrape at this boundary counted every tick before it
    elif end % LOOK[0]:  # every 10 s by default, as CANARY_ANALYSIS
        return None
    else:
        seen = ticks.seen(tick)  # the last scrape's data
    canary, stable = ticks.counts(step_start, seen, 0), ticks.counts(step_start, seen, 1)
    at = AT + timedelta(seconds=(tick + 1) * TICK)
    return sequential.judge(canary, stable, THRESHOLDS, at=at, step=0, carried=carried)


def fixed(window: int) -> Callable[[Ticks, int], str]:
    def judge(ticks: Ticks, tick: int) -> str:
        seen = ticks.seen(tick)
        canary, stable = ticks.counts(seen - window, seen, 0), ticks.counts(seen - window, seen, 1)
        figures = Figures(canary=_side(canary), stable=_side(stable))
        return outcome(evaluate(figures, THRESHOLDS))

    return judge


def flaggers(ticks: Ticks, tick: int) -> str:
    """Flagger's own checks (pkg/metrics/observers/istio.go; thresholds and intervals from its
    Istio tutorial): the canary's success rate over the last minute at least 99 %, its p99
    over the last 30 s at most 500 ms; no value (no canary requests) fails the check, as
    Flagger's "no values found" does."""
    seen = ticks.seen(tick)
    minute, half = (
        ticks.counts(seen - 60 // TICK, seen, 0),
        ticks.counts(seen - 30 // TICK, seen, 0),
    )
    p99 = sequential.quantile(0.99, half.buckets)
    if minute.requests <= 0 or p99 is None:
        return "fail"
    healthy = 1 - minute.errors / minute.requests >= 0.99 and p99 <= 500.0
    return "pass" if healthy else "fail"


def _side(counts: sequential.Counts) -> Side:
    if counts.requests <= 0:
        return Side()
    return Side(counts.requests, counts.errors, sequential.quantile(0.99, counts.buckets))


@dataclass
class Result:
    rolled_back_at: float | None  # seconds into the rollout; None: promoted
    bad_served: float


def run_sequential(traffic: Traffic) -> Result:
    """Looks every 10 s; a step falls due after its hold and advances on a pass, whose
    evidence the next steps carry. A step's data begin at its start, after the data of the
    passing look before it (which saw them one scrape late)."""
    tick, carried = 0, NO_EVIDENCE
    for weight in STEPS:
        start, due = tick, tick + HOLD
        while True:
            traffic.serve(tick, weight)
            tick += 1
            verdict = sequential_look(traffic.ticks, tick - 1, start, carried)
            if verdict is None:
                continue
            if verdict.outcome == "fail":  # the judge's failures are final: rolled back at once
                traffic.linger(late(), weight)
                return Result(tick * TICK + late(), traffic.bad_served)
            if tick >= due:
                if verdict.outcome == "pass":
                    carried = carried.carry(verdict)
                    break
                due = tick + HOLD  # inconclusive: held again
    return Result(None, traffic.bad_served)


def run_fixed(
    traffic: Traffic,
    every: int,
    window: int,
    limit: int,
    *,
    at_next: bool = False,
    checks: Callable[[Ticks, int], str] | None = None,
) -> Result:
    """A check every `every` ticks, the thresholds over the last `window` (or `checks`);
    `limit` failures roll back, at once or (`at_next`) at the next check; a pass at the end
    of a step's hold advances."""
    judge = checks or fixed(window)
    tick, fails, step = 0, 0, 0
    start = 0
    while step < len(STEPS):
        traffic.serve(tick, STEPS[step])
        tick += 1
        if (tick - start) % every:
            continue
        if at_next and fails >= limit:
            return Result(tick * TICK, traffic.bad_served)
        verdict = judge(traffic.ticks, tick - 1)
        if verdict == "fail":
            fails += 1
            if fails >= limit and not at_next:
                return Result(tick * TICK, traffic.bad_served)
        elif verdict == "pass" and tick - start >= HOLD:
            step, start = step + 1, tick
            if every == HOLD:
                fails = 0
    return Result(None, traffic.bad_served)


JUDGES: dict[str, Callable[[Traffic], Result]] = {
    "sequential": run_sequential,
    "per step": lambda t: run_fixed(t, every=HOLD, window=HOLD, limit=2),
    "flagger": lambda t: run_fixed(
        t, every=60 // TICK, window=0, limit=5, at_next=True, checks=flaggers
    ),
    "flagger, our thresholds": lambda t: run_fixed(
        t, every=60 // TICK, window=60 // TICK, limit=5, at_next=True
    ),
}

SCENARIOS = {
    "5% errors": Behaviour(error_rate=BASE_ERRORS + 0.05),
    "2% errors": Behaviour(error_rate=BASE_ERRORS + 0.02),
    "1% errors": Behaviour(error_rate=BASE_ERRORS + 0.01),
    "p99 x2": Behaviour(latency_ms=100.0),
}


def blast(seed: int, rollouts: int, canary_rps: float) -> dict[str, dict[str, dict[str, Any]]]:
    """Per scenario and judge: median seconds to 0 %, median bad requests, misses."""
    figures: dict[str, dict[str, dict[str, Any]]] = {}
    for name, bad in SCENARIOS.items():
        figures[name] = {}
        plan = np.random.default_rng(seed)
        cases = [(int(plan.integers(0, 4)), float(plan.uniform(0, 300))) for _ in range(rollouts)]
        phases = np.random.default_rng([seed, 3]).integers(0, SCRAPE[0], rollouts)
        for judge, run in JUDGES.items():
            seconds, served, missed = [], [], 0
            for i, (step, into) in enumerate(cases):
                onset = step * 300 + into  # steps are held 5 minutes
                rate = canary_rps * 100 / STEPS[step]
                rng = np.random.default_rng([seed, i])
                traffic = Traffic(rng, rate, bad, onset, phase=int(phases[i]))
                result = run(traffic)
                if result.rolled_back_at is None or result.rolled_back_at < onset:
                    missed += result.rolled_back_at is None
                    continue
                seconds.append(result.rolled_back_at - onset)
                served.append(result.bad_served)
            figures[name][judge] = {
                "seconds": statistics.median(seconds) if seconds else None,
                "bad": statistics.median(served) if served else None,
                "missed": missed,
            }
    return figures


def false_rollbacks(seed: int, rollouts: int) -> dict[str, Any]:
    """Healthy rollouts (both at 0.5 % 5xx, alike latency), bursty, 2 canary rps at 5 %."""
    same = Behaviour(error_rate=0.005)
    figures = {}
    for judge, run in JUDGES.items():
        rolled = 0
        for i in range(rollouts):
            rng = np.random.default_rng([seed, 10_000 + i])
            traffic = Traffic(rng, 40.0, same, None, 1.0, good=same, phase=i % SCRAPE[0])
            rolled += run(traffic).rolled_back_at is not None
        low, high = wilson(rolled, rollouts)
        figures[judge] = {"rolled_back": rolled, "of": rollouts, "ci95": [low, high]}
    return figures


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rollouts", type=int, default=100, help="bad rollouts per scenario")
    parser.add_argument("--healthy", type=int, default=1000)
    parser.add_argument("--rps", type=float, nargs="*", default=[20.0, 2.0])
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--look", type=int, default=10, help="seconds between looks (a multiple of 5)"
    )
    parser.add_argument(
        "--scrape", type=int, default=15, help="Prometheus's scrape interval (a multiple of 5)"
    )
    parser.add_argument(
        "--unaligned", action="store_true", help="looks every --look s, not after each scrape"
    )
    parser.add_argument("--judges", nargs="*", default=list(JUDGES), choices=list(JUDGES))
    args = parser.parse_args()
    if args.look % TICK or args.look <= 0:
        parser.error(f"--look is a positive multiple of {TICK} seconds")
    if args.scrape % TICK or args.scrape <= 0:
        parser.error(f"--scrape is a positive multiple of {TICK} seconds")
    LOOK[0], SCRAPE[0], ALIGNED[0] = args.look // TICK, args.scrape // TICK, not args.unaligned
    for name in set(JUDGES) - set(args.judges):
        del JUDGES[name]
    began = time.monotonic()
    runs = []
    for seed in range(args.runs):
        run = {
            "blast": {f"{rps:g} rps": blast(seed, args.rollouts, rps) for rps in args.rps},
            "false_rollbacks": false_rollbacks(seed, args.healthy) if args.healthy else {},
        }
        runs.append(run)
        print(json.dumps(run))
    report = {
        "date": f"{datetime.now(UTC):%Y-%m-%d}",
        "runs": runs,
        "look_s": args.look,
        "scrape_s": args.scrape,
        "aligned": ALIGNED[0],
        "cpu_s": round(time.monotonic() - began, 1),
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
