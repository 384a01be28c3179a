"""A fault drill the policy holds for an approval, over the wire (signed HTTP into the running
bot, the sandbox API server, real Redis, the fake Slack): nothing is injected until an approver
approves, then exactly the drill asked for goes on the route with its end, as a drill that
needs no approval does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import (
    Bot,
    approval_card,
    flat,
    request_id,
    running_bot,
    vote,
    wait_until,
)

POLICY = """
rules:
  - namespace: "*"
    allow:
      fault: [U0QA000001]
      approve: [U0SRE00002]
    approvals:
      - count: 1
        from: [U0SRE00002]
        actions: [fault]
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


def test_a_drill_held_for_approval_goes_on_only_once_approved(bot: Bot) -> None:
    before = route(bot)
    assert bot.post(bot.command("weather fault delay 7s 10%", user="U0QA000001")) == 200
    _, card = approval_card(bot)
    assert "fixedDelay: 7s" in flat(card["blocks"])  # the drill's own diff is on the card
    assert route(bot) == before  # nothing injected while it waits
    assert bot.server.parts.drills is not None
    assert bot.server.parts.drills.lines("default", "weather") == []

    vote(bot, request_id(card), "approve", "U0SRE00002")
    wait_until(lambda: "fault" in route(bot), what="the drill on the route once approved")
    assert route(bot)["fault"] == {"delay": {"fixedDelay": "7s", "percentage": {"value": 10.0}}}
    [line] = bot.server.parts.drills.lines("default", "weather")
    assert line.startswith("drill: fault delay 7s 10% until ")

    def actions() -> list[tuple[str, str]]:
        entries = bot.server.parts.store.history("default", "weather")
        return [(e.action, e.actor) for e in entries]

    # the drill is audited once written: the route shows it a moment before the trail does
    wait_until(lambda: ("fault", "U0QA000001") in actions(), what="the drill's audit entry")
    assert actions()[:2] == [("approval-requested", "U0QA000001"), ("approve", "U0SRE00002")]
