"""Istio CRD schema validation (jsonschema over each served version's openAPIV3Schema, and
the CEL rules the CRDs carry that the bot knows how to evaluate)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

KINDS = {
    "VirtualService": "virtualservice",
    "DestinationRule": "destinationrule",
    "HTTPRoute": "httproute",  # gateway.networking.k8s.io
}


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
    validator: jsonschema.Draft4Validator = _WithCel(schema)
    return validator


# The CEL rules (`x-kubernetes-validations`) Istio's CRDs carry, checked the way the API server
# evaluates them, so the bot refuses what the server would, with the same message, before it
# writes. A rule not listed here is left to the API server.
_GO_DURATION = re.compile(r"^[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration_s(text: str) -> float | None:
    """Seconds in a Go duration ("1.5s", "100ms", "1h2m"); None if it is not one."""
    if text == "0":
        return 0.0
    if not _GO_DURATION.match(text):
        return None
    sign = -1.0 if text.startswith("-") else 1.0
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    return sign * sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def _at_least_1ms(value: Any) -> bool:
    seconds = _duration_s(value) if isinstance(value, str) else None
    return seconds is not None and seconds >= 1e-3


_RULES: dict[str, Callable[[Any], bool]] = {
    "duration(self) >= duration('1ms')": _at_least_1ms,
    '!self.contains("*")': lambda v: not isinstance(v, str) or "*" not in v,
    'self.all(key, !key.contains("*"))': lambda v: (
        not isinstance(v, dict) or all("*" not in k for k in v)
    ),
    "self.all(key, key.size() != 0)": lambda v: not isinstance(v, dict) or all(k for k in v),
}


def _cel(
    validator: Any, rules: list[dict[str, str]], instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    for rule in rules:
        check = _RULES.get(rule.get("rule", ""))
        if check is not None and not check(instance):
            yield jsonschema.ValidationError(rule.get("message") or f"failed rule: {rule['rule']}")


_WithCel = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft4Validator, {"x-kubernetes-validations": _cel}
)


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
