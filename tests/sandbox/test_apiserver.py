"""The sandbox API server, driven over HTTP by the official kubernetes client."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from bot.mesh.schema import schema_errors
from sandbox.apiserver import NOT_HANDLED, Fault, LoggedRequest, SandboxApiServer
from sandbox.kubeconfig import SANDBOX_TOKEN, api_client_for, write_kubeconfig
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed

GROUP = "networking.istio.io"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
VS = "virtualservices"


def virtual_service(name: str = "weather", weights: tuple[int, int] = (90, 10)) -> dict[str, Any]:
    route = [
        {"destination": {"host": "weather-service", "subset": subset}, "weight": weight}
        for subset, weight in zip(("v1", "v2"), weights, strict=True)
    ]
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"hosts": ["weather-service"], "http": [{"name": "primary", "route": route}]},
    }


def guarded(resource_version: str, *operations: dict[str, Any]) -> list[dict[str, Any]]:
    test = {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}
    return [test, *operations]


def set_weights(v1: int, v2: int) -> list[dict[str, Any]]:
    return [
        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": v1},
        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": v2},
    ]


def status_of(error: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    return body


@pytest.fixture
def objects(api_client: Any) -> Any:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def weather(objects: Any) -> dict[str, Any]:
    created: dict[str, Any] = objects.create_namespaced_custom_object(
        GROUP, "v1", "default", VS, virtual_service()
    )
    return created


def get_vs(objects: Any, name: str = "weather", version: str = "v1") -> dict[str, Any]:
    found: dict[str, Any] = objects.get_namespaced_custom_object(
        GROUP, version, "default", VS, name
    )
    return found


def patch_vs(objects: Any, body: Any, content_type: str = JSON_PATCH, **kwargs: Any) -> Any:
    return objects.patch_namespaced_custom_object(
        GROUP, "v1", "default", VS, "weather", body, _content_type=content_type, **kwargs
    )


def raw_get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


# --- Discovery ------------------------------------------------------------------------------


def test_discovery_advertises_the_istio_group(api_client: Any):
    groups = client.ApisApi(api_client).get_api_versions().groups
    (istio,) = [g for g in groups if g.name == GROUP]
    assert [v.version for v in istio.versions] == ["v1", "v1beta1", "v1alpha3"]
    assert istio.preferred_version.group_version == f"{GROUP}/v1"
    assert client.CoreApi(api_client).get_api_versions().versions == ["v1"]
    assert client.VersionApi(api_client).get_code().major == "1"


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_resource_list_names_every_kind(objects: Any, version: str):
    listing = objects.get_api_resources(GROUP, version)
    assert listing.group_version == f"{GROUP}/{version}"
    by_name = {r.name: r for r in listing.resources}
    assert set(by_name) == {"virtualservices", "destinationrules", "gateways"}
    vs = by_name["virtualservices"]
    assert (vs.kind, vs.singular_name, vs.namespaced) == ("VirtualService", "virtualservice", True)
    assert vs.short_names == ["vs"]
    assert {"get", "list", "watch", "create", "update", "patch", "delete"} <= set(vs.verbs)


def test_preferred_version_is_the_first_served_one():
    with SandboxApiServer(versions=("v1beta1", "v1")) as server:
        status, group = raw_get(f"{server.url}/apis/{GROUP}")
        assert status == 200
        assert group["kind"] == "APIGroup"
        assert group["preferredVersion"] == {
            "groupVersion": f"{GROUP}/v1beta1",
            "version": "v1beta1",
        }
        assert raw_get(f"{server.url}/apis/{GROUP}/v1alpha3/namespaces/default/{VS}")[0] == 404


def test_unknown_paths_answer_a_not_found_status(sandbox: SandboxApiServer):
    for path in ("/api/v1/namespaces/default/secrets", f"/apis/{GROUP}/v1/widgets", "/healthz"):
        status, body = raw_get(sandbox.url + path)
        assert status == 404
        assert (body["kind"], body["reason"], body["code"]) == ("Status", "NotFound", 404)


# --- Create, get, list ----------------------------------------------------------------------


def test_create_fills_in_server_side_metadata(weather: dict[str, Any]):
    metadata = weather["metadata"]
    assert metadata["namespace"] == "default"
    assert metadata["generation"] == 1
    assert metadata["resourceVersion"].isdigit()
    assert metadata["uid"]
    assert metadata["creationTimestamp"].endswith("Z")


def test_every_version_sees_the_same_object(objects: Any, weather: dict[str, Any]):
    for version in ("v1", "v1beta1", "v1alpha3"):
        seen = get_vs(objects, version=version)
        assert seen["apiVersion"] == f"{GROUP}/{version}"
        assert seen["spec"] == weather["spec"]
        assert seen["metadata"] == weather["metadata"]


def test_creating_an_existing_name_is_already_exists(objects: Any, weather: dict[str, Any]):
    with pytest.raises(ApiException) as caught:
        objects.create_namespaced_custom_object(GROUP, "v1", "default", VS, virtual_service())
    assert caught.value.status == 409
    status = status_of(caught.value)
    assert status["reason"] == "AlreadyExists"
    assert status["message"] == f'virtualservices.{GROUP} "weather" already exists'


def test_create_rejects_a_mismatched_api_version(objects: Any):
    body = virtual_service() | {"apiVersion": f"{GROUP}/v1alpha3"}
    with pytest.raises(ApiException) as caught:
        objects.create_namespaced_custom_object(GROUP, "v1", "default", VS, body)
    assert caught.value.status == 400


def test_list_returns_a_typed_list_with_its_resource_version(
    objects: Any, sandbox: SandboxApiServer
):
    for name in ("b", "a"):
        objects.create_namespaced_custom_object(GROUP, "v1", "default", VS, virtual_service(name))
    sandbox.put_object(
        virtual_service("elsewhere") | {"metadata": {"name": "x", "namespace": "prod"}}
    )
    listing = objects.list_namespaced_custom_object(GROUP, "v1beta1", "default", VS)
    assert listing["kind"] == "VirtualServiceList"
    assert listing["apiVersion"] == f"{GROUP}/v1beta1"
    assert [item["metadata"]["name"] for item in listing["items"]] == ["a", "b"]
    assert listing["metadata"]["resourceVersion"] == "3"
    everywhere = objects.list_cluster_custom_object(GROUP, "v1", VS)
    assert {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]} == {
        ("default", "a"),
        ("default", "b"),
        ("prod", "x"),
    }


def test_list_filters_by_label_selector(objects: Any):
    for name in ("weather", "news"):
        objects.create_namespaced_custom_object(GROUP, "v1", "default", VS, virtual_service(name))
    listing = objects.list_namespaced_custom_object(
        GROUP, "v1", "default", VS, label_selector="app=news"
    )
    assert [item["metadata"]["name"] for item in listing["items"]] == ["news"]


def test_a_paged_list_across_namespaces_goes_by_namespace_then_name(
    objects: Any, sandbox: SandboxApiServer
):
    for namespace, name in (("prod", "a"), ("default", "b"), ("default", "c")):
        sandbox.put_object(
            virtual_service(name) | {"metadata": {"name": name, "namespace": namespace}}
        )
    first = objects.list_cluster_custom_object(GROUP, "v1", VS, limit=2)
    assert [i["metadata"]["name"] for i in first["items"]] == ["b", "c"]
    assert first["metadata"]["remainingItemCount"] == 1
    rest = objects.list_cluster_custom_object(
        GROUP, "v1", VS, limit=2, _continue=first["metadata"]["continue"]
    )
    assert [i["metadata"]["name"] for i in rest["items"]] == ["a"]
    assert rest["metadata"]["continue"] == ""


def test_a_continue_token_older_than_the_history_is_410():
    with SandboxApiServer(history_limit=3) as server, api_client_for(server.url) as api:
        objects = client.CustomObjectsApi(api)
        for name in "abc":
            objects.create_namespaced_custom_object(
                GROUP, "v1", "default", VS, virtual_service(name)
            )
        first = objects.list_namespaced_custom_object(GROUP, "v1", "default", VS, limit=1)
        for n in range(4):  # the first page's revision falls out of the history
            objects.patch_namespaced_custom_object(
                GROUP, "v1", "default", VS, "a", {"metadata": {"labels": {"n": str(n)}}}
            )
        with pytest.raises(ApiException) as caught:
            objects.list_namespaced_custom_object(
                GROUP, "v1", "default", VS, limit=1, _continue=first["metadata"]["continue"]
            )
    assert caught.value.status == 410
    assert status_of(caught.value)["reason"] == "Expired"
    assert status_of(caught.value)["message"].startswith(
        "The provided continue parameter is too old to display a consistent list result."
    )


def test_missing_objects_are_not_found(objects: Any):
    calls = [
        lambda: get_vs(objects, "ghost"),
        lambda: objects.delete_namespaced_custom_object(GROUP, "v1", "default", VS, "ghost"),
        lambda: objects.patch_namespaced_custom_object(
            GROUP, "v1", "default", VS, "ghost", {"spec": {}}, _content_type=MERGE_PATCH
        ),
    ]
    for call in calls:
        with pytest.raises(ApiException) as caught:
            call()
        assert caught.value.status == 404
        status = status_of(caught.value)
        assert status["reason"] == "NotFound"
        assert status["message"] == f'virtualservices.{GROUP} "ghost" not found'
        assert status["details"] == {"name": "ghost", "group": GROUP, "kind": VS}


# --- Replace --------------------------------------------------------------------------------


def test_replace_bumps_resource_version_and_generation(objects: Any, weather: dict[str, Any]):
    body = weather | {"spec": virtual_service(weights=(50, 50))["spec"]}
    replaced = objects.replace_namespaced_custom_object(GROUP, "v1", "default", VS, "weather", body)
    assert int(replaced["metadata"]["resourceVersion"]) > int(
        weather["metadata"]["resourceVersion"]
    )
    assert replaced["metadata"]["generation"] == 2
    assert replaced["metadata"]["uid"] == weather["metadata"]["uid"]
    assert get_vs(objects)["spec"]["http"][0]["route"][0]["weight"] == 50


def test_replace_with_a_stale_resource_version_conflicts(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    patch_vs(objects, set_weights(80, 20))
    before = sandbox.get_object("default", VS, "weather")
    stale = weather | {"spec": virtual_service(weights=(0, 100))["spec"]}
    with pytest.raises(ApiException) as caught:
        objects.replace_namespaced_custom_object(GROUP, "v1", "default", VS, "weather", stale)
    assert caught.value.status == 409
    status = status_of(caught.value)
    assert status["reason"] == "Conflict"
    assert status["message"].startswith(
        f'Operation cannot be fulfilled on virtualservices.{GROUP} "weather": '
        "the object has been modified"
    )
    assert sandbox.get_object("default", VS, "weather") == before


def test_replace_without_resource_version_is_invalid(objects: Any, weather: dict[str, Any]):
    body = virtual_service(weights=(50, 50))
    with pytest.raises(ApiException) as caught:
        objects.replace_namespaced_custom_object(GROUP, "v1", "default", VS, "weather", body)
    assert caught.value.status == 422  # custom resources allow no unconditional update
    assert status_of(caught.value)["message"] == (
        f'virtualservices.{GROUP} "weather" is invalid: metadata.resourceVersion: '
        "Invalid value: 0: must be specified for an update"
    )


def test_create_without_a_name_is_invalid(objects: Any):
    body = virtual_service()
    del body["metadata"]["name"]
    with pytest.raises(ApiException) as caught:
        objects.create_namespaced_custom_object(GROUP, "v1", "default", VS, body)
    assert caught.value.status == 422
    cause, not_checked = status_of(caught.value)["details"]["causes"]
    assert (cause["field"], cause["reason"]) == ("metadata.name", "FieldValueRequired")
    assert not_checked["field"] == "<nil>"  # a required field keeps the CEL rules from running


def test_replace_of_a_missing_object_is_not_found(objects: Any):
    body = virtual_service("ghost") | {"metadata": {"name": "ghost", "resourceVersion": "1"}}
    with pytest.raises(ApiException) as caught:
        objects.replace_namespaced_custom_object(GROUP, "v1", "default", VS, "ghost", body)
    assert caught.value.status == 404


# --- Patch ----------------------------------------------------------------------------------


def test_guarded_json_patch_applies(objects: Any, weather: dict[str, Any]):
    rv = weather["metadata"]["resourceVersion"]
    patched = patch_vs(objects, guarded(rv, *set_weights(75, 25)))
    weights = [r["weight"] for r in patched["spec"]["http"][0]["route"]]
    assert weights == [75, 25]
    assert int(patched["metadata"]["resourceVersion"]) == int(rv) + 1
    assert patched["metadata"]["generation"] == 2
    assert get_vs(objects) == patched


def test_guarded_json_patch_with_a_stale_version_is_invalid_and_changes_nothing(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    patch_vs(objects, set_weights(80, 20))
    before = sandbox.get_object("default", VS, "weather")
    with pytest.raises(ApiException) as caught:
        patch_vs(objects, guarded(weather["metadata"]["resourceVersion"], *set_weights(0, 100)))
    assert caught.value.status == 422
    status = status_of(caught.value)
    assert status["reason"] == "Invalid"
    assert "testing value /metadata/resourceVersion failed: test failed" in status["message"]
    assert sandbox.get_object("default", VS, "weather") == before


def test_json_patch_supports_every_operation_and_pointer_escapes(
    objects: Any, weather: dict[str, Any]
):
    operations = [
        {"op": "add", "path": "/metadata/annotations", "value": {}},
        {"op": "add", "path": "/metadata/annotations/canary.io~1step", "value": "1"},
        {"op": "copy", "from": "/spec/http/0/route/0", "path": "/spec/http/0/route/-"},
        {"op": "remove", "path": "/spec/http/0/route/2"},
        {"op": "move", "from": "/metadata/labels/app", "path": "/metadata/labels/service"},
        {"op": "test", "path": "/metadata/annotations/canary.io~1step", "value": "1"},
    ]
    patched = patch_vs(objects, operations)
    assert patched["metadata"]["annotations"] == {"canary.io/step": "1"}
    assert patched["metadata"]["labels"] == {"service": "weather"}
    assert patched["spec"] == weather["spec"]
    assert patched["metadata"]["generation"] == 1


def test_a_json_patch_that_changes_nothing_writes_nothing(objects: Any, weather: dict[str, Any]):
    unchanged = patch_vs(objects, set_weights(90, 10))
    assert unchanged["metadata"]["resourceVersion"] == weather["metadata"]["resourceVersion"]


def test_merge_patch_applies(objects: Any, weather: dict[str, Any]):
    patched = patch_vs(objects, {"metadata": {"labels": {"team": "sky"}}}, MERGE_PATCH)
    assert patched["metadata"]["labels"] == {"app": "weather", "team": "sky"}
    assert patched["metadata"]["generation"] == 1  # metadata is not spec
    assert patched["metadata"]["resourceVersion"] != weather["metadata"]["resourceVersion"]


def test_merge_patch_is_the_37_client_default_content_type(objects: Any, sandbox: SandboxApiServer):
    objects.create_namespaced_custom_object(GROUP, "v1", "default", VS, virtual_service())
    objects.patch_namespaced_custom_object(
        GROUP, "v1", "default", VS, "weather", {"metadata": {"labels": {"x": "y"}}}
    )
    assert sandbox.requests[-1].content_type == MERGE_PATCH
    # So a list of JSON Patch operations needs _content_type, or it is a bad merge patch.
    with pytest.raises(ApiException) as caught:
        objects.patch_namespaced_custom_object(
            GROUP, "v1", "default", VS, "weather", set_weights(50, 50)
        )
    assert caught.value.status == 400


def test_merge_patch_with_a_stale_resource_version_conflicts(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    patch_vs(objects, set_weights(80, 20))
    stale = {"metadata": {"resourceVersion": weather["metadata"]["resourceVersion"]}}
    with pytest.raises(ApiException) as caught:
        patch_vs(objects, stale | {"spec": {"hosts": ["other"]}}, MERGE_PATCH)
    assert caught.value.status == 409
    assert status_of(caught.value)["reason"] == "Conflict"
    assert get_vs(objects)["spec"]["hosts"] == ["weather-service"]


def test_strategic_merge_patch_is_unsupported_for_custom_resources(
    objects: Any, weather: dict[str, Any]
):
    with pytest.raises(ApiException) as caught:
        patch_vs(objects, {"spec": {"hosts": ["x"]}}, "application/strategic-merge-patch+json")
    assert caught.value.status == 415
    assert status_of(caught.value)["reason"] == "UnsupportedMediaType"


def test_dry_run_answers_without_storing(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    sandbox.clear_log()
    patched = patch_vs(objects, set_weights(0, 100), dry_run="All")
    assert patched["spec"]["http"][0]["route"][0]["weight"] == 0
    assert get_vs(objects) == weather
    assert sandbox.requests[0].dry_run
    assert sandbox.writes() == []


# --- Schema validation ----------------------------------------------------------------------


def test_schema_invalid_create_is_rejected_with_causes(objects: Any, sandbox: SandboxApiServer):
    body = virtual_service()
    body["spec"]["http"][0]["route"][0]["weight"] = "ninety"
    with pytest.raises(ApiException) as caught:
        objects.create_namespaced_custom_object(GROUP, "v1", "default", VS, body)
    assert caught.value.status == 422
    status = status_of(caught.value)
    assert status["reason"] == "Invalid"
    assert status["message"].startswith(f'VirtualService.{GROUP} "weather" is invalid: ')
    cause, not_checked = status["details"]["causes"]
    assert cause == {
        "reason": "FieldValueTypeInvalid",
        "message": 'Invalid value: "string": spec.http[0].route[0].weight in body must be of '
        'type integer: "string"',
        "field": "spec.http[0].route[0].weight",
    }
    assert not_checked["message"].startswith("Invalid value: null: some validation rules were")
    assert sandbox.get_object("default", VS, "weather") is None


def test_schema_invalid_patch_leaves_the_store_unchanged(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    before = sandbox.get_object("default", VS, "weather")
    with pytest.raises(ApiException) as caught:
        patch_vs(objects, [{"op": "replace", "path": "/spec/hosts", "value": "not-a-list"}])
    assert caught.value.status == 422
    assert "spec.hosts" in status_of(caught.value)["message"]
    assert sandbox.get_object("default", VS, "weather") == before
    assert [r.method for r in sandbox.writes()] == ["POST"]


# --- Delete and RBAC ------------------------------------------------------------------------


def test_delete_answers_success_and_removes(objects: Any, weather: dict[str, Any]):
    answer = objects.delete_namespaced_custom_object(GROUP, "v1", "default", VS, "weather")
    assert answer["status"] == "Success"
    assert answer["details"]["uid"] == weather["metadata"]["uid"]
    with pytest.raises(ApiException) as caught:
        get_vs(objects)
    assert caught.value.status == 404


def test_forbidden_namespaces_answer_403_for_every_verb():
    with (
        SandboxApiServer(forbidden_namespaces=["prod"]) as server,
        api_client_for(server.url) as api,
    ):
        server.put_object(
            virtual_service() | {"metadata": {"name": "weather", "namespace": "prod"}}
        )
        objects = client.CustomObjectsApi(api)
        with pytest.raises(ApiException) as caught:
            objects.patch_namespaced_custom_object(
                GROUP, "v1", "prod", VS, "weather", set_weights(0, 100), _content_type=JSON_PATCH
            )
        assert caught.value.status == 403
        status = status_of(caught.value)
        assert status["reason"] == "Forbidden"
        assert status["message"] == (
            f'virtualservices.{GROUP} "weather" is forbidden: User '
            '"system:serviceaccount:canary-bot:canary-bot" cannot patch resource '
            f'"virtualservices" in API group "{GROUP}" in the namespace "prod"'
        )
        for call in (
            lambda: objects.get_namespaced_custom_object(GROUP, "v1", "prod", VS, "weather"),
            lambda: objects.list_namespaced_custom_object(GROUP, "v1", "prod", VS),
            lambda: objects.create_namespaced_custom_object(GROUP, "v1", "prod", VS, {}),
        ):
            with pytest.raises(ApiException) as caught:
                call()
            assert caught.value.status == 403
        assert objects.list_namespaced_custom_object(GROUP, "v1", "default", VS)["items"] == []
        assert server.writes() == []


# --- Watch ----------------------------------------------------------------------------------


def collect_events(objects: Any, count: int, **kwargs: Any) -> list[tuple[str, str, str]]:
    """The first `count` events of a watch on default/virtualservices, as (type, name, rv)."""
    stream = watch.Watch()
    events = []
    for event in stream.stream(
        objects.list_namespaced_custom_object, GROUP, "v1", "default", VS, **kwargs
    ):
        metadata = event["object"]["metadata"]
        events.append((event["type"], metadata["name"], metadata["resourceVersion"]))
        if len(events) == count:
            stream.stop()
    return events


def test_watch_replays_added_modified_deleted_in_order(objects: Any, sandbox: SandboxApiServer):
    sandbox.put_object(virtual_service("earlier"))  # resourceVersion "0" would mean "from now"
    start = objects.list_namespaced_custom_object(GROUP, "v1", "default", VS)["metadata"]
    created = objects.create_namespaced_custom_object(GROUP, "v1", "default", VS, virtual_service())
    patch_vs(objects, set_weights(50, 50))
    objects.delete_namespaced_custom_object(GROUP, "v1", "default", VS, "weather")
    sandbox.put_object(virtual_service("unrelated") | {"kind": "Gateway", "spec": {}})
    events = collect_events(
        objects, 3, resource_version=start["resourceVersion"], timeout_seconds=5
    )
    assert [(kind, name) for kind, name, _ in events] == [
        ("ADDED", "weather"),
        ("MODIFIED", "weather"),
        ("DELETED", "weather"),
    ]
    revisions = [int(rv) for _, _, rv in events]
    assert revisions == sorted(revisions)
    assert revisions[0] == int(created["metadata"]["resourceVersion"])


def test_watch_without_resource_version_starts_with_current_objects(
    objects: Any, weather: dict[str, Any]
):
    events = collect_events(objects, 1, timeout_seconds=5)
    assert events == [("ADDED", "weather", weather["metadata"]["resourceVersion"])]


def test_watch_streams_writes_made_while_it_is_open(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    def foreign_writer() -> None:
        sandbox.wait_for_request(lambda r: r.is_watch)
        sandbox.mutate("default", VS, "weather", lambda vs: vs["spec"].update(hosts=["moved"]))

    writer = threading.Thread(target=foreign_writer)
    writer.start()
    events = collect_events(
        objects, 1, resource_version=weather["metadata"]["resourceVersion"], timeout_seconds=5
    )
    writer.join()
    assert [(kind, name) for kind, name, _ in events] == [("MODIFIED", "weather")]


def test_watch_from_a_forgotten_resource_version_is_expired():
    with SandboxApiServer(history_limit=3) as server, api_client_for(server.url) as api:
        for index in range(5):
            server.put_object(virtual_service(f"vs-{index}"))
        objects = client.CustomObjectsApi(api)
        with pytest.raises(ApiException) as caught:
            collect_events(objects, 1, resource_version="1", timeout_seconds=5)
        assert caught.value.status == 410
        assert "too old resource version" in caught.value.reason
        assert collect_events(objects, 1, resource_version="2", timeout_seconds=5)[0][1] == "vs-2"


def test_watch_ends_at_its_timeout(objects: Any):
    started = time.monotonic()
    assert (
        list(
            watch.Watch().stream(
                objects.list_namespaced_custom_object, GROUP, "v1", "default", VS, timeout_seconds=1
            )
        )
        == []
    )
    assert 0.9 < time.monotonic() - started < 3


def test_stopping_the_server_ends_open_watches(sandbox: SandboxApiServer):
    sandbox.put_object(virtual_service())
    url = f"{sandbox.url}/apis/{GROUP}/v1/namespaces/default/{VS}?watch=true"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert json.loads(response.readline())["type"] == "ADDED"
        sandbox.stop()
        assert response.read() == b""


# --- Fault injection, foreign writers, latency ----------------------------------------------


def test_fail_next_fails_only_matching_requests(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    sandbox.fail_next(2, 503, method="PATCH", path_contains="/weather", retry_after=1)
    for _ in range(2):
        assert get_vs(objects)["metadata"]["name"] == "weather"
        with pytest.raises(ApiException) as caught:
            patch_vs(objects, set_weights(50, 50))
        assert caught.value.status == 503
        assert caught.value.headers["Retry-After"] == "1"
        assert status_of(caught.value)["reason"] == "ServiceUnavailable"
    assert patch_vs(objects, set_weights(50, 50))["spec"]["http"][0]["route"][0]["weight"] == 50


def test_fail_next_can_take_any_status_and_reason(objects: Any, sandbox: SandboxApiServer):
    sandbox.fail_next(1, 409, reason="Conflict", message="someone else won")
    with pytest.raises(ApiException) as caught:
        objects.create_namespaced_custom_object(GROUP, "v1", "default", VS, virtual_service())
    assert status_of(caught.value) | {"metadata": {}} == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "someone else won",
        "reason": "Conflict",
        "code": 409,
    }
    assert sandbox.get_object("default", VS, "weather") is None


def test_after_next_get_plays_a_foreign_writer_between_read_and_patch(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    sandbox.after_next_get(
        "default", VS, "weather", lambda vs: vs["spec"]["http"][0]["route"][0].update(weight=70)
    )
    read = get_vs(objects)
    assert read["metadata"]["resourceVersion"] == weather["metadata"]["resourceVersion"]
    assert read["spec"]["http"][0]["route"][0]["weight"] == 90
    with pytest.raises(ApiException) as caught:
        patch_vs(objects, guarded(read["metadata"]["resourceVersion"], *set_weights(80, 20)))
    assert caught.value.status == 422
    reread = get_vs(objects)
    assert reread["spec"]["http"][0]["route"][0]["weight"] == 70  # the foreign edit survives
    assert reread["metadata"]["generation"] == 2
    assert get_vs(objects) == reread  # one-shot
    patched = patch_vs(
        objects, guarded(reread["metadata"]["resourceVersion"], *set_weights(80, 20))
    )
    assert patched["spec"]["http"][0]["route"][0]["weight"] == 80


def test_mutate_is_an_immediate_foreign_write(sandbox: SandboxApiServer):
    stored = sandbox.put_object(virtual_service())
    changed = sandbox.mutate("default", VS, "weather", lambda vs: vs["metadata"].update(labels={}))
    assert (
        int(changed["metadata"]["resourceVersion"])
        == int(stored["metadata"]["resourceVersion"]) + 1
    )
    assert changed["metadata"]["generation"] == 1
    with pytest.raises(KeyError):
        sandbox.mutate("default", VS, "ghost", lambda vs: None)


def weight_of(sandbox: SandboxApiServer) -> int:
    vs = sandbox.get_object("default", VS, "weather")
    assert vs is not None
    weight: int = vs["spec"]["http"][0]["route"][0]["weight"]
    return weight


def faulted(sandbox: SandboxApiServer, fault: Fault) -> LoggedRequest:
    return sandbox.wait_for_request(lambda r: r.fault is fault)


def test_a_black_hole_holds_matching_requests_until_cleared(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    sandbox.black_hole(method="PATCH", path_contains="/weather")
    with ThreadPoolExecutor(max_workers=1) as pool:
        patching = pool.submit(patch_vs, objects, set_weights(50, 50))
        held = faulted(sandbox, Fault.BLACK_HOLE)
        assert (held.method, held.status) == ("PATCH", NOT_HANDLED)
        assert get_vs(objects)["spec"]["http"][0]["route"][0]["weight"] == 90  # others pass
        assert not patching.done()
        sandbox.clear_faults()
        assert isinstance(patching.exception(), ProtocolError)  # closed unanswered
    assert weight_of(sandbox) == 90
    assert [w.method for w in sandbox.writes()] == ["POST"]  # the create, no PATCH
    assert patch_vs(objects, set_weights(50, 50))["spec"]["http"][0]["route"][0]["weight"] == 50


def test_stopping_the_server_lets_black_holed_requests_go(sandbox: SandboxApiServer):
    sandbox.black_hole()
    url = f"{sandbox.url}/apis/{GROUP}/v1/namespaces/default/{VS}"
    with ThreadPoolExecutor(max_workers=1) as pool:
        listing = pool.submit(urllib.request.urlopen, url, timeout=60)
        faulted(sandbox, Fault.BLACK_HOLE)
        sandbox.stop()
        assert isinstance(listing.exception(), (urllib.error.URLError, ConnectionError))


def test_a_black_hole_takes_only_its_count(objects: Any, sandbox: SandboxApiServer):
    sandbox.black_hole(1, method="POST")
    with ThreadPoolExecutor(max_workers=1) as pool:
        creating = pool.submit(
            objects.create_namespaced_custom_object, GROUP, "v1", "default", VS, virtual_service()
        )
        faulted(sandbox, Fault.BLACK_HOLE)
        objects.create_namespaced_custom_object(GROUP, "v1", "default", VS, virtual_service("b"))
        sandbox.clear_faults()
        assert isinstance(creating.exception(), ProtocolError)
    assert [vs["metadata"]["name"] for vs in sandbox.list_objects(VS)] == ["b"]


def test_a_hanging_request_takes_effect_at_once_and_is_answered_late(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    sandbox.hang_next(1, 3600, method="PATCH")
    with ThreadPoolExecutor(max_workers=1) as pool:
        patching = pool.submit(patch_vs, objects, set_weights(50, 50))
        hung = faulted(sandbox, Fault.HANG)
        assert (hung.method, hung.status) == ("PATCH", 200)
        assert weight_of(sandbox) == 50
        assert not patching.done()
        sandbox.clear_faults()
        assert patching.result()["spec"]["http"][0]["route"][0]["weight"] == 50
    assert sandbox.writes()[-1] == hung


def test_a_hang_answers_by_itself_after_its_seconds(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    sandbox.hang_next(1, 0.05, method="GET")
    started = time.monotonic()
    assert get_vs(objects)["metadata"]["name"] == "weather"
    assert time.monotonic() - started >= 0.05
    assert [r.fault for r in sandbox.requests][-1] is Fault.HANG


def test_a_conflict_storm_answers_409_to_the_next_writes_only(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    sandbox.conflict_next(2, path_contains="/weather")
    assert get_vs(objects)["metadata"]["name"] == "weather"  # reads pass
    with pytest.raises(ApiException) as caught:
        patch_vs(objects, set_weights(50, 50))
    assert caught.value.status == 409
    assert status_of(caught.value)["message"].startswith(
        f'Operation cannot be fulfilled on {VS}.{GROUP} "weather": the object has been modified'
    )
    with pytest.raises(ApiException) as caught:
        objects.replace_namespaced_custom_object(GROUP, "v1", "default", VS, "weather", weather)
    assert status_of(caught.value)["reason"] == "Conflict"
    assert patch_vs(objects, set_weights(50, 50))["spec"]["http"][0]["route"][0]["weight"] == 50
    storm = [(r.method, r.status) for r in sandbox.requests if r.fault is Fault.ERROR]
    assert storm == [("PATCH", 409), ("PUT", 409)]


def test_a_dropped_request_is_not_handled_and_not_answered(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    sandbox.drop_next(1, method="PATCH")
    with pytest.raises(ProtocolError, match="Remote end closed connection without response"):
        patch_vs(objects, set_weights(50, 50))
    (dropped,) = [r for r in sandbox.requests if r.fault is Fault.DROP]
    assert (dropped.method, dropped.status) == ("PATCH", NOT_HANDLED)
    assert weight_of(sandbox) == 90


def test_a_request_dropped_after_it_applied_leaves_its_client_in_doubt(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    sandbox.drop_next(1, applied=True, method="PATCH")
    with pytest.raises(ProtocolError, match="Remote end closed connection without response"):
        patch_vs(objects, set_weights(50, 50))
    assert weight_of(sandbox) == 50
    write = sandbox.writes()[-1]
    assert (write.fault, write.status) == (Fault.DROP, 200)


def test_the_client_retries_a_dropped_read_by_itself(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    sandbox.clear_log()
    sandbox.drop_next(1, method="GET")
    assert get_vs(objects)["metadata"]["name"] == "weather"
    assert [(r.status, r.fault) for r in sandbox.requests] == [
        (NOT_HANDLED, Fault.DROP),
        (200, None),
    ]


def test_clear_faults_ends_every_injection(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    sandbox.set_latency(3600)
    sandbox.fail_next(5, 500)
    sandbox.conflict_next(5)
    sandbox.drop_next(5)
    sandbox.clear_faults()
    assert patch_vs(objects, set_weights(50, 50))["spec"]["http"][0]["route"][0]["weight"] == 50
    assert all(r.fault is None for r in sandbox.requests)


def test_the_log_names_the_caller_by_its_bearer_token(sandbox: SandboxApiServer):
    request = urllib.request.Request(
        f"{sandbox.url}/version", headers={"Authorization": "Bearer replica-2"}
    )
    with urllib.request.urlopen(request, timeout=5):
        pass
    assert [r.user for r in sandbox.requests] == ["replica-2"]


def test_latency_is_added_to_every_request(objects: Any, sandbox: SandboxApiServer):
    sandbox.set_latency(0.05)
    started = time.monotonic()
    objects.list_namespaced_custom_object(GROUP, "v1", "default", VS)
    assert time.monotonic() - started >= 0.05


# --- The request log ------------------------------------------------------------------------


def test_the_request_log_records_every_call(
    objects: Any, weather: dict[str, Any], sandbox: SandboxApiServer
):
    sandbox.clear_log()
    read = get_vs(objects)
    patch_vs(objects, guarded(read["metadata"]["resourceVersion"], *set_weights(60, 40)))
    with pytest.raises(ApiException):
        patch_vs(objects, guarded(read["metadata"]["resourceVersion"], *set_weights(0, 100)))
    get_request, good_patch, bad_patch = sandbox.requests
    assert (get_request.method, get_request.status, get_request.body) == ("GET", 200, b"")
    assert get_request.path == f"/apis/{GROUP}/v1/namespaces/default/{VS}/weather"
    assert (good_patch.method, good_patch.status, good_patch.content_type) == (
        "PATCH",
        200,
        JSON_PATCH,
    )
    assert good_patch.json()[0] == {
        "op": "test",
        "path": "/metadata/resourceVersion",
        "value": read["metadata"]["resourceVersion"],
    }
    assert bad_patch.status == 422
    assert sandbox.writes() == [good_patch]
    assert get_request.at <= good_patch.at <= bad_patch.at
    sandbox.clear_log()
    assert sandbox.requests == []


def test_the_log_keeps_query_parameters(objects: Any, sandbox: SandboxApiServer):
    objects.list_namespaced_custom_object(GROUP, "v1", "default", VS, label_selector="app=x")
    (request,) = sandbox.requests
    assert request == LoggedRequest(
        "GET",
        request.path,
        {"labelSelector": "app=x"},
        request.content_type,  # a GET's: empty from some client versions, JSON from others
        b"",
        200,
        request.at,
        user=SANDBOX_TOKEN,
    )


# --- Concurrency ----------------------------------------------------------------------------


def test_concurrent_guarded_writers_never_lose_an_update(objects: Any, sandbox: SandboxApiServer):
    body = virtual_service()
    body["spec"]["gateways"] = []
    sandbox.put_object(body)

    def append_gateway(index: int) -> int:
        """Add one gateway with a guarded patch, re-reading on conflict; the attempts it took."""
        for attempt in range(1, 100):
            rv = get_vs(objects)["metadata"]["resourceVersion"]
            add = {"op": "add", "path": "/spec/gateways/-", "value": f"gw-{index}"}
            try:
                patch_vs(objects, guarded(rv, add))
                return attempt
            except ApiException as error:
                assert error.status == 422
        raise AssertionError("a writer never got through")

    with ThreadPoolExecutor(max_workers=8) as pool:
        attempts = list(pool.map(append_gateway, range(16)))
    gateways = get_vs(objects)["spec"]["gateways"]
    assert sorted(gateways) == sorted(f"gw-{i}" for i in range(16))
    assert len(sandbox.writes()) == 16
    assert len([r for r in sandbox.requests if r.status == 422]) == sum(attempts) - 16


# --- Seeding and kubeconfig -----------------------------------------------------------------


@pytest.mark.parametrize("path", bundled_seed_paths(), ids=lambda p: p.name)
def test_every_bundled_seed_file_loads_and_is_schema_valid(
    path: Path, sandbox: SandboxApiServer, objects: Any
):
    stored = seed(sandbox, load_yaml_documents([path]), namespace="seeded")
    assert stored
    for obj in [o for o in stored if o["kind"] not in ("Pod", "Service")]:
        assert obj["kind"] in {"VirtualService", "DestinationRule", "Gateway"}
        if obj["kind"] != "Gateway":
            assert schema_errors(obj, obj["kind"], "v1alpha3") == []
        plural = {"VirtualService": VS, "DestinationRule": "destinationrules"}.get(
            obj["kind"], "gateways"
        )
        namespace = obj["metadata"]["namespace"]
        served = objects.get_namespaced_custom_object(
            GROUP, "v1", namespace, plural, obj["metadata"]["name"]
        )
        assert served["spec"] == obj["spec"]


def test_bundled_seeds_cover_the_known_apps():
    names = {path.name for path in bundled_seed_paths()}
    assert {"weather.yaml", "httpbin.yaml", "bookinfo-reviews-50-50.yaml"} <= names


def test_seeding_everything_lets_the_last_duplicate_win(sandbox: SandboxApiServer):
    stored = seed(sandbox, load_yaml_documents(bundled_seed_paths()))
    kinds = {o["kind"] for o in stored}
    assert kinds == {"VirtualService", "DestinationRule", "Gateway", "Pod", "Service"}
    reviews = sandbox.get_object("default", VS, "reviews")
    assert reviews is not None
    assert reviews["spec"]["http"] == [
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}
    ]
    assert len(sandbox.list_objects(VS, "default")) == len(
        {o["metadata"]["name"] for o in stored if o["kind"] == "VirtualService"}
    )


def test_seed_files_can_go_to_different_namespaces(sandbox: SandboxApiServer):
    seeds = {p.name: p for p in bundled_seed_paths()}
    seed(sandbox, load_yaml_documents([seeds["bookinfo-reviews-50-50.yaml"]]), namespace="split")
    seed(
        sandbox, load_yaml_documents([seeds["bookinfo-reviews-mirroring.yaml"]]), namespace="mirror"
    )
    split = sandbox.get_object("split", VS, "reviews")
    mirror = sandbox.get_object("mirror", VS, "reviews")
    assert split is not None and mirror is not None
    assert [r["weight"] for r in split["spec"]["http"][0]["route"]] == [50, 50]
    assert mirror["spec"]["http"][0]["mirror"] == {"host": "reviews", "subset": "v2"}


def test_load_yaml_documents_skips_empty_documents(tmp_path: Path):
    path = tmp_path / "mixed.yaml"
    path.write_text(
        "# only a comment\n---\n---\nkind: Gateway\nmetadata: {name: g}\n---\n# trailing\n"
    )
    assert load_yaml_documents([path]) == [{"kind": "Gateway", "metadata": {"name": "g"}}]


def test_seed_ignores_kinds_it_does_not_serve(sandbox: SandboxApiServer):
    documents = [{"kind": "ConfigMap", "metadata": {"name": "weather-settings"}}]
    assert seed(sandbox, documents) == []


def test_a_seeded_deployment_runs_its_ready_pods_which_list_by_label(
    sandbox: SandboxApiServer, api_client: Any
):
    seed(sandbox, load_yaml_documents([p for p in bundled_seed_paths() if p.stem == "weather"]))
    core = client.CoreV1Api(api_client)
    v1 = core.list_namespaced_pod("default", label_selector="app=weather,version=v1")
    assert sorted(p.metadata.name for p in v1.items) == ["weather-v1-0", "weather-v1-1"]
    pod = core.list_namespaced_pod("default", label_selector="version=v2").items[0]
    assert pod.status.phase == "Running"
    assert [(c.type, c.status) for c in pod.status.conditions] == [("Ready", "True")]
    assert v1.api_version == "v1" and v1.kind == "PodList"


def test_kubeconfig_works_with_the_client_loaders(sandbox: SandboxApiServer, tmp_path: Path):
    sandbox.put_object(virtual_service() | {"metadata": {"name": "weather", "namespace": "prod"}})
    path = write_kubeconfig(tmp_path / "kube" / "config", sandbox.url, namespace="prod")
    _, active = config.list_kube_config_contexts(config_file=str(path))
    assert active["name"] == "canary-sandbox"
    assert active["context"]["namespace"] == "prod"
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    assert configuration.host == sandbox.url
    with config.new_client_from_config(config_file=str(path)) as api:
        found = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, "v1", "prod", VS, "weather"
        )
    assert found["metadata"]["name"] == "weather"
    assert sandbox.requests[-1].method == "GET"


# --- Command line ---------------------------------------------------------------------------


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    kubeconfig = tmp_path / "kubeconfig"
    weather_seed = next(p for p in bundled_seed_paths() if p.name == "weather.yaml")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.apiserver",
            "--seed",
            str(weather_seed),
            "--namespace",
            "demo",
            "--kubeconfig",
            str(kubeconfig),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip(), kubeconfig
    finally:
        process.terminate()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


def test_the_command_line_serves_seeds_in_the_foreground(cli_server: tuple[str, Path]):
    url, kubeconfig = cli_server
    assert url.startswith("http://127.0.0.1:")
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        objects = client.CustomObjectsApi(api)
        weather = objects.get_namespaced_custom_object(GROUP, "v1", "demo", VS, "weather")
    assert weather["spec"]["gateways"] == ["weather-gateway"]


def test_request_summary_counts_api_calls_for_other_processes(sandbox: SandboxApiServer) -> None:
    for _ in range(3):
        urllib.request.urlopen(f"{sandbox.url}/apis").close()
    with urllib.request.urlopen(f"{sandbox.url}/sandbox/requests") as reply:
        summary = json.load(reply)
    assert summary["byMethod"] == {"GET": 3}


def test_a_write_is_in_the_request_log_by_the_time_its_change_can_be_seen(
    sandbox: SandboxApiServer, objects: Any, weather: dict[str, Any]
) -> None:
    """Tests compare what the store holds with the writes logged: a reader that sees a patch
    land must find it logged, never the change first and the log entry a moment later."""
    done, ahead = threading.Event(), []

    def read_both() -> None:
        while not done.is_set():
            vs = sandbox.get_object("default", VS, "weather")
            assert vs is not None
            patched = vs["spec"]["http"][0]["route"][1]["weight"] - 10  # the fixture's 10 %
            logged = sum(r.method == "PATCH" for r in sandbox.writes())
            if patched > logged:
                ahead.append((patched, logged))

    reader = threading.Thread(target=read_both)
    reader.start()
    try:
        for canary in range(11, 100):
            patch_vs(objects, set_weights(100 - canary, canary))
    finally:
        done.set()
        reader.join()
    assert ahead == []
