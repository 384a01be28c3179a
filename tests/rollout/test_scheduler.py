"""The step scheduler over APScheduler 3: one job per rollout, fired at its step's time.

Jobs run on real time: a step due "now" is one scheduled in the past, and a step that must not
run during a test is scheduled an hour ahead. Events say when a job ran; the job store lock
(taken by `scheduled`) says when the scheduler finished handing it out.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.rollout.scheduler import StepScheduler

WAIT_S = 30  # how long to wait for what must happen before calling it lost


class Fired:
    """The scheduler's callback: each (rollout, step) it was called with, and an event per
    rollout to wait on."""

    def __init__(self, fail: Callable[[str], bool] = lambda _: False) -> None:
        self.calls: list[tuple[str, int]] = []
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._fail = fail

    def __call__(self, rollout_id: str, step: int) -> None:
        with self._lock:
            self.calls.append((rollout_id, step))
            event = self._event(rollout_id)
        event.set()
        if self._fail(rollout_id):
            raise RuntimeError(f"the step of {rollout_id} failed")

    def _event(self, rollout_id: str) -> threading.Event:
        return self._events.setdefault(rollout_id, threading.Event())

    def wait(self, rollout_id: str) -> None:
        with self._lock:
            event = self._event(rollout_id)
        assert event.wait(WAIT_S), f"the step of {rollout_id} never ran"


class Counted:
    """A repeating job's callback: sets `reached` once it has run `times` times."""

    def __init__(self, times: int = 1) -> None:
        self.runs, self.times, self.reached = 0, times, threading.Event()

    def __call__(self) -> None:
        self.runs += 1
        if self.runs >= self.times:
            self.reached.set()


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def fired() -> Fired:
    return Fired()


@pytest.fixture
def scheduler(fired: Fired) -> Iterator[StepScheduler]:
    made = StepScheduler(fired, workers=2)
    yield made
    made.shutdown()


def test_a_due_step_fires_with_its_rollout_and_step_and_is_gone(
    scheduler: StepScheduler, fired: Fired
) -> None:
    scheduler.resume()
    scheduler.schedule("r1", now() - timedelta(seconds=1), 3)

    fired.wait("r1")

    assert scheduler.scheduled("r1") is None
    assert fired.calls == [("r1", 3)]


def test_a_future_step_is_listed_until_cancelled(scheduler: StepScheduler) -> None:
    at = now() + timedelta(hours=1)
    scheduler.schedule("r1", at, 2)

    assert scheduler.scheduled("r1") == (at, 2)
    assert scheduler.scheduled("r2") is None

    scheduler.cancel("r1")
    scheduler.cancel("r1")  # cancelling what is not there is no error
    scheduler.cancel("never-scheduled")

    assert scheduler.scheduled("r1") is None


def test_scheduling_a_rollout_again_replaces_its_step(scheduler: StepScheduler) -> None:
    first, later = now() + timedelta(hours=1), now() + timedelta(hours=2)
    scheduler.schedule("r1", first, 1)
    scheduler.schedule("r1", later, 2)
    scheduler.schedule("r2", first, 1)

    assert scheduler.scheduled("r1") == (later, 2)
    assert scheduler.scheduled("r2") == (first, 1)


def test_clear_drops_every_step_but_keeps_the_resync(scheduler: StepScheduler) -> None:
    resync = Counted()
    scheduler.every(3600, resync)
    for rollout in ("r1", "r2"):
        scheduler.schedule(rollout, now() + timedelta(hours=1), 1)

    scheduler.clear()
    scheduler.resume()

    assert scheduler.scheduled("r1") is None and scheduler.scheduled("r2") is None
    assert resync.reached.wait(WAIT_S), "the resync job was cleared too"


def test_every_runs_at_once_and_then_again_and_again(scheduler: StepScheduler) -> None:
    resync = Counted(times=3)
    scheduler.every(0.05, resync)
    scheduler.resume()

    assert resync.reached.wait(WAIT_S), f"the resync ran {resync.runs} times"


def test_every_replaces_the_resync_it_had(fired: Fired) -> None:
    old, new = Counted(), Counted()
    scheduler = StepScheduler(fired)
    scheduler.every(3600, old)
    scheduler.every(3600, new)
    scheduler.resume()

    assert new.reached.wait(WAIT_S)
    scheduler.shutdown()  # waits for every run it handed out: both were due at once

    assert (old.runs, new.runs) == (0, 1)


def test_a_step_a_day_late_runs_once_and_is_not_dropped(fired: Fired) -> None:
    scheduler = StepScheduler(fired)
    scheduler.schedule("r1", now() - timedelta(days=1), 4)
    scheduler.resume()

    fired.wait("r1")
    scheduler.shutdown()  # waits for every run it handed out

    assert fired.calls == [("r1", 4)]


def test_a_paused_scheduler_holds_due_steps_until_it_resumes(
    scheduler: StepScheduler, fired: Fired
) -> None:
    scheduler.schedule("r1", now() - timedelta(minutes=1), 1)  # it starts paused
    assert scheduler.scheduled("r1") is not None  # still there: it has not run

    scheduler.resume()
    fired.wait("r1")
    assert scheduler.scheduled("r1") is None  # handed out, so the scheduler is idle again

    scheduler.pause()
    scheduler.schedule("r2", now() - timedelta(minutes=1), 2)
    assert scheduler.scheduled("r2") is not None
    assert fired.calls == [("r1", 1)]

    scheduler.resume()
    fired.wait("r2")
    assert fired.calls == [("r1", 1), ("r2", 2)]


def test_a_failing_step_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fired = Fired(fail=lambda rollout: rollout == "r1")
    scheduler = StepScheduler(fired, workers=1)
    try:
        with caplog.at_level(logging.ERROR, logger="bot.rollout.scheduler"):
            scheduler.schedule("r1", now() - timedelta(seconds=2), 0)
            scheduler.schedule("r2", now() - timedelta(seconds=1), 0)
            scheduler.resume()
            fired.wait("r1")
            fired.wait("r2")
    finally:
        scheduler.shutdown()

    assert sorted(fired.calls) == [("r1", 0), ("r2", 0)]
    failed = [r for r in caplog.records if r.name == "bot.rollout.scheduler"]
    assert [r.getMessage() for r in failed] == ["step 0 of rollout r1 failed"]
    assert failed[0].exc_info is not None


@pytest.fixture
def thread_errors() -> Iterator[list[BaseException]]:
    """Exceptions that end a thread (the scheduler's own, say), instead of printing them."""
    errors: list[BaseException] = []
    before = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value or Exception())
    yield errors
    threading.excepthook = before


def test_shutdown_while_steps_are_being_handed_out_loses_no_bookkeeping(
    thread_errors: list[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """A plain APScheduler 3 shutdown at this moment kills its thread with a JobLookupError:
    it marks itself stopped while the job store still removes the date jobs it handed out."""
    for _ in range(5):
        fired = Fired()
        scheduler = StepScheduler(fired, workers=2)
        for n in range(300):
            scheduler.schedule(f"r{n}", now() - timedelta(seconds=1), 0)
        with caplog.at_level(logging.WARNING, logger="apscheduler"):
            scheduler.resume()
            fired.wait("r0")  # handing out has begun; hundreds are still to go
            scheduler.shutdown()

        runs = Counter(rollout for rollout, _ in fired.calls)
        assert runs and max(runs.values()) == 1
    assert thread_errors == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_shutdown_waits_for_a_step_that_is_running() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(rollout_id: str, step: int) -> None:
        started.set()
        release.wait(WAIT_S)
        finished.set()

    scheduler = StepScheduler(slow, workers=1)
    scheduler.schedule("r1", now(), 1)
    scheduler.resume()
    assert started.wait(WAIT_S), "the step never ran"
    finished_when_shut_down: list[bool] = []

    def shut_down() -> None:
        scheduler.shutdown()
        finished_when_shut_down.append(finished.is_set())

    stopper = threading.Thread(target=shut_down)
    stopper.start()
    release.set()
    stopper.join(WAIT_S)

    assert finished_when_shut_down == [True]


def test_a_step_that_schedules_its_next_one_while_the_scheduler_stops_lets_it_stop() -> None:
    """A step in flight at shutdown schedules the next (as every step does): shutting down
    must not wait for it while holding what it needs."""
    started, go_on, stopped = threading.Event(), threading.Event(), threading.Event()
    holder: list[StepScheduler] = []

    def step(rollout_id: str, step: int) -> None:
        started.set()
        go_on.wait(WAIT_S)
        holder[0].schedule(rollout_id, datetime.now(UTC) + timedelta(hours=1), step + 1)

    scheduler = StepScheduler(step)
    holder.append(scheduler)
    scheduler.resume()
    scheduler.schedule("r1", datetime.now(UTC) - timedelta(seconds=1), 0)
    assert started.wait(WAIT_S)
    stopping = threading.Thread(target=lambda: (scheduler.shutdown(), stopped.set()))
    stopping.start()
    go_on.set()
    assert stopped.wait(WAIT_S), "shutdown waited for ever on the step it blocked"
    stopping.join()
