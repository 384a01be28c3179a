"""Looks timed to Prometheus's scrapes: a look sees only what the last scrape counted, so the
next look falls just after a scrape (`SETTLE` after its timestamp), never a look between two
scrapes that would see nothing new; and whatever the timestamps say, no look storm and no
look later than the interval when they cannot be trusted."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from bot.app import Server, Settings
from bot.rollout.analysis import SETTLE, Analyst
from bot.rollout.model import StepPlan, Verdict
from sandbox.environment import playground

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCRAPE = timedelta(seconds=15)
PHASE = timedelta(seconds=7)  # Prometheus scrapes at 7 s, 22 s, 37 s, ... past T0


def last_scrape(now: datetime) -> datetime:
    """What the newest sample's timestamp is at `now`: the last scrape at or before it."""
    return T0 + PHASE + (now - T0 - PHASE) // SCRAPE * SCRAPE


class Looking(Analyst):
    """Looks every second of the scheduler's tick; each look's verdict carries `stamp(now)`."""

    def __init__(
        self,
        stamp: Any,
        *,
        every: timedelta = timedelta(seconds=10),
        scrape: timedelta | None = SCRAPE,
        own: int | None = None,
    ) -> None:
        self.now = T0
        held = SimpleNamespace(steps=StepPlan(interval_s=600, analysis_s=own))
        engine: Any = SimpleNamespace(
            clock=lambda: self.now, store=SimpleNamespace(load=lambda rollout_id: held)
        )
        schedule = {"r": T0 + timedelta(hours=1)}
        super().__init__(engine, lambda until: schedule.items(), every=every, scrape=scrape)
        self.stamp = stamp
        self.looks: list[tuple[float, datetime | None]] = []

    def look(self, rollout_id: str) -> Verdict:  # type: ignore[override]
        seen = self.stamp(self.now)
        self.looks.append(((self.now - T0).total_seconds(), seen))
        return Verdict(outcome="pass", at=self.now, step=0, data_at=seen)

    def tick_for(self, seconds: int) -> list[float]:
        for second in range(seconds):
            self.now = T0 + timedelta(seconds=second)
            self.run()
        return [at for at, _ in self.looks]


def test_looks_fall_just_after_each_scrape_and_each_sees_a_new_one() -> None:
    analyst = Looking(last_scrape)
    at = analyst.tick_for(120)
    # the first look finds the phase (at 0 s: the scrape at -8 s); then 1 s after each scrape
    assert at == [0, 8, 23, 38, 53, 68, 83, 98, 113]
    stamps = [seen for _, seen in analyst.looks]
    assert all(b == a + SCRAPE for a, b in itertools.pairwise(stamps[1:]))
    assert all(
        at_s - (seen - T0).total_seconds() == SETTLE.total_seconds()
        for at_s, seen in analyst.looks[1:]
        if seen is not None
    )


def test_without_a_scrape_interval_looks_keep_to_the_interval() -> None:
    analyst = Looking(last_scrape, scrape=None)
    assert analyst.tick_for(45) == [0, 10, 20, 30, 40]


def test_a_longer_interval_is_kept_to_and_each_look_still_falls_after_a_scrape() -> None:
    analyst = Looking(last_scrape, every=timedelta(seconds=30))
    assert analyst.tick_for(130) == [0, 23, 53, 83, 113]


def test_a_rollouts_own_interval_shorter_than_the_scrapes_looks_once_a_scrape() -> None:
    """`analysis 5s` with 15-s scrapes: two looks in three would see nothing new."""
    analyst = Looking(last_scrape, own=5)
    assert analyst.tick_for(60) == [0, 8, 23, 38, 53]


@pytest.mark.parametrize(
    ("why", "stamp"),
    [
        ("no data: no timestamp", lambda now: None),
        ("Prometheus's clock ahead of the bot's", lambda now: now + timedelta(seconds=30)),
        ("a store that stamps a result with the query's time", lambda now: now),
        ("scrapes stopped: the same timestamp at every look", lambda now: T0 - SCRAPE),
    ],
)
def test_a_timestamp_that_cannot_be_trusted_leaves_the_looks_on_the_interval(
    why: str, stamp: Any
) -> None:
    analyst = Looking(stamp)
    at = analyst.tick_for(60)
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert len(gaps) >= 4 and set(gaps[1:]) == {10}, why  # after the first look, whatever it


def test_a_canary_scraped_long_ago_brings_no_storm_of_looks() -> None:
    """A timestamp minutes old (the canary's pod gone from the targets, say), moving on once a
    while: each next look is still after this one, and never sooner than a scrape away."""
    analyst = Looking(lambda now: last_scrape(now) - timedelta(minutes=5), own=5)
    at = analyst.tick_for(90)
    assert len(at) == len(set(at))  # one look a tick at most
    assert all(b - a >= SCRAPE.total_seconds() for a, b in itertools.pairwise(at[1:]))


def test_the_scrape_interval_is_istios_sample_15_s_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CANARY_SCRAPE_INTERVAL", raising=False)
    assert Settings().scrape_s == 15
    monkeypatch.setenv("CANARY_SCRAPE_INTERVAL", "30")
    assert Settings().scrape_s == 30
    monkeypatch.setenv("CANARY_SCRAPE_INTERVAL", "-1")
    with pytest.raises(ValidationError, match="CANARY_SCRAPE_INTERVAL"):
        Settings()


@pytest.mark.parametrize(("seconds", "scrape"), [(30, timedelta(seconds=30)), (0, None)])
def test_the_bot_times_its_looks_to_the_scrape_interval_it_is_given(
    seconds: int, scrape: timedelta | None
) -> None:
    """0: looks on the interval alone."""
    with playground(PROMETHEUS_URL="http://127.0.0.1:9", CANARY_SCRAPE_INTERVAL=seconds) as play:
        server = Server(play.settings, serve_http=False)
        server.start()
        try:
            assert [a.scrape for a in server.analysts.values()] == [scrape]
        finally:
            server.stop()


def test_a_look_that_saw_a_scrape_within_its_settling_second_waits_for_the_next_one() -> None:
    """A look on the interval that fell 0.3 s after a scrape and saw it: the next scrape."""
    stamp = T0 + PHASE
    analyst = Looking(lambda now: stamp)
    looked = stamp + timedelta(seconds=0.3)
    verdict = Verdict(outcome="pass", at=looked, step=0, data_at=stamp)
    assert analyst._after("r", looked, timedelta(seconds=10), verdict) == stamp + SCRAPE + SETTLE


def test_a_clock_that_goes_back_does_not_stop_the_looks() -> None:
    """Looks set for a time the clock has gone back from are due at once, not half an hour on."""
    analyst = Looking(last_scrape)
    analyst.now = T0 + timedelta(minutes=30)
    analyst.run()
    analyst.now = T0  # the clock is set back half an hour
    analyst.run()
    assert [at for at, _ in analyst.looks] == [1800, 0]
