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


def test_the_bot_asks_only_for_the_scopes_it_uses() -> None:
    scopes = set(MANIFEST["oauth_config"]["scopes"]["bot"])
    assert scopes == {"commands", "chat:write", "files:write", "usergroups:read"}


# Web API methods (as WebClient names them) and the scope each needs beyond the manifest's.
NEEDS_MORE_SCOPES = re.compile(r"\.(users_\w+|conversations_\w+|channels_\w+|team_\w+)\(")


def test_no_code_calls_a_method_the_scopes_do_not_cover() -> None:
    calls = [
        f"{path.relative_to(ROOT)}: {match[1]}"
        for path in sorted((ROOT / "bot").rglob("*.py"))
        for match in NEEDS_MORE_SCOPES.finditer(path.read_text())
    ]
    assert calls == []
