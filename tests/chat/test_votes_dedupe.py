"""Taps are deduplicated per person and card version: a refused tap blocks nobody else."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.approvals import POLICY
from tests.support.harness import (
    CHANNEL,
    Bot,
    approval_card,
    button_value,
    flat,
    request_id,
    running_bot,
    wait_until,
)

REQUESTER, SRE, STRANGER = "U0REQ00001", "U0SRE00002", "U0XXX00009"


@pytest.fixture
def bot(tmp_path: Path, redis_url: str) -> Iterator[Bot]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with running_bot(tmp_path, redis_url, CANARY_POLICY_FILE=str(policy)) as running:
        running.slack.set_usergroup("S0SRE00000", [SRE, "U0SRE00003"])
        yield running


def replies_to(bot: Bot, name: str) -> list[str]:
    calls = bot.slack.calls_to("response_url")
    return [str(c.body.get("text")) for c in calls if c.path.endswith(name)]


def tap(bot: Bot, action: str, value: str, user: str, trigger: str) -> str:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T0TEST"},
        "channel": {"id": CHANNEL},
        "trigger_id": trigger,
        "response_url": bot.slack.response_url(trigger),
        "actions": [
            {
                "type": "button",
                "action_id": action,
                "value": value,
                "block_id": "buttons",
                "action_ts": f"{trigger}.1",
            }
        ],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def test_a_refused_rollback_tap_does_not_keep_on_call_from_rolling_back(bot: Bot) -> None:
    assert bot.post(bot.command("weather 20%", user=REQUESTER)) == 200
    wait_until(lambda: bot.weights() == [80, 20] and bool(bot.cards()))
    value = button_value(next(iter(bot.cards().values())), "rollback")

    assert bot.post(tap(bot, "canary:rollback", value, STRANGER, "stranger-tap")) == 200
    wait_until(lambda: bool(replies_to(bot, "stranger-tap")))
    assert "may not rollback" in replies_to(bot, "stranger-tap")[0]
    assert bot.weights() == [80, 20]

    assert bot.post(tap(bot, "canary:rollback", value, SRE, "on-call-tap")) == 200
    wait_until(lambda: bot.weights() == [100, 0])


def test_a_double_tap_and_a_retried_delivery_of_approve_count_once(bot: Bot) -> None:
    assert bot.post(bot.command("weather 50%", user=REQUESTER)) == 200
    wait_until(lambda: "Approval needed" in flat(bot.slack.messages(CHANNEL)))
    value = request_id(approval_card(bot)[1])
    first = tap(bot, "approval:approve", value, SRE, "approve-1")
    assert bot.post(first) == 200
    assert bot.post(tap(bot, "approval:approve", value, SRE, "approve-2")) == 200  # double tap
    assert bot.post(first, headers={"X-Slack-Retry-Num": "1"}) == 200  # Slack's retry
    assert bot.server.slack is not None
    bot.server.slack.workers.shutdown()  # every tap taken has now been carried out

    trail = bot.server.parts.store.history("default", "weather")
    assert [(e.action, e.actor) for e in trail] == [
        ("approval-requested", REQUESTER),
        ("approve", SRE),
    ]
    assert replies_to(bot, "approve-1") == replies_to(bot, "approve-2") == []
