"""Urgent work (rollback, abort, pause) has a lane of its own: nothing else can fill it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.chat.slack import URGENT_VERBS, Workers
from bot.ops.watchdog import Watchdog
from commands import Verb
from tests.support.harness import Bot, button_value


def blocked(release: threading.Event) -> Callable[[], None]:
    def job() -> None:
        release.wait(30)

    return job


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def fill(workers: Workers, release: threading.Event) -> int:
    """Submit jobs that wait for `release` until the normal lane refuses one; how many it took."""
    taken = 0
    while workers.submit(blocked(release)):
        taken += 1
    return taken


def test_the_urgent_verbs_are_rollback_abort_and_pause() -> None:
    assert frozenset({Verb.ROLLBACK, Verb.ABORT, Verb.PAUSE}) == URGENT_VERBS


def test_an_urgent_job_runs_while_the_normal_lane_is_full(release: threading.Event) -> None:
    workers = Workers(size=2, backlog=3)
    try:
        assert fill(workers, release) == 5
        ran = threading.Event()
        assert workers.submit(ran.set, urgent=True)
        assert ran.wait(10), "the urgent job waited behind the normal lane"
    finally:
        release.set()
        workers.shutdown()


def test_the_urgent_lane_is_bounded_too(release: threading.Event) -> None:
    workers = Workers(size=1, backlog=0, urgent=1)
    try:
        assert workers.submit(blocked(release), urgent=True)
        assert not workers.submit(blocked(release), urgent=True)
        ran = threading.Event()
        assert workers.submit(ran.set)
        assert ran.wait(10)
    finally:
        release.set()
        workers.shutdown()


# Through Slack: signed requests into the running bot while its normal lane is full


def canary_at_10(bot: Bot) -> dict[str, Any]:
    """Send 10% to the canary; its card, once posted."""
    assert bot.post(bot.command("weather 10%")) == 200
    bot.cluster.wait_for_request(lambda r: r.method == "PATCH" and r.succeeded)
    bot.slack.wait_for(
        lambda c: c.method in ("chat.postMessage", "chat.update") and "blocks" in c.body
    )
    [card] = bot.cards().values()
    bot.cluster.clear_log()
    return card


def wedge(bot: Bot, release: threading.Event) -> None:
    """Block every worker of the bot's normal lane, as hung `status` commands would, and fill
    its backlog: a rollback there would wait for `release`."""
    assert bot.server.slack is not None
    fill(bot.server.slack.workers, release)


def test_a_rollback_command_runs_while_the_normal_lane_is_full(
    bot: Bot, release: threading.Event
) -> None:
    canary_at_10(bot)
    wedge(bot, release)
    assert bot.post(bot.command("weather rollback")) == 200
    bot.cluster.wait_for_request(lambda r: r.method == "PATCH" and r.succeeded)
    assert bot.weights() == [100, 0]


def test_a_rollback_button_runs_while_the_normal_lane_is_full(
    bot: Bot, release: threading.Event
) -> None:
    card = canary_at_10(bot)
    wedge(bot, release)
    assert bot.post(bot.click("rollback", button_value(card, "rollback"))) == 200
    bot.cluster.wait_for_request(lambda r: r.method == "PATCH" and r.succeeded)
    assert bot.weights() == [100, 0]


def test_a_chat_job_stuck_past_its_deadline_turns_health_red_until_it_ends(
    release: threading.Event,
) -> None:
    now = [0.0]
    watchdog = Watchdog(lambda: now[0], deadline_s=60)
    workers = Workers(size=1, backlog=0, watchdog=watchdog)
    try:
        started = threading.Event()

        def stuck() -> None:
            started.set()
            release.wait(30)

        assert workers.submit(stuck)
        assert started.wait(10)
        assert watchdog.healthy(now[0]) == (True, "ok")
        now[0] = 61.0
        ok, why = watchdog.healthy(now[0])
        assert not ok and "a chat job (canary-work) has run 61 s" in why
        release.set()
    finally:
        release.set()
        workers.shutdown()
    assert watchdog.healthy(now[0]) == (True, "ok")
