"""Approve and Deny pressed at the same moment, over the wire, many times over."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.store.approvals import APPROVED, DENIED, OPEN, ApprovalBook
from tests.support.approvals import POLICY
from tests.support.harness import CHANNEL, Bot, running_bot, wait_until

REQUESTER = "U0REQ00001"
FIRST = "U0SRE00002"  # approves before the race: one of the two approvals needed
RACERS = (
    ("U0SRE00003", "approve"),
    ("U0SRE00004", "approve"),
    ("U0SRE00005", "deny"),
    ("U0SRE00006", "deny"),
)
ROUNDS = 50


@pytest.fixture
def bot(tmp_path: Path, redis_url: str) -> Iterator[Bot]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with running_bot(tmp_path, redis_url, CANARY_POLICY_FILE=str(policy)) as running:
        running.slack.set_usergroup("S0SRE00000", [FIRST, *(user for user, _ in RACERS)])
        yield running


def press(bot: Bot, value: str, verb: str, user: str, name: str) -> int:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T0TEST"},
        "channel": {"id": CHANNEL},
        "trigger_id": f"{name}-trigger",
        "response_url": bot.slack.response_url(name),
        "actions": [
            {
                "type": "button",
                "action_id": f"approval:{verb}",
                "value": value,
                "block_id": "approval",
                "action_ts": "1",
            }
        ],
    }
    return bot.post(urllib.parse.urlencode({"payload": json.dumps(payload)}))


def open_card(bot: Bot) -> str | None:
    """The value of the Approve button on the card still open (a closed card has none)."""
    for message in bot.slack.messages(CHANNEL).values():
        for block in message.get("blocks", []):
            for element in block.get("elements", []):
                if element.get("action_id") == "approval:approve":
                    return str(element["value"])
    return None


def told(bot: Bot, name: str) -> list[str]:
    calls = bot.slack.calls_to("response_url")
    return [str(c.body.get("text")) for c in calls if c.path.endswith(name)]


class Round:
    """One request for weather at 50%: one approval in, then the racers press at once."""

    def __init__(self, bot: Bot, number: int) -> None:
        self.bot, self.number = bot, number
        self.book = ApprovalBook(bot.server.parts.store)
        self.since = len(self.trail())
        assert bot.post(bot.command("weather 50%", user=REQUESTER)) == 200
        wait_until(lambda: open_card(bot) is not None)
        self.value = str(open_card(bot))
        self.id = self.value.split(":")[0]

    def trail(self) -> list[tuple[str, str, str]]:
        entries = self.bot.server.parts.store.history("default", "weather", count=10_000)
        return [(e.action, e.actor, e.detail) for e in entries]

    def votes(self) -> list[tuple[str, str]]:
        prefix = f"request {self.id}:"
        return [(a, who) for a, who, detail in self.trail() if detail.startswith(prefix)]

    def applied(self) -> list[str]:
        return [who for a, who, _ in self.trail()[self.since :] if a == "set-weight"]

    def wait_applied(self) -> list[str]:
        wait_until(lambda: bool(self.applied()), timeout=10)
        return self.applied()

    def name(self, user: str) -> str:
        return f"round{self.number:03d}-{user}"

    def status(self) -> str:
        request = self.book.load(self.id)
        assert request is not None
        return request.status

    def first_approval(self) -> None:
        assert press(self.bot, self.value, "approve", FIRST, self.name(FIRST)) == 200
        wait_until(lambda: ("approve", FIRST) in self.votes())

    def race(self) -> None:
        barrier = threading.Barrier(len(RACERS))
        answers: list[int] = []

        def go(user: str, verb: str) -> None:
            barrier.wait()
            answers.append(press(self.bot, self.value, verb, user, self.name(user)))

        threads = [threading.Thread(target=go, args=racer) for racer in RACERS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [200] * len(RACERS)
        # Every racer has its answer: a counted vote is on the audit trail, the others are
        # told why they were not counted.
        wait_until(
            lambda: all(
                (verb, user) in self.votes() or told(self.bot, self.name(user))
                for user, verb in RACERS
            ),
            timeout=10,
        )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_deny_raced_with_approvals_is_never_applied_and_an_approval_applies_once(
    bot: Bot,
) -> None:
    outcomes = []
    for number in range(ROUNDS):
        game = Round(bot, number)
        game.first_approval()
        game.race()
        status = game.status()
        assert status != OPEN
        counted = [(user, verb) for user, verb in RACERS if (verb, user) in game.votes()]
        if status == DENIED:
            assert [verb for _, verb in counted if verb == "approve"] == []
            assert game.applied() == [], f"round {number}: denied, yet applied"
            assert bot.weights() == [100, 0]
            for user, verb in RACERS:
                if verb == "approve" and (verb, user) not in game.votes():
                    assert "already denied" in told(bot, game.name(user))[0]
        else:
            assert status == APPROVED
            assert [verb for _, verb in counted] == ["approve"], "one vote decided"
            assert game.wait_applied() == [REQUESTER], f"round {number}: not applied once"
            assert bot.weights() == [50, 50]
            for user, verb in RACERS:
                if verb == "deny":
                    assert "already approved" in told(bot, game.name(user))[0]
            assert bot.post(bot.command("weather rollback", user=REQUESTER)) == 200
            wait_until(lambda: bot.server.parts.store.active_for("default", "weather") is None)
            wait_until(lambda: bot.weights() == [100, 0])
        wait_until(lambda: open_card(bot) is None)
        outcomes.append(status)
    print(f"{ROUNDS} rounds: {outcomes.count(DENIED)} denied, {outcomes.count(APPROVED)} applied")
