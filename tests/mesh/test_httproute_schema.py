"""The Gateway API's HTTPRoute CRD is bundled twice: whole for the real kube-apiserver
(tests/support/crds), and as its schemas for the bot's validation (bot/mesh/crds)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import yaml

from bot.mesh.schema import plural, schema_errors, served_versions

CRD = Path(__file__).parents[1] / "support" / "crds" / "httproute.crd.yaml"


def test_the_bundled_schemas_are_the_crds() -> None:
    crd = yaml.load(CRD.read_text(), yaml.CSafeLoader)
    assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == "v1.6.1"
    assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/channel"] == "standard"
    bundled = json.loads(resources.files("bot.mesh").joinpath("crds/httproute.json").read_text())
    assert bundled["versions"] == {
        v["name"]: v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]
    }
    assert (bundled["group"], plural("HTTPRoute")) == ("gateway.networking.k8s.io", "httproutes")
    assert served_versions("HTTPRoute") == ["v1", "v1beta1"]


def test_the_schema_refuses_what_the_api_server_would() -> None:
    route = {
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [{"backendRefs": [{"name": "weather", "port": 80, "weight": -1}]}],
        }
    }
    assert schema_errors(route, "HTTPRoute") == [
        "/spec/rules/0/backendRefs/0/weight: -1 is less than the minimum of 0"
    ]
    del route["spec"]["rules"][0]["backendRefs"][0]["weight"]
    assert schema_errors(route, "HTTPRoute") == []
