"""Approvals over the wire: a production change held until two others approve it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.rollout.model import Phase, Rollout
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


@pytest.fixture
def bot(tmp_path: Path, redis_url: str) -> Iterator[Bot]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with running_bot(tmp_path, redis_url, CANARY_POLICY_FILE=str(policy)) as running:
        running.slack.set_usergroup("S0SRE00000", ["U0SRE00002", "U0SRE00003"])
        yield running


def test_a_change_needing_two_approvals_waits_for_them(bot: Bot) -> None:
    assert bot.post(bot.command("weather 50%", user="U0REQ00001")) == 200
    wait_until(
        lambda: any(
            "Approval needed" in flat(m.get("blocks", []))
            for m in bot.slack.messages(CHANNEL).values()
        )
    )
    ts, card = approval_card(bot)
    text = flat(card["blocks"])
    assert "weather 50%" in text and "weight: 50" in text  # the exact diff is on the card
    assert bot.weights() == [100, 0]

    rid = request_id(card)
    vote(bot, rid, "approve", "U0REQ00001")  # the requester's own approval
    wait_until(lambda: bool(responses_to(bot, "vote-U0REQ00001")))
    assert "own approval does not count" in responses_to(bot, "vote-U0REQ00001")[0]
    assert bot.weights() == [100, 0]

    vote(bot, rid, "approve", "U0SRE00002")
    wait_until(lambda: "Approved by" in flat(bot.slack.messages(CHANNEL)[ts]["blocks"]))
    assert bot.weights() == [100, 0]  # one of two

    vote(bot, rid, "approve", "U0SRE00003")
    wait_until(lambda: bot.weights() == [50, 50])
    wait_until(lambda: "Approved and applied" in flat(bot.slack.messages(CHANNEL)[ts]["blocks"]))
    final = flat(bot.slack.messages(CHANNEL)[ts]["blocks"])
    assert "U0SRE00002" in final and "U0SRE00003" in final

    entries = bot.server.parts.store.history("default", "weather")
    assert [(e.action, e.actor) for e in entries] == [
        ("approval-requested", "U0REQ00001"),
        ("approve", "U0SRE00002"),
        ("approve", "U0SRE00003"),
        ("set-weight", "U0REQ00001"),
    ]


def test_a_change_below_the_threshold_needs_no_approval(bot: Bot) -> None:
    bot.post(bot.command("weather 20%", user="U0REQ00001"))
    wait_until(lambda: bot.weights() == [80, 20])


def test_someone_the_policy_does_not_name_is_refused(bot: Bot) -> None:
    bot.post(bot.command("weather 20%", user="U0XXX00009"))
    wait_until(lambda: bool([c for c in bot.slack.calls_to("response_url")]))
    [reply] = [str(c.body.get("text")) for c in bot.slack.calls_to("response_url")]
    assert "may not set-weight" in reply
    assert bot.weights() == [100, 0]
    assert [r for r in bot.cluster.requests if r.is_write] == []


def test_a_deny_vetoes(bot: Bot) -> None:
    bot.post(bot.command("weather 50%", user="U0REQ00001"))
    wait_until(
        lambda: any(
            "Approval needed" in flat(m.get("blocks", []))
            for m in bot.slack.messages(CHANNEL).values()
        )
    )
    ts, card = approval_card(bot)
    vote(bot, request_id(card), "deny", "U0SRE00002")
    wait_until(lambda: "Denied" in flat(bot.slack.messages(CHANNEL)[ts]["blocks"]))
    vote(bot, request_id(card), "approve", "U0SRE00003")
    wait_until(lambda: bool(responses_to(bot, "vote-U0SRE00003")))
    assert "already denied" in responses_to(bot, "vote-U0SRE00003")[0]
    assert bot.weights() == [100, 0]


GATED_POLICY = """
rules:
  - name: gated
    namespace: "*"
    allow:
      start: [U0REQ00001]
      rollback: [U0REQ00001, S0SRE00000]
      approve: [S0SRE00000]
    rollout:
      steps: [20, 50, 100]
      every: 1s
      gates: [50]
"""


def rollout(bot: Bot) -> Rollout:
    active = bot.server.parts.store.active_for("default", "weather")
    assert active is not None
    return active


def test_a_gated_step_waits_for_a_named_approver(tmp_path: Path, redis_url: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(GATED_POLICY)
    with running_bot(tmp_path, redis_url, CANARY_POLICY_FILE=str(policy)) as bot:
        bot.slack.set_usergroup("S0SRE00000", ["U0SRE00002"])
        assert bot.post(bot.command("weather start", user="U0REQ00001")) == 200
        wait_until(lambda: bot.weights() == [80, 20])
        wait_until(
            lambda: any(
                "Approval needed" in flat(m.get("blocks", []))
                for m in bot.slack.messages(CHANNEL).values()
            ),
            timeout=10,
        )
        wait_until(lambda: rollout(bot).phase is Phase.PENDING_APPROVAL)
        assert bot.server.scheduler.scheduled(rollout(bot).id) is None  # no step is due
        assert bot.weights() == [80, 20]
        _, card = approval_card(bot)
        assert "20% → 50%" in flat(card["blocks"])
        vote(bot, request_id(card), "approve", "U0REQ00001")  # who started it: refused
        wait_until(lambda: bool(responses_to(bot, "vote-U0REQ00001")))
        assert bot.weights() == [80, 20]
        vote(bot, request_id(card), "approve", "U0SRE00002")
        wait_until(lambda: bot.weights() == [50, 50])
        wait_until(lambda: bot.weights() == [100], timeout=15)  # then on to promotion
