"""The Slack app manifest matches what the bot listens for."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml

from bot.chat.http import SLACK_PATH

MANIFEST = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "slack-app-manifest.yaml").read_text()
)


def test_the_slash_command_and_interactivity_point_at_the_bot() -> None:
    [command] = MANIFEST["features"]["slash_commands"]
    assert command["command"] == "/canary"
    assert urlsplit(command["url"]).path == SLACK_PATH
    interactivity = MANIFEST["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert urlsplit(interactivity["request_url"]).path == SLACK_PATH


def test_the_bot_asks_only_for_the_scopes_it_uses() -> None:
    scopes = set(MANIFEST["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write"} <= scopes
    assert scopes <= {
        "commands",
        "chat:write",
        "files:write",
        "usergroups:read",
        "users:read",
        "channels:read",
    }
