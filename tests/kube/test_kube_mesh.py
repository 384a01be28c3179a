"""The bot's Kubernetes adapter (bot/mesh/kube.py) against a real kube-apiserver and the sandbox:
plan, guarded write, a write planned on a stale read, drift, the DestinationRule watch, and a
ServiceAccount held to its namespace by RBAC."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from bot.mesh.errors import Drift, Forbidden, Moved
from bot.mesh.kube import KubeMesh, from_kubeconfig
from bot.mesh.planner import ANNOTATION
from bot.mesh.request import SplitRequest
from tests.support.harness import wait_until
from tests.support.kubeapi import RealKube

from .conftest import GROUP, Cluster

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
JSON_PATCH = "application/json-patch+json"


@pytest.fixture
def mesh(cluster: Cluster) -> Iterator[KubeMesh]:
    adapter = KubeMesh(cluster.api, clock=lambda: NOW, sleep=lambda _: None)
    yield adapter
    adapter.close()


def request(namespace: str, weight: int) -> SplitRequest:
    return SplitRequest.build(vs="weather", namespace=namespace, weight=weight)


def weights(cluster: Cluster, namespace: str) -> list[int]:
    routes = cluster.get_vs(namespace, "weather")["spec"]["http"][0]["route"]
    return [r["weight"] for r in routes]


def edit(cluster: Cluster, namespace: str, plural: str, name: str, ops: list[Any]) -> None:
    """Another writer's change, through the API."""
    cluster.objects.patch_namespaced_custom_object(
        GROUP, "v1", namespace, plural, name, ops, _content_type=JSON_PATCH
    )


def test_the_adapter_discovers_v1_and_applies_with_one_guarded_patch(
    cluster: Cluster, mesh: KubeMesh
) -> None:
    namespace = cluster.namespace()
    cluster.seed("weather", namespace)
    assert mesh.version == "v1"
    before = cluster.get_vs(namespace, "weather")["metadata"]["resourceVersion"]

    applied = mesh.apply(request(namespace, 50))

    assert applied.attempts == 1
    assert weights(cluster, namespace) == [50, 50]
    live = cluster.get_vs(namespace, "weather")
    assert (
        live["metadata"]["resourceVersion"]
        == applied.virtual_service["metadata"]["resourceVersion"]
    )
    assert live["metadata"]["resourceVersion"] != before
    assert '"weights":{"0":50}' in live["metadata"]["annotations"][ANNOTATION]
    assert live["metadata"]["generation"] == 2


def test_a_write_planned_on_a_stale_read_is_refused_not_replanned(
    cluster: Cluster, mesh: KubeMesh
) -> None:
    namespace = cluster.namespace()
    cluster.seed("weather", namespace)
    plan = mesh.plan(request(namespace, 20))
    edit(
        cluster,
        namespace,
        "virtualservices",
        "weather",
        [{"op": "add", "path": "/spec/http/0/timeout", "value": "3s"}],
    )

    with pytest.raises(Moved) as moved:
        mesh.write(plan)

    assert moved.value.live["spec"]["http"][0]["timeout"] == "3s"  # what is live, to decide on
    assert weights(cluster, namespace) == [90, 10]  # nothing of the stale plan landed
    applied = mesh.apply(request(namespace, 20))  # planning again on a fresh read
    assert applied.attempts == 1
    assert cluster.get_vs(namespace, "weather")["spec"]["http"][0]["timeout"] == "3s"
    assert weights(cluster, namespace) == [80, 20]


def test_weights_changed_by_someone_else_are_drift_not_overwritten(
    cluster: Cluster, mesh: KubeMesh
) -> None:
    namespace = cluster.namespace()
    cluster.seed("weather", namespace)
    edit(
        cluster,
        namespace,
        "virtualservices",
        "weather",
        [
            {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 70},
            {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 30},
        ],
    )
    with pytest.raises(Drift) as drift:
        mesh.apply(request(namespace, 50), expect=10)
    assert (drift.value.found, drift.value.expected) == (30, 10)
    assert weights(cluster, namespace) == [70, 30]


def test_the_destination_rule_watch_follows_changes(cluster: Cluster) -> None:
    namespace = cluster.namespace()
    cluster.seed("weather", namespace)
    mesh = KubeMesh(cluster.api, clock=lambda: NOW, watch_destination_rules=True)
    try:
        mesh.apply(request(namespace, 20))
        edit(
            cluster,
            namespace,
            "destinationrules",
            "weather-service",
            [
                {
                    "op": "add",
                    "path": "/spec/subsets/-",
                    "value": {"name": "v3", "labels": {"version": "v3"}},
                }
            ],
        )
        wait_until(
            lambda: len(mesh.destination_rules(namespace)[0]["spec"]["subsets"]) == 3,
            timeout=10,
            what="the watched DestinationRule to gain subset v3",
        )
    finally:
        mesh.close()


def test_a_service_account_bound_to_one_namespace_applies_there_only(real_kube: RealKube) -> None:
    """The bot as deployed: a kubeconfig with a ServiceAccount token, RBAC on Istio's kinds in
    the namespaces it serves (what the Helm chart grants), and nothing elsewhere."""
    served, other = real_kube.new_namespace("served"), real_kube.new_namespace("other")
    admin = Cluster("real", real_kube.admin, real_kube)
    for namespace in (served, other):
        admin.seed("weather", namespace)
    rbac = client.RbacAuthorizationV1Api(real_kube.admin)
    rule = {
        "apiGroups": [GROUP],
        "resources": ["virtualservices", "destinationrules"],
        "verbs": ["get", "list", "watch", "patch"],
    }
    pods = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    role = {"metadata": {"name": "canary-bot"}, "rules": [rule, pods]}
    rbac.create_namespaced_role(served, role)
    token = real_kube.service_account_token(served, "canary-bot")
    rbac.create_namespaced_role_binding(
        served,
        {
            "metadata": {"name": "canary-bot"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "canary-bot",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "canary-bot", "namespace": served}],
        },
    )
    api = from_kubeconfig(str(real_kube.kubeconfig_for(token, namespace=served)))
    mesh = KubeMesh(api, clock=lambda: NOW, sleep=lambda _: None)
    try:

        def applies() -> bool:
            try:
                mesh.apply(request(served, 30))
            except Forbidden:
                return False  # the RoleBinding is not in the authorizer's cache yet
            return True

        wait_until(applies, timeout=10, what="the RoleBinding to take effect")
        assert weights(admin, served) == [70, 30]
        with pytest.raises(Forbidden) as refused:
            mesh.apply(request(other, 30))
        assert f"may not get virtualservices in namespace '{other}'" in str(refused.value)
        assert f"system:serviceaccount:{served}:canary-bot" in str(refused.value)
        assert weights(admin, other) == [90, 10]
    finally:
        mesh.close()
        api.close()
