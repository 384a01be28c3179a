"""More of the one contract, on the sandbox API server and a real kube-apiserver (`cluster`):
the 422s' causes word for word, paged lists, Pods' status subresource and per-verb RBAC. Each
test here fixed an entry of tests/kube/DIVERGENCES.md."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import GROUP, Cluster
from .test_contract import refusal, status_of

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
