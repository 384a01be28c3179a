from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given

from bot.mesh.errors import InvalidObject
from bot.mesh.models import DestinationRule, VirtualService, fqdn
from bot.mesh.schema import schema_errors, served_versions

from .conftest import SHARED, seed_docs
from .test_planner_properties import destination_rule, virtual_service


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


def test_bundled_schemas_equal_the_istio_crds() -> None:
    for kind, stem in (
        ("VirtualService", "virtualservice"),
        ("DestinationRule", "destinationrule"),
    ):
        crd = yaml.load(
            (SHARED / "istio" / f"{stem}.crd.yaml").read_text(), Loader=yaml.CSafeLoader
        )
        bundled = json.loads((Path("bot/mesh/crds") / f"{stem}.json").read_text())
        expected = {v["name"]: v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]}
        assert bundled["versions"] == expected
        assert served_versions(kind) == sorted(expected)


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
