from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from bot.mesh.errors import InvalidObject
from bot.mesh.models import DestinationRule, VirtualService, fqdn
from bot.mesh.schema import schema_errors, served_versions
from tests.support.strategies import destination_rule, virtual_service

from .conftest import seed_docs


@pytest.mark.parametrize(("stem", "doc"), seed_docs("VirtualService"))
def test_seed_virtual_services_round_trip(stem: str, doc: dict[str, Any]) -> None:
    assert VirtualService.parse(doc).to_dict() == doc


@pytest.mark.parametrize(("stem", "doc"), seed_docs("DestinationRule"))
def test_seed_destination_rules_round_trip(stem: str, doc: dict[str, Any]) -> None:
    assert DestinationRule.parse(doc).to_dict() == doc


@given(vs=virtual_service(), dr=destination_rule())
def test_generated_objects_round_trip_with_unknown_fields(
    vs: dict[str, Any], dr: dict[str, Any]
) -> None:
    assert VirtualService.parse(vs).to_dict() == vs
    assert DestinationRule.parse(dr).to_dict() == dr


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (
            {
                "metadata": {"name": "w"},
                "spec": {"http": [{"route": [{"destination": {"host": "a"}, "weight": "10"}]}]},
            },
            "/spec/http/0/route/0/weight",
        ),
        ({"metadata": {"name": "w"}, "spec": {"http": "nope"}}, "/spec/http"),
        ({"metadata": {}, "spec": {}}, "/metadata/name"),
        (
            {"metadata": {"name": "w"}, "spec": {"http": [{"route": [{"weight": 1}]}]}},
            "destination",
        ),
    ],
)
def test_unreadable_objects_name_the_field(raw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidObject) as caught:
        VirtualService.parse(raw)
    assert fragment in str(caught.value)
    assert "fix the object" in str(caught.value)


@pytest.mark.parametrize(
    ("host", "namespace", "expected"),
    [
        ("reviews", "prod", "reviews.prod.svc.cluster.local"),
        ("reviews.prod.svc.cluster.local", "default", "reviews.prod.svc.cluster.local"),
        ("httpbin.org", "default", "httpbin.org"),
    ],
)
def test_short_names_are_relative_to_the_namespace(
    host: str, namespace: str, expected: str
) -> None:
    assert fqdn(host, namespace) == expected


@pytest.mark.parametrize("kind", ["VirtualService", "DestinationRule"])
def test_the_versions_istio_serves_are_known(kind: str) -> None:
    assert served_versions(kind) == ["v1", "v1alpha3", "v1beta1"]


def test_schema_rejects_wrong_types_with_paths() -> None:
    vs = {
        "spec": {
            "hosts": "weather",
            "http": [{"route": [{"destination": {"host": "w"}, "weight": "ten"}]}],
        }
    }
    assert schema_errors(vs, "VirtualService") == [
        "/spec/hosts: 'weather' is not of type 'array'",
        "/spec/http/0/route/0/weight: 'ten' is not of type 'integer'",
    ]
