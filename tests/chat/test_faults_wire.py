"""Faults the first testers found, replayed over the wire: signed HTTP into running replicas,
the sandbox API server failing on cue, a real Redis, the fake Slack Web API."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
import redis

from bot.app import Server
from bot.mesh.kube import TRANSIENT_TRIES
from bot.rollout.model import Notify
from tests.support.harness import Bot, responses_to, wait_until


def replies(bot: Bot, count: int) -> list[str]:
    wait_until(lambda: len(responses_to(bot, "cmd")) >= count)
    return responses_to(bot, "cmd")


def vs_patches(bot: Bot) -> list[int]:
    return [
        r.status
        for r in bot.cluster.requests
        if r.method == "PATCH" and "virtualservices" in r.path
    ]


def test_a_human_write_the_api_refuses_is_not_shown_as_live(bot: Bot) -> None:
    bot.post(bot.command("weather 10%"))
    wait_until(lambda: bot.weights() == [90, 10])
    # Every try of the write fails; the check whether it landed (a read and a fence) works.
    bot.cluster.fail_next(TRANSIENT_TRIES, 500, method="PATCH", path_contains="virtualservices")
    bot.post(bot.command("weather 25%"))
    told = replies(bot, 1)[-1]
    assert "could not set 25%" in told and "the canary has 10%" in told
    bot.post(bot.command("weather status"))
    status = replies(bot, 2)[-1]
    assert "10% to v2" in status and "setting 25%" not in status
    record = bot.server.parts.store.active_for("default", "weather")
    assert record is not None and record.weight == 10 and record.writing is None
    assert bot.weights() == [90, 10]


def test_a_write_whose_fate_is_unknown_is_shown_as_not_yet_live(bot: Bot) -> None:
    bot.post(bot.command("weather 10%"))
    wait_until(lambda: bot.weights() == [90, 10])
    bot.cluster.fail_next(100, 500, method="PATCH", path_contains="virtualservices")
    bot.post(bot.command("weather 25%"))
    told = replies(bot, 1)[-1]
    assert "could not set 25%" in told and "whether it went live is not known yet" in told
    bot.post(bot.command("weather status"))
    assert "10% to v2 (setting 25%, not yet live)" in replies(bot, 2)[-1]
    bot.cluster.clear_faults()
    bot.post(bot.command("weather 10%"))  # the next change settles the unknown write first
    store = bot.server.parts.store
    wait_until(lambda: getattr(store.active_for("default", "weather"), "writing", 0) is None)
    bot.post(bot.command("weather status"))
    status = replies(bot, 3)[-1]
    assert "10% to v2" in status and "setting 25%" not in status
    assert bot.weights() == [90, 10]


def hand_edit(bot: Bot) -> None:
    """Someone sets 65/35 by hand right after the bot reads the VirtualService."""

    def edit(vs: dict[str, Any]) -> None:
        route = vs["spec"]["http"][0]["route"]
        route[0]["weight"], route[1]["weight"] = 65, 35

    bot.cluster.after_next_get("default", "virtualservices", "weather", edit)


def conflict_storm(bot: Bot) -> None:
    bot.cluster.conflict_next(TRANSIENT_TRIES, method="PATCH", path_contains="virtualservices")


@pytest.mark.parametrize(
    ("fault", "live", "told"),
    [
        (hand_edit, [65, 35], "nothing was overwritten"),
        (conflict_storm, [90, 10], "answered 409"),
    ],
)
def test_a_change_refused_for_a_conflict_is_not_applied_by_the_next_leader(
    bot: Bot, fault: Callable[[Bot], None], live: list[int], told: str
) -> None:
    bot.post(bot.command("weather 10%"))
    wait_until(lambda: bot.weights() == [90, 10])
    fault(bot)
    bot.post(bot.command("weather 25%"))
    assert told in replies(bot, 1)[-1]
    bot.server.stop()  # a crash and a new leader: its recovery pass sees the record
    bot.cluster.clear_log()
    successor = Server(bot.server.settings)
    successor.start()
    try:
        wait_until(lambda: successor.resyncs >= 1)  # elected, and its recovery pass has run
        assert [s for s in vs_patches(bot) if s < 300] == []
        assert bot.weights() == live
        record = successor.parts.store.active_for("default", "weather")
        assert record is not None and record.weight == live[1] and record.pending == ()
    finally:
        successor.stop()


def test_twenty_people_at_once_on_two_replicas_are_each_told_what_happened(bot: Bot) -> None:
    """Each asker whose weight went live is told nothing but the card (and is in the audit
    under their name); each who was refused is told why (and is not); every PATCH that landed
    has exactly one audit entry; the record ends where the VirtualService is."""
    other = Server(bot.server.settings.model_copy(update={"http_port": 0}))
    other.start()
    replicas = (bot, Bot(other, bot.slack, bot.cluster))
    askers = {f"U{i:02d}": 5 * (i % 19) + 5 for i in range(20)}
    posts = [
        threading.Thread(
            target=replicas[i % 2].post,
            args=(command_with_own_reply_url(bot, user, f"weather {weight}%"),),
        )
        for i, (user, weight) in enumerate(askers.items())
    ]
    try:
        for post in posts:
            post.start()
        for post in posts:
            post.join(30)
        for replica in replicas:
            replica.drain()
    finally:
        other.stop()
    store = bot.server.parts.store
    sets = [e for e in store.history("default", "weather", count=100) if e.action == "set-weight"]
    landed = [s for s in vs_patches(bot) if s < 300]
    assert len(landed) == len(sets)  # every live change audited exactly once
    for user, weight in askers.items():
        told = responses_to(bot, f"cmd-{user}")
        audited = [e for e in sets if e.actor == user]
        if told:  # refused, and why: nothing of theirs went live
            assert audited == [], (user, told)
        else:  # their weight went live, under their name
            assert [(e.weight_after) for e in audited] == [weight], user
    record = store.active_for("default", "weather")
    assert record is not None and record.weight == bot.weights()[1] and record.writing is None
    assert any(not responses_to(bot, f"cmd-{user}") for user in askers)  # some went live


def command_with_own_reply_url(bot: Bot, user: str, text: str) -> str:
    fields = dict(urllib.parse.parse_qsl(bot.command(text, user=user)))
    fields["response_url"] = bot.slack.response_url(f"cmd-{user}")
    return urllib.parse.urlencode(fields)


def test_a_busy_service_does_not_keep_a_new_leader_from_the_others_unfinished_work(
    bot: Bot,
) -> None:
    """Three rollouts with bookkeeping left unfinished by a crash; the service of the first the
    new leader looks at is held by a writer that froze: the other two are finished at once."""
    vs = bot.cluster.get_object("default", "virtualservices", "weather")
    assert vs is not None
    for name in ("weather-b", "weather-c"):
        copy = json.loads(json.dumps(vs))
        copy["metadata"] = {"name": name, "namespace": "default"}
        bot.cluster.put_object(copy)
    for name in ("weather", "weather-b", "weather-c"):
        bot.post(bot.command(f"{name} 10%"))
    store = bot.server.parts.store
    wait_until(lambda: len(store.list_active()) == 3)
    bot.drain()
    bot.server.stop()
    left = Notify(event="note", text="left behind by a crash")
    rollouts = store.list_active()  # in the order a new leader takes them
    for rollout in rollouts:
        store.save(
            rollout.model_copy(update={"pending": (left,)}), expected_version=rollout.version
        )
    assert [store.load(r.id).pending for r in rollouts] == [(left,)] * 3
    first = rollouts[0].target.key
    raw = redis.Redis.from_url(bot.server.settings.redis_url)
    raw.set(f"canary:mutex:{first}", "a frozen writer", px=60_000)
    successor = Server(bot.server.settings)
    successor.start()
    try:
        wait_until(lambda: successor.resyncs >= 2, timeout=20)  # the pass at election ended
        assert [store.load(r.id).pending for r in rollouts[1:]] == [(), ()]
        assert store.load(rollouts[0].id).pending == (left,)  # left for the next pass
    finally:
        successor.stop()
        raw.delete(f"canary:mutex:{first}")
        raw.close()
