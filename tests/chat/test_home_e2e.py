"""The App Home tab over the wire: opening it (a signed Events API callback) publishes every
rollout going on that the viewer may act on, with the buttons the policy lets them press, and
a press there acts as it does on the card. The fake Slack records each views.publish whole and
refuses views Slack would refuse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block

from bot.chat.cards import card_view
from bot.chat.home import BLOCKS_MAX, home_view
from bot.chat.slack import web_client
from bot.rollout.model import Phase
from tests.chat.phone import render_blocks, too_wide
from tests.support.fake_slack import FakeSlack
from tests.support.harness import Bot, flat, running_bot, signed_post, wait_until
from tests.support.home import buttons, open_home, press_in_home, published
from tests.support.sample_rollout import T0, rollout

DEV, ONCALL, STRANGER, VIEWER = "U0DEV00001", "U0ONCALL01", "U0XXX00009", "U0VIEWER1"
POLICY = f"""
rules:
  - name: everything
    namespace: "*"
    allow:
      start: [{DEV}]
      pause: [{DEV}]
      rollback: [{ONCALL}]
"""


@pytest.fixture
def policed(tmp_path: Path, redis_url: str) -> Iterator[Bot]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with running_bot(tmp_path, redis_url, CANARY_POLICY_FILE=str(policy)) as running:
        yield running


def test_opening_the_home_tab_publishes_the_rollouts_going_on(bot: Bot) -> None:
    assert bot.post(bot.command("weather start steps 20,100 every 1h")) == 200
    wait_until(lambda: bot.weights() == [80, 20])
    assert open_home(bot, VIEWER) == 200
    call = published(bot, VIEWER)
    assert call.ok and call.token == bot.slack.token
    view = call.body["view"]
    assert view == {k: v for k, v in bot.slack.home(VIEWER).items() if k in view}  # as published
    assert view["type"] == "home"
    assert [b.to_dict() for b in Block.parse_all(view["blocks"])] == view["blocks"]
    assert "*weather* in default · v1 → v2" in flat(view["blocks"])
    assert buttons(view) == ["pause", "promote", "rollback"]
    assert too_wide(render_blocks(view["blocks"])) == []


def test_each_viewer_sees_only_what_the_policy_lets_them_do(policed: Bot) -> None:
    assert policed.post(policed.command("weather start steps 20,100 every 1h", user=DEV)) == 200
    wait_until(lambda: policed.weights() == [80, 20])
    for user in (DEV, ONCALL, STRANGER):
        assert open_home(policed, user) == 200
    assert buttons(published(policed, DEV).body["view"]) == ["pause"]
    # whoever may roll back may also pause, at any time (policies.decide)
    assert buttons(published(policed, ONCALL).body["view"]) == ["pause", "rollback"]
    stranger = published(policed, STRANGER).body["view"]
    assert buttons(stranger) == [] and "weather" not in flat(stranger["blocks"])
    assert "Nothing is moving that you may act on" in flat(stranger["blocks"])


def test_a_press_in_the_home_tab_acts_and_the_tab_shows_the_outcome(policed: Bot) -> None:
    assert policed.post(policed.command("weather start steps 20,100 every 1h", user=DEV)) == 200
    wait_until(lambda: policed.weights() == [80, 20])
    assert open_home(policed, ONCALL) == 200
    view = published(policed, ONCALL).body["view"]
    [value] = [
        e["value"]
        for b in view["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "canary:rollback"
    ]
    assert press_in_home(policed, ONCALL, "rollback", value) == 200
    wait_until(lambda: policed.weights() == [100, 0])
    after = published(policed, ONCALL, after=1).body["view"]
    assert "weather: rollback done." in flat(after["blocks"])
    assert "Nothing is moving that you may act on" in flat(after["blocks"])
    # the card in the channel is the same rollout, updated in place
    [card] = policed.cards().values()
    assert "rolled-back" in flat(card["blocks"])


def test_a_press_the_policy_refuses_is_told_in_the_home_tab(policed: Bot) -> None:
    assert policed.post(policed.command("weather start steps 20,100 every 1h", user=DEV)) == 200
    wait_until(lambda: policed.weights() == [80, 20])
    record = policed.server.parts.store.active_for("default", "weather")
    assert record is not None
    assert press_in_home(policed, STRANGER, "rollback", f"{record.id}:{record.version}") == 200
    refused = published(policed, STRANGER).body["view"]
    assert "may not rollback" in flat(refused["blocks"])
    assert policed.weights() == [80, 20]


def test_the_messages_tab_publishes_nothing(bot: Bot) -> None:
    assert open_home(bot, VIEWER, tab="messages") == 200
    bot.drain()
    assert bot.slack.calls_to("views.publish") == []


def test_a_home_with_many_rollouts_stays_within_100_blocks_and_says_how_many_more() -> None:
    cards = [card_view(rollout(Phase.PROGRESSING, id=f"r{i}"), T0) for i in range(40)]
    view = home_view(cards)
    assert len(view["blocks"]) <= BLOCKS_MAX
    shown = sum(1 for b in view["blocks"] if b["type"] == "actions")
    assert 0 < shown < 40
    assert f"{40 - shown} more not shown here" in flat(view["blocks"])


@pytest.mark.parametrize(
    ("view", "error"),
    [
        ({"type": "modal", "blocks": []}, "invalid_arguments"),
        ({"type": "home", "blocks": [{"type": "divider"}] * 101}, "invalid_arguments"),
        ({"type": "home", "blocks": [{"type": "no-such-block"}]}, "invalid_blocks"),
        (
            {
                "type": "home",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}],
            },
            "invalid_blocks",
        ),
        (
            {"type": "home", "blocks": [{"type": "divider"}], "callback_id": "c" * 256},
            "invalid_arguments",
        ),
    ],
)
def test_the_fake_refuses_a_view_slack_would_refuse(view: dict[str, Any], error: str) -> None:
    with FakeSlack() as slack:
        client = web_client(slack.token, slack.url + "/api/")
        with pytest.raises(SlackApiError) as refused:
            client.views_publish(user_id="U1", view=view)
        assert refused.value.response["error"] == error
        [call] = slack.calls_to("views.publish")
        assert call.body["view"] == view and call.error == error  # recorded whole
        assert slack.home("U1") is None


def test_slacks_url_check_is_answered_and_other_events_are_refused(bot: Bot) -> None:
    json_type = {"Content-Type": "application/json"}
    check = {
        "token": "ignored",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification",
    }
    status, reply = signed_post(bot.url, json.dumps(check), headers=json_type)
    assert status == 200 and check["challenge"] in reply
    other = {
        "type": "event_callback",
        "team_id": "T0TEST",
        "event": {"type": "message", "user": VIEWER},
    }
    status, reply = signed_post(bot.url, json.dumps(other), headers=json_type)
    assert status == 400 and "App Home" in reply
