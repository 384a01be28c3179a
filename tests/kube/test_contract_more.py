"""More of the one contract, on the sandbox API server and a real kube-apiserver (`cluster`):
the 422s' causes word for word, paged lists, Pods' status subresource and per-verb RBAC. Each
test here fixed an entry of tests/kube/DIVERGENCES.md."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from tests.support.chart_rbac import rules_review
from tests.support.harness import wait_until
from tests.support.kube_calls import raise_for, raw, refusal, send, status_of
from tests.support.kubeapi import VIEWER

from .conftest import GROUP, Cluster

VS = "virtualservices"
NOT_CHECKED = {
    "reason": "FieldValueInvalid",
    "message": "Invalid value: null: some validation rules were not checked because the object "
    "was invalid; correct the existing errors to complete validation",
    "field": "<nil>",
}
WEIGHT = "spec.http[0].route[0].weight"


def out_of_int32(path: str) -> dict[str, str]:
    message = (
        f'Invalid value: "": Checked value must be of type integer with format int32 in {path}'
    )
    return {"reason": "FieldValueInvalid", "message": message, "field": "<nil>"}


def wrong_type(path: str, wanted: str, found: str) -> dict[str, str]:
    message = f'Invalid value: "{found}": {path} in body must be of type {wanted}: "{found}"'
    return {"reason": "FieldValueTypeInvalid", "message": message, "field": path}


def virtual_service(name: str, weight: Any = 10, **spec: Any) -> dict[str, Any]:
    route = {"destination": {"host": name}, "weight": weight}
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {"hosts": [name], "http": [{"route": [route]}], **spec},
    }


def create(cluster: Cluster, namespace: str, body: dict[str, Any]) -> Any:
    return cluster.objects.create_namespaced_custom_object(GROUP, "v1", namespace, VS, body)


# --- 422: the causes, word for word (#3, #4, #5, #24, #25) -----------------------------------


@pytest.mark.parametrize(
    ("body", "causes"),
    [
        (virtual_service("w", 2**40), [out_of_int32(WEIGHT)]),
        (virtual_service("w", -(2**31) - 1), [out_of_int32(WEIGHT)]),
        (virtual_service("w", "10"), [wrong_type(WEIGHT, "integer", "string"), NOT_CHECKED]),
        (
            virtual_service("w", 10.5),
            [wrong_type(WEIGHT, "int32", "float64"), out_of_int32(WEIGHT), NOT_CHECKED],
        ),
        (virtual_service("w", True), [wrong_type(WEIGHT, "int32", ""), NOT_CHECKED]),
        (
            virtual_service("w", hosts="w"),
            [wrong_type("spec.hosts", "array", "string"), NOT_CHECKED],
        ),
        (
            virtual_service("w", hosts=[5]),
            [wrong_type("spec.hosts[0]", "string", "integer"), NOT_CHECKED],
        ),
        (
            {
                **virtual_service("w"),
                "spec": {
                    "hosts": ["w"],
                    "http": [
                        {
                            "route": [
                                {"destination": {"host": "a"}, "weight": 2**40},
                                {"destination": {"host": "b"}, "weight": "x"},
                            ]
                        }
                    ],
                },
            },
            [
                out_of_int32(WEIGHT),
                wrong_type("spec.http[0].route[1].weight", "integer", "string"),
                NOT_CHECKED,
            ],
        ),
    ],
    ids=["int32-over", "int32-under", "string", "fraction", "bool", "hosts", "host", "two-routes"],
)
def test_a_value_of_the_wrong_type_or_beyond_int32_is_422_with_the_real_servers_causes(
    cluster: Cluster, body: dict[str, Any], causes: list[dict[str, str]]
) -> None:
    namespace = cluster.namespace()
    error = refusal(lambda: create(cluster, namespace, body))
    assert error.status == 422
    status = status_of(error)
    assert status["details"] == {
        "name": "w",
        "group": GROUP,
        "kind": "VirtualService",
        "causes": causes,
    }
    lines = [f"{c['field']}: {c['message']}" for c in causes]
    summary = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    assert status["message"] == f'VirtualService.{GROUP} "w" is invalid: {summary}'


def test_the_edges_of_int32_an_integral_number_and_a_null_are_taken(cluster: Cluster) -> None:
    namespace = cluster.namespace()
    for name, weight in (("top", 2**31 - 1), ("bottom", -(2**31))):
        created = create(cluster, namespace, virtual_service(name, weight))
        assert created["spec"]["http"][0]["route"][0]["weight"] == weight
    integral = create(cluster, namespace, virtual_service("integral", 100.0))
    assert integral["spec"]["http"][0]["route"][0] == {
        "destination": {"host": "integral"},
        "weight": 100,
    }
    unset = create(cluster, namespace, virtual_service("unset", None))
    assert unset["spec"]["http"][0]["route"][0] == {"destination": {"host": "unset"}}


def test_a_create_without_a_name_is_422_and_its_rules_not_checked(cluster: Cluster) -> None:
    namespace = cluster.namespace()
    body = {**virtual_service("w"), "metadata": {}}
    status = status_of(refusal(lambda: create(cluster, namespace, body)))
    required = {
        "reason": "FieldValueRequired",
        "message": "Required value: name or generateName is required",
        "field": "metadata.name",
    }
    assert status["details"] == {
        "group": GROUP,
        "kind": "VirtualService",
        "causes": [required, NOT_CHECKED],
    }
    assert status["message"] == (
        f'VirtualService.{GROUP} "" is invalid: [metadata.name: {required["message"]}, '
        f"<nil>: {NOT_CHECKED['message']}]"
    )


def test_a_put_without_a_resource_version_is_422_naming_the_plural(cluster: Cluster) -> None:
    namespace = cluster.namespace()
    create(cluster, namespace, virtual_service("w"))
    error = refusal(
        lambda: cluster.objects.replace_namespaced_custom_object(
            GROUP, "v1", namespace, VS, "w", virtual_service("w", 20)
        )
    )
    assert error.status == 422
    cause = {
        "reason": "FieldValueInvalid",
        "message": "Invalid value: 0: must be specified for an update",
        "field": "metadata.resourceVersion",
    }
    assert status_of(error)["details"] == {
        "name": "w",
        "group": GROUP,
        "kind": VS,
        "causes": [cause],
    }
    assert status_of(error)["message"] == (
        f'{VS}.{GROUP} "w" is invalid: metadata.resourceVersion: {cause["message"]}'
    )


# --- Lists in pages (#17) ---------------------------------------------------------------------


def names(listing: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in listing["items"]]


def test_a_list_with_a_limit_comes_in_pages_each_as_of_the_first(cluster: Cluster) -> None:
    """`limit` and `continue`: pages in name order, a token while more are left (and how many),
    and every page as things stood at the first one, whatever was written in between."""
    namespace = cluster.namespace()
    for name in "abcde":
        create(cluster, namespace, virtual_service(name))

    def listed(**query: Any) -> dict[str, Any]:
        found: dict[str, Any] = cluster.objects.list_namespaced_custom_object(
            GROUP, "v1", namespace, VS, **query
        )
        return found

    first = listed(limit=2)
    assert names(first) == ["a", "b"]
    assert first["metadata"]["remainingItemCount"] == 3
    revision = first["metadata"]["resourceVersion"]

    cluster.objects.patch_namespaced_custom_object(
        GROUP, "v1", namespace, VS, "c", {"metadata": {"labels": {"late": "yes"}}}
    )
    cluster.objects.delete_namespaced_custom_object(GROUP, "v1", namespace, VS, "d")
    create(cluster, namespace, virtual_service("f"))

    second = listed(limit=2, _continue=first["metadata"]["continue"])
    assert names(second) == ["c", "d"]  # as they were: c unlabelled, d not yet deleted
    assert "labels" not in second["items"][0]["metadata"]
    assert second["metadata"]["resourceVersion"] == revision
    assert second["metadata"]["remainingItemCount"] == 1
    last = listed(limit=2, _continue=second["metadata"]["continue"])
    assert names(last) == ["e"]  # f was made after the first page
    assert last["metadata"]["continue"] == ""
    assert "remainingItemCount" not in last["metadata"]

    assert names(listed()) == ["a", "b", "c", "e", "f"]
    assert names(listed(limit=0)) == ["a", "b", "c", "e", "f"]
    chosen = listed(limit=1, label_selector="late=yes")  # a full page, and keys left after it
    assert names(chosen) == ["c"]
    assert "remainingItemCount" not in chosen["metadata"]
    rest = listed(limit=1, label_selector="late=yes", _continue=chosen["metadata"]["continue"])
    assert (names(rest), rest["metadata"]["continue"]) == ([], "")


def answer(cluster: Cluster, path: str, **query: str) -> tuple[int, dict[str, Any]]:
    """The status and body of a GET sent with the client's credentials, error or not."""
    try:
        reply = raw(cluster, "GET", path, **query)
    except client.ApiException as error:
        return error.status, status_of(error)
    return reply.status, json.loads(reply.data)


def test_a_bad_limit_or_continue_token_is_400(cluster: Cluster) -> None:
    path = f"/apis/{GROUP}/v1/namespaces/{cluster.namespace()}/{VS}"
    code, status = answer(cluster, path, limit="x")
    assert (code, status["message"]) == (400, 'strconv.ParseInt: parsing "x": invalid syntax')
    code, status = answer(cluster, path, limit="2", **{"continue": "garbage"})
    assert code == 400
    assert status["message"].startswith("invalid continue token: continue key is not valid: ")


# --- RBAC by user, verb and resource (#13) ----------------------------------------------------


def test_rbac_allows_the_verbs_a_role_grants_and_refuses_the_rest_in_its_words(
    cluster: Cluster,
) -> None:
    """A Role granting get, list and patch of VirtualServices (not watch, not their status, not
    DestinationRules), bound to the viewer: each call as RBAC decides, the rules review says
    so, and another namespace stays closed."""
    namespace = cluster.namespace()
    create(cluster, namespace, virtual_service("w"))
    rbac_api = client.RbacAuthorizationV1Api(cluster.api)
    rules = [{"apiGroups": [GROUP], "resources": [VS], "verbs": ["get", "list", "patch"]}]
    rbac_api.create_namespaced_role(namespace, {"metadata": {"name": "vs-editor"}, "rules": rules})
    subject = {"kind": "User", "name": VIEWER.name, "apiGroup": "rbac.authorization.k8s.io"}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "vs-editor"}
    binding = {"metadata": {"name": "vs-editor"}, "roleRef": role_ref, "subjects": [subject]}
    rbac_api.create_namespaced_role_binding(namespace, binding)
    elsewhere = cluster.namespace()

    def forbidden(verb: str, where: str, what: str = f'{VS}.{GROUP} "w"', plural: str = VS) -> str:
        return (
            f'{what} is forbidden: User "{VIEWER.name}" cannot {verb} resource "{plural}" in '
            f'API group "{GROUP}" in the namespace "{where}"'
        )

    with cluster.client_for(VIEWER.token) as api:
        objects = client.CustomObjectsApi(api)
        wait_until(
            lambda: (GROUP, VS, "patch") in rules_review(api, namespace),
            timeout=10,
            what="the viewer's Role to take effect",
        )
        assert {grant for grant in rules_review(api, elsewhere) if grant[0] == GROUP} == set()
        assert objects.get_namespaced_custom_object(GROUP, "v1", namespace, VS, "w")
        assert names(objects.list_namespaced_custom_object(GROUP, "v1", namespace, VS)) == ["w"]
        labels = {"metadata": {"labels": {"by": "viewer"}}}
        patched = objects.patch_namespaced_custom_object(GROUP, "v1", namespace, VS, "w", labels)
        assert patched["metadata"]["labels"] == {"by": "viewer"}

        refusals = {
            "watch": lambda: raw_as(
                api, f"/apis/{GROUP}/v1/namespaces/{namespace}/{VS}", watch="1"
            ),
            "create": lambda: objects.create_namespaced_custom_object(
                GROUP, "v1", namespace, VS, virtual_service("x")
            ),
            "delete": lambda: objects.delete_namespaced_custom_object(
                GROUP, "v1", namespace, VS, "w"
            ),
            "patch status": lambda: objects.patch_namespaced_custom_object_status(
                GROUP, "v1", namespace, VS, "w", {"status": {}}
            ),
            "get dr": lambda: objects.get_namespaced_custom_object(
                GROUP, "v1", namespace, "destinationrules", "w"
            ),
            "get elsewhere": lambda: objects.get_namespaced_custom_object(
                GROUP, "v1", elsewhere, VS, "w"
            ),
            "list everywhere": lambda: objects.list_cluster_custom_object(GROUP, "v1", VS),
        }
        messages = {}
        for what, call in refusals.items():
            error = refusal(call)
            assert error.status == 403, what
            messages[what] = status_of(error)["message"]
    assert messages == {
        "watch": forbidden("watch", namespace, f"{VS}.{GROUP}"),
        "create": forbidden("create", namespace, f"{VS}.{GROUP}"),
        "delete": forbidden("delete", namespace),
        "patch status": forbidden("patch", namespace, plural=f"{VS}/status"),
        "get dr": forbidden("get", namespace, f'destinationrules.{GROUP} "w"', "destinationrules"),
        "get elsewhere": forbidden("get", elsewhere),
        "list everywhere": (
            f'{VS}.{GROUP} is forbidden: User "{VIEWER.name}" cannot list resource "{VS}" in '
            f'API group "{GROUP}" at the cluster scope'
        ),
    }


def raw_as(api: client.ApiClient, path: str, **query: str) -> Any:
    """A GET sent with `api`'s credentials; raises ApiException for an error answer."""
    return raise_for(send(api, "GET", path, **query))
