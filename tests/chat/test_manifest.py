"""The Slack app manifest matches what the bot listens for."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from bot.chat.http import SLACK_PATH

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = yaml.safe_load((ROOT / "slack-app-manifest.yaml").read_text())


def test_the_slash_command_and_interactivity_point_at_the_bot() -> None:
    [command] = MANIFEST["features"]["slash_commands"]
    assert command["command"] == "/canary"
    assert urlsplit(command["url"]).path == SLACK_PATH
    interactivity = MANIFEST["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert urlsplit(interactivity["request_url"]).path == SLACK_PATH


def test_the_home_tab_is_on_and_its_event_reaches_the_bot() -> None:
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True
    events = MANIFEST["settings"]["event_subscriptions"]
    assert events["bot_events"] == ["app_home_opened"]
    assert urlsplit(events["request_url"]).path == SLACK_PATH


def test_the_bot_asks_only_for_the_scopes_it_uses() -> None:
    """views.publish and the app_home_opened event need no scope (Slack's method and event
    reference list none for either), so the Home tab adds none."""
    scopes = set(MANIFEST["oauth_config"]["scopes"]["bot"])
    assert scopes == {"commands", "chat:write", "files:write", "usergroups:read"}


# Web API methods (as WebClient names them) and the scope each needs beyond the manifest's.
NEEDS_MORE_SCOPES = re.compile(r"\.(users_\w+|conversations_\w+|channels_\w+|team_\w+)\(")
# Web API methods the bot calls, and whether the manifest's scopes cover them: views.publish
# needs none, chat.* chat:write, files.* files:write, usergroups.users.list usergroups:read.
COVERED = re.compile(r"\.(chat_\w+|views_publish|files_upload_v2|usergroups_users_list)\(")
CALLS = re.compile(r"\b(?:client|slack)\.([a-z]\w*)\(")  # a WebClient's methods


def test_no_code_calls_a_method_the_scopes_do_not_cover() -> None:
    calls = [
        f"{path.relative_to(ROOT)}: {match[1]}"
        for path in sorted((ROOT / "bot").rglob("*.py"))
        for match in NEEDS_MORE_SCOPES.finditer(path.read_text())
    ]
    assert calls == []


def test_every_web_api_method_the_bot_calls_is_one_the_scopes_cover() -> None:
    called = {
        match[1]
        for path in sorted((ROOT / "bot" / "chat").glob("*.py"))
        for match in CALLS.finditer(path.read_text())
    }
    assert "views_publish" in called
    assert {m for m in called if not COVERED.fullmatch(f".{m}(")} == set()
