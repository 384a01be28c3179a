"""No traffic to a canary whose pods are not ready, on the real kube-apiserver and the sandbox:
Pod objects with their status written as a kubelet would (there is none)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from kubernetes import client

from bot.mesh.errors import NoReadyPods
from bot.mesh.kube import KubeMesh
from bot.mesh.request import SplitRequest
from tests.support.harness import wait_until
from tests.support.kubeapi import RealKube

from .conftest import Cluster

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


@pytest.fixture(params=[False, True], ids=["listed", "watched"])
def mesh(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[KubeMesh]:
    """The adapter reading pods with a list call per plan, or from its watch (as `serve`)."""
    adapter = KubeMesh(
        cluster.api, clock=lambda: NOW, sleep=lambda _: None, watch_destination_rules=request.param
    )
    yield adapter
    adapter.close()


def relabel(cluster: Cluster, namespace: str, name: str, version: str) -> None:
    """The pod's version label changed through the API (a pod replaced by another version)."""
    body = {"metadata": {"labels": {"app": "weather", "version": version}}}
    client.CoreV1Api(cluster.api).patch_namespaced_pod(
        name, namespace, body, _content_type="application/merge-patch+json"
    )


def weights(cluster: Cluster, namespace: str) -> list[int]:
    routes = cluster.get_vs(namespace, "weather")["spec"]["http"][0]["route"]
    return [r["weight"] for r in routes]


def test_a_canary_whose_pods_are_gone_gets_no_traffic_until_they_are_back(
    cluster: Cluster, mesh: KubeMesh
) -> None:
    namespace = cluster.namespace()
    cluster.seed("weather", namespace)  # v1 at 90, v2 at 10, every pod Ready
    wanted = SplitRequest.build(vs="weather", namespace=namespace, weight=30)
    relabel(cluster, namespace, "weather-v2-0", "v3")  # no pod is v2 any more
    wait_until(lambda: not mesh.ready_pods(namespace, {"version": "v2"}))
    refused = r"subset 'v2' selects no ready pods \(labels version=v2\)"
    with pytest.raises(NoReadyPods, match=refused):
        mesh.apply(wanted)
    assert weights(cluster, namespace) == [90, 10]
    mesh.apply(SplitRequest.build(vs="weather", namespace=namespace, weight=0))  # down: allowed
    assert weights(cluster, namespace) == [100, 0]
    relabel(cluster, namespace, "weather-v2-0", "v2")
    wait_until(lambda: mesh.ready_pods(namespace, {"version": "v2"}) == ["weather-v2-0"])
    mesh.apply(wanted)
    assert weights(cluster, namespace) == [70, 30]


def test_a_pod_that_is_not_ready_does_not_count(real_kube: RealKube) -> None:
    """Readiness as a kubelet reports it, through pods/status (the real server only: the
    sandbox has no status subresource; its pods are as they were put)."""
    namespace = real_kube.new_namespace("ready")
    api = real_kube.api_client()
    cluster = Cluster("real", api, real_kube)
    cluster.seed("weather", namespace)
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}
    client.CoreV1Api(api).patch_namespaced_pod_status("weather-v2-0", namespace, {"status": status})
    mesh = KubeMesh(api, clock=lambda: NOW, sleep=lambda _: None)
    try:
        with pytest.raises(NoReadyPods):
            mesh.apply(SplitRequest.build(vs="weather", namespace=namespace, weight=30))
        assert weights(cluster, namespace) == [90, 10]
    finally:
        mesh.close()
        api.close()
