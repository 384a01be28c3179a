"""A wave's record lost with Redis is taken back with its current cluster's rollout: each
cluster rollout of a wave writes the wave (its id, clusters in order, its turn, the steps) into
its VirtualService's annotation, and the leader's search for lost rollouts rebuilds the wave
from it. `canary-bot serve` leading over two sandbox API servers and real Redis; the runner's
pass alone for the race of a Redis wiped between its read and its start."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import Cluster, Server
from bot.mesh.kube import KubeMesh
from bot.mesh.models import VirtualService
from bot.mesh.planner import ANNOTATION, LastApplied, read_last_applied
from bot.rollout.engine import Engine
from bot.rollout.model import Phase, Promote, Resume, Rollback, Rollout, StepPlan, WaveRef
from bot.rollout.traffic import KubeTraffic
from bot.rollout.waves import Wave, WaveState
from bot.service.waves import ClusterNotifier, ClusterWaves, WaveRunner
from bot.store.redis_store import RolloutStore, connect
from bot.store.waves import WaveStore
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from tests.support.harness import wait_until
from tests.support.waves import CLUSTERS, leading_server, start_wave, wave_clusters, weights

from .conftest import Clock, Recorder

STEPS = StepPlan(weights=(20, 50, 100), interval_s=3600)
TAKEN_BACK = (
    "the wave canary-eu → prod-eu is taken back with it: it goes on to prod-eu once canary-eu "
    "is promoted"
)


@pytest.fixture
def servers() -> Iterator[dict[str, SandboxApiServer]]:
    with wave_clusters(("home", *CLUSTERS)) as servers:
        yield servers


@pytest.fixture
def server(
    servers: dict[str, SandboxApiServer], redis_url: str, tmp_path: Path, notes: Recorder
) -> Iterator[Server]:
    with leading_server(tmp_path, redis_url, servers, notes, home="home") as server:
        yield server


def test_redis_lost_mid_wave_the_wave_comes_back_and_goes_on_to_prod_eu_after_a_promotion(
    server: Server, servers: dict[str, SandboxApiServer], notes: Recorder
) -> None:
    wave = _start(server)
    first = _lose_redis(server)
    adopted = _taken_back(server)
    assert (adopted.id, adopted.phase, adopted.weight) == (wave.rollout, Phase.PAUSED, 20)
    assert adopted.wave is not None and adopted.wave.steps == STEPS
    back = _waves(server).load(wave.id)
    assert (back.state, back.cluster, back.rollout) == (WaveState.RUNNING, "canary-eu", adopted.id)
    assert (back.clusters, back.steps, back.channel) == (CLUSTERS, STEPS, "C1")
    # the thread is told once the record is kept, not before
    wait_until(lambda: "adopted" in notes.events(), 10, "the thread told")
    told = [m.text for _, m in notes.messages if m.event == "adopted"]
    assert all(TAKEN_BACK in t for t in told)
    assert TAKEN_BACK in adopted.reason

    first.engine.act("default", "weather", Resume(actor="UONCALL"))  # on-call goes on
    first.engine.act("default", "weather", Promote(actor="UONCALL"))
    turn = _waves(server)  # the wave's pass starts prod-eu's rollout, then records it
    wait_until(lambda: turn.load(wave.id).index == 1 and turn.load(wave.id).rollout, 30, "turn")
    moved = turn.load(wave.id)
    assert (moved.state, moved.cluster, moved.promoted) == (
        WaveState.RUNNING,
        "prod-eu",
        ("canary-eu",),
    )
    started = _active(server.parts.clusters["prod-eu"].store)
    assert started is not None and started.wave is not None and started.id == moved.rollout
    assert (started.phase, started.weight, started.steps) == (Phase.PROGRESSING, 20, STEPS)
    assert (started.wave.id, started.wave.cluster, started.channel) == (wave.id, "prod-eu", "C1")
    assert weights(servers["prod-eu"]) == [80, 20]
    on_prod = _last_applied(servers["prod-eu"])
    assert on_prod.rollout == started.id and on_prod.wave == started.wave.annotation()


def test_the_wave_taken_back_halts_when_its_rollout_is_rolled_back(
    server: Server, servers: dict[str, SandboxApiServer]
) -> None:
    wave = _start(server)
    first = _lose_redis(server)
    _taken_back(server)
    assert _waves(server).load(wave.id).state is WaveState.RUNNING
    first.engine.act("default", "weather", Rollback(actor="UONCALL"))
    wait_until(
        lambda: _waves(server).load(wave.id).state is WaveState.HALTED, 30, "the wave halted"
    )
    halted = _waves(server).load(wave.id)
    assert halted.reason == "its rollout on canary-eu was rolled back"
    assert (halted.promoted, halted.left) == ((), ("prod-eu",))
    assert weights(servers["canary-eu"]) == [100, 0] and weights(servers["prod-eu"]) == [100, 0]
    assert _active(server.parts.clusters["prod-eu"].store) is None
    assert _waves(server).running() == []


@pytest.mark.parametrize(
    "hostile",
    ["not an object", {"id": "w1", "clusters": ["canary-eu", "canary-eu"], "index": 0}],
)
def test_a_malformed_wave_in_the_annotation_is_ignored_and_the_rollout_still_taken_back(
    server: Server, servers: dict[str, SandboxApiServer], hostile: object
) -> None:
    wave = _start(server)
    servers["canary-eu"].mutate("default", "virtualservices", "weather", _wave_set_to(hostile))
    _lose_redis(server)
    adopted = _taken_back(server)
    assert (adopted.id, adopted.phase, adopted.weight) == (wave.rollout, Phase.PAUSED, 20)
    assert adopted.wave is None and "the wave" not in adopted.reason
    assert (
        _waves(server).running() == [] and _waves(server).for_service("default", "weather") is None
    )
    resyncs = server.resyncs
    wait_until(lambda: server.resyncs > resyncs + 1, 10, "the leader's passes going on")


def test_a_wave_naming_another_clusters_turn_or_an_unknown_cluster_is_not_rebuilt(
    server: Server, servers: dict[str, SandboxApiServer]
) -> None:
    wave = _start(server)
    elsewhere = {"id": "w1", "clusters": ["canary-eu", "prod-eu"], "index": 1, "steps": {}}
    servers["canary-eu"].mutate("default", "virtualservices", "weather", _wave_set_to(elsewhere))
    _lose_redis(server)
    adopted = _taken_back(server)
    assert adopted.id == wave.rollout and adopted.wave is None
    assert _waves(server).running() == []


# The race: the leader's pass reads a wave whose next cluster has its rollout started and not
# yet recorded in the wave; Redis is emptied; the pass must not start a second rollout there.


class EmptiedAfterRead(WaveStore):
    """The wave book of a pass that read the running waves just before Redis lost it all."""

    def running(self) -> list[Wave]:
        read = super().running()
        self._redis.flushdb()
        return read


class Rig:
    """Two clusters, one Redis: an engine per cluster as `serve` builds it (with its waves)."""

    def __init__(self, redis_url: str, servers: dict[str, SandboxApiServer]) -> None:
        self.redis, self.clock, self.notes = connect(redis_url), Clock(), Recorder()
        self.servers = servers
        self.meshes = {
            n: KubeMesh(api_client_for(s.url), sleep=lambda _: None) for n, s in servers.items()
        }
        self.book = WaveStore(self.redis)
        self.engines = {name: self._engine(name) for name in CLUSTERS}

    def _engine(self, name: str, records: type[RolloutStore] = RolloutStore) -> Engine:
        store = records(self.redis, prefix=f"canary:cluster:{name}", leader_prefix="canary")
        waves = ClusterWaves(book=self.book, cluster=name, clusters=CLUSTERS, clock=self.clock)
        return Engine(
            store=store,
            traffic=KubeTraffic(self.meshes[name]),
            notifier=ClusterNotifier(self.notes, name),
            clock=self.clock,
            waves=waves,
        )

    def runner(
        self, book: WaveStore | None = None, engines: dict[str, Engine] | None = None
    ) -> WaveRunner:
        return WaveRunner(
            engines=engines or self.engines,
            book=book or self.book,
            tell=lambda channel, text: None,
            clock=self.clock,
        )

    def start_turn(self, cluster: str, wave: Wave) -> Rollout:
        """`cluster`'s rollout of the wave's turn, started as the leader's pass starts it."""
        return self.engines[cluster].start(
            namespace="default",
            vs="weather",
            to=None,
            steps=STEPS,
            actor="U1",
            channel="C1",
            wave=wave.ref(),
        )

    def close(self) -> None:
        for mesh in self.meshes.values():
            mesh.close()


@pytest.fixture
def rig(redis_url: str) -> Iterator[Rig]:
    with wave_clusters() as servers:
        rig = Rig(redis_url, servers)
        try:
            yield rig
        finally:
            rig.close()


def test_redis_emptied_during_a_pass_starts_no_second_rollout_where_the_waves_canary_is(
    rig: Rig,
) -> None:
    servers = rig.servers
    wave = start_wave(rig.runner(), STEPS)
    assert wave.rollout is not None
    rig.engines["canary-eu"].act("default", "weather", Promote(actor="U1"))
    # The next turn recorded, its rollout started, and the pass gone before recording it
    turn = rig.book.save(
        wave.model_copy(update={"index": 1, "rollout": None, "updated_at": rig.clock()})
    )
    rig.clock.advance(1)
    orphan = rig.start_turn("prod-eu", turn)
    assert weights(servers["prod-eu"]) == [80, 20]

    assert rig.runner(EmptiedAfterRead(rig.redis)).advance() == []  # left for the next pass
    second = rig.engines["prod-eu"].store
    assert second.active_for("default", "weather") is None  # no second rollout started
    assert _last_applied(servers["prod-eu"]).rollout == orphan.id
    assert weights(servers["prod-eu"]) == [80, 20]

    [adopted] = rig.engines["prod-eu"].adopt_lost("default")  # the search for lost rollouts
    assert (adopted.id, adopted.phase, adopted.wave) == (orphan.id, Phase.PAUSED, turn.ref())
    back = rig.book.load(wave.id)
    assert (back.cluster, back.rollout, back.promoted) == ("prod-eu", orphan.id, ("canary-eu",))
    [waiting] = rig.runner().advance()
    assert waiting == back and second.active_for("default", "weather") == adopted
    rig.engines["prod-eu"].act("default", "weather", Promote(actor="UONCALL"))
    [done] = rig.runner().advance()
    assert done.state is WaveState.DONE and weights(servers["prod-eu"]) == [100]


class PassAfterTheRead(RolloutStore):
    """A cluster's rollout records as a chat start reads them while the leader's pass takes up
    the same wave: the pass starts the turn's rollout just after the start's first read."""

    race: Callable[[], Any] | None = None

    def active_for(self, namespace: str, vs: str) -> Rollout | None:
        read = super().active_for(namespace, vs)
        race, self.race = self.race, None
        if race is not None:
            race()
        return read


def test_a_start_raced_by_the_leaders_pass_takes_up_the_passs_rollout_not_an_error(
    rig: Rig,
) -> None:
    chats = {**rig.engines, "canary-eu": rig._engine("canary-eu", PassAfterTheRead)}
    store = chats["canary-eu"].store
    assert isinstance(store, PassAfterTheRead)
    passed: list[Rollout] = []

    def the_pass() -> None:
        [wave] = rig.book.running()
        passed.append(rig.start_turn("canary-eu", wave))

    store.race = the_pass
    wave = start_wave(rig.runner(engines=chats), STEPS)
    [first] = passed
    assert wave.rollout == first.id  # the pass's rollout taken up: one rollout, no error
    assert rig.book.load(wave.id).rollout == first.id
    assert _last_applied(rig.servers["canary-eu"]).rollout == first.id
    assert weights(rig.servers["canary-eu"]) == [80, 20]


# The annotation itself, read and written by the pure planner


def test_the_wave_goes_into_the_annotation_and_back_and_old_ones_without_it_still_load() -> None:
    ref = WaveRef(id="ab12", clusters=CLUSTERS, index=1, steps=STEPS, to="v2")
    written = LastApplied("v1", "v2", {0: 20}, None, rollout="r1", wave=ref.annotation())
    read = _read(written.to_json())
    assert read == written and WaveRef.from_annotation(read.wave) == ref
    old = _read('{"stable":"v1","canary":"v2","weights":{"0":20},"mirror":null,"rollout":"r1"}')
    assert old is not None and old.wave is None and old.rollout == "r1"
    assert Rollout.model_validate(_old_record()).wave is None


HOSTILE_WAVES = [
    {"id": "../../x", "clusters": ["canary-eu", "prod-eu"], "index": 0, "steps": {}},
    {"id": "w1", "clusters": ["canary-eu", "canary-eu"], "index": 0, "steps": {}},
    {"id": "w1", "clusters": ["canary-eu", "prod-eu"], "index": 7, "steps": {}},
    {"id": "w1", "clusters": ["canary-eu", "prod-eu"], "index": -1, "steps": {}},
    {"id": "w1", "clusters": [], "index": 0, "steps": {}},
    {"id": "w1", "clusters": ["canary-eu", "prod-eu"], "index": 0, "steps": {"weights": 5}},
    {"id": "w1", "clusters": ["canary-eu", "prod-eu"], "index": 0, "steps": {"weights": {}}},
    {"id": "w1", "clusters": ["canary-eu"], "index": 0, "steps": {"weights": [50, 20]}},
    {"id": "w1", "clusters": ["Canary EU"], "index": 0, "steps": {}},
    {"id": "w1", "clusters": "canary-eu", "index": 0, "steps": {}},
    {"id": "w1", "clusters": ["canary-eu"], "index": "0; drop", "steps": {}},
    {"id": "w1", "clusters": ["canary-eu"], "index": 0, "steps": {}, "extra": 1},
    {"id": "w1", "clusters": ["canary-eu"], "index": 0},
    {"id": "w1", "clusters": ["canary-eu"] * 40, "index": 0, "steps": {}},
    {"id": "w1", "clusters": ["canary-eu"], "index": 0, "steps": {}, "to": "x" * 300},
    {},
]


@pytest.mark.parametrize("hostile", HOSTILE_WAVES)
def test_a_malformed_wave_reads_as_none(hostile: dict[str, Any]) -> None:
    assert WaveRef.from_annotation(hostile) is None


@pytest.mark.parametrize("hostile", ["x", 7, None, ["a"], True])
def test_a_wave_that_is_not_an_object_is_left_out_and_the_rest_of_the_annotation_kept(
    hostile: object,
) -> None:
    body = {"stable": "v1", "canary": "v2", "weights": {"0": 20}, "mirror": None, "rollout": "r1"}
    read = _read(json.dumps(body | {"wave": hostile}))
    assert read is not None and (read.rollout, read.wave) == ("r1", None)


# helpers


def _start(server: Server) -> Wave:
    assert server.parts.waves is not None
    wave = start_wave(server.parts.waves, STEPS)
    assert wave.rollout is not None
    return wave


def _lose_redis(server: Server) -> Cluster:
    """Redis restarted with nothing, mid-wave, once the leader has seen the wave's start."""
    first = server.parts.clusters["canary-eu"]
    passes = server.resyncs
    wait_until(lambda: server.resyncs >= passes + 2, 10, "a leader's pass that saw the start")
    first.store.redis.flushdb()
    return first


def _taken_back(server: Server) -> Rollout:
    store = server.parts.clusters["canary-eu"].store
    wait_until(lambda: _active(store) is not None, 30, "the rollout taken back")
    adopted = _active(store)
    assert adopted is not None
    return adopted


def _waves(server: Server) -> WaveStore:
    return WaveStore(server.parts.clusters["canary-eu"].store.redis)


def _active(store: RolloutStore) -> Rollout | None:
    return store.active_for("default", "weather")


def _last_applied(cluster: SandboxApiServer) -> LastApplied:
    vs = cluster.get_object("default", "virtualservices", "weather")
    assert vs is not None
    last = read_last_applied(VirtualService.parse(vs))
    assert last is not None
    return last


def _wave_set_to(value: object) -> Callable[[dict[str, Any]], None]:
    def edit(vs: dict[str, Any]) -> None:
        annotations = vs["metadata"]["annotations"]
        body = json.loads(annotations[ANNOTATION])
        assert "wave" in body  # the wave's rollout wrote it
        annotations[ANNOTATION] = json.dumps(body | {"wave": value})

    return edit


def _read(text: str) -> LastApplied | None:
    raw = {"metadata": {"name": "weather", "annotations": {ANNOTATION: text}}, "spec": {}}
    return read_last_applied(VirtualService.parse(raw))


def _old_record() -> dict[str, Any]:
    """A rollout record as written before rollouts carried their wave."""
    return {
        "id": "r1",
        "target": {"namespace": "default", "vs": "weather", "stable": "v1", "canary": "v2"},
        "steps": {},
        "phase": "paused",
        "step": 0,
        "weight": 20,
        "started_by": "U1",
        "created_at": "2026-11-22T03:00:00Z",
        "updated_at": "2026-11-22T03:00:00Z",
    }
