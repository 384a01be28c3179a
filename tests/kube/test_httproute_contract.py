"""The HTTPRoute contract, on the sandbox API server and on a real kube-apiserver with the Gateway
API's CRD installed: the bot's write is a JSON Patch guarded by the resourceVersion it read, a
foreign edit in between fails the guard and nothing of the bot's lands, and the API server
holds HTTPRoutes to the CRD's schema."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from bot.mesh.errors import Moved
from bot.mesh.httproute import GROUP, PLURAL, last_applied
from bot.mesh.kube import KubeMesh
from bot.mesh.request import SplitRequest

from .conftest import Cluster

JSON_PATCH = "application/json-patch+json"
NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
ROUTE: dict[str, Any] = {
    "apiVersion": f"{GROUP}/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "checkout"},
    "spec": {
        "parentRefs": [{"group": "", "kind": "Service", "name": "checkout", "port": 80}],
        "rules": [
            {
                "backendRefs": [
                    {"name": "checkout-stable", "port": 80, "weight": 100},
                    {"name": "checkout-canary", "port": 80, "weight": 0},
                ]
            }
        ],
    },
}


@pytest.fixture
def mesh(cluster: Cluster) -> Iterator[KubeMesh]:
    adapter = KubeMesh(cluster.api, clock=lambda: NOW, sleep=lambda _: None, check_pods=False)
    yield adapter
    adapter.close()


def created(cluster: Cluster) -> tuple[str, dict[str, Any]]:
    namespace = cluster.namespace()
    made = cluster.objects.create_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, ROUTE)
    return namespace, made


def read(cluster: Cluster, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.objects.get_namespaced_custom_object(
        GROUP, "v1", namespace, PLURAL, "checkout"
    )
    return found


def weights(route: dict[str, Any]) -> list[tuple[str, int]]:
    return [(r["name"], r["weight"]) for r in route["spec"]["rules"][0]["backendRefs"]]


def test_the_bot_moves_an_httproutes_weights_with_a_guarded_patch(
    cluster: Cluster, mesh: KubeMesh
) -> None:
    namespace, before = created(cluster)
    applied = mesh.apply(SplitRequest.build(vs="checkout", namespace=namespace, weight=10))
    assert applied.attempts == 1 and applied.plan.vs.kind == "HTTPRoute"
    assert applied.plan.vs.guarded_ops()[0] == {
        "op": "test",
        "path": "/metadata/resourceVersion",
        "value": before["metadata"]["resourceVersion"],
    }
    live = read(cluster, namespace)
    assert weights(live) == [("checkout-stable", 90), ("checkout-canary", 10)]
    record = last_applied(live)
    assert record is not None and (record.stable, record.canary, record.weights) == (
        "checkout-stable",
        "checkout-canary",
        {0: 10},
    )
    assert live["metadata"]["generation"] == 2


def test_a_foreign_edit_between_plan_and_write_fails_the_guard_and_changes_nothing(
    cluster: Cluster, mesh: KubeMesh
) -> None:
    namespace, _ = created(cluster)
    plan = mesh.plan(SplitRequest.build(vs="checkout", namespace=namespace, weight=10))
    ops = [{"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 70}]
    ops.append({"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 30})
    edited = cluster.objects.patch_namespaced_custom_object(
        GROUP, "v1", namespace, PLURAL, "checkout", ops, _content_type=JSON_PATCH
    )
    with pytest.raises(Moved, match=r"HTTPRoute 'checkout' in namespace '.*' changed after"):
        mesh.write(plan)
    live = read(cluster, namespace)
    assert weights(live) == [("checkout-stable", 70), ("checkout-canary", 30)]
    assert live["metadata"]["resourceVersion"] == edited["metadata"]["resourceVersion"]
    assert last_applied(live) is None


def test_the_api_server_holds_httproutes_to_the_crds_schema(cluster: Cluster) -> None:
    namespace, route = created(cluster)
    ops = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": route["metadata"]["resourceVersion"],
        },
        {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": -1},
    ]
    with pytest.raises(client.ApiException) as caught:
        cluster.objects.patch_namespaced_custom_object(
            GROUP,
            "v1",
            namespace,
            PLURAL,
            "checkout",
            ops,
            _content_type=JSON_PATCH,
        )
    assert caught.value.status == 422
    assert "spec.rules[0].backendRefs[0].weight" in str(caught.value.body)
