"""Liveness: work that runs past its deadline means the replica is wedged, so /healthz fails.

A hung dependency does not crash the process; it parks a thread. The scheduler tells the
watchdog when each piece of work starts and ends, and the liveness probe asks it whether any
has run too long, so Kubernetes restarts a replica that stopped making progress.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

DEADLINE_S = 60.0


@dataclass(frozen=True)
class _Work:
    what: str
    started: float
    deadline_s: float

    def overdue(self, now: float) -> bool:
        return now - self.started > self.deadline_s


class Watchdog:
    """What work is running and since when, by a monotonic clock. Thread-safe."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, deadline_s: float = DEADLINE_S
    ) -> None:
        self.clock, self.deadline_s = clock, deadline_s
        self._running: dict[int, _Work] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    @contextmanager
    def busy(self, what: str, deadline_s: float | None = None) -> Iterator[None]:
        """Watch the work done inside the block: `with watchdog.busy("step 2 of weather"):`."""
        work = _Work(what, self.clock(), deadline_s or self.deadline_s)
        with self._lock:
            key = next(self._ids)
            self._running[key] = work
        try:
            yield
        finally:
            with self._lock:
                del self._running[key]

    def healthy(self, now: float) -> tuple[bool, str]:
        """(False, what is stuck and for how long) once any work is past its deadline."""
        with self._lock:
            stuck = [work for work in self._running.values() if work.overdue(now)]
        if not stuck:
            return True, "ok"
        return False, "; ".join(
            f"{work.what} has run {now - work.started:.0f} s, past its {work.deadline_s:g} s "
            "deadline"
            for work in stuck
        )
