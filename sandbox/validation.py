"""Why a real API server refuses a custom resource, in its words: the causes of its 422.

kube-apiserver v1.37 (tests/kube/DIVERGENCES.md) checks an object against its CRD's structural
schema in document order, and at each value first its type (kube-openapi's words:
`spec.hosts in body must be of type array: "string"`), then, for a number under an integer
format, whether it fits (`Checked value must be of type integer with format int32 in ...`, a
cause without a field, which the server writes `<nil>`). A wrong type, a missing required field
or a value outside an enum keeps the CRD's CEL rules from running, which a last `<nil>` cause
says. The other schema checks (enums, bounds, required fields, the CEL rules) are the bot's own
(`bot.mesh.schema`); their causes keep jsonschema's wording. An object with a wrong type is
refused for its type errors only (the real server would list any other schema error beside
them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bot.mesh.schema import schema_errors
from sandbox.fields import crd_schema

NO_FIELD = "<nil>"  # how the real server writes the field of a cause that has none
NOT_CHECKED = (
    "Invalid value: null: some validation rules were not checked because the object was "
    "invalid; correct the existing errors to complete validation"
)
# The reasons of the causes that keep the CEL rules from running.
_BLOCKING = frozenset({"FieldValueTypeInvalid", "FieldValueRequired", "FieldValueNotSupported"})
_INTEGER_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


@dataclass(frozen=True)
class Cause:
    """One entry of a 422's `details.causes`."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def as_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


def with_not_checked(causes: list[Cause]) -> list[Cause]:
    """`causes`, and the real server's closing cause when one of them kept the CEL rules from
    running."""
    if any(cause.reason in _BLOCKING for cause in causes):
        return [*causes, Cause(NO_FIELD, NOT_CHECKED)]
    return causes


def schema_causes(obj: Mapping[str, Any], kind: str, version: str) -> list[Cause]:
    """Why `obj` (a VirtualService or DestinationRule) is invalid at `version`; empty if it is
    valid."""
    schema = crd_schema(kind, version)
    properties = schema.get("properties") or {}
    structural = [
        cause
        for key in ("spec", "status")
        if key in obj and key in properties
        for cause in _check(obj[key], properties[key], key)
    ]
    if any(cause.reason == "FieldValueTypeInvalid" for cause in structural):
        return with_not_checked(structural)
    return structural + [
        Cause(_field_path(pointer), f"Invalid value: {message}")
        for line in schema_errors(obj, kind, version)
        for pointer, _, message in [line.partition(": ")]
    ]


def _check(value: Any, schema: Mapping[str, Any], path: str) -> Iterator[Cause]:
    """The type and integer-range causes of `value` and everything in it, in document order."""
    if value is None or schema.get("x-kubernetes-int-or-string"):
        return
    wrong_type = _type_error(value, schema, path)
    if wrong_type is not None:
        yield wrong_type
    out_of_range = _range_error(value, schema, path)
    if out_of_range is not None:
        yield out_of_range
    if wrong_type is not None:
        return
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from _check(item, schema["items"], f"{path}[{index}]")
    elif isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, member in value.items():
            if key in properties:
                yield from _check(member, properties[key], f"{path}.{key}")
            elif isinstance(extra, Mapping):
                yield from _check(member, extra, f"{path}.{key}")


def _json_type(value: Any) -> tuple[str, str]:
    """kube-openapi's type and format of a decoded JSON value."""
    if isinstance(value, bool):
        return "boolean", ""
    if isinstance(value, int):
        return "integer", "int64"
    if isinstance(value, float):
        return "number", "float64"
    if isinstance(value, str):
        return "string", ""
    if isinstance(value, list):
        return "array", ""
    return "object", ""


def _type_error(value: Any, schema: Mapping[str, Any], path: str) -> Cause | None:
    """kube-openapi's type check: first the format (for a value that is neither a string nor a
    list), then the type; an integral number is an integer, an integer a number."""
    wanted, wanted_format = schema.get("type"), schema.get("format") or ""
    if not wanted:
        return None
    found, found_format = _json_type(value)
    fits = (
        wanted == found
        or (found == "number" and wanted == "integer" and float(value).is_integer())
        or (found == "integer" and wanted == "number")
    )
    narrower = (wanted_format, found_format) in (("int64", "int32"), ("float64", "float32"))
    format_fits = fits or found_format == wanted_format or narrower
    if found not in ("string", "array") and wanted_format and not format_fits:
        return _invalid_type(path, wanted_format, found_format)
    if not fits:
        return _invalid_type(path, str(wanted), found)
    return None


def _invalid_type(path: str, wanted: str, found: str) -> Cause:
    message = f'Invalid value: "{found}": {path} in body must be of type {wanted}: "{found}"'
    return Cause(path, message, "FieldValueTypeInvalid")


def _range_error(value: Any, schema: Mapping[str, Any], path: str) -> Cause | None:
    """A number under an integer format that does not convert to it without loss."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    bounds = _INTEGER_RANGES.get(schema.get("format") or "")
    if bounds is None:
        return None
    low, high = bounds
    if float(value).is_integer() and low <= value <= high:
        return None
    message = (
        f'Invalid value: "": Checked value must be of type {schema.get("type")} with format '
        f"{schema['format']} in {path}"
    )
    return Cause(NO_FIELD, message)


def _field_path(pointer: str) -> str:
    """`/spec/http/0/route` as Kubernetes writes field paths: `spec.http[0].route`."""
    path = ""
    for token in pointer.strip("/").split("/"):
        path += f"[{token}]" if token.isdigit() else f".{token}"
    return path.lstrip(".")
