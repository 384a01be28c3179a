"""An approval counts for the plan on the card the approver saw, and for no other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.approvals import POLICY
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

REQUESTER, FIRST, SECOND = "U0REQ00001", "U0SRE00002", "U0SRE00003"


@pytest.fixture
def bot(tmp_path: Path, redis_url: str) -> Iterator[Bot]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with running_bot(tmp_path, redis_url, CANARY_POLICY_FILE=str(policy)) as running:
        running.slack.set_usergroup("S0SRE00000", [FIRST, SECOND])
        yield running


def hand_edit(bot: Bot, stable: int, canary: int) -> None:
    """Someone moves the base with kubectl while the card waits."""
    bot.cluster.mutate(
        "default",
        "virtualservices",
        "weather",
        lambda vs: [
            vs["spec"]["http"][0]["route"][0].update(weight=stable),
            vs["spec"]["http"][0]["route"][1].update(weight=canary),
        ],
    )


def card_now(bot: Bot, ts: str) -> dict[str, Any]:
    return bot.slack.messages(CHANNEL)[ts]


def test_an_approval_for_a_plan_that_changed_is_not_counted_and_the_card_shows_the_new_diff(
    bot: Bot,
) -> None:
    assert bot.post(bot.command("weather 50%", user=REQUESTER)) == 200
    wait_until(
        lambda: any("Approval needed" in flat(m) for m in bot.slack.messages(CHANNEL).values())
    )
    ts, card = approval_card(bot)
    shown = request_id(card)
    vote(bot, shown, "approve", FIRST)
    wait_until(lambda: "Approved by" in flat(card_now(bot, ts)["blocks"]))

    hand_edit(bot, 90, 10)
    vote(bot, shown, "approve", SECOND)  # would complete the approvals, for the old plan
    wait_until(lambda: bool(responses_to(bot, f"vote-{SECOND}")))
    assert responses_to(bot, f"vote-{SECOND}") == [
        "The plan changed since this card was posted; look at the new diff and approve again."
    ]
    assert bot.weights() == [90, 10]
    assert [r for r in bot.cluster.writes() if r.path.endswith("/weather")] == []

    def card_text() -> str:
        return "\n".join(b["text"]["text"] for b in card_now(bot, ts)["blocks"] if "text" in b)

    # The card is posted again after the voter is answered: wait for it to show the new diff.
    wait_until(lambda: "-  weight: 90\n+  weight: 50" in card_text())
    assert "Approved by" not in card_text()  # the approval for the old plan is gone
    renewed = request_id(card_now(bot, ts))
    assert renewed != shown and renewed.split(":")[0] == shown.split(":")[0]

    vote(bot, renewed, "approve", SECOND)
    wait_until(lambda: f"Approved by <@{SECOND}>" in flat(card_now(bot, ts)["blocks"]))
    assert bot.weights() == [90, 10]  # one approval of two: the first one no longer counts
    vote(bot, renewed, "approve", FIRST)
    wait_until(lambda: bot.weights() == [50, 50])
    wait_until(lambda: "Approved and applied" in flat(card_now(bot, ts)["blocks"]))


def test_an_approval_on_a_stale_card_is_not_counted_even_after_the_card_was_renewed(
    bot: Bot,
) -> None:
    assert bot.post(bot.command("weather 50%", user=REQUESTER)) == 200
    wait_until(
        lambda: any("Approval needed" in flat(m) for m in bot.slack.messages(CHANNEL).values())
    )
    ts, card = approval_card(bot)
    shown = request_id(card)
    hand_edit(bot, 80, 20)
    vote(bot, shown, "approve", FIRST)  # renews the card
    wait_until(lambda: request_id(card_now(bot, ts)) != shown)
    vote(bot, shown, "approve", SECOND)  # still pressing on the old card
    wait_until(lambda: bool(responses_to(bot, f"vote-{SECOND}")))
    assert "plan changed" in responses_to(bot, f"vote-{SECOND}")[0]
    assert "Approved by" not in flat(card_now(bot, ts)["blocks"])
    assert bot.weights() == [80, 20]
