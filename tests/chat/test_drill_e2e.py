"""A fault drill over the wire: a signed slash command into the running bot (HTTP mode, the
sandbox API server, real Redis, the fake Slack); the leader's resync takes it off when its
time is up and says so in the channel, leaving the VirtualService as it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import CHANNEL, Bot, running_bot, wait_until

POLICY = """
rules:
  - namespace: "*"
    allow:
      all: [U0QA000001]
    drills:
      default: 10m
      max: 1h
"""


@pytest.fixture
def bot(tmp_path: Path, redis_url: str) -> Iterator[Bot]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with running_bot(tmp_path, redis_url, CANARY_POLICY_FILE=str(policy)) as running:
        yield running


def route(bot: Bot) -> dict[str, Any]:
    vs = bot.cluster.get_object("default", "virtualservices", "weather")
    assert vs is not None
    return dict(vs["spec"]["http"][0])


def posted(bot: Bot) -> list[str]:
    return [str(m.get("text")) for m in bot.slack.messages(CHANNEL).values()]


def test_a_drill_is_taken_off_by_the_leader_when_its_time_is_up(bot: Bot) -> None:
    before = route(bot)
    assert bot.post(bot.command("weather fault abort 503 50% for 2s", user="U0QA000001")) == 200
    wait_until(lambda: "fault" in route(bot), what="the drill on the route")
    assert route(bot)["fault"] == {"abort": {"httpStatus": 503, "percentage": {"value": 50.0}}}
    wait_until(lambda: "fault" not in route(bot), timeout=10.0, what="the drill taken off on time")
    assert route(bot) == before
    wait_until(lambda: any("removed (its time was up)" in t for t in posted(bot)))
    [started] = [t for t in posted(bot) if "on the catch-all route until" in t]
    assert started.startswith(":test_tube: weather: fault abort 503 50%")


def test_the_card_of_the_services_rollout_shows_its_drills_while_they_last(bot: Bot) -> None:
    assert bot.post(bot.command("weather 10%", user="U0QA000001")) == 200
    wait_until(lambda: len(bot.cards()) == 1, what="the rollout's card")
    [ts] = bot.cards()

    def card() -> str:
        return json.dumps(bot.cards()[ts]["blocks"], ensure_ascii=False)

    assert "Fault drills" not in card()
    assert bot.post(bot.command("weather fault delay 7s 10%", user="U0QA000001")) == 200
    wait_until(lambda: "Fault drills" in card(), what="the drill on the card")
    assert "fault delay 7s 10% until " in card()
    assert bot.post(bot.command("weather fault off", user="U0QA000001")) == 200
    wait_until(lambda: "Fault drills" not in card(), what="the drill gone from the card")
    assert list(bot.cards()) == [ts]  # the same card, redrawn; no new one
