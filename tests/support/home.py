"""The App Home tab over the wire: Slack's app_home_opened callback, a press in the tab, and
the views the bot published, as the fake Slack recorded them."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

from tests.support.fake_slack import SlackCall
from tests.support.harness import Bot, signed_post, wait_until


def open_home(bot: Bot, user: str, tab: str = "home") -> int:
    """Slack's app_home_opened callback for `user`, signed, as JSON."""
    body = {
        "token": "ignored",
        "team_id": "T0TEST",
        "api_app_id": "A0CANARY",
        "type": "event_callback",
        "event_id": f"Ev{time.monotonic_ns()}",
        "event_time": int(time.time()),
        "event": {
            "type": "app_home_opened",
            "user": user,
            "channel": "D0HOME0001",
            "tab": tab,
            "event_ts": f"{time.time():.6f}",
        },
    }
    status, _ = signed_post(bot.url, json.dumps(body), headers={"Content-Type": "application/json"})
    return status


def press_in_home(bot: Bot, user: str, action: str, value: str) -> int:
    """A press on a card's button in the Home tab: no channel, no response_url."""
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T0TEST"},
        "container": {"type": "view", "view_id": "V0HOME"},
        "view": {"id": "V0HOME", "type": "home", "callback_id": "canary-home"},
        "trigger_id": f"home-{time.monotonic_ns()}",
        "actions": [
            {"type": "button", "action_id": f"canary:{action}", "value": value, "block_id": "b"}
        ],
    }
    return bot.post(urllib.parse.urlencode({"payload": json.dumps(payload)}))


def published(bot: Bot, user: str, after: int = 0) -> SlackCall:
    """The views.publish call for `user`, the `after`-th one on (0: the first)."""
    wait_until(lambda: len(publishes(bot, user)) > after, what=f"a home tab for {user}")
    return publishes(bot, user)[after]


def publishes(bot: Bot, user: str) -> list[SlackCall]:
    return [c for c in bot.slack.calls_to("views.publish") if c.body.get("user_id") == user]


def buttons(view: dict[str, Any]) -> list[str]:
    return [
        e["action_id"].removeprefix("canary:")
        for b in view["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]
