"""A TCP rollout (Istio's TCP traffic-shifting task: tcp-echo v1 → v2 behind a gateway) through
the engine, real Redis and the sandbox API server: promoted, and rolled back."""

from __future__ import annotations

from typing import Any

import pytest

from bot.rollout.engine import Engine
from bot.rollout.model import Phase, Rollback, StepDue, StepPlan
from sandbox.apiserver import SandboxApiServer

from .conftest import Clock

STEPS = StepPlan(weights=(20, 100), interval_s=30)


def destination(subset: str) -> dict[str, Any]:
    return {"host": "tcp-echo", "port": {"number": 9000}, "subset": subset}


TCP_ECHO_ALL_V1: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "tcp-echo", "namespace": "default"},
    "spec": {
        "hosts": ["*"],
        "gateways": ["tcp-echo-gateway"],
        "tcp": [{"match": [{"port": 31400}], "route": [{"destination": destination("v1")}]}],
    },
}
TCP_ECHO_DR: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "tcp-echo-destination", "namespace": "default"},
    "spec": {
        "host": "tcp-echo",
        "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}},
        ],
    },
}


def pod(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"tcp-echo-{version}-0",
            "namespace": "default",
            "labels": {"app": "tcp-echo", "version": version},
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


@pytest.fixture
def tcp_echo(cluster: SandboxApiServer) -> SandboxApiServer:
    for obj in (TCP_ECHO_ALL_V1, TCP_ECHO_DR, pod("v1"), pod("v2")):
        cluster.put_object(obj)
    cluster.clear_log()
    return cluster


def tcp_route(cluster: SandboxApiServer) -> list[tuple[str, int]]:
    vs = cluster.get_object("default", "virtualservices", "tcp-echo")
    assert vs is not None
    assert vs["spec"]["tcp"][0]["match"] == [{"port": 31400}]
    dests = vs["spec"]["tcp"][0]["route"]
    return [(d["destination"]["subset"], d.get("weight", 100)) for d in dests]


def start(engine: Engine) -> str:
    return engine.start(
        namespace="default", vs="tcp-echo", to="v2", steps=STEPS, actor="U1", channel="C1"
    ).id


def test_a_tcp_rollout_shifts_its_weights_and_promotes(
    engine: Engine, tcp_echo: SandboxApiServer, clock: Clock
) -> None:
    rollout_id = start(engine)
    assert tcp_route(tcp_echo) == [("v1", 80), ("v2", 20)]
    for _ in range(5):
        rollout = engine.store.load(rollout_id)
        if not rollout.active:
            break
        clock.advance(STEPS.interval_s)
        engine.handle(rollout_id, StepDue(step=rollout.step))
    assert engine.store.load(rollout_id).phase is Phase.PROMOTED
    assert tcp_route(tcp_echo) == [("v2", 100)]


def test_a_tcp_rollout_rolls_back_to_v1(engine: Engine, tcp_echo: SandboxApiServer) -> None:
    start(engine)
    done = engine.act("default", "tcp-echo", Rollback(actor="U2"))
    assert done.phase is Phase.ROLLED_BACK
    assert tcp_route(tcp_echo) == [("v1", 100), ("v2", 0)]
