"""Reaching people over the wire: a command from a conversation the bot cannot post in is
refused to the asker alone and changes nothing; a post that fails after a change is told to
the asker. The fake Slack enforces channel membership as Slack does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import (
    CHANNEL,
    Bot,
    flat,
    responses_to,
    running_bot,
    wait_until,
)
from tests.support.reach import POLICY

OTHER, DM = "C0OTHER", "D0ALICE"


def told(bot: Bot, reply: str) -> list[str]:
    """What the asker of one command saw: the ack's text and the response_url posts."""
    texts = responses_to(bot, "cmd")
    return [*texts, json.loads(reply).get("text", "")] if reply else texts


def assert_nothing_changed(bot: Bot) -> None:
    assert bot.weights() == [100, 0]
    assert [r for r in bot.cluster.requests if r.is_write] == []
    store = bot.server.parts.store
    assert store.list_active() == [] and store.active_for("default", "weather") is None
    assert store.history("default", "weather") == []


@pytest.mark.parametrize(
    ("channel", "error"), [(OTHER, "not_in_channel"), (DM, "channel_not_found")]
)
def test_a_command_where_the_bot_cannot_post_is_refused_and_changes_nothing(
    bot: Bot, channel: str, error: str
) -> None:
    bot.slack.set_channel(OTHER, "other")
    status, reply = bot.exchange(bot.command("weather 20%", channel=channel))
    assert status == 200
    bot.drain()
    [text] = [t for t in told(bot, reply) if t]
    assert error in text and "/invite @canary-bot" in text and "nothing was changed" in text
    assert all(
        c.body.get("response_type") == "ephemeral" for c in bot.slack.calls_to("response_url")
    )
    assert_nothing_changed(bot)
    assert bot.slack.messages(channel) == {} and bot.cards() == {}


def test_once_invited_the_same_command_works_and_its_first_post_becomes_the_card(
    bot: Bot,
) -> None:
    bot.slack.set_channel(OTHER, "other")
    bot.slack.invite(OTHER)
    assert bot.post(bot.command("weather 20%", channel=OTHER)) == 200
    wait_until(lambda: bot.weights() == [80, 20])
    bot.drain()
    [first, *_] = bot.slack.calls_to("chat.postMessage")
    assert first.body["channel"] == OTHER and "<@U1>" in first.body["text"]
    cards = {ts: m for ts, m in bot.slack.messages(OTHER).items() if not m.get("thread_ts")}
    [card] = cards.values()
    tops = [c for c in bot.slack.calls_to("chat.postMessage") if not c.body.get("thread_ts")]
    assert tops == [first] and "20%" in flat(card["blocks"])
    assert "canary:rollback" in flat(card["blocks"])  # the reserved post, updated in place


def test_a_post_that_fails_after_the_change_is_told_to_the_asker(bot: Bot) -> None:
    bot.slack.fail("chat.update", "not_in_channel")  # removed from the channel just then
    assert bot.post(bot.command("weather 20%")) == 200
    wait_until(lambda: bot.weights() == [80, 20])
    bot.drain()
    [text] = responses_to(bot, "cmd")
    assert "could not post about it in the channel (not_in_channel)" in text
    assert "/invite @canary-bot" in text


@pytest.fixture
def gated(tmp_path: Path, redis_url: str) -> Iterator[Bot]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with running_bot(tmp_path, redis_url, CANARY_POLICY_FILE=str(policy)) as running:
        running.slack.set_usergroup("S0SRE00000", ["U0SRE00002"])
        running.slack.set_channel(OTHER, "other")
        yield running


def test_an_approval_request_that_cannot_be_posted_is_not_announced(gated: Bot) -> None:
    status, reply = gated.exchange(gated.command("weather 20%", channel=OTHER, user="U0REQ00001"))
    assert status == 200
    gated.drain()
    texts = [t for t in told(gated, reply) if t]
    assert not any("I posted an approval request" in t for t in texts)
    assert any("could not post the approval request" in t and "not_in_channel" in t for t in texts)
    assert gated.weights() == [100, 0]
    assert [r for r in gated.cluster.requests if r.is_write] == []
    assert gated.slack.messages(OTHER) == {}


def test_an_approval_request_is_announced_after_it_is_posted(gated: Bot) -> None:
    assert gated.post(gated.command("weather 20%", user="U0REQ00001")) == 200
    gated.drain()
    posted = gated.slack.calls_to("chat.postMessage")[0]
    told_at = [c for c in gated.slack.calls_to("response_url") if "I posted" in str(c.body)]
    assert posted.ok and posted.body["channel"] == CHANNEL
    assert told_at and told_at[0].at >= posted.at
    assert gated.slack.calls.index(told_at[0]) > gated.slack.calls.index(posted)
