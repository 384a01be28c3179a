"""The buttons on the card of a wave cluster's rollout, and the typed commands while a wave
runs, over signed HTTP into the running bot with two sandbox API servers as the wave's
clusters: each acts on that cluster's rollout, through the policy, and says which cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.apiserver import SandboxApiServer
from tests.support.harness import (
    Bot,
    approval_card,
    button_value,
    flat,
    request_id,
    responses_to,
    vote,
    wait_until,
)
from tests.support.waves import running_wave_bot, weights

START = "weather start clusters canary-eu,prod-eu steps 10,100 every 1h"


@pytest.fixture
def wave_bot(
    tmp_path: Path, redis_url: str, clusters: dict[str, SandboxApiServer]
) -> Iterator[Bot]:
    with running_wave_bot(tmp_path, redis_url, clusters) as bot:
        yield bot


def started(bot: Bot, clusters: dict[str, SandboxApiServer], user: str = "U1") -> str:
    """Start the wave; the ts of its first cluster's card once canary-eu is at 10% and the
    asker was told (so that what a test asks next is answered after)."""
    assert bot.post(bot.command(START, user=user)) == 200
    wait_until(lambda: weights(clusters["canary-eu"]) == [90, 10], what="canary-eu at 10%")
    wait_until(lambda: len(bot.cards()) == 1, what="the card")
    wait_until(lambda: responses_to(bot, "cmd"), what="the reply to the start")
    [ts] = bot.cards()
    return ts


def writes(clusters: dict[str, SandboxApiServer]) -> list[int]:
    return [len([r for r in server.requests if r.is_write]) for server in clusters.values()]


def untouched(bot: Bot, clusters: dict[str, SandboxApiServer]) -> bool:
    """prod-eu and the bot's own cluster were never written to (the leader's search for lost
    rollouts reads every cluster)."""
    servers = (clusters["prod-eu"], bot.cluster)
    return all(not r.is_write for server in servers for r in server.requests)


def test_rollback_on_a_wave_clusters_card_rolls_that_cluster_back(
    wave_bot: Bot, clusters: dict[str, SandboxApiServer]
) -> None:
    ts = started(wave_bot, clusters)
    value = button_value(wave_bot.cards()[ts], "rollback")

    assert wave_bot.post(wave_bot.click("rollback", value)) == 200
    wait_until(lambda: weights(clusters["canary-eu"]) == [100, 0], what="canary-eu rolled back")
    wait_until(lambda: "rolled-back" in flat(wave_bot.cards()[ts]["blocks"]), what="the card")
    wave_bot.drain()
    assert untouched(wave_bot, clusters)
    assert [t for t in responses_to(wave_bot, "click") if ":warning:" in t] == []


def test_the_card_of_a_wave_clusters_rollout_names_its_cluster_and_the_wave(
    wave_bot: Bot, clusters: dict[str, SandboxApiServer]
) -> None:
    ts = started(wave_bot, clusters)
    first = wave_bot.cards()[ts]
    assert "*Cluster:* canary-eu (wave: canary-eu → prod-eu)" in flat(first["blocks"])
    assert "weather in default on canary-eu: 10% to v2" in first["text"]

    assert wave_bot.post(wave_bot.click("promote", button_value(first, "promote"))) == 200
    wait_until(lambda: weights(clusters["prod-eu"]) == [90, 10], what="prod-eu at 10%")
    wait_until(lambda: len(wave_bot.cards()) == 2, what="prod-eu's card")
    [second] = [card for card_ts, card in wave_bot.cards().items() if card_ts != ts]
    assert "*Cluster:* prod-eu (wave: canary-eu ✓ → prod-eu)" in flat(second["blocks"])
    assert button_value(second, "rollback").startswith("prod-eu/")


POLICY = """
rules:
  - name: production
    namespace: "*"
    allow:
      start: [U0REQ00001]
      wave: [U0REQ00001]
      rollback: [U0ONCALL00]
"""


def test_a_button_on_a_wave_clusters_card_is_decided_by_the_policy(
    tmp_path: Path, redis_url: str, clusters: dict[str, SandboxApiServer]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    with running_wave_bot(tmp_path, redis_url, clusters, CANARY_POLICY_FILE=str(policy)) as bot:
        ts = started(bot, clusters, user="U0REQ00001")
        value = button_value(bot.cards()[ts], "rollback")

        assert bot.post(bot.click("rollback", value, user="U0STRANGER")) == 200
        wait_until(lambda: responses_to(bot, "click"), what="the refusal")
        [refused] = responses_to(bot, "click")
        assert refused.startswith("[canary-eu] :no_entry:")
        assert weights(clusters["canary-eu"]) == [90, 10]

        assert bot.post(bot.click("rollback", value, user="U0ONCALL00")) == 200
        wait_until(lambda: weights(clusters["canary-eu"]) == [100, 0], what="the rollback")
        bot.drain()
        assert untouched(bot, clusters)


def test_typed_commands_act_on_the_cluster_whose_turn_it_is_and_say_so(
    wave_bot: Bot, clusters: dict[str, SandboxApiServer]
) -> None:
    ts = started(wave_bot, clusters)

    assert wave_bot.post(wave_bot.command("weather pause")) == 200
    wait_until(lambda: "paused" in flat(wave_bot.cards()[ts]["blocks"]), what="the pause")
    wait_until(lambda: responses_to(wave_bot, "cmd")[1:], what="the pause's reply")
    paused = responses_to(wave_bot, "cmd")[1]
    assert paused.startswith("[canary-eu] weather: pause done on canary-eu (the cluster whose")

    assert wave_bot.post(wave_bot.command("weather status")) == 200
    wait_until(lambda: responses_to(wave_bot, "cmd")[2:], what="the status")
    status = responses_to(wave_bot, "cmd")[2]
    assert status.startswith("[canary-eu] ⏸️ weather in default")
    assert "cluster: canary-eu (wave: canary-eu → prod-eu)" in status
    assert "wave running: now on canary-eu (1 of 2)" in status

    assert wave_bot.post(wave_bot.command("weather rollback")) == 200
    wait_until(lambda: weights(clusters["canary-eu"]) == [100, 0], what="canary-eu rolled back")
    wave_bot.drain()
    assert responses_to(wave_bot, "cmd")[3].startswith("[canary-eu] weather: rollback done")
    assert untouched(wave_bot, clusters)


def test_a_command_names_its_cluster(wave_bot: Bot, clusters: dict[str, SandboxApiServer]) -> None:
    started(wave_bot, clusters)
    assert wave_bot.post(wave_bot.command("weather rollback cluster prod-eu")) == 200
    wait_until(lambda: responses_to(wave_bot, "cmd")[1:], what="the reply")
    told = responses_to(wave_bot, "cmd")[1]
    assert told.startswith("[prod-eu] :warning:") and "\n" not in told
    assert weights(clusters["canary-eu"]) == [90, 10]

    assert wave_bot.post(wave_bot.command("weather rollback cluster canary-eu")) == 200
    wait_until(lambda: weights(clusters["canary-eu"]) == [100, 0], what="canary-eu rolled back")
    wave_bot.drain()
    assert untouched(wave_bot, clusters)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("weather rollback cluster mars", "no cluster named mars; the clusters are: canary-eu"),
        ("weather status cluster mars", "no cluster named mars; the clusters are: canary-eu"),
        ("weather rollback cluster prod_eu", "'prod_eu' is not a cluster name"),
        ("weather pause cluster", "`cluster` needs one cluster of the wave, like prod-eu"),
    ],
)
def test_an_unknown_cluster_gets_one_sentence_and_changes_nothing(
    wave_bot: Bot, clusters: dict[str, SandboxApiServer], text: str, said: str
) -> None:
    started(wave_bot, clusters)
    before = writes(clusters)
    status, reply = wave_bot.exchange(wave_bot.command(text))
    assert status == 200
    wave_bot.drain()
    [told] = [*responses_to(wave_bot, "cmd")[1:], *([json.loads(reply)["text"]] if reply else [])]
    assert said in told and "\n" not in told
    assert writes(clusters) == before
    assert weights(clusters["canary-eu"]) == [90, 10]
    assert untouched(wave_bot, clusters)


def test_a_cluster_named_on_a_bot_without_clusters_gets_one_sentence(bot: Bot) -> None:
    status, reply = bot.exchange(bot.command("weather rollback cluster prod-eu"))
    assert status == 200
    bot.drain()
    [told] = [*responses_to(bot, "cmd"), *([json.loads(reply)["text"]] if reply else [])]
    assert "this bot has no clusters for waves: name them in CANARY_CLUSTERS" in told
    assert [r for r in bot.cluster.requests if r.is_write] == []


APPROVALS = """
rules:
  - name: production
    namespace: "*"
    allow:
      start: [U0REQ00001]
      wave: [U0REQ00001]
      promote: [U0REQ00001]
      approve: [U0SRE00002]
    approvals:
      - count: 1
        from: [U0SRE00002]
        above_weight: 25
"""


def test_a_promote_approved_during_a_wave_is_made_on_the_cluster_it_was_asked_for(
    tmp_path: Path, redis_url: str, clusters: dict[str, SandboxApiServer]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(APPROVALS, encoding="utf-8")
    with running_wave_bot(tmp_path, redis_url, clusters, CANARY_POLICY_FILE=str(policy)) as bot:
        started(bot, clusters, user="U0REQ00001")
        assert bot.post(bot.command("weather promote", user="U0REQ00001")) == 200
        wait_until(
            lambda: any("Approval needed" in flat(c["blocks"]) for c in bot.cards().values()),
            what="the approval card",
        )
        _, card = approval_card(bot)
        assert "weather promote cluster canary-eu" in flat(card["blocks"])
        assert weights(clusters["canary-eu"]) == [90, 10]

        vote(bot, request_id(card), "approve", "U0SRE00002")
        wait_until(lambda: weights(clusters["canary-eu"]) == [100], what="canary-eu promoted")
        wait_until(lambda: weights(clusters["prod-eu"]) == [90, 10], what="the wave going on")
        bot.drain()
        assert [r for r in bot.cluster.requests if r.is_write] == []
