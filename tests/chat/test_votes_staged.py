"""A staged start is held to the policy at every step, not only at its first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.rollout.model import Phase
from tests.support.harness import (
    CHANNEL,
    Bot,
    approval_card,
    flat,
    request_id,
    responses_to,
    running_bot,
    vote,
    wait_until,
)

POLICY = """
rules:
  - name: production
    namespace: "*"
    allow:
      start: [U0REQ00001]
      rollback: [U0REQ00001, S0SRE00000]
      approve: [S0SRE00000]
    approvals:
      - count: 2
        from: [S0SRE00000]
        above_weight: 25
"""
REQUESTER = "U0REQ00001"


@pytest.fixture
def bot(tmp_path: Path, redis_url: str) -> Iterator[Bot]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with running_bot(tmp_path, redis_url, CANARY_POLICY_FILE=str(policy)) as running:
        running.slack.set_usergroup("S0SRE00000", ["U0SRE00002", "U0SRE00003"])
        yield running


def canary_weights_written(bot: Bot) -> list[int]:
    """Every canary weight the bot wrote to weather, from the API server's write log."""
    return [
        int(op["value"])
        for request in bot.cluster.writes()
        if request.path.endswith("/virtualservices/weather")
        for op in request.json()
        if op.get("path") == "/spec/http/0/route/1/weight"
    ]


def trail(bot: Bot) -> list[tuple[str, int | None]]:
    return [
        (e.action, e.weight_after) for e in bot.server.parts.store.history("default", "weather")
    ]


def parked(bot: Bot) -> bool:
    """The rollout waits for an approval, with no step scheduled."""
    rollout = bot.server.parts.store.active_for("default", "weather")
    return (
        rollout is not None
        and rollout.phase is Phase.PENDING_APPROVAL
        and rollout.next_step_at is None
    )


def test_a_start_climbing_above_the_approval_threshold_waits_for_approval_before_100(
    bot: Bot,
) -> None:
    assert bot.post(bot.command("weather start steps 10,100 every 1s", user=REQUESTER)) == 200
    wait_until(lambda: bool(responses_to(bot, "cmd")))
    assert "the step to 100% waits for an approval" in responses_to(bot, "cmd")[0]
    wait_until(lambda: parked(bot), timeout=10)
    wait_until(lambda: "Approval needed" in flat(bot.slack.messages(CHANNEL)))
    ts, card = approval_card(bot)
    assert "10% → 100%" in flat(card["blocks"])
    assert canary_weights_written(bot) == [10]
    assert bot.weights() == [90, 10]

    vote(bot, request_id(card), "approve", "U0SRE00002")  # one of the two needed
    wait_until(lambda: "Approved by" in flat(bot.slack.messages(CHANNEL)[ts]["blocks"]))
    assert parked(bot)
    assert canary_weights_written(bot) == [10]

    vote(bot, request_id(card), "approve", "U0SRE00003")
    wait_until(lambda: 100 in canary_weights_written(bot), timeout=10)
    assert canary_weights_written(bot) == [10, 100]
    wait_until(lambda: ("step", 100) in trail(bot))
    assert trail(bot)[:5] == [
        ("start", 10),
        ("approval-requested", 100),
        ("approve", 100),
        ("approve", 100),
        ("step", 100),
    ]


def test_a_start_whose_first_step_is_above_the_threshold_is_held_as_a_whole(bot: Bot) -> None:
    assert bot.post(bot.command("weather start steps 50,100 every 1s", user=REQUESTER)) == 200
    wait_until(lambda: "Approval needed" in flat(bot.slack.messages(CHANNEL)))
    _, card = approval_card(bot)
    assert "/canary weather start steps 50,100" in flat(card["blocks"])
    assert bot.server.parts.store.active_for("default", "weather") is None
    assert canary_weights_written(bot) == []
