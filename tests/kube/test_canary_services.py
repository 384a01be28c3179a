"""No traffic to a canary Service that selects no ready pod, on the real kube-apiserver and the
sandbox: a host-based VirtualService (Flagger's `-primary`/`-canary` Services) and a Gateway API
HTTPRoute. The bot reads the canary Service's selector and asks for its ready pods, as it does
for a subset's labels; a Service that is not there, or selects nothing ready, is refused with
nothing written, and taking traffic away is always allowed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from bot.mesh import httproute
from bot.mesh.errors import NoReadyPods
from bot.mesh.kube import GROUP, KubeMesh
from bot.mesh.request import SplitRequest
from tests.support.harness import wait_until
from tests.support.services import service_with_pods

from .conftest import Cluster

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Shape:
    """A route object splitting two Services, and how to read its weights back."""

    group: str
    plural: str
    body: dict[str, Any]
    weights: Callable[[dict[str, Any]], list[int]]

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def stable(self) -> str:
        return f"{self.name}-primary"

    @property
    def canary(self) -> str:
        return f"{self.name}-canary"


def _backends(name: str) -> list[dict[str, Any]]:
    return [
        {"name": f"{name}-primary", "port": 80, "weight": 100},
        {"name": f"{name}-canary", "port": 80, "weight": 0},
    ]


HOST_VS = Shape(
    GROUP,
    "virtualservices",
    {
        "apiVersion": f"{GROUP}/v1",
        "kind": "VirtualService",
        "metadata": {"name": "podinfo"},
        "spec": {
            "hosts": ["podinfo"],
            "http": [
                {
                    "name": "primary",
                    "route": [
                        {"destination": {"host": "podinfo-primary"}, "weight": 100},
                        {"destination": {"host": "podinfo-canary"}, "weight": 0},
                    ],
                }
            ],
        },
    },
    lambda vs: [d["weight"] for d in vs["spec"]["http"][0]["route"]],
)
ROUTE = Shape(
    httproute.GROUP,
    httproute.PLURAL,
    {
        "apiVersion": f"{httproute.GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "checkout"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "checkout", "port": 80}],
            "rules": [{"backendRefs": _backends("checkout")}],
        },
    },
    lambda route: [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]],
)


@pytest.fixture(params=[HOST_VS, ROUTE], ids=["host-vs", "httproute"])
def shape(request: pytest.FixtureRequest) -> Shape:
    found: Shape = request.param
    return found


@pytest.fixture(params=[False, True], ids=["listed", "watched"])
def mesh(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[KubeMesh]:
    """The adapter reading pods with a list call per plan, or from its watch (as `serve`)."""
    adapter = KubeMesh(
        cluster.api, clock=lambda: NOW, sleep=lambda _: None, watch_destination_rules=request.param
    )
    yield adapter
    adapter.close()


def created(cluster: Cluster, shape: Shape) -> str:
    """A fresh namespace with the route object and its stable Service, whose pods are ready."""
    namespace = cluster.namespace()
    cluster.objects.create_namespaced_custom_object(
        shape.group, "v1", namespace, shape.plural, shape.body
    )
    cluster.add_service(namespace, service_with_pods(shape.stable))
    return namespace


def live(cluster: Cluster, shape: Shape, namespace: str) -> list[int]:
    found = cluster.objects.get_namespaced_custom_object(
        shape.group, "v1", namespace, shape.plural, shape.name
    )
    return shape.weights(found)


def to(shape: Shape, namespace: str, weight: int) -> SplitRequest:
    return SplitRequest.build(vs=shape.name, namespace=namespace, weight=weight, to=shape.canary)


def test_a_canary_service_gets_traffic_only_once_it_selects_a_ready_pod(
    cluster: Cluster, mesh: KubeMesh, shape: Shape
) -> None:
    namespace = created(cluster, shape)
    service, deployment = service_with_pods(shape.canary)

    missing = rf"Service '{shape.canary}' does not exist in namespace '{namespace}'"
    with pytest.raises(NoReadyPods, match=missing):
        mesh.apply(to(shape, namespace, 10))
    assert live(cluster, shape, namespace) == [100, 0]

    cluster.add_service(namespace, [service])  # the Service, with no pod behind it yet
    empty = rf"Service '{shape.canary}' selects no ready pods \(labels app={shape.canary}\)"
    with pytest.raises(NoReadyPods, match=empty):
        mesh.apply(to(shape, namespace, 10))
    assert live(cluster, shape, namespace) == [100, 0]

    cluster.add_service(namespace, [deployment])  # its pod, Ready
    wait_until(lambda: mesh.ready_pods(namespace, {"app": shape.canary}) != [])
    mesh.apply(to(shape, namespace, 10))
    assert live(cluster, shape, namespace) == [90, 10]


def test_a_canary_whose_pods_are_gone_keeps_its_share_and_may_only_lose_it(
    cluster: Cluster, mesh: KubeMesh, shape: Shape
) -> None:
    namespace = created(cluster, shape)
    cluster.add_service(namespace, service_with_pods(shape.canary))
    wait_until(lambda: mesh.ready_pods(namespace, {"app": shape.canary}) != [])
    mesh.apply(to(shape, namespace, 10))

    core = client.CoreV1Api(cluster.api)
    for pod in core.list_namespaced_pod(namespace, label_selector=f"app={shape.canary}").items:
        core.delete_namespaced_pod(
            pod.metadata.name, namespace, grace_period_seconds=0, _preload_content=False
        )
    wait_until(lambda: mesh.ready_pods(namespace, {"app": shape.canary}) == [])
    with pytest.raises(NoReadyPods, match="nothing was changed; deploy the canary"):
        mesh.apply(to(shape, namespace, 30))
    assert live(cluster, shape, namespace) == [90, 10]
    mesh.apply(to(shape, namespace, 0))  # taking traffic away needs no pod
    assert live(cluster, shape, namespace) == [100, 0]


def test_a_service_without_a_selector_is_not_held_to_pods_it_cannot_name(
    cluster: Cluster, mesh: KubeMesh, shape: Shape
) -> None:
    """An ExternalName Service (or one whose endpoints are kept by hand) names no pods: the bot
    cannot tell whether they are ready, and lets the weight move (the README says so)."""
    namespace = created(cluster, shape)
    external = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": shape.canary},
        "spec": {"type": "ExternalName", "externalName": "canary.example.com"},
    }
    cluster.add_service(namespace, [external])
    mesh.apply(to(shape, namespace, 10))
    assert live(cluster, shape, namespace) == [90, 10]


@pytest.mark.parametrize("cluster", ["sandbox"], indirect=True)  # its log counts the calls
def test_serve_checks_a_canary_service_with_no_call_of_its_own(cluster: Cluster) -> None:
    """As `serve` runs it (Pods and Services kept by watches), raising a host-based canary's
    weight is one read of the route and one guarded write: the budget of two calls a change."""
    assert cluster.sandbox is not None
    watched = KubeMesh(
        cluster.api, clock=lambda: NOW, sleep=lambda _: None, watch_destination_rules=True
    )
    try:
        namespace = created(cluster, HOST_VS)
        cluster.add_service(namespace, service_with_pods(HOST_VS.canary))
        wait_until(lambda: watched.ready_pods(namespace, {"app": HOST_VS.canary}) != [])
        watched.apply(to(HOST_VS, namespace, 10))  # the watches are up from here on
        cluster.sandbox.clear_log()
        watched.apply(to(HOST_VS, namespace, 20))
        calls = [
            (r.method, r.path.rsplit("/", 2)[-2])
            for r in cluster.sandbox.requests
            if not r.is_watch
        ]
        assert calls == [("GET", "virtualservices"), ("PATCH", "virtualservices")]
        assert live(cluster, HOST_VS, namespace) == [80, 20]
    finally:
        watched.close()


@pytest.mark.parametrize("cluster", ["sandbox"], indirect=True)  # it can silence a watch
def test_a_watch_that_trails_is_read_again_before_a_refusal_says_something_is_missing(
    cluster: Cluster,
) -> None:
    """The Services and Pods watches of `serve` hear nothing (a watch trailing behind changes
    made a moment ago): a refusal is not made on their word alone. The Service just created is
    not called missing, and its pod just made ready takes traffic at once."""
    assert cluster.sandbox is not None
    watched = KubeMesh(
        cluster.api, clock=lambda: NOW, sleep=lambda _: None, watch_destination_rules=True
    )
    try:
        namespace = created(cluster, HOST_VS)
        cluster.sandbox.black_hole(path_contains=f"/namespaces/{namespace}/", watch=True)
        service, deployment = service_with_pods(HOST_VS.canary)
        with pytest.raises(NoReadyPods, match="does not exist"):  # the watches start here
            watched.apply(to(HOST_VS, namespace, 10))

        cluster.add_service(namespace, [service])
        with pytest.raises(NoReadyPods, match=r"selects no ready pods \(labels app=podinfo"):
            watched.apply(to(HOST_VS, namespace, 10))
        assert live(cluster, HOST_VS, namespace) == [100, 0]

        cluster.add_service(namespace, [deployment])
        watched.apply(to(HOST_VS, namespace, 10))
        assert live(cluster, HOST_VS, namespace) == [90, 10]
        watches = [r for r in cluster.sandbox.requests if r.is_watch]
        assert {r.path.rsplit("/", 1)[-1] for r in watches} >= {"services", "pods"}
    finally:
        cluster.sandbox.clear_faults()
        watched.close()
