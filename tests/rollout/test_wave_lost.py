"""Redis loses its data mid-wave: the leader's resync compares each wave cluster's
VirtualServices with that cluster's records and takes back the canary it finds there, as it
does on the bot's own cluster (`canary-bot serve` leading, two sandbox API servers, real Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import Server
from bot.rollout.model import Phase, Rollback, Rollout, StepPlan
from bot.store.redis_store import RolloutStore
from sandbox.apiserver import SandboxApiServer
from tests.support.harness import wait_until
from tests.support.waves import CLUSTERS, leading_server, start_wave, wave_clusters, weights

from .conftest import Recorder

STEPS = StepPlan(weights=(20, 50, 100), interval_s=3600)


@pytest.fixture
def servers() -> Iterator[dict[str, SandboxApiServer]]:
    """The bot's own cluster ("home", with nothing of the wave's) and the wave's two."""
    with wave_clusters(("home", *CLUSTERS)) as servers:
        yield servers


@pytest.fixture
def notes() -> Recorder:
    return Recorder()


@pytest.fixture
def server(
    servers: dict[str, SandboxApiServer], redis_url: str, tmp_path: Path, notes: Recorder
) -> Iterator[Server]:
    with leading_server(tmp_path, redis_url, servers, notes, home="home") as server:
        yield server


def test_a_wave_clusters_rollout_redis_lost_is_taken_back_from_its_virtualservice(
    server: Server, servers: dict[str, SandboxApiServer], notes: Recorder
) -> None:
    assert server.parts.waves is not None
    wave = start_wave(server.parts.waves, STEPS)
    assert wave.rollout is not None and weights(servers["canary-eu"]) == [80, 20]
    first = server.parts.clusters["canary-eu"]
    passes = server.resyncs  # the leader has read the wave with its rollout recorded
    wait_until(lambda: server.resyncs >= passes + 2, 10, "a leader's pass that saw the start")
    first.store.redis.flushdb()  # Redis restarted with nothing, mid-wave
    wait_until(lambda: _active(first.store) is not None, 30, "the rollout taken back")
    adopted = _active(first.store)
    assert adopted is not None
    assert (adopted.id, adopted.phase, adopted.weight, adopted.channel) == (
        wave.rollout,
        Phase.PAUSED,
        20,
        "C1",
    )
    assert "lost its record" in adopted.reason
    # the thread is told once the record is kept, not before
    wait_until(lambda: "adopted" in notes.events(), 10, "the thread told")
    told = [m.text for _, m in notes.messages if m.event == "adopted"]
    assert told and all(t.startswith("[canary-eu] weather: the bot lost") for t in told)
    first.engine.act("default", "weather", Rollback(actor="UONCALL"))  # the card's one tap
    assert weights(servers["canary-eu"]) == [100, 0]
    assert weights(servers["prod-eu"]) == [100, 0]  # never started
    assert _active(server.parts.clusters["prod-eu"].store) is None
    assert _active(server.parts.store) is None and weights(servers["home"]) == [100, 0]


def _active(store: RolloutStore) -> Rollout | None:
    return store.active_for("default", "weather")
