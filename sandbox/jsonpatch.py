"""JSON Patch (RFC 6902), JSON Pointer (RFC 6901) and JSON Merge Patch (RFC 7386).

The sandbox API server applies patches with these, so they follow the RFCs the way the real
API server's library (evanphx/json-patch) does: every operation works on a copy, and any
failure leaves the input untouched.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


class JsonPatchError(ValueError):
    """A patch operation could not be applied (bad pointer, missing target, bad operation)."""


class PatchTestFailed(JsonPatchError):
    """A `test` operation found a different value."""


def parse_pointer(pointer: str) -> list[str]:
    """The reference tokens of a JSON Pointer, unescaped (`~1` is `/`, `~0` is `~`)."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise JsonPatchError(f"JSON pointer {pointer!r} must be empty or start with '/'")
    return [_unescape(token) for token in pointer[1:].split("/")]


def _unescape(token: str) -> str:
    if re.search(r"~(?![01])", token):
        raise JsonPatchError(f"invalid escape in JSON pointer token {token!r}")
    return token.replace("~1", "/").replace("~0", "~")


def apply_json_patch(document: Any, operations: Any) -> Any:
    """`document` with the RFC 6902 `operations` applied, all or nothing."""
    if not isinstance(operations, list):
        raise JsonPatchError("a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for index, operation in enumerate(operations):
        result = _apply_operation(result, operation, index)
    return result


def _apply_operation(document: Any, operation: Any, index: int) -> Any:
    if not isinstance(operation, Mapping):
        raise JsonPatchError(f"operation {index} is not an object")
    name = operation.get("op")
    apply = _OPERATIONS.get(name) if isinstance(name, str) else None
    if apply is None:
        raise JsonPatchError(f"operation {index} has unknown op {name!r}")
    return apply(document, operation)


def _member(operation: Mapping[str, Any], key: str) -> Any:
    if key not in operation:
        raise JsonPatchError(f"{operation.get('op')} operation is missing {key!r}")
    return operation[key]


def _path(operation: Mapping[str, Any], key: str = "path") -> list[str]:
    pointer = _member(operation, key)
    if not isinstance(pointer, str):
        raise JsonPatchError(f"{operation.get('op')} operation has a non-string {key!r}")
    return parse_pointer(pointer)


def _op_add(document: Any, operation: Mapping[str, Any]) -> Any:
    value = copy.deepcopy(_member(operation, "value"))
    return _add(document, _path(operation), value)


def _op_remove(document: Any, operation: Mapping[str, Any]) -> Any:
    return _remove(document, _path(operation))[0]


def _op_replace(document: Any, operation: Mapping[str, Any]) -> Any:
    tokens = _path(operation)
    value = copy.deepcopy(_member(operation, "value"))
    if not tokens:
        return value
    parent = _resolve(document, tokens[:-1])
    _check_exists(parent, tokens[-1], tokens)
    parent[_key(parent, tokens[-1])] = value
    return document


def _op_move(document: Any, operation: Mapping[str, Any]) -> Any:
    source, target = _path(operation, "from"), _path(operation)
    if source == target:
        return document
    if target[: len(source)] == source:
        raise JsonPatchError("move cannot put a value inside itself")
    document, value = _remove(document, source)
    return _add(document, target, value)


def _op_copy(document: Any, operation: Mapping[str, Any]) -> Any:
    value = copy.deepcopy(_resolve(document, _path(operation, "from")))
    return _add(document, _path(operation), value)


def _op_test(document: Any, operation: Mapping[str, Any]) -> Any:
    tokens, expected = _path(operation), _member(operation, "value")
    try:
        actual = _resolve(document, tokens)
    except JsonPatchError as error:
        raise PatchTestFailed(f"testing value {_pointer(tokens)} failed: {error}") from error
    if not json_equal(actual, expected):
        raise PatchTestFailed(f"testing value {_pointer(tokens)} failed: test failed")
    return document


_OPERATIONS: dict[str, Callable[[Any, Mapping[str, Any]], Any]] = {
    "add": _op_add,
    "remove": _op_remove,
    "replace": _op_replace,
    "move": _op_move,
    "copy": _op_copy,
    "test": _op_test,
}


def _add(document: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _resolve(document, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        position = len(parent) if last == "-" else _index(parent, last, tokens, insert=True)
        parent.insert(position, value)
    else:
        raise JsonPatchError(f"cannot add at {_pointer(tokens)}: parent is not a container")
    return document


def _remove(document: Any, tokens: list[str]) -> tuple[Any, Any]:
    """The document without the value at `tokens`, and that value."""
    if not tokens:
        raise JsonPatchError("cannot remove the whole document")
    parent = _resolve(document, tokens[:-1])
    _check_exists(parent, tokens[-1], tokens)
    return document, parent.pop(_key(parent, tokens[-1]))


def _resolve(document: Any, tokens: list[str]) -> Any:
    node = document
    for depth, token in enumerate(tokens):
        _check_exists(node, token, tokens[: depth + 1])
        node = node[_key(node, token)]
    return node


def _check_exists(node: Any, token: str, tokens: list[str]) -> None:
    if isinstance(node, dict):
        if token not in node:
            raise JsonPatchError(f"{_pointer(tokens)} does not exist")
    elif isinstance(node, list):
        _index(node, token, tokens)
    else:
        raise JsonPatchError(f"{_pointer(tokens)} does not exist: parent is not a container")


def _key(node: Any, token: str) -> Any:
    return token if isinstance(node, dict) else int(token)


def _index(array: list[Any], token: str, tokens: list[str], *, insert: bool = False) -> int:
    if not _ARRAY_INDEX.fullmatch(token):
        raise JsonPatchError(f"{_pointer(tokens)}: {token!r} is not an array index")
    index, limit = int(token), len(array) + (1 if insert else 0)
    if index >= limit:
        raise JsonPatchError(f"{_pointer(tokens)}: index {index} is out of range")
    return index


def _pointer(tokens: list[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def json_equal(left: Any, right: Any) -> bool:
    """Equality in the JSON data model: `true` is not `1`, and `1` equals `1.0`."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    return type(left) is type(right) and bool(left == right)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result
