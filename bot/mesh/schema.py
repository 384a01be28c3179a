"""Istio CRD schema validation (jsonschema over each served version's openAPIV3Schema)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

KINDS = {"VirtualService": "virtualservice", "DestinationRule": "destinationrule"}


@cache
def _crd(kind: str) -> dict[str, Any]:
    name = KINDS[kind]
    text = resources.files("bot.mesh").joinpath(f"crds/{name}.json").read_text("utf-8")
    crd: dict[str, Any] = json.loads(text)
    return crd


def served_versions(kind: str) -> list[str]:
    return sorted(_crd(kind)["versions"])


def plural(kind: str) -> str:
    return str(_crd(kind)["plural"])


@cache
def _validator(kind: str, version: str) -> jsonschema.Draft4Validator:
    schema = _crd(kind)["versions"][version]
    return jsonschema.Draft4Validator(schema)


def schema_errors(obj: Mapping[str, Any], kind: str, version: str = "v1") -> list[str]:
    """Problems of `obj` against the CRD schema, as `path: message` lines (empty when valid).

    Only `spec` and `status` are described by the CRD; metadata is the API server's business.
    """
    if kind not in KINDS:
        raise ValueError(f"no schema for kind {kind!r}")
    if version not in _crd(kind)["versions"]:
        raise ValueError(f"{kind} has no served version {version!r}")
    body = {k: obj[k] for k in ("spec", "status") if k in obj}
    errors = sorted(_validator(kind, version).iter_errors(body), key=lambda e: list(e.path))
    return [f"{_pointer(e.absolute_path)}: {e.message}" for e in errors]


def _pointer(path: Any) -> str:
    parts = [str(p) for p in path]
    return "/" + "/".join(parts) if parts else "/"
