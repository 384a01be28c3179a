"""A wave over two clusters (two sandbox API servers), each with its own engine and its own
records in one real Redis, driven step by step with an injected clock and health checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from bot.mesh.kube import KubeMesh
from bot.rollout.engine import Engine
from bot.rollout.model import Phase, Rollout, StepDue, StepPlan, Verdict
from bot.rollout.traffic import KubeTraffic
from bot.rollout.waves import Wave, WaveRunning, WaveState
from bot.service.waves import ClusterNotifier, WaveRefused, WaveRunner
from bot.store.errors import Fenced
from bot.store.redis_store import RolloutStore, connect
from bot.store.waves import WaveStore
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.seeding import load_yaml_documents, seed
from tests.support.harness import seed_file
from tests.support.waves import start_wave

from .conftest import Clock, Recorder, live_weights

STEPS = StepPlan(weights=(10, 50, 100), interval_s=30, failure_limit=1)
CLUSTERS = ("canary-eu", "prod-eu")


class Failing:
    """A health check that fails every canary: its error rate is over the threshold."""

    def check(self, rollout: Rollout, now: datetime) -> Verdict:
        return Verdict(outcome="fail", at=now, step=rollout.step, summary="error rate 6% > 1%")


class Rig:
    """Two clusters, one Redis: an engine per cluster, and a wave runner over them."""

    def __init__(self, redis_url: str, clock: Clock, notes: Recorder) -> None:
        self.redis = connect(redis_url)
        self.clock, self.notes, self.said = clock, notes, list[str]()
        self.servers = {name: SandboxApiServer() for name in CLUSTERS}
        self.meshes: dict[str, KubeMesh] = {}
        self.engines: dict[str, Engine] = {}
        self.health: dict[str, Failing | None] = dict.fromkeys(CLUSTERS)

    def __enter__(self) -> Rig:
        for name, server in self.servers.items():
            server.__enter__()
            seed(server, load_yaml_documents([seed_file("weather")]))
            self.meshes[name] = KubeMesh(api_client_for(server.url), sleep=lambda _: None)
        return self

    def __exit__(self, *exc: object) -> None:
        for name, server in self.servers.items():
            self.meshes[name].close()
            server.__exit__(None, None, None)

    def store(self, name: str) -> RolloutStore:
        return RolloutStore(self.redis, prefix=f"canary:cluster:{name}", leader_prefix="canary")

    def engine(self, name: str, fencing: int | None = None) -> Engine:
        return Engine(
            store=self.store(name),
            traffic=KubeTraffic(self.meshes[name]),
            notifier=ClusterNotifier(self.notes, name),
            clock=self.clock,
            health=self.health[name],
            fencing=lambda: fencing,
        )

    def runner(self) -> WaveRunner:
        """A runner as a freshly started replica builds it: nothing carried over but Redis."""
        self.engines = {name: self.engine(name) for name in CLUSTERS}
        return WaveRunner(
            engines=self.engines,
            book=WaveStore(self.redis),
            tell=lambda channel, text: self.said.append(text),
            clock=self.clock,
        )

    def drive(self, name: str, rollout_id: str) -> Rollout:
        """Fire each step when it falls due, as the scheduler would, until the rollout ends."""
        engine = self.engines[name]
        for _ in range(10):
            rollout = engine.store.load(rollout_id)
            if not rollout.active:
                return rollout
            self.clock.advance(STEPS.interval_s)
            engine.handle(rollout_id, StepDue(step=rollout.step))
        raise AssertionError("the rollout did not finish")

    def weights(self, name: str) -> list[int]:
        return live_weights(self.servers[name])


@pytest.fixture
def rig(redis_url: str, clock: Clock, notes: Recorder) -> Iterator[Rig]:
    with Rig(redis_url, clock, notes) as rig:
        yield rig


def start(runner: WaveRunner, clusters: tuple[str, ...] = CLUSTERS) -> Wave:
    return start_wave(runner, STEPS, clusters)


def test_a_promotion_in_the_first_cluster_starts_the_second_and_the_wave_ends_done(
    rig: Rig,
) -> None:
    wave = start(rig.runner())
    assert (wave.cluster, wave.state) == ("canary-eu", WaveState.RUNNING)
    assert wave.rollout is not None
    assert rig.store("prod-eu").active_for("default", "weather") is None  # not yet
    first = rig.drive("canary-eu", wave.rollout)
    assert first.phase is Phase.PROMOTED and rig.weights("canary-eu") == [100]
    [moved] = rig.runner().advance()  # on a replica that did not start the wave
    assert (moved.cluster, moved.index) == ("prod-eu", 1) and moved.rollout is not None
    second = rig.store("prod-eu").load(moved.rollout)
    assert second.phase is Phase.PROGRESSING and second.started_by == "U1"
    rig.drive("prod-eu", moved.rollout)
    [done] = rig.runner().advance()
    assert done.state is WaveState.DONE and rig.weights("prod-eu") == [100]
    assert rig.said[-1].endswith("wave done, promoted on canary-eu, prod-eu")
    assert WaveStore(rig.redis).running() == [] and rig.runner().advance() == []


def test_a_failure_in_the_second_cluster_rolls_back_only_it_and_halts_the_wave(
    rig: Rig,
) -> None:
    rig.health["prod-eu"] = Failing()
    wave = start(rig.runner())
    assert wave.rollout is not None
    rig.drive("canary-eu", wave.rollout)
    [moved] = rig.runner().advance()
    assert moved.rollout is not None
    failed = rig.drive("prod-eu", moved.rollout)
    assert failed.phase in (Phase.ROLLED_BACK, Phase.FAILED)
    [halted] = rig.runner().advance()
    assert halted.state is WaveState.HALTED and halted.promoted == ("canary-eu",)
    assert "its rollout on prod-eu" in halted.reason
    assert rig.weights("prod-eu") == [100, 0]  # back on stable
    assert rig.weights("canary-eu") == [100]  # stays promoted: v2 is its stable subset
    stable = rig.servers["canary-eu"].get_object("default", "virtualservices", "weather")
    assert stable is not None
    assert stable["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v2"
    assert (
        "wave halted" in rig.said[-1]
        and "Promoted (and left as they are): canary-eu" in (rig.said[-1])
    )
    assert rig.runner().advance() == []  # halted: nothing more is started


def test_each_cluster_keeps_its_own_records_and_audit(rig: Rig) -> None:
    wave = start(rig.runner())
    assert wave.rollout is not None
    rig.drive("canary-eu", wave.rollout)
    [moved] = rig.runner().advance()
    eu, prod = rig.store("canary-eu"), rig.store("prod-eu")
    assert [e.action for e in eu.history("default", "weather")] == [
        "start",
        "step",
        "step",
        "promote",
    ]
    assert [e.action for e in prod.history("default", "weather")] == ["start"]
    assert prod.active_for("default", "weather") is not None
    assert eu.active_for("default", "weather") is None
    assert rig.redis.exists(f"canary:cluster:prod-eu:rollout:{moved.rollout}")
    assert not rig.redis.exists(f"canary:cluster:canary-eu:rollout:{moved.rollout}")
    told = [m.text for _, m in rig.notes.messages]
    assert any(t.startswith("[canary-eu] ") for t in told)
    assert any(t.startswith("[prod-eu] ") for t in told)


def test_every_cluster_is_fenced_by_the_one_leader_token(rig: Rig) -> None:
    wave = start(rig.runner())
    assert wave.rollout is not None
    rig.redis.set("canary:leader:token", 7)
    stale = rig.engine("canary-eu", fencing=6)
    rig.clock.advance(STEPS.interval_s)
    with pytest.raises(Fenced):
        stale.handle(wave.rollout, StepDue(step=0), token=6)
    assert rig.weights("canary-eu") == [90, 10]
    with pytest.raises(Fenced):
        WaveStore(rig.redis).save(wave, token=6)


def test_a_rollout_started_but_not_recorded_in_the_wave_is_taken_up_not_started_twice(
    rig: Rig,
) -> None:
    wave = start(rig.runner())
    assert wave.rollout is not None
    rig.drive("canary-eu", wave.rollout)
    book = WaveStore(rig.redis)
    # The next turn recorded, its rollout started, and the process gone before recording it
    turn = book.save(
        wave.model_copy(update={"index": 1, "rollout": None, "updated_at": rig.clock()})
    )
    rig.clock.advance(1)
    orphan = rig.engine("prod-eu").start(
        namespace="default", vs="weather", to=None, steps=STEPS, actor="U1", channel="C1"
    )
    [moved] = rig.runner().advance()
    assert moved.rollout == orphan.id and moved.version == turn.version + 1


def test_a_second_wave_on_the_service_and_an_unknown_cluster_are_refused(rig: Rig) -> None:
    runner = rig.runner()
    with pytest.raises(WaveRefused, match="no cluster named prod-us; the clusters are: "):
        start(runner, ("canary-eu", "prod-us"))
    start(runner)
    with pytest.raises(WaveRunning, match="already has a wave running"):
        start(runner)


def test_a_cluster_busy_with_another_rollout_of_the_service_halts_only_its_wave(
    rig: Rig,
) -> None:
    by_hand = rig.engine("prod-eu").start(
        namespace="default", vs="weather", to=None, steps=STEPS, actor="U9", channel="C1"
    )
    rig.clock.advance(1)
    wave = start(rig.runner())
    assert wave.rollout is not None
    rig.drive("canary-eu", wave.rollout)
    [halted] = rig.runner().advance()
    assert halted.state is WaveState.HALTED and halted.promoted == ("canary-eu",)
    assert f"could not start on prod-eu: weather already has rollout {by_hand.id}" in (
        halted.reason
    )
    assert rig.store("prod-eu").load(by_hand.id).phase is Phase.PROGRESSING  # left alone
