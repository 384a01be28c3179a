"""Continuous analysis: while a step is held, its canary is looked at every `every`.

A look runs the engine's health check on the held step. A failing judgement is that step's
health result, handled by the engine like the step-bound check's (recorded against the
record's version and the leader's fencing token; after `failure_limit` failures in a row the
rollout rolls back). A passing or inconclusive look decides nothing: the step advances only
when it falls due, on the check run then. The thread hears of a look only when its judgement
changes within the step (a failure is told by the engine, with the rollout's health report).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from bot.rollout.engine import Engine
from bot.rollout.model import HealthResult, Notify, Phase, Rollout, Target, Verdict

log = logging.getLogger(__name__)
DEFAULT_EVERY = timedelta(seconds=10)
Due = Callable[[datetime], Iterable[tuple[str, datetime]]]
Every = Callable[[Target], timedelta | None]


class Analyst:
    """Looks at held steps. `due(until)` lists (rollout id, next step) of scheduled rollouts.

    `every_for(target)` is a service's own interval (the policy's), None for `every`; zero
    means no looks. It is asked once per held step and remembered while the step is held.
    """

    def __init__(
        self,
        engine: Engine,
        due: Due,
        *,
        every: timedelta = DEFAULT_EVERY,
        every_for: Every | None = None,
    ) -> None:
        self.engine, self.due, self.every, self.every_for = engine, due, every, every_for
        self._looked: dict[str, datetime] = {}
        self._judged: dict[tuple[str, int], str] = {}
        self._every: dict[str, timedelta] = {}

    def run(self) -> None:
        """The scheduler's tick: a look at every held step not looked at for its interval."""
        now = self.engine.clock()
        held = [rollout_id for rollout_id, at in self.due(now + timedelta(days=2)) if at > now]
        self._forget(set(held))
        for rollout_id in held:
            last, every = self._looked.get(rollout_id), self._interval(rollout_id)
            if not every or (last is not None and now - last < every):
                continue
            self._looked[rollout_id] = now
            try:
                self.look(rollout_id)
            except Exception:  # one rollout's trouble must not stop the others' looks
                log.exception("look at rollout %s failed", rollout_id)

    def look(self, rollout_id: str) -> Verdict | None:
        """Judge one held step now; None when this process does not lead or nothing is held."""
        engine = self.engine
        token = engine.fencing()
        if token is None:
            return None
        rollout = engine.store.load(rollout_id)
        now = engine.clock()
        if not _held(rollout, now):
            return None
        verdict = engine.health.check(rollout, now)
        engine.metrics.verdict(verdict)
        if verdict.outcome == "fail":
            engine.handle(rollout_id, HealthResult(verdict=verdict), token=token)
        else:
            self._tell_change(rollout, verdict)
        return verdict

    def _interval(self, rollout_id: str) -> timedelta:
        """The rollout's own (`start … analysis 10s`), else its service's, else `every`."""
        if rollout_id not in self._every:
            try:
                self._every[rollout_id] = self._own(self.engine.store.load(rollout_id))
            except Exception:  # asked again at the next tick
                log.exception("could not read rollout %s", rollout_id)
                return timedelta(0)
        return self._every[rollout_id]

    def _own(self, rollout: Rollout) -> timedelta:
        if rollout.steps.analysis_s is not None:
            return timedelta(seconds=rollout.steps.analysis_s)
        own = None if self.every_for is None else self.every_for(rollout.target)
        return self.every if own is None else own

    def _tell_change(self, rollout: Rollout, verdict: Verdict) -> None:
        before = self._judged.get((rollout.id, rollout.step))
        self._judged[(rollout.id, rollout.step)] = verdict.outcome
        if before is None or before == verdict.outcome:
            return  # the step's first look, or nothing new: the thread has heard it
        text = f"{rollout.target.service} at {rollout.weight}%: now {verdict.outcome}: "
        try:
            self.engine.notifier.notify(
                rollout, Notify(event="analysis", text=text + verdict.summary)
            )
        except Exception:  # a chat outage must not stop the looks
            log.exception("could not post the judgement of rollout %s", rollout.id)

    def _forget(self, held: set[str]) -> None:
        self._looked = {k: v for k, v in self._looked.items() if k in held}
        self._judged = {k: v for k, v in self._judged.items() if k[0] in held}
        self._every = {k: v for k, v in self._every.items() if k in held}


def _held(rollout: Rollout, now: datetime) -> bool:
    """A step is live and waiting out its hold, with nothing else being done to it."""
    return (
        rollout.phase is Phase.PROGRESSING
        and rollout.next_step_at is not None
        and now < rollout.next_step_at
        and not rollout.pending
        and rollout.writing is None
    )
