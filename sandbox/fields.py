"""What a real API server does to an object's fields on the way in: it prunes the fields a CRD's
structural schema does not describe (and names each one in a warning) and the nulls it does not
allow (silently), and it keeps `metadata.managedFields`, which field manager set which fields.

Both follow kube-apiserver v1.37 as seen from a client (tests/kube/DIVERGENCES.md): the
unknown-field paths are written `spec.http[0].route[0].colour`; ownership is the `Update`
operation's (what a JSON or merge patch, a PUT or a POST does): the writer takes every field it
added or changed, the others lose those fields, and a removed field leaves everyone. Lists are
atomic (Istio's CRDs mark none as a map or set), so a list is owned whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

from bot.mesh.schema import KINDS

JsonObject = dict[str, Any]
Path = tuple[str, ...]  # fieldsV1 keys, e.g. ("f:spec", "f:http")

# ObjectMeta's fields: anything else in `metadata` is unknown and pruned.
OBJECT_META = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
# Kept by the server, never owned by a field manager.
_UNMANAGED_METADATA = OBJECT_META - {
    "generateName",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
}
_ROOT = frozenset({"apiVersion", "kind", "metadata"})


# --- Pruning ---------------------------------------------------------------------------------


@cache
def crd_schema(kind: str, version: str) -> JsonObject:
    """The openAPIV3Schema of `kind` at `version`, from the CRDs the bot bundles."""
    text = resources.files("bot.mesh").joinpath(f"crds/{KINDS[kind]}.json").read_text("utf-8")
    schema: JsonObject = json.loads(text)["versions"][version]
    return schema


def prune_unknown(obj: JsonObject, kind: str, version: str) -> list[str]:
    """Drop from `obj`, in place, every field the CRD's schema for `kind` at `version` does not
    describe (and every unknown `metadata` field); the dropped paths, metadata's first, then in
    order, as the real server lists them."""
    schema = crd_schema(kind, version)
    dropped_meta: list[str] = []
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        for key in [k for k in metadata if k not in OBJECT_META]:
            del metadata[key]
            dropped_meta.append(f"metadata.{key}")
    dropped: list[str] = []
    properties = schema.get("properties") or {}
    for key in list(obj):
        if key in properties and key not in _ROOT:  # metadata is ObjectMeta, whatever it says
            _prune(obj[key], properties[key], key, dropped)
        elif key not in _ROOT:
            del obj[key]
            dropped.append(key)
    return sorted(dropped_meta) + sorted(dropped)


def _prune(value: Any, schema: Mapping[str, Any], path: str, dropped: list[str]) -> None:
    if schema.get("x-kubernetes-int-or-string"):
        return
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                _prune(item, items, f"{path}[{index}]", dropped)
        return
    if not isinstance(value, dict) or schema.get("type") != "object":
        return  # a value of the wrong type is the validation's to refuse
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") is True or extra is True
    for key in list(value):
        if key in properties:
            _prune(value[key], properties[key], f"{path}.{key}", dropped)
        elif isinstance(extra, Mapping):
            _prune(value[key], extra, f"{path}.{key}", dropped)
        elif not keep_unknown:
            del value[key]
            dropped.append(f"{path}.{key}")


def prune_nulls(obj: JsonObject, kind: str, version: str) -> None:
    """Drop from `obj`, in place, every null the CRD's schema does not allow (a field that is
    not `nullable`): the real server takes `"weight": null` as no weight, without a word."""
    properties = crd_schema(kind, version).get("properties") or {}
    for key in ("spec", "status"):
        if key in properties:
            _prune_nulls(obj.get(key), properties[key])


def _prune_nulls(value: Any, schema: Mapping[str, Any]) -> None:
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _prune_nulls(item, schema["items"])
        return
    if not isinstance(value, dict):
        return
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for key in list(value):
        member = properties.get(key, extra if isinstance(extra, Mapping) else None)
        if member is None:
            continue
        if value[key] is None and not member.get("nullable") and "default" not in member:
            del value[key]
        else:
            _prune_nulls(value[key], member)


def unknown_field_warnings(paths: list[str]) -> tuple[tuple[str, str], ...]:
    """One `Warning` header per pruned field, worded like the real server's."""
    return tuple(("Warning", f'299 - "unknown field \\"{path}\\""') for path in paths)


def strict_decoding_error(kind: str, version: str, paths: list[str]) -> str:
    unknown = ", ".join(f'unknown field "{path}"' for path in paths)
    return (
        f'{kind} in version "{version}" cannot be handled as a {kind}: '
        f"strict decoding error: {unknown}"
    )


# --- managedFields --------------------------------------------------------------------------


def manager_from_user_agent(user_agent: str) -> str:
    """The field manager of a write without `fieldManager`: the User-Agent up to its first
    `/` (the python client's "OpenAPI-Generator/37.0.2/python" is "OpenAPI-Generator")."""
    return user_agent.split("/", 1)[0].strip()[:128] or "unknown"


def _fields(obj: Mapping[str, Any], *, with_status: bool) -> dict[Path, Any]:
    """Every field path of `obj` a manager can own, with its value (None for a map's own
    path: maps are compared by their members)."""
    found: dict[Path, Any] = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind") or (key == "status" and not with_status):
            continue
        if key == "metadata" and isinstance(value, dict):
            managed = {k: v for k, v in value.items() if k not in _UNMANAGED_METADATA}
            found |= dict(_walk(managed, ("f:metadata",)))
            continue
        found |= dict(_walk({key: value}, ()))
    return found


def _walk(mapping: Mapping[str, Any], prefix: Path) -> Iterator[tuple[Path, Any]]:
    for key, value in mapping.items():
        path = (*prefix, f"f:{key}")
        if isinstance(value, dict):
            yield path, None
            yield from _walk(value, path)
        else:
            yield path, json.dumps(value, sort_keys=True)


def _decode(fields_v1: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    owned: set[Path] = set()
    for key, child in fields_v1.items():
        if key == ".":
            owned.add(prefix)
            continue
        path = (*prefix, key)
        if isinstance(child, Mapping) and child:
            owned |= _decode(child, path)
        else:
            owned.add(path)
    return owned


def _encode(owned: set[Path]) -> JsonObject:
    tree: JsonObject = {}
    for path in sorted(owned):
        node = tree
        for key in path:
            node = node.setdefault(key, {})
    for path in owned:
        node = tree
        for key in path:
            node = node[key]
        if node:
            node["."] = {}
    return _sorted(tree)


def _sorted(node: JsonObject) -> JsonObject:
    return {key: _sorted(node[key]) for key in sorted(node)}


def _identity(entry: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(entry.get("manager", "")),
        str(entry.get("operation", "")),
        str(entry.get("apiVersion", "")),
        str(entry.get("subresource", "")),
    )


def managed_fields_after(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
    *,
    manager: str,
    api_version: str,
    now: str,
    subresource: str = "",
    with_status: bool = True,
) -> list[JsonObject]:
    """`after`'s managedFields once `manager` wrote it over `before` (None: created it), from
    `before`'s entries; `with_status` is False where status has its own subresource."""
    old = _fields(before or {}, with_status=with_status)
    new = _fields(after, with_status=with_status)
    added = new.keys() - old.keys()
    removed = old.keys() - new.keys()
    changed = {path for path in new.keys() & old.keys() if new[path] != old[path]}
    taken = added | changed
    key = (manager, "Update", api_version, subresource)
    entries: dict[tuple[str, str, str, str], tuple[JsonObject, set[Path]]] = {}
    for entry in (before or {}).get("metadata", {}).get("managedFields") or []:
        if isinstance(entry, Mapping) and isinstance(entry.get("fieldsV1"), Mapping):
            entries[_identity(entry)] = (dict(entry), _decode(entry["fieldsV1"]))
    result = []
    for identity, (entry, owned) in entries.items():
        kept = owned - taken - removed
        if identity != key and kept:
            result.append(entry | {"fieldsV1": _encode(kept)})
    mine = (entries[key][1] if key in entries else set()) | taken
    mine -= removed
    if mine:
        entry = {
            "apiVersion": api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": _encode(mine),
            "manager": manager,
            "operation": "Update",
            "time": now,
        }
        result.append(entry | ({"subresource": subresource} if subresource else {}))
    return sorted(result, key=lambda e: (e["operation"], e["time"], e["manager"], e["apiVersion"]))
