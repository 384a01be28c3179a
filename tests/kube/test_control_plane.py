"""The API contract the bot relies on, checked on a real kube-apiserver and on the sandbox alike
(`cluster`), plus what only the real server can show (`real_kube`). Where the two answer
differently the test says so, and tests/kube/DIVERGENCES.md lists it."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client, watch

from tests.support.kubeapi import CRD_DIR, ROOT, RealKube, User

from .conftest import GROUP, SANDBOX_HISTORY, Cluster

VS = "virtualservices"
SHARED = ROOT.parent / "shared"


def kubernetes_version() -> str:
    go_mod = (ROOT / "tools" / "kube" / "go.mod").read_text()
    found = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", go_mod, re.MULTILINE)
    assert found, "tools/kube/go.mod requires no k8s.io/kubernetes"
    return found.group(1)


def status_of(error: client.ApiException) -> dict[str, object]:
    body: dict[str, object] = json.loads(error.body)
    return body


def test_the_server_is_the_kube_apiserver_built_from_tools_kube(real_kube: RealKube) -> None:
    version = client.VersionApi(real_kube.admin).get_code()
    assert version.git_version == kubernetes_version()
    assert version.go_version.startswith("go1.")


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no {SHARED} to compare with (a plain clone)")
def test_the_bundled_crds_equal_the_workplace_originals() -> None:
    for original in sorted((SHARED / "istio").glob("*.crd.yaml")):
        assert (CRD_DIR / original.name).read_text() == original.read_text(), original.name


def test_a_seeded_virtual_service_reads_back_as_created(cluster: Cluster) -> None:
    namespace = cluster.namespace()
    [created, _] = cluster.seed("weather", namespace)
    assert created["apiVersion"] == f"{GROUP}/v1alpha3"  # the version it was sent at

    read = cluster.get_vs(namespace, "weather")  # read at v1: one stored object, any version
    assert read["apiVersion"] == f"{GROUP}/v1"
    assert read["spec"] == created["spec"]
    meta = read["metadata"]
    assert meta["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert meta["uid"] == created["metadata"]["uid"]
    assert meta["generation"] == 1
    routes = read["spec"]["http"][0]["route"]
    assert [r["weight"] for r in routes] == [90, 10]


def test_a_json_patch_led_by_a_stale_resource_version_test_is_refused_with_422(
    cluster: Cluster,
) -> None:
    namespace = cluster.namespace()
    cluster.seed("weather", namespace)
    first = cluster.get_vs(namespace, "weather")
    stale = first["metadata"]["resourceVersion"]

    def patch(resource_version: str, weight: int) -> dict[str, object]:
        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 100 - weight},
            {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": weight},
        ]
        result: dict[str, object] = cluster.objects.patch_namespaced_custom_object(
            GROUP, "v1", namespace, VS, "weather", ops, _content_type="application/json-patch+json"
        )
        return result

    patched = patch(stale, 20)
    assert patched["metadata"]["resourceVersion"] != stale  # type: ignore[index]
    assert patched["metadata"]["generation"] == 2  # type: ignore[index]

    with pytest.raises(client.ApiException) as refused:
        patch(stale, 50)
    assert refused.value.status == 422
    status = status_of(refused.value)
    assert status["reason"] == "Invalid"
    assert "the server rejected our request due to an error in our request" in str(
        status["message"]
    )
    routes = cluster.get_vs(namespace, "weather")["spec"]["http"][0]["route"]
    assert [r["weight"] for r in routes] == [80, 20]  # the stale patch changed nothing


def test_a_weight_given_as_a_string_is_refused_with_422(cluster: Cluster) -> None:
    namespace = cluster.namespace()
    cluster.seed("weather", namespace)
    ops = [{"op": "replace", "path": "/spec/http/0/route/1/weight", "value": "10"}]
    with pytest.raises(client.ApiException) as refused:
        cluster.objects.patch_namespaced_custom_object(
            GROUP, "v1", namespace, VS, "weather", ops, _content_type="application/json-patch+json"
        )
    assert refused.value.status == 422
    status = status_of(refused.value)
    assert status["reason"] == "Invalid"
    causes = status["details"]["causes"]  # type: ignore[index]
    assert causes[0]["field"] == "spec.http[0].route[1].weight"
    assert 'VirtualService.networking.istio.io "weather" is invalid' in str(status["message"])
    assert causes[0]["reason"] == "FieldValueTypeInvalid"
    assert "in body must be of type integer" in causes[0]["message"]
    # ...and a second cause with field "<nil>": the CRD's CEL rules were not run
    assert [c["field"] for c in causes[1:]] == ["<nil>"]
    assert "some validation rules were not checked" in causes[1]["message"]


def test_a_watch_from_an_expired_resource_version_is_gone_410(cluster: Cluster) -> None:
    namespace = cluster.namespace()
    cluster.seed("weather", namespace)
    for n in range(SANDBOX_HISTORY + 5):  # past the sandbox's history; nothing to the real one
        ops = [{"op": "add", "path": "/metadata/labels", "value": {"n": str(n)}}]
        cluster.objects.patch_namespaced_custom_object(
            GROUP, "v1", namespace, VS, "weather", ops, _content_type="application/json-patch+json"
        )
    with pytest.raises(client.ApiException) as gone:
        for _ in watch.Watch().stream(
            cluster.objects.list_namespaced_custom_object,
            GROUP,
            "v1",
            namespace,
            VS,
            resource_version="1",
            timeout_seconds=5,
        ):
            pass
    assert gone.value.status == 410
    assert "too old resource version: 1 (" in str(gone.value.reason)


# --- The real server only ---------------------------------------------------------------------


def test_an_unknown_field_is_pruned_by_the_real_server(real_kube: RealKube) -> None:
    """The CRDs are structural schemas, so the real server drops fields they do not describe
    (and warns); the sandbox keeps them (DIVERGENCES.md)."""
    namespace = real_kube.new_namespace("prune")
    api = client.CustomObjectsApi(real_kube.admin)
    body = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "VirtualService",
        "metadata": {"name": "pruned", "namespace": namespace},
        "spec": {
            "hosts": ["pruned"],
            "unknownField": "dropped",
            "http": [{"route": [{"destination": {"host": "pruned"}, "colour": "blue"}]}],
        },
    }
    created = api.create_namespaced_custom_object(GROUP, "v1", namespace, VS, body)
    assert "unknownField" not in created["spec"]
    assert created["spec"]["http"][0]["route"][0] == {"destination": {"host": "pruned"}}

    strict = {**body, "metadata": {"name": "strict", "namespace": namespace}}
    with pytest.raises(client.ApiException) as refused:
        api.create_namespaced_custom_object(
            GROUP, "v1", namespace, VS, strict, field_validation="Strict"
        )
    assert refused.value.status == 400
    assert 'unknown field "spec.unknownField"' in str(status_of(refused.value)["message"])


def test_a_cel_rule_of_the_crd_refuses_a_zero_timeout(real_kube: RealKube) -> None:
    """Istio's CRDs check durations with CEL (x-kubernetes-validations); the sandbox's JSON
    Schema check does not run CEL and takes them (DIVERGENCES.md)."""
    namespace = real_kube.new_namespace("cel")
    body = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "VirtualService",
        "metadata": {"name": "slow", "namespace": namespace},
        "spec": {
            "hosts": ["slow"],
            "http": [{"route": [{"destination": {"host": "slow"}}], "timeout": "0s"}],
        },
    }
    with pytest.raises(client.ApiException) as refused:
        client.CustomObjectsApi(real_kube.admin).create_namespaced_custom_object(
            GROUP, "v1", namespace, VS, body
        )
    assert refused.value.status == 422
    assert "must be a valid duration greater than 1ms" in str(status_of(refused.value)["message"])


def test_rbac_decides_for_a_static_user_and_a_service_account(real_kube: RealKube) -> None:
    namespace = real_kube.new_namespace("rbac")
    rbac = client.RbacAuthorizationV1Api(real_kube.admin)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "vs-reader"},
            "rules": [{"apiGroups": [GROUP], "resources": [VS], "verbs": ["get", "list"]}],
        },
    )
    token = real_kube.service_account_token(namespace, "canary-bot")
    subject = {"kind": "ServiceAccount", "name": "canary-bot", "namespace": namespace}
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "canary-bot-reads"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "vs-reader",
            },
            "subjects": [subject],
        },
    )
    viewer = next(u for u in real_kube.users if u.name == "viewer")

    def listing(token: str) -> int:
        with real_kube.api_client(token) as api:
            try:
                client.CustomObjectsApi(api).list_namespaced_custom_object(
                    GROUP, "v1", namespace, VS
                )
            except client.ApiException as e:
                return int(e.status)
            return 200

    deadline = time.monotonic() + 10  # RBAC objects reach the authorizer through a watch
    while listing(token) != 200:
        assert time.monotonic() < deadline, "the RoleBinding never took effect"
        time.sleep(0.1)
    assert listing(viewer.token) == 403
    assert listing("not-a-token") == 401

    kubeconfig = yaml.safe_load(Path(real_kube.kubeconfig_for(token)).read_text())
    assert kubeconfig["users"][0]["user"]["token"] == token


def test_static_users_are_given_before_start() -> None:
    """The token file is read once, at start: users come from the constructor."""
    kube = RealKube(users=[User("viewer", "viewer-token", ("viewers",))])
    assert [u.name for u in kube.users] == ["canary-admin", "viewer"]
