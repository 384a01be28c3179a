"""`/canary weather start clusters canary-eu,prod-eu` over signed HTTP into the running bot, with
two more sandbox API servers as the wave's clusters: the wave starts on the first cluster only,
`status` shows it, and bad input gets one sentence and changes nothing anywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.store.waves import WaveStore
from sandbox.apiserver import SandboxApiServer
from tests.support.harness import Bot, responses_to, wait_until
from tests.support.waves import CLUSTERS, running_wave_bot, weights


@pytest.fixture
def wave_bot(
    tmp_path: Path, redis_url: str, clusters: dict[str, SandboxApiServer]
) -> Iterator[Bot]:
    """The running bot with both clusters in CANARY_CLUSTERS."""
    with running_wave_bot(tmp_path, redis_url, clusters) as bot:
        yield bot


def answer(bot: Bot, text: str) -> str:
    """The one line the asker is told about `/canary <text>`, once the bot has done all it does."""
    status, reply = bot.exchange(bot.command(text))
    assert status == 200
    bot.drain()
    [said] = [*responses_to(bot, "cmd"), *([json.loads(reply)["text"]] if reply else [])]
    return said


def test_the_command_starts_the_wave_on_the_first_cluster_only(
    wave_bot: Bot, clusters: dict[str, SandboxApiServer]
) -> None:
    text = "weather start clusters canary-eu,prod-eu steps 10,100 every 1h"
    assert wave_bot.post(wave_bot.command(text)) == 200

    wait_until(lambda: weights(clusters["canary-eu"]) == [90, 10], what="canary-eu at 10%")
    wait_until(lambda: responses_to(wave_bot, "cmd"), what="the reply")
    [reply] = responses_to(wave_bot, "cmd")
    assert "wave over canary-eu, then prod-eu" in reply
    assert "started on canary-eu" in reply
    assert [r for r in clusters["prod-eu"].requests if r.is_write] == []  # the leader may read
    assert weights(clusters["prod-eu"]) == [100, 0]
    assert [r for r in wave_bot.cluster.requests if r.is_write] == []
    [wave] = WaveStore(wave_bot.server.parts.store.redis).running()
    assert (wave.clusters, wave.cluster, wave.rollout is not None) == (CLUSTERS, "canary-eu", True)

    assert wave_bot.post(wave_bot.command("weather status")) == 200
    wait_until(lambda: len(responses_to(wave_bot, "cmd")) == 2, what="the status")
    status = responses_to(wave_bot, "cmd")[1]
    assert "wave running: now on canary-eu (1 of 2), over canary-eu, prod-eu" in status


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "weather start clusters canary-eu,mars",
            "no cluster named mars; the clusters are: canary-eu, prod-eu",
        ),
        ("weather start clusters canary-eu,canary-eu", "cluster canary-eu is named twice"),
        ("weather start clusters canary_eu", "'canary_eu' is not a cluster name"),
        ("weather start cohort user jason clusters canary-eu", "a wave does not start with a"),
    ],
)
def test_a_bad_wave_gets_one_sentence_and_changes_nothing(
    wave_bot: Bot, clusters: dict[str, SandboxApiServer], text: str, said: str
) -> None:
    told = answer(wave_bot, text)
    assert said in told and "\n" not in told
    assert [[r for r in server.requests if r.is_write] for server in clusters.values()] == [[], []]
    assert [r for r in wave_bot.cluster.requests if r.is_write] == []
    book = WaveStore(wave_bot.server.parts.store.redis)
    assert (book.running(), book.for_service("default", "weather")) == ([], None)


def test_a_wave_without_clusters_configured_gets_one_sentence(bot: Bot) -> None:
    told = answer(bot, "weather start clusters canary-eu,prod-eu")
    assert "this bot has no clusters for waves: name them in CANARY_CLUSTERS" in told
    assert "\n" not in told
    assert [r for r in bot.cluster.requests if r.is_write] == []
    assert WaveStore(bot.server.parts.store.redis).running() == []


POLICY = """
rules:
  - name: production
    namespace: "*"
    allow:
      start: [U0REQ00001, U0STARTER1]
      wave: [U0REQ00001]
"""


def test_the_policy_decides_a_wave_as_a_wave_and_a_start(
    tmp_path: Path, redis_url: str, clusters: dict[str, SandboxApiServer]
) -> None:
    """A wave needs the policy's `wave` action as well as `start`: someone allowed to start
    on one cluster is not thereby allowed to roll out over several."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    with running_wave_bot(tmp_path, redis_url, clusters, CANARY_POLICY_FILE=str(policy)) as bot:
        text = "weather start clusters canary-eu,prod-eu"
        for user in ("U0STRANGER", "U0STARTER1"):
            assert bot.post(bot.command(text, user=user)) == 200
        wait_until(lambda: len(responses_to(bot, "cmd")) == 2, what="the two refusals")
        assert all(reply.startswith(":no_entry:") for reply in responses_to(bot, "cmd"))
        assert any("U0STARTER1" in r and "wave" in r for r in responses_to(bot, "cmd"))
        writes = [[r for r in server.requests if r.is_write] for server in clusters.values()]
        assert writes == [[], []]
        assert WaveStore(bot.server.parts.store.redis).running() == []

        assert bot.post(bot.command(text, user="U0REQ00001")) == 200
        wait_until(lambda: weights(clusters["canary-eu"]) == [95, 5], what="canary-eu at 5%")
        assert weights(clusters["prod-eu"]) == [100, 0]
