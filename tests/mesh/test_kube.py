"""The kube adapter, through the official client, against the sandbox API server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.mesh.errors import (
    Conflict,
    Forbidden,
    InvalidObject,
    InvalidRequest,
    Moved,
    NoReadyPods,
    NotFound,
    PlanError,
)
from bot.mesh.kube import KubeMesh
from bot.mesh.planner import ANNOTATION
from bot.mesh.request import SplitRequest
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.seeding import load_yaml_documents, seed
from tests.support.harness import seed_file, wait_until

from .conftest import NOW


@pytest.fixture
def server() -> Iterator[SandboxApiServer]:
    with SandboxApiServer(forbidden_namespaces=("locked",)) as srv:
        weather = load_yaml_documents([seed_file("weather")])
        seed(srv, weather, namespace="default")
        for doc in weather:
            doc["metadata"]["namespace"] = "prod"
        seed(srv, weather)
        srv.clear_log()
        yield srv


@pytest.fixture
def mesh(server: SandboxApiServer) -> Iterator[KubeMesh]:
    api = api_client_for(server.url)
    adapter = KubeMesh(api, clock=lambda: NOW, sleep=lambda _: None)
    adapter.version  # noqa: B018  discovery happens once, before the calls we count
    server.clear_log()
    yield adapter
    adapter.close()
    api.close()


def weights(server: SandboxApiServer, namespace: str = "default") -> list[int]:
    vs = server.get_object(namespace, "virtualservices", "weather")
    assert vs is not None
    return [d["weight"] for d in vs["spec"]["http"][0]["route"]]


def writes(server: SandboxApiServer) -> list[Any]:
    return [r for r in server.requests if r.is_write and r.succeeded]


def request(weight: int, **fields: Any) -> SplitRequest:
    return SplitRequest.build(vs="weather", weight=weight, **fields)


def test_guarded_apply_reads_once_and_patches_once(
    server: SandboxApiServer, mesh: KubeMesh
) -> None:
    applied = mesh.apply(request(50))
    assert weights(server) == [50, 50]
    assert applied.attempts == 1
    methods = [(r.method, r.status) for r in server.requests]
    assert methods == [("GET", 200), ("GET", 200), ("GET", 200), ("PATCH", 200)]
    assert [r.path.rsplit("/", 1)[-1] for r in server.requests[:3]] == [
        "weather",
        "destinationrules",
        "pods",  # the canary's weight goes up: its subset must select ready pods
    ]
    assert server.requests[2].query["labelSelector"] == "version=v2"
    patch = server.requests[-1].json()
    assert patch[0]["op"] == "test" and patch[0]["path"] == "/metadata/resourceVersion"
    assert server.requests[-1].content_type.startswith("application/json-patch+json")
    assert server.requests[-1].query["fieldManager"] == "canary-bot"  # named in managedFields
    stored = server.get_object("default", "virtualservices", "weather")
    assert (
        stored is not None and '"weights":{"0":50}' in stored["metadata"]["annotations"][ANNOTATION]
    )


def test_prefers_v1_and_falls_back_to_what_the_server_offers() -> None:
    with SandboxApiServer(versions=("v1alpha3",)) as srv:
        seed(srv, load_yaml_documents([seed_file("weather")]))
        mesh = KubeMesh(api_client_for(srv.url), clock=lambda: NOW)
        assert mesh.version == "v1alpha3"
        mesh.apply(request(20))
        assert "/v1alpha3/" in srv.requests[-1].path


def test_missing_subset_is_added_to_the_destination_rule_first(
    server: SandboxApiServer, mesh: KubeMesh
) -> None:
    server.mutate(
        "default", "virtualservices", "weather", lambda vs: vs["spec"]["http"][0]["route"].pop()
    )
    server.put_object(pod("weather-v3-0", version="v3"))  # the v3 canary is deployed
    mesh.apply(request(10, to="v3"))
    patched = [r.path.rsplit("/", 2)[-2] for r in writes(server)]
    assert patched == ["destinationrules", "virtualservices"]
    dr = server.get_object("default", "destinationrules", "weather-service")
    assert dr is not None and [s["name"] for s in dr["spec"]["subsets"]] == ["v1", "v2", "v3"]
    assert weights(server) == [90, 10]


def pod(name: str, *, version: str, ready: bool = True) -> dict[str, Any]:
    status = {
        "phase": "Running" if ready else "Pending",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    labels = {"app": "weather", "version": version}
    return {"kind": "Pod", "metadata": {"name": name, "labels": labels}, "status": status}


@pytest.mark.parametrize(
    ("to", "pods"),
    [
        ("v3", []),  # a new subset for a canary that was never deployed
        ("v3", [pod("weather-v3-0", version="v3", ready=False)]),  # deployed, not ready yet
        ("v2", "gone"),  # the existing canary's pods are gone
    ],
)
def test_a_canary_subset_that_selects_no_ready_pods_is_refused_and_nothing_changes(
    server: SandboxApiServer, mesh: KubeMesh, to: str, pods: Any
) -> None:
    if to == "v3":  # the v2 route goes, so v3 can be the canary
        server.mutate(
            "default", "virtualservices", "weather", lambda vs: vs["spec"]["http"][0]["route"].pop()
        )
    if pods == "gone":
        for name in [p["metadata"]["name"] for p in server.list_objects("pods", "default")]:
            server.mutate("default", "pods", name, lambda p: p["metadata"].update(labels={}))
    else:
        for p in pods:
            server.put_object(p)
    before = server.get_object("default", "virtualservices", "weather")
    with pytest.raises(NoReadyPods) as refused:
        mesh.apply(request(30, to=to))
    assert str(refused.value).startswith(
        f"subset '{to}' selects no ready pods (labels version={to})"
    )
    assert "deploy the canary" in str(refused.value)
    assert writes(server) == []
    assert server.get_object("default", "virtualservices", "weather") == before


def test_a_rollback_needs_no_canary_pods(server: SandboxApiServer, mesh: KubeMesh) -> None:
    for name in [p["metadata"]["name"] for p in server.list_objects("pods", "default")]:
        server.mutate("default", "pods", name, lambda p: p["metadata"].update(labels={}))
    mesh.apply(request(0))
    assert weights(server) == [100, 0]


def test_foreign_edit_of_another_field_is_kept_and_the_apply_retries(
    server: SandboxApiServer, mesh: KubeMesh
) -> None:
    server.after_next_get(
        "default",
        "virtualservices",
        "weather",
        lambda vs: vs["spec"]["http"][0].update(timeout="7s"),
    )
    applied = mesh.apply(request(50))
    assert applied.attempts == 2
    stored = server.get_object("default", "virtualservices", "weather")
    assert stored is not None
    assert stored["spec"]["http"][0]["timeout"] == "7s"  # theirs
    assert weights(server) == [50, 50]  # ours
    statuses = [r.status for r in server.requests if r.method == "PATCH"]
    assert statuses == [422, 200]


def test_foreign_edit_of_the_weights_is_a_conflict_not_an_overwrite(
    server: SandboxApiServer, mesh: KubeMesh
) -> None:
    def shift(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["route"][0]["weight"] = 70
        vs["spec"]["http"][0]["route"][1]["weight"] = 30

    server.after_next_get("default", "virtualservices", "weather", shift)
    with pytest.raises(Conflict) as caught:
        mesh.apply(request(50))
    assert weights(server) == [70, 30]
    assert "90/10 became 70/30" in str(caught.value)
    assert "nothing was overwritten" in str(caught.value)


def test_an_object_that_never_stops_changing_gives_up(server: SandboxApiServer) -> None:
    server.after_next_get(
        "default",
        "virtualservices",
        "weather",
        lambda vs: vs["metadata"].setdefault("labels", {}).update(x="1"),
    )
    busy = KubeMesh(api_client_for(server.url), attempts=1, clock=lambda: NOW, sleep=lambda _: None)
    with pytest.raises(Conflict, match="kept changing"):
        busy.apply(request(50))
    assert weights(server) == [90, 10]


def test_unknown_virtual_service_is_not_found(server: SandboxApiServer, mesh: KubeMesh) -> None:
    with pytest.raises(NotFound) as caught:
        mesh.apply(SplitRequest.build(vs="climate", weight=10))
    assert "VirtualService 'climate' was not found in namespace 'default'" in str(caught.value)
    assert writes(server) == []


def test_forbidden_namespace_says_how_to_grant_access(
    server: SandboxApiServer, mesh: KubeMesh
) -> None:
    with pytest.raises(Forbidden) as caught:
        mesh.apply(SplitRequest.build(vs="weather", namespace="locked", weight=10))
    assert "may not get virtualservices in namespace 'locked'" in str(caught.value)
    assert writes(server) == []


def test_server_side_invalid_is_reported_without_retrying(
    server: SandboxApiServer, mesh: KubeMesh
) -> None:
    server.fail_next(
        1,
        422,
        method="PATCH",
        reason="Invalid",
        message="admission webhook denied the request: weights frozen",
    )
    with pytest.raises(InvalidObject, match="weights frozen"):
        mesh.apply(request(50))
    assert weights(server) == [90, 10]
    assert [r.method for r in server.requests].count("PATCH") == 1


def test_missing_destination_rule_changes_nothing(server: SandboxApiServer, mesh: KubeMesh) -> None:
    server.put_object(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "lonely", "namespace": "default"},
            "spec": {
                "hosts": ["lonely"],
                "http": [{"route": [{"destination": {"host": "lonely", "subset": "v1"}}]}],
            },
        }
    )
    server.clear_log()
    with pytest.raises(PlanError, match="no DestinationRule in 'default'"):
        mesh.apply(SplitRequest.build(vs="lonely", weight=10))
    assert writes(server) == []


def test_live_object_broken_by_hand_is_reported_and_untouched(
    server: SandboxApiServer, mesh: KubeMesh
) -> None:
    # The sandbox validates writes like the API server, so break it behind its back.
    vs = server.get_object("prod", "virtualservices", "weather")
    assert vs is not None
    for destination in vs["spec"]["http"][0]["route"]:
        destination["weight"] = 0
    server.put_object(vs)
    server.clear_log()
    with pytest.raises(InvalidObject, match="are all 0, so the route sends traffic nowhere"):
        mesh.apply(SplitRequest.build(vs="weather", namespace="prod", weight=10))
    assert writes(server) == []


def test_watching_destination_rules_saves_a_call_per_apply(server: SandboxApiServer) -> None:
    mesh = KubeMesh(api_client_for(server.url), clock=lambda: NOW, watch_destination_rules=True)
    try:
        mesh.apply(request(20))
        server.clear_log()
        mesh.apply(request(30))
        calls = [r.method for r in server.requests if "watch" not in r.query]
        assert calls == ["GET", "PATCH"]  # the DestinationRules come from the watch
        server.mutate(
            "default",
            "destinationrules",
            "weather-service",
            lambda dr: dr["spec"]["subsets"].append({"name": "v3", "labels": {"version": "v3"}}),
        )
        wait_until(lambda: len(mesh.destination_rules("default")[0]["spec"]["subsets"]) == 3)
    finally:
        mesh.close()


BAD_REQUESTS = [
    ({"vs": "weather", "weight": -1}, InvalidRequest),
    ({"vs": "weather", "weight": 101}, InvalidRequest),
    ({"vs": "weather", "weight": 10.5}, InvalidRequest),
    ({"vs": "weather", "weight": "ten"}, InvalidRequest),
    ({"vs": "Weather_1", "weight": 10}, InvalidRequest),
    ({"vs": "weather", "weight": 10, "namespace": "no/such"}, InvalidRequest),
    ({"vs": "weather", "weight": 10, "to": "v2..x"}, InvalidRequest),
    ({"vs": "climate", "weight": 10}, NotFound),
    ({"vs": "lonely", "weight": 10}, PlanError),  # routes to a host no DestinationRule has
    ({"vs": "weather", "weight": 10, "to": "v1"}, InvalidRequest),  # v1 is the stable one
]


@pytest.mark.parametrize(("fields", "error"), BAD_REQUESTS)
def test_bad_input_changes_nothing(
    server: SandboxApiServer, mesh: KubeMesh, fields: dict[str, Any], error: type[Exception]
) -> None:
    server.put_object(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "lonely", "namespace": "default"},
            "spec": {
                "hosts": ["lonely"],
                "http": [{"route": [{"destination": {"host": "lonely", "subset": "v1"}}]}],
            },
        }
    )
    server.clear_log()
    with pytest.raises(error) as caught:
        mesh.apply(SplitRequest.build(**fields))
    assert str(caught.value)
    assert writes(server) == []
    assert weights(server) == [90, 10]


def test_a_write_planned_on_a_stale_read_is_refused_not_replanned(
    server: SandboxApiServer, mesh: KubeMesh
) -> None:
    plan = mesh.plan(request(20))
    server.mutate(
        "default",
        "virtualservices",
        "weather",
        lambda vs: vs["spec"]["http"][0].update(timeout="3s"),
    )
    server.clear_log()
    with pytest.raises(Moved) as moved:
        mesh.write(plan)
    assert moved.value.live["spec"]["http"][0]["timeout"] == "3s"  # what is live, to decide on
    on_vs = [(r.method, r.status) for r in server.requests if "virtualservices" in r.path]
    assert on_vs == [("PATCH", 422), ("GET", 200)]  # the test op failed; nothing re-planned
    applied = mesh.apply(request(20))  # the CLI's path plans again on a fresh read
    assert applied.attempts == 1
    stored = server.get_object("default", "virtualservices", "weather")
    assert stored is not None and stored["spec"]["http"][0]["timeout"] == "3s"
    assert weights(server) == [80, 20]
