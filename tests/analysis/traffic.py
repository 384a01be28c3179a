"""Seeded traffic in virtual time, counted as Prometheus counts it: requests, 5xx and
cumulative latency buckets per version since a moment. No clock, no sleeping."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bot.health.sequential import Counts
from sandbox.traffic import ISTIO_DURATION_BUCKETS_MS

BOUNDS = (*ISTIO_DURATION_BUCKETS_MS, math.inf)


@dataclass(frozen=True)
class Behaviour:
    """One version: its share of 5xx and a lognormal latency (median, sigma)."""

    error_rate: float = 0.005
    latency_ms: float = 50.0
    spread: float = 0.3

    def bucket_shares(self) -> np.ndarray:
        """Each bucket's share of the requests (non-cumulative)."""
        edges = [0.0, *ISTIO_DURATION_BUCKETS_MS]
        cdf = [_lognormal_cdf(e, self.latency_ms, self.spread) for e in edges[1:]]
        shares = np.diff([0.0, *cdf, 1.0])
        return np.clip(shares, 0.0, None) / np.clip(shares, 0.0, None).sum()


def _lognormal_cdf(x: float, median: float, sigma: float) -> float:
    if sigma == 0:
        return 1.0 if x >= median else 0.0
    return 0.5 * math.erfc(-(math.log(x) - math.log(median)) / (sigma * math.sqrt(2)))


@dataclass
class Tally:
    """A version's running totals since the tally was opened."""

    requests: int = 0
    errors: int = 0
    buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(BOUNDS), dtype=np.int64))

    def add(self, rng: np.random.Generator, count: int, behaviour: Behaviour) -> None:
        self.requests += count
        self.errors += int(rng.binomial(count, behaviour.error_rate))
        self.buckets += rng.multinomial(count, behaviour.bucket_shares())

    def counts(self) -> Counts:
        cumulative = np.cumsum(self.buckets)
        buckets = tuple((b, float(c)) for b, c in zip(BOUNDS, cumulative, strict=True))
        return Counts(requests=float(self.requests), errors=float(self.errors), buckets=buckets)


def serve(
    rng: np.random.Generator,
    seconds: int,
    *,
    rate: float,
    weight: float,
    canary: Behaviour,
    stable: Behaviour,
    tallies: tuple[Tally, Tally],
    burst: float = 0.0,
) -> None:
    """`seconds` of traffic at `rate` requests a second (each second's rate scaled by a
    gamma factor of mean 1 when `burst` > 0), `weight` percent of it to the canary."""
    for _ in range(seconds):
        scale = rng.gamma(1 / burst, burst) if burst > 0 else 1.0
        total = int(rng.poisson(rate * scale))
        to_canary = int(rng.binomial(total, weight / 100))
        tallies[0].add(rng, to_canary, canary)
        tallies[1].add(rng, total - to_canary, stable)
