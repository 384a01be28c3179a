"""Commands that would act beside a running wave, over signed HTTP into the running bot with
two sandbox API servers as the wave's clusters: a weight, mirror, cohort or second start typed
while the wave runs is refused in one sentence (it would change the bot's own cluster, not the
wave's) and changes nothing; `history` reads the trail of the cluster whose turn it is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.apiserver import SandboxApiServer
from tests.support.harness import Bot, responses_to, wait_until
from tests.support.waves import running_wave_bot, weights

START = "weather start clusters canary-eu,prod-eu steps 10,100 every 1h"


@pytest.fixture
def wave_bot(
    tmp_path: Path, redis_url: str, clusters: dict[str, SandboxApiServer]
) -> Iterator[Bot]:
    with running_wave_bot(tmp_path, redis_url, clusters) as bot:
        assert bot.post(bot.command(START)) == 200
        wait_until(lambda: weights(clusters["canary-eu"]) == [90, 10], what="canary-eu at 10%")
        wait_until(lambda: responses_to(bot, "cmd"), what="the reply to the start")
        yield bot


def told(bot: Bot, text: str) -> str:
    """The asker's one reply to `/canary <text>`."""
    before = len(responses_to(bot, "cmd"))
    assert bot.post(bot.command(text)) == 200
    wait_until(lambda: len(responses_to(bot, "cmd")) > before, what=f"the reply to {text}")
    return responses_to(bot, "cmd")[before]


@pytest.mark.parametrize(
    "text",
    ["weather 30%", "weather mirror 10%", "weather cohort header x-beta=1", "weather start"],
)
def test_a_change_beside_a_running_wave_is_refused_and_changes_nothing(
    wave_bot: Bot, clusters: dict[str, SandboxApiServer], text: str
) -> None:
    writes = [len([r for r in s.requests if r.is_write]) for s in clusters.values()]
    reply = told(wave_bot, text)
    assert reply.startswith(":warning: weather has a multi-cluster wave running (now on canary-eu)")
    assert "cluster canary-eu`" in reply and "\n" not in reply
    assert [len([r for r in s.requests if r.is_write]) for s in clusters.values()] == writes
    assert [r for r in wave_bot.cluster.requests if r.is_write] == []
    assert weights(clusters["canary-eu"]) == [90, 10]


def test_history_during_a_wave_reads_the_cluster_whose_turn_it_is(wave_bot: Bot) -> None:
    reply = told(wave_bot, "weather history")
    assert reply.startswith("[canary-eu] ") and "start 0% → 10%" in reply


def test_plan_shows_a_wave_clusters_diff_and_writes_nothing(
    wave_bot: Bot, clusters: dict[str, SandboxApiServer]
) -> None:
    writes = [len([r for r in s.requests if r.is_write]) for s in clusters.values()]
    named = told(wave_bot, "weather plan 50% cluster prod-eu")
    assert named.startswith("[prod-eu] Plan for weather at 50% (v1 → v2), nothing applied")
    assert "-  weight: 100" in named and "+  weight: 50" in named  # prod-eu's own 100/0
    turn = told(wave_bot, "weather plan 50%")
    assert turn.startswith("[canary-eu] Plan for weather at 50%")
    assert "-  weight: 90" in turn and "+  weight: 50" in turn  # canary-eu, at 10% now
    assert [len([r for r in s.requests if r.is_write]) for s in clusters.values()] == writes
    assert [r for r in wave_bot.cluster.requests if r.is_write] == []
