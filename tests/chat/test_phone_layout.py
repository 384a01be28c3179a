"""Chat that reads on a phone: diffs and tables at about 40 columns, times as Slack date tokens
that show each reader their own time zone. Over the wire where the bot posts it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.chat.phone import phone_diff, plain_dates, slack_date, slack_time
from tests.chat.phone import render_blocks, too_wide
from tests.support.harness import Bot, approval_card, responses_to, running_bot, wait_until
from tests.support.reach import POLICY

ANNOTATED = """\
--- VirtualService default/weather (live)
+++ VirtualService default/weather (planned)
@@ -2,7 +2,7 @@
 metadata:
   annotations:
-    canary-bot/last-applied: '{"stable":"v1","canary":"v2","weights":{"0":10},"at":"2026-11-22T03:00:00+00:00"}'
+    canary-bot/last-applied: '{"stable":"v1","canary":"v2","weights":{"0":30},"at":"2026-11-22T03:05:00+00:00"}'
   name: weather
@@ -17,10 +17,10 @@
       - headers:
           x-tester:
-            regex: ^(alice|bob|carol|dave|erin|frank|grace|heidi)$
+            regex: ^(alice|bob|carol|dave|erin|frank|grace|heidi|ivan)$
         port:
           number: 80
         subset: v1
-      weight: 90
+      weight: 70
"""  # noqa: E501 — the annotation line is as wide as the planner writes it


def test_a_diff_leaves_out_the_bots_annotation_and_fits_a_phone() -> None:
    shown = phone_diff(ANNOTATED).splitlines()
    assert not [line for line in shown if "last-applied" in line or "2026-11-22" in line]
    assert max(len(line) for line in shown) <= 40
    assert shown[:2] == ["--- VS default/weather (live)", "+++ VS default/weather (planned)"]
    assert [line for line in shown if "weight" in line] == ["-weight: 90", "+weight: 70"]
    # a long line goes on under its own sign, nothing of it lost
    removed = "".join(line.removeprefix("- …") for line in shown if line.startswith("-"))
    assert "^(alice|bob|carol|dave|erin|frank|grace|heidi)$" in removed.replace(" ", "")


def test_an_annotations_key_added_only_for_the_record_goes_with_it() -> None:
    added = (
        "--- VirtualService default/weather (live)\n+++ VirtualService default/weather (planned)\n"
        "@@ -1,3 +1,5 @@\n metadata:\n+  annotations:\n"
        "+    canary-bot/last-applied: '{}'\n   name: weather\n"
    )
    assert phone_diff(added) == "--- VS default/weather (live)\n+++ VS default/weather (planned)"


def test_a_date_token_carries_the_instant_and_a_utc_fallback() -> None:
    at = datetime(2026, 11, 22, 3, 4, 5, tzinfo=UTC)
    assert slack_date(at) == "<!date^1795316645^{date_short_pretty} {time}|2026-11-22 03:04 UTC>"
    assert slack_date(at, seconds=True).endswith("{time_secs}|2026-11-22 03:04:05 UTC>")
    assert slack_time(at) == "<!date^1795316645^{time}|03:04 UTC>"
    shown = plain_dates(f"at {slack_time(at)}, {slack_date(at)}")
    assert shown == "at 03:04 UTC, 2026-11-22 03:04 UTC"


@pytest.fixture
def gated(tmp_path: Path, redis_url: str) -> Iterator[Bot]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with running_bot(tmp_path, redis_url, CANARY_POLICY_FILE=str(policy)) as running:
        running.slack.set_usergroup("S0SRE00000", ["U0SRE00002"])
        yield running


def test_an_approval_cards_diff_reads_on_a_phone(gated: Bot) -> None:
    assert gated.post(gated.command("weather 10%", user="U0REQ00001")) == 200
    gated.drain()
    _, card = approval_card(gated)
    [diff] = [t for b in card["blocks"] if "```" in (t := b.get("text", {}).get("text", ""))]
    lines = diff.strip("`").splitlines()
    assert "-      weight: 100" not in lines and "-  weight: 100" in lines
    assert "last-applied" not in diff
    assert too_wide(render_blocks(card["blocks"])) == []


def test_history_shows_each_time_in_the_readers_zone(bot: Bot) -> None:
    store = bot.server.parts.store
    assert bot.post(bot.command("weather 20%")) == 200
    wait_until(lambda: store.history("default", "weather"))
    assert bot.post(bot.command("weather history")) == 200
    bot.drain()
    [entry] = store.history("default", "weather")
    [told] = responses_to(bot, "cmd")
    token = re.search(r"<!date\^(\d+)\^\{date_short_pretty\} \{time_secs\}\|([^>]+)>", told)
    assert token is not None, told
    assert int(token[1]) == int(entry.at.timestamp())
    assert token[2] == f"{entry.at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
