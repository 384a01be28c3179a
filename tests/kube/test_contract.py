"""One contract, two servers: each test runs on the sandbox API server and on a real
kube-apiserver (`cluster`), through the official client as the bot uses it. A test that had to
say "on the real server only" is a divergence; tests/kube/DIVERGENCES.md lists what is left."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from bot.mesh.errors import Forbidden, NotFound
from bot.mesh.kube import FIELD_MANAGER, KubeMesh, _Informer
from bot.mesh.request import SplitRequest
from tests.support.harness import wait_until
from tests.support.kube_calls import raw, refusal, status_of
from tests.support.kubeapi import VIEWER

from .conftest import GROUP, SANDBOX_HISTORY, Cluster

VS = "virtualservices"
DR = "destinationrules"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


@pytest.fixture
def mesh(cluster: Cluster) -> Iterator[KubeMesh]:
    adapter = KubeMesh(cluster.api, clock=lambda: NOW, sleep=lambda _: None)
    yield adapter
    adapter.close()


def seeded(cluster: Cluster) -> tuple[str, dict[str, Any]]:
    """A fresh namespace with the weather seed; its VirtualService as created."""
    namespace = cluster.namespace()
    created = cluster.seed("weather", namespace)
    return namespace, next(o for o in created if o["kind"] == "VirtualService")


def patch(cluster: Cluster, namespace: str, body: Any, content_type: str, **kw: Any) -> Any:
    return cluster.objects.patch_namespaced_custom_object(
        GROUP, "v1", namespace, VS, "weather", body, _content_type=content_type, **kw
    )


def label(cluster: Cluster, namespace: str, value: str) -> dict[str, Any]:
    """Another writer's change: a label on the VirtualService."""
    found: dict[str, Any] = patch(
        cluster, namespace, {"metadata": {"labels": {"edit": value}}}, MERGE_PATCH
    )
    return found


def watch_lines(cluster: Cluster, namespace: str, **query: str) -> list[dict[str, Any]]:
    """Every event of a watch of the namespace's VirtualServices until it times out."""
    reply = raw(
        cluster, "GET", f"/apis/{GROUP}/v1/namespaces/{namespace}/{VS}", watch="true", **query
    )
    return [json.loads(line) for line in reply.data.decode().splitlines() if line.strip()]


# --- Guarded writes ---------------------------------------------------------------------------


def test_a_json_patch_guarded_by_the_read_resource_version_applies(cluster: Cluster) -> None:
    namespace, vs = seeded(cluster)
    rv = vs["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 70},
        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 30},
    ]
    written = patch(cluster, namespace, ops, JSON_PATCH)
    assert [r["weight"] for r in written["spec"]["http"][0]["route"]] == [70, 30]
    assert written["metadata"]["resourceVersion"] != rv
    assert written["metadata"]["generation"] == 2


def test_a_foreign_edit_between_read_and_write_fails_the_guard_and_changes_nothing(
    cluster: Cluster,
) -> None:
    namespace, vs = seeded(cluster)
    edited = label(cluster, namespace, "someone")  # after our read, before our write
    ops = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": vs["metadata"]["resourceVersion"],
        },
        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 0},
    ]
    error = refusal(lambda: patch(cluster, namespace, ops, JSON_PATCH))
    assert error.status == 422
    assert status_of(error)["reason"] == "Invalid"
    assert (
        "the server rejected our request due to an error in our request"
        in status_of(error)["message"]
    )
    live = cluster.get_vs(namespace, "weather")
    assert live["metadata"]["resourceVersion"] == edited["metadata"]["resourceVersion"]
    assert live["spec"] == vs["spec"]


def test_a_merge_patch_with_a_stale_resource_version_is_a_conflict(cluster: Cluster) -> None:
    namespace, vs = seeded(cluster)
    label(cluster, namespace, "someone")
    stale = {
        "metadata": {"resourceVersion": vs["metadata"]["resourceVersion"], "labels": {"a": "b"}}
    }
    error = refusal(lambda: patch(cluster, namespace, stale, MERGE_PATCH))
    assert error.status == 409
    assert status_of(error)["reason"] == "Conflict"
    assert status_of(error)["message"] == (
        'Operation cannot be fulfilled on virtualservices.networking.istio.io "weather": the '
        "object has been modified; please apply your changes to the latest version and try again"
    )
    assert "a" not in cluster.get_vs(namespace, "weather")["metadata"]["labels"]


def test_a_create_of_an_existing_name_is_a_conflict(cluster: Cluster) -> None:
    namespace, vs = seeded(cluster)
    body = {"apiVersion": f"{GROUP}/v1", "kind": "VirtualService", "spec": vs["spec"]}
    body["metadata"] = {"name": "weather", "namespace": namespace}
    error = refusal(
        lambda: cluster.objects.create_namespaced_custom_object(GROUP, "v1", namespace, VS, body)
    )
    assert error.status == 409
    assert status_of(error)["reason"] == "AlreadyExists"


# --- Refusals ---------------------------------------------------------------------------------


def test_a_missing_object_is_404_and_the_bot_says_which(cluster: Cluster, mesh: KubeMesh) -> None:
    namespace = cluster.namespace()
    error = refusal(lambda: cluster.get_vs(namespace, "ghost"))
    assert error.status == 404
    assert status_of(error)["message"] == ('virtualservices.networking.istio.io "ghost" not found')
    with pytest.raises(NotFound, match="VirtualService 'ghost' was not found in namespace"):
        mesh.get_virtual_service(namespace, "ghost")


def test_a_create_in_a_namespace_that_does_not_exist_is_404(cluster: Cluster) -> None:
    body = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "VirtualService",
        "metadata": {"name": "weather"},
        "spec": {"hosts": ["weather"]},
    }
    error = refusal(
        lambda: cluster.objects.create_namespaced_custom_object(GROUP, "v1", "nope-xyz", VS, body)
    )
    assert error.status == 404
    assert status_of(error)["message"] == 'namespaces "nope-xyz" not found'
    assert status_of(error)["details"]["kind"] == "namespaces"


def test_an_unknown_token_is_401(cluster: Cluster) -> None:
    with cluster.client_for("not-a-token") as api:
        error = refusal(
            lambda: client.CustomObjectsApi(api).list_namespaced_custom_object(
                GROUP, "v1", "default", VS
            )
        )
    assert error.status == 401
    assert status_of(error)["reason"] == "Unauthorized"


def test_a_user_without_a_grant_is_403_naming_the_user_and_the_bot_says_what_to_grant(
    cluster: Cluster,
) -> None:
    namespace = cluster.forbidden_namespace()
    with cluster.client_for(VIEWER.token) as api:
        error = refusal(
            lambda: client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, "v1", namespace, VS, "weather"
            )
        )
        assert error.status == 403
        assert status_of(error)["message"] == (
            f'virtualservices.networking.istio.io "weather" is forbidden: User "{VIEWER.name}" '
            f'cannot get resource "virtualservices" in API group "{GROUP}" in the namespace '
            f'"{namespace}"'
        )
        bot = KubeMesh(api, clock=lambda: NOW, sleep=lambda _: None)
        with pytest.raises(Forbidden) as caught:
            bot.get_virtual_service(namespace, "weather")
    assert f"the bot may not get virtualservices in namespace '{namespace}'" in str(caught.value)
    assert f'User "{VIEWER.name}"' in str(caught.value)


@pytest.mark.parametrize(
    ("route_fields", "cause"),
    [
        (
            {"route": [{"destination": {"host": "w"}, "weight": "10"}]},
            "spec.http[0].route[0].weight",
        ),
        ({"route": [{"destination": {"host": "w"}}], "timeout": "0s"}, "spec.http[0].timeout"),
    ],
    ids=["schema", "cel"],
)
def test_an_object_the_schema_or_a_cel_rule_refuses_is_422(
    cluster: Cluster, route_fields: dict[str, Any], cause: str
) -> None:
    namespace = cluster.namespace()
    body = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "VirtualService",
        "metadata": {"name": "w"},
        "spec": {"hosts": ["w"], "http": [route_fields]},
    }
    error = refusal(
        lambda: cluster.objects.create_namespaced_custom_object(GROUP, "v1", namespace, VS, body)
    )
    assert error.status == 422
    status = status_of(error)
    assert status["reason"] == "Invalid"
    assert status["message"].startswith('VirtualService.networking.istio.io "w" is invalid: ')
    assert status["details"]["causes"][0]["field"] == cause
    assert refusal(lambda: cluster.get_vs(namespace, "w")).status == 404


def test_a_name_that_is_not_a_dns_subdomain_is_422(cluster: Cluster) -> None:
    namespace = cluster.namespace()
    body = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "VirtualService",
        "metadata": {"name": "Weather_1"},
        "spec": {"hosts": ["w"]},
    }
    error = refusal(
        lambda: cluster.objects.create_namespaced_custom_object(GROUP, "v1", namespace, VS, body)
    )
    assert error.status == 422
    cause = status_of(error)["details"]["causes"][0]
    assert cause["field"] == "metadata.name"
    assert cause["message"].startswith('Invalid value: "Weather_1": a lowercase RFC 1123 subdomain')


# --- Reads ------------------------------------------------------------------------------------


def test_reads_after_a_write_see_it_and_a_future_resource_version_is_504(
    cluster: Cluster,
) -> None:
    namespace, _vs = seeded(cluster)
    edited = label(cluster, namespace, "mine")
    live = cluster.get_vs(namespace, "weather")
    assert live["metadata"]["resourceVersion"] == edited["metadata"]["resourceVersion"]
    listed = cluster.objects.list_namespaced_custom_object(GROUP, "v1", namespace, VS)
    assert listed["items"][0]["metadata"]["labels"]["edit"] == "mine"
    assert int(listed["metadata"]["resourceVersion"]) >= int(edited["metadata"]["resourceVersion"])

    future = str(int(listed["metadata"]["resourceVersion"]) + 1_000_000)
    error = refusal(
        lambda: cluster.objects.list_namespaced_custom_object(
            GROUP, "v1", namespace, VS, resource_version=future
        )
    )
    assert error.status == 504
    assert status_of(error)["message"].startswith(f"Timeout: Too large resource version: {future}")


def test_label_and_field_selectors_choose_the_same_objects(cluster: Cluster) -> None:
    namespace, _vs = seeded(cluster)
    label(cluster, namespace, "x")

    def names(**selectors: str) -> list[str]:
        found = cluster.objects.list_namespaced_custom_object(
            GROUP, "v1", namespace, VS, **selectors
        )
        return [o["metadata"]["name"] for o in found["items"]]

    assert names(label_selector="edit in (x, y)") == ["weather"]
    assert names(label_selector="edit notin (x)") == []
    assert names(label_selector="!edit") == []
    assert names(label_selector="edit,edit!=y") == ["weather"]
    assert names(field_selector="metadata.name=weather") == ["weather"]
    assert names(field_selector="metadata.name!=weather") == []
    assert names(field_selector=f"metadata.namespace={namespace}") == ["weather"]


# --- Fields the server owns -------------------------------------------------------------------


def test_an_unknown_field_is_pruned_with_a_warning_and_refused_when_strict(
    cluster: Cluster,
) -> None:
    namespace = cluster.namespace()
    body = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "VirtualService",
        "metadata": {"name": "pruned"},
        "spec": {
            "hosts": ["pruned"],
            "bogus": "dropped",
            "http": [{"route": [{"destination": {"host": "pruned"}, "colour": "blue"}]}],
        },
    }
    path = f"/apis/{GROUP}/v1/namespaces/{namespace}/{VS}"
    reply = raw(cluster, "POST", path, body)
    assert reply.status == 201
    created = json.loads(reply.data)
    assert "bogus" not in created["spec"]
    assert created["spec"]["http"][0]["route"][0] == {"destination": {"host": "pruned"}}
    warnings = reply.headers.getlist("Warning")
    assert '299 - "unknown field \\"spec.bogus\\""' in warnings
    assert '299 - "unknown field \\"spec.http[0].route[0].colour\\""' in warnings

    strict = {**body, "metadata": {"name": "strict"}}
    error = refusal(
        lambda: cluster.objects.create_namespaced_custom_object(
            GROUP, "v1", namespace, VS, strict, field_validation="Strict"
        )
    )
    assert error.status == 400
    assert 'strict decoding error: unknown field "spec.bogus"' in status_of(error)["message"]


def test_status_is_written_through_the_status_subresource_only(cluster: Cluster) -> None:
    namespace, vs = seeded(cluster)
    status = {"status": {"observedGeneration": 7}}
    ignored = patch(cluster, namespace, status, MERGE_PATCH)
    assert "observedGeneration" not in (ignored.get("status") or {})
    assert ignored["metadata"]["resourceVersion"] == vs["metadata"]["resourceVersion"]

    written = cluster.objects.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, VS, "weather", status
    )
    assert written["status"]["observedGeneration"] == 7
    assert written["metadata"]["generation"] == 1  # not a spec change
    spec = {"spec": {"hosts": ["changed"]}, **status}
    through_status = cluster.objects.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, VS, "weather", spec
    )
    assert through_status["spec"]["hosts"] == vs["spec"]["hosts"]


def test_the_bots_patch_is_recorded_under_its_field_manager(
    cluster: Cluster, mesh: KubeMesh
) -> None:
    namespace, _vs = seeded(cluster)
    mesh.apply(SplitRequest.build(vs="weather", namespace=namespace, weight=40))
    managed = cluster.get_vs(namespace, "weather")["metadata"]["managedFields"]
    ours = [m for m in managed if m["manager"] == FIELD_MANAGER]
    assert FIELD_MANAGER == "canary-bot"
    assert len(ours) == 1
    assert ours[0]["operation"] == "Update"
    assert ours[0]["apiVersion"] == f"{GROUP}/v1"
    assert "f:http" in ours[0]["fieldsV1"]["f:spec"]
    assert "f:canary-bot/last-applied" in ours[0]["fieldsV1"]["f:metadata"]["f:annotations"]


# --- Watches ----------------------------------------------------------------------------------


def push_out_of_history(cluster: Cluster, namespace: str) -> None:
    """Enough writes that resourceVersion 1 is out of the sandbox's window (the real server's
    starts after its start, so 1 is out of it already)."""
    for n in range(SANDBOX_HISTORY + 5):
        label(cluster, namespace, str(n))


def test_a_watch_from_an_expired_resource_version_ends_with_an_expired_error_event(
    cluster: Cluster,
) -> None:
    namespace, _vs = seeded(cluster)
    push_out_of_history(cluster, namespace)
    events = watch_lines(cluster, namespace, resourceVersion="1", timeoutSeconds="5")
    assert [e["type"] for e in events] == ["ERROR"]
    status = events[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith("too old resource version: 1 (")


def test_the_informer_relists_on_an_expired_watch_and_catches_up(cluster: Cluster) -> None:
    """The bot's watch cache, handed a listing whose resourceVersion has expired (as after a
    long disconnection): its watch gets 410, it lists again, and follows later changes."""
    namespace, _vs = seeded(cluster)
    push_out_of_history(cluster, namespace)
    lists = 0

    def lister() -> dict[str, Any]:
        nonlocal lists
        lists += 1
        found: dict[str, Any] = cluster.objects.list_namespaced_custom_object(
            GROUP, "v1", namespace, DR
        )
        if lists == 1:
            found["metadata"]["resourceVersion"] = "1"
        return found

    informer = _Informer(
        "contract",
        lister,
        cluster.objects.list_namespaced_custom_object,
        (GROUP, "v1", namespace, DR),
    )
    informer.start()
    try:
        wait_until(lambda: lists >= 2, timeout=15)
        cluster.objects.patch_namespaced_custom_object(
            GROUP,
            "v1",
            namespace,
            DR,
            "weather-service",
            {"metadata": {"labels": {"after": "410"}}},
        )

        def caught_up() -> bool:
            return any(
                (o["metadata"].get("labels") or {}).get("after") == "410" for o in informer.items()
            )

        wait_until(caught_up, timeout=15)
    finally:
        informer.stop()


def test_a_watch_that_asks_for_bookmarks_gets_one_where_the_initial_events_end(
    cluster: Cluster,
) -> None:
    """A watch from resourceVersion 0 starts with the objects as ADDED events; asked for
    bookmarks, it then says where they end (the `k8s.io/initial-events-end` bookmark), so that a
    cache knows it is whole and which resourceVersion to resume from."""
    namespace, _vs = seeded(cluster)
    elsewhere, _ = seeded(cluster)
    moved = label(cluster, elsewhere, "elsewhere")["metadata"]["resourceVersion"]
    events = watch_lines(
        cluster, namespace, resourceVersion="0", timeoutSeconds="5", allowWatchBookmarks="true"
    )
    # The real server may add progress bookmarks before the watch times out (it does under
    # load); past the first, nothing but bookmarks may come: nothing changed in the namespace.
    assert [e["type"] for e in events[:2]] == ["ADDED", "BOOKMARK"], events
    assert {e["type"] for e in events[2:]} <= {"BOOKMARK"}, events
    assert events[0]["object"]["metadata"]["name"] == "weather"
    mark = events[1]["object"]
    assert mark["kind"] == "VirtualService"
    assert mark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(mark["metadata"]["resourceVersion"]) >= int(moved)
    assert "spec" not in mark

    without = watch_lines(cluster, namespace, resourceVersion="0", timeoutSeconds="2")
    assert [e["type"] for e in without] == ["ADDED"]
