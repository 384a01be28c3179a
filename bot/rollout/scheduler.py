"""APScheduler 3 behind a small interface: one date job per rollout, fired at its next step.

Only the leader runs jobs (APScheduler 3 cannot share a job store between schedulers). The
schedule is derived from Redis, never the other way round: on becoming leader the jobs are
rebuilt from the stored rollouts, and a resync job picks up rollouts that other processes
started or resumed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from bot.ops.watchdog import Watchdog

log = logging.getLogger(__name__)
RESYNC_JOB = "resync"
ANALYSIS_JOB = "analysis"  # continuous analysis: looks at the held steps
SHUTDOWN_WAIT_S = 20.0  # a step has every external call's deadline inside this


class StepScheduler:
    """Runs each rollout's next step at its time; the watchdog, if given, sees every job run."""

    def __init__(
        self,
        fire: Callable[[str, int], None],
        *,
        workers: int = 8,
        watchdog: Watchdog | None = None,
    ) -> None:
        self._fire = fire
        self.watchdog = watchdog
        self._running = 0  # jobs in flight, for shutdown to wait on
        self._idle = threading.Condition()
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(workers)},
            # A step that is late runs at once, however late (never dropped), and only once.
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self._scheduler.start(paused=True)

    def resume(self) -> None:
        self._scheduler.resume()

    def pause(self) -> None:
        self._scheduler.pause()

    def shutdown(self, timeout: float = SHUTDOWN_WAIT_S) -> None:
        """Stop handing out steps, then wait (up to `timeout`) for those in flight.

        APScheduler marks itself stopped before taking its job store lock, so a run it is
        handing out at that moment fails to remove its date job; pausing, then taking the lock
        (get_jobs), lets that bookkeeping finish first. Its own `shutdown(wait=True)` waits for
        the running jobs while holding that lock, so a step still scheduling its next one
        would wait for it for ever: the jobs in flight are waited for here instead.
        """
        self._scheduler.pause()
        self._scheduler.get_jobs()
        self._scheduler.shutdown(wait=False)
        with self._idle:
            if not self._idle.wait_for(lambda: self._running == 0, timeout):
                log.warning("stopped with %d steps still running", self._running)

    def schedule(self, rollout_id: str, at: datetime, step: int) -> None:
        self._scheduler.add_job(
            self._run,
            "date",
            run_date=at,
            args=[rollout_id, step],
            id=rollout_id,
            replace_existing=True,
        )

    def cancel(self, rollout_id: str) -> None:
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(rollout_id)

    def scheduled(self, rollout_id: str) -> tuple[datetime, int] | None:
        job = self._scheduler.get_job(rollout_id)
        if job is None or job.next_run_time is None:
            return None
        return job.next_run_time, int(job.args[1])

    def clear(self) -> None:
        for job in self._scheduler.get_jobs():
            if job.id not in (RESYNC_JOB, ANALYSIS_JOB):
                job.remove()

    def every(self, seconds: float, fn: Callable[[], None], *, job: str = RESYNC_JOB) -> None:
        self._scheduler.add_job(
            lambda: self._watched(job, fn),
            "interval",
            seconds=seconds,
            id=job,
            replace_existing=True,
            next_run_time=datetime.now(UTC),
        )

    def _run(self, rollout_id: str, step: int) -> None:
        self._watched(f"step {step} of rollout {rollout_id}", lambda: self._fire(rollout_id, step))

    def _watched(self, what: str, fn: Callable[[], None]) -> None:
        with self._idle:
            self._running += 1
        try:
            with self._busy(what):
                fn()
        except Exception:  # a failed step is reported and retried by the resync, not lost
            log.exception("%s failed", what)
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def _busy(self, what: str) -> AbstractContextManager[None]:
        return contextlib.nullcontext() if self.watchdog is None else self.watchdog.busy(what)
