"""Slack end to end over the wire: signed HTTP requests into the running bot, a fake Slack Web
API that records whole request bodies, real Redis, the sandbox API server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from slack_sdk.signature import SignatureVerifier

from tests.support.fake_slack import FakeSlack
from tests.support.harness import (
    MALFORMED,
    SECRET,
    Bot,
    button_value,
    flat,
    running_bot,
    wait_until,
)


def test_set_weight_then_rollback_by_button_updates_the_card_in_place(bot: Bot) -> None:
    assert bot.post(bot.command("weather 10%")) == 200
    wait_until(lambda: bot.weights() == [90, 10] and bot.cards())
    [(ts, card)] = bot.cards().items()
    text = flat(card["blocks"])
    assert "10%" in text and "▓" in text
    assert all(f"canary:{a}" in text for a in ("resume", "promote", "rollback"))
    assert bot.post(bot.click("rollback", button_value(card, "rollback"))) == 200
    wait_until(lambda: bot.weights() == [100, 0])
    wait_until(
        lambda: (
            "rolled-back" in flat(bot.cards()[ts]["blocks"]).lower()
            or "rolled back" in flat(bot.cards()[ts]["blocks"]).lower()
        )
    )
    assert list(bot.cards()) == [ts]  # the same message, updated in place
    updates = bot.slack.calls_to("chat.update")
    assert updates and all(c.body["ts"] == ts for c in updates)


def test_a_replayed_delivery_does_nothing_twice(bot: Bot) -> None:
    body = bot.command("weather 10%", trigger="the-same-trigger")
    assert bot.post(body, headers={"X-Slack-Retry-Num": "0"}) == 200
    wait_until(lambda: bot.weights() == [90, 10] and bot.cards())
    assert bot.post(body, headers={"X-Slack-Retry-Num": "1"}) == 200
    bot.drain()  # a wrongly accepted replay has acted by now
    assert len(bot.cards()) == 1
    assert len([r for r in bot.cluster.requests if r.method == "PATCH"]) == 1


def test_a_double_tap_on_rollback_acts_once(bot: Bot) -> None:
    bot.post(bot.command("weather 10%"))
    wait_until(lambda: bool(bot.cards()))
    value = button_value(next(iter(bot.cards().values())), "rollback")
    assert bot.post(bot.click("rollback", value)) == 200
    assert bot.post(bot.click("rollback", value)) == 200
    wait_until(lambda: bot.weights() == [100, 0])
    bot.drain()
    assert [c for c in bot.slack.calls_to("response_url") if c.path.endswith("click")] == []
    assert len([r for r in bot.cluster.requests if r.method == "PATCH"]) == 2  # set + rollback


@pytest.mark.parametrize("forge", ["unsigned", "tampered", "stale"])
def test_unsigned_tampered_and_stale_requests_get_401_and_change_nothing(
    bot: Bot, forge: str
) -> None:
    body = bot.command("weather 50%")
    if forge == "unsigned":
        status = bot.post(body, signature="v0=" + "0" * 64)
    elif forge == "tampered":
        good = SignatureVerifier(SECRET).generate_signature(
            timestamp=str(int(time.time())), body=body
        )
        status = bot.post(body.replace("50%25", "100%25"), signature=good)
    else:
        stale = int(time.time()) - 6 * 60
        status = bot.post(
            body,
            timestamp=stale,
            signature=SignatureVerifier(SECRET).generate_signature(timestamp=str(stale), body=body),
        )
    assert status == 401
    bot.drain()
    assert bot.weights() == [100, 0]
    assert [r for r in bot.cluster.requests if r.is_write] == []
    assert bot.slack.calls == [] or all(c.method == "auth.test" for c in bot.slack.calls)


def test_every_malformed_command_is_answered_to_the_asker_and_changes_nothing(bot: Bot) -> None:
    for text, fragment in MALFORMED:
        status, body = bot.exchange(bot.command(text))
        assert status == 200, text
        reply = json.loads(body)
        assert reply["response_type"] == "ephemeral", text
        assert fragment in reply["text"], (text, reply["text"])
    bot.drain()
    assert bot.cards() == {}
    assert [r for r in bot.cluster.requests if r.is_write] == []
    assert bot.slack.calls_to("chat.postMessage") == []


def test_slack_429_on_chat_update_is_retried_and_the_card_ends_right(bot: Bot) -> None:
    bot.post(bot.command("weather 10%"))
    wait_until(lambda: bool(bot.cards()))
    ts = next(iter(bot.cards()))
    bot.slack.rate_limit("chat.update", times=1, retry_after=1)
    bot.post(bot.click("rollback", button_value(bot.cards()[ts], "rollback")))
    wait_until(lambda: "rolled" in flat(bot.cards()[ts]["blocks"]).lower(), timeout=8)
    statuses = [c.status for c in bot.slack.calls_to("chat.update")]
    assert 429 in statuses and statuses[-1] == 200


def test_a_canary_with_no_ready_pods_gets_no_traffic_and_the_asker_is_told_why(bot: Bot) -> None:
    for pod in bot.cluster.list_objects("pods", "default"):
        if pod["metadata"]["labels"].get("version") == "v2":
            bot.cluster.mutate(
                "default", "pods", pod["metadata"]["name"], lambda p: p["status"].clear()
            )
    status, body = bot.exchange(bot.command("weather 10%"))
    assert status == 200
    bot.drain()
    replies = [str(c.body.get("text")) for c in bot.slack.calls_to("response_url")]
    replies.append(json.loads(body).get("text", "") if body else "")
    assert any("subset 'v2' selects no ready pods (labels version=v2)" in r for r in replies)
    assert bot.weights() == [100, 0]
    assert [r for r in bot.cluster.requests if r.is_write] == []


def test_the_token_is_checked_at_start_so_no_request_waits_for_it(bot: Bot) -> None:
    assert len(bot.slack.calls_to("auth.test")) == 1  # at start, before any request
    assert bot.post(bot.command("weather status")) == 200
    bot.drain()
    assert len(bot.slack.calls_to("auth.test")) == 1


def test_a_slack_outage_at_start_does_not_keep_the_bot_from_starting(
    tmp_path: Path, redis_url: str
) -> None:
    with FakeSlack(token="xoxb-test-token") as slack:
        slack.fail("auth.test", "service_unavailable")
        with running_bot(tmp_path, redis_url, SLACK_API_URL=slack.url + "/api/") as bot:
            assert bot.post(bot.command("weather 10%")) == 200
            wait_until(lambda: bot.weights() == [90, 10])
