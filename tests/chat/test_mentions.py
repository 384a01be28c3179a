"""Mentions that notify: the starter, the policy's on-call and approvers are mentioned when a
rollout needs a human, and those thread replies are broadcast to the channel. The notifier
posts to the fake Slack Web API (which records whole bodies), with real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.chat.slack import SlackNotifier, web_client
from bot.rollout.model import Notify, Phase, Rollout, StepPlan, Target
from bot.store.redis_store import RolloutStore, connect
from policies import load_policy
from tests.support.fake_slack import FakeSlack

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
CHANNEL, STARTER, PAUSER = "C0DEPLOYS", "U0ALICE001", "U0BOB00001"
POLICY = """
rules:
  - name: everything
    namespace: "*"
    on-call: U0ONCALL01
    allow:
      start: [U0ALICE001, U0BOB00001]
      rollback: [U0ALICE001, U0BOB00001]
      approve: [U0CAROL001]
  - name: weather
    namespace: default
    vs: weather
    on-call: S0WEATHER1
    allow:
      start: [U0ALICE001, U0BOB00001]
      rollback: [U0ALICE001, U0BOB00001]
    approvals:
      - count: 1
        from: [S0SRE00000]
        above_weight: 25
"""
WEATHER_ALERT = {f"<@{STARTER}>", "<!subteam^S0WEATHER1>", "<!subteam^S0SRE00000>"}


def rollout(vs: str = "weather", reason: str = "") -> Rollout:
    return Rollout(
        id=f"r-{vs}",
        target=Target(namespace="default", vs=vs, stable="v1", canary="v2"),
        steps=StepPlan(weights=(10, 50, 100), interval_s=30),
        phase=Phase.PAUSED,
        step=0,
        weight=10,
        started_by=STARTER,
        channel=CHANNEL,
        created_at=T0,
        updated_at=T0,
        reason=reason,
    )


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(member_of=(CHANNEL,)) as fake:
        yield fake


@pytest.fixture
def notifier(slack: FakeSlack, redis_url: str) -> SlackNotifier:
    store = RolloutStore(connect(redis_url), prefix=f"mentions-{id(slack)}")
    client = web_client(slack.token, slack.url + "/api/")
    return SlackNotifier(client, store, lambda: T0, policy=load_policy(POLICY))


def thread_reply(slack: FakeSlack) -> dict[str, Any]:
    *_, last = [c.body for c in slack.calls_to("chat.postMessage") if c.body.get("thread_ts")]
    return last


@pytest.mark.parametrize(
    ("event", "text"),
    [
        ("approval-needed", "weather: the step to 50% waits for an approval"),
        ("pause", "weather paused at 10%: 3 inconclusive checks; a human should look"),
        ("auto-rollback", "weather rolled back: 2 failed health checks"),
        ("drift", "weather: the weights were changed outside the bot (90/10 → 70/30)"),
    ],
)
def test_a_rollout_that_needs_a_human_mentions_its_people_and_is_broadcast(
    slack: FakeSlack, notifier: SlackNotifier, event: str, text: str
) -> None:
    notifier.notify(rollout(), Notify(event=event, text=text))
    reply = thread_reply(slack)
    assert reply["reply_broadcast"] in (True, "1", "true")
    mentioned = {w for w in reply["text"].split() if w.startswith("<")}
    assert mentioned == WEATHER_ALERT


def test_the_on_call_is_the_one_of_the_service_else_of_its_namespace(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    notifier.notify(rollout("ratings"), Notify(event="auto-rollback", text="ratings rolled back"))
    mentioned = {w for w in thread_reply(slack)["text"].split() if w.startswith("<")}
    assert mentioned == {f"<@{STARTER}>", "<@U0ONCALL01>", "<@U0CAROL001>"}


@pytest.mark.parametrize(
    ("event", "text"),
    [
        ("pause", f"weather paused at 10%: paused by {PAUSER}"),
        ("rollback", f"weather rolled back by {PAUSER}"),
        ("health", "weather at 10%: pass"),
    ],
)
def test_what_a_person_did_names_them_and_alerts_nobody(
    slack: FakeSlack, notifier: SlackNotifier, event: str, text: str
) -> None:
    notifier.notify(rollout(), Notify(event=event, text=text))
    reply = thread_reply(slack)
    assert not reply.get("reply_broadcast")
    mentioned = {w.rstrip(":") for w in reply["text"].split() if w.startswith("<")}
    assert mentioned <= {f"<@{PAUSER}>"}
    assert (f"<@{PAUSER}>" in reply["text"]) == (PAUSER in text)


def test_the_card_mentions_the_starter_and_who_rolled_back(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    notifier.notify(rollout(reason=f"rolled back by {PAUSER}"), Notify(event="started", text=""))
    [card] = slack.messages(CHANNEL).values()
    text = str(card["blocks"])
    assert f"Started by <@{STARTER}>" in text and f"rolled back by <@{PAUSER}>" in text


def test_text_from_elsewhere_cannot_mention_anyone(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    hostile = "weather paused at 10%: <!channel> <@U0EVE00001> <!subteam^S0ALL> & co; by <@U0X>"
    notifier.notify(rollout(reason=hostile), Notify(event="pause", text=hostile))
    reply = thread_reply(slack)["text"]
    assert (
        "<!channel>" not in reply
        and "<@U0EVE00001>" not in reply
        and "<!subteam^S0ALL>" not in reply
    )
    assert "&lt;!channel&gt;" in reply and "&amp; co" in reply
    [card] = [m for m in slack.messages(CHANNEL).values() if "blocks" in m]
    assert "<!channel>" not in str(card["blocks"]) and "&lt;!channel&gt;" in str(card["blocks"])
