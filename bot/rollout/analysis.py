"""Continuous analysis: while a step is held, its canary is looked at every `every`.

A look runs the engine's health check on the held step. A failing judgement is that step's
health result, handled by the engine like the step-bound check's (recorded against the
record's version and the leader's fencing token; after `failure_limit` failures in a row the
rollout rolls back). A passing or inconclusive look decides nothing: the step advances only
when it falls due, on the check run then. The thread hears of a look only when its judgement
changes within the step (a failure is told by the engine, with the rollout's health report).

Looks are timed to Prometheus's scrapes. A look sees only what the last scrape counted, so a
look just before a scrape waits a whole interval to see what a look just after it would. When
a judgement says when the canary was last scraped (`Verdict.data_at`, the newest sample's
timestamp), the next look falls `SETTLE` after a later scrape: the last one due by the time
the interval asks for, or if none is, the first one after this look (a look between two
scrapes would see nothing new). Without that (no data, a timestamp ahead of the bot's clock or
at the query's own time, or no newer than the last look's: the scrape was late), the next look
is an interval later.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from bot.rollout.engine import Engine
from bot.rollout.model import HealthResult, Notify, Phase, Rollout, Target, Verdict

log = logging.getLogger(__name__)
DEFAULT_EVERY = timedelta(seconds=10)
# Prometheus's scrape interval for the mesh's pods (15 s in Istio's sample configuration)
DEFAULT_SCRAPE = timedelta(seconds=15)
SETTLE = timedelta(seconds=1)  # after a scrape's timestamp, for its samples to be queryable
EVALUATED = timedelta(milliseconds=1)  # a "scrape" this close to the query's time is the query's
Due = Callable[[datetime], Iterable[tuple[str, datetime]]]
Every = Callable[[Target], timedelta | None]


class Analyst:
    """Looks at held steps. `due(until)` lists (rollout id, next step) of scheduled rollouts.

    `every_for(target)` is a service's own interval (the policy's), None for `every`; zero
    means no looks. It is asked once per held step and remembered while the step is held.
    `scrape` is Prometheus's scrape interval, which the looks are timed to; None: looks on the
    interval alone.
    """

    def __init__(
        self,
        engine: Engine,
        due: Due,
        *,
        every: timedelta = DEFAULT_EVERY,
        every_for: Every | None = None,
        scrape: timedelta | None = DEFAULT_SCRAPE,
    ) -> None:
        self.engine, self.due, self.every, self.every_for = engine, due, every, every_for
        self.scrape = scrape if scrape else None
        self._next: dict[str, datetime] = {}
        self._seen: dict[str, datetime] = {}  # when the canary was last scraped, as last seen
        self._judged: dict[tuple[str, int], str] = {}
        self._every: dict[str, timedelta] = {}

    def run(self) -> None:
        """The scheduler's tick: a look at every held step whose next look is due."""
        now = self.engine.clock()
        held = [rollout_id for rollout_id, at in self.due(now + timedelta(days=2)) if at > now]
        self._forget(set(held))
        for rollout_id in held:
            due, every = self._next.get(rollout_id), self._interval(rollout_id)
            if not every or (due is not None and now < due <= now + self._furthest(every)):
                continue  # (a look due further off than any can be: the clock went back)
            self._next[rollout_id] = now + every  # if the look raises
            try:
                verdict = self.look(rollout_id)
            except Exception:  # one rollout's trouble must not stop the others' looks
                log.exception("look at rollout %s failed", rollout_id)
                continue
            self._next[rollout_id] = self._after(rollout_id, now, every, verdict)

    def _furthest(self, every: timedelta) -> timedelta:
        """The furthest off a next look can be set: an interval and a scrape, settled."""
        return every + (self.scrape or timedelta(0)) + SETTLE

    def _after(
        self, rollout_id: str, looked: datetime, every: timedelta, verdict: Verdict | None
    ) -> datetime:
        """When to look next: just after a scrape, as the module says, else `every` on."""
        stamp = None if verdict is None else verdict.data_at
        before = self._seen.get(rollout_id)
        if stamp is not None:
            self._seen[rollout_id] = stamp
        late = before is not None and stamp is not None and stamp <= before
        if self.scrape is None or stamp is None or verdict is None or late:
            return looked + every
        if stamp > min(looked, verdict.at - EVALUATED):  # not a scrape's: ahead of our clock,
            return looked + every  # or the query's own time (a store that stamps results so)
        scrape = self.scrape
        # the first scrape after this look that it cannot have seen (never the one it saw)
        first = max(1, math.floor((looked - SETTLE - stamp) / scrape) + 1)
        asked = math.floor((looked + every - SETTLE - stamp) / scrape)  # the last one by then
        return stamp + max(first, asked) * scrape + SETTLE

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
        self._next = {k: v for k, v in self._next.items() if k in held}
        self._seen = {k: v for k, v in self._seen.items() if k in held}
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
