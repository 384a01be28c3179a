"""A live weight read by a writer that then lost the race to record it is not drift once
another writer's change has landed and been recorded since: the bot reads the object again
before it calls anything drift (fault campaign seed 60814: "record says 90% but 75% is live")."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client

from bot.mesh.kube import KubeMesh
from bot.rollout.engine import Engine
from bot.rollout.model import StepPlan, Target
from bot.rollout.ports import Planned
from bot.rollout.traffic import KubeTraffic
from bot.store.redis_store import RolloutStore
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for

from .conftest import Clock, Recorder, live_weights

STEPS = StepPlan(weights=(10, 20, 100), interval_s=30)


class HeldAfterSettling(KubeTraffic):
    """The real adapter; once armed, it holds its caller right after finding out what became
    of a failed write (it read the live weights then), as a replica paused there would be."""

    def __init__(self, mesh: KubeMesh) -> None:
        super().__init__(mesh)
        self.armed = False
        self.reached, self.release = threading.Event(), threading.Event()

    def settle(self, target: Target, write_id: str, fence_id: str) -> tuple[bool, int | None]:
        found = super().settle(target, write_id, fence_id)
        if self.armed:
            self.armed = False
            self.reached.set()
            self.release.wait(30)
        return found


@pytest.fixture
def held(cluster: SandboxApiServer, store: RolloutStore, clock: Clock) -> Iterator[Engine]:
    mesh = KubeMesh(api_client_for(cluster.url), sleep=lambda _: None)
    traffic = HeldAfterSettling(mesh)
    yield Engine(store=store, traffic=traffic, notifier=Recorder(), clock=clock, mutex=(300, 5.0))
    mesh.close()


@pytest.fixture
def other(cluster: SandboxApiServer, store: RolloutStore, clock: Clock) -> Iterator[Engine]:
    mesh = KubeMesh(api_client_for(cluster.url), sleep=lambda _: None)
    yield Engine(store=store, traffic=KubeTraffic(mesh), notifier=Recorder(), clock=clock)
    mesh.close()


def set_weight(engine: Engine, weight: int, actor: str) -> object:
    return engine.set_weight(
        namespace="default",
        vs="weather",
        to=None,
        weight=weight,
        steps=STEPS,
        actor=actor,
        channel="C1",
    )


class FrozenBeforeWriting(KubeTraffic):
    """The real adapter, frozen right before it sends its next write: the write stays on
    record, unconfirmed, for the others to settle."""

    def __init__(self, mesh: KubeMesh) -> None:
        super().__init__(mesh)
        self.reached, self.release = threading.Event(), threading.Event()

    def write(self, planned: Planned) -> None:
        self.reached.set()
        self.release.wait(30)
        super().write(planned)


def hand_edit(cluster: SandboxApiServer, canary: int) -> None:
    with api_client_for(cluster.url) as api:
        vs = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "networking.istio.io", "v1", "default", "virtualservices", "weather"
        )
        routes = vs["spec"]["http"][0]["route"]
        routes[0]["weight"], routes[1]["weight"] = 100 - canary, canary
        client.CustomObjectsApi(api).replace_namespaced_custom_object(
            "networking.istio.io", "v1", "default", "virtualservices", "weather", vs
        )


def test_a_weight_read_before_anothers_change_landed_is_not_recorded_as_drift(
    held: Engine, other: Engine, cluster: SandboxApiServer, store: RolloutStore, clock: Clock
) -> None:
    """A writer froze with a write on record. Two humans then act: the first reads the live
    weight while settling that write (a hand edit made it 90%) and is paused there; the second
    settles the same write, records the 90% as the drift it is, and sets 75%, which lands.
    When the first goes on, its 90% is stale: it must not be recorded as drift over 75%."""
    rollout_id = set_weight(other, 10, "U1").id  # type: ignore[attr-defined]
    mesh = KubeMesh(api_client_for(cluster.url), sleep=lambda _: None)
    frozen_traffic = FrozenBeforeWriting(mesh)
    frozen = Engine(
        store=store, traffic=frozen_traffic, notifier=Recorder(), clock=clock, mutex=(300, 5.0)
    )
    traffic = held.traffic
    assert isinstance(traffic, HeldAfterSettling)
    with ThreadPoolExecutor(2) as pool:
        stuck = pool.submit(set_weight, frozen, 30, "U2")
        assert frozen_traffic.reached.wait(20)
        assert store.load(rollout_id).writing is not None  # its write is on record, unsent
        hand_edit(cluster, 90)
        traffic.armed = True
        first = pool.submit(set_weight, held, 25, "U3")
        assert traffic.reached.wait(20)  # it read 90% while settling the frozen write
        set_weight(other, 75, "U4")  # settles it too, records the drift to 90%, then 75% lands
        assert live_weights(cluster) == [25, 75]
        traffic.release.set()
        first.result(timeout=20)
        frozen_traffic.release.set()
        stuck.result(timeout=20)
    mesh.close()
    record = store.load(rollout_id)
    live = live_weights(cluster)[1]
    assert (record.weight, record.writing) == (live, None)  # the record says what is live
    trail = store.history("default", "weather")
    drifts = [(e.weight_before, e.weight_after) for e in trail if e.action == "drift"]
    assert drifts == [(10, 90)]  # the hand edit, once; never "75% became 90%"
