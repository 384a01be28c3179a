"""RFC 6902 / 6901 / 7386 behaviour of the sandbox's patch module (examples from the RFCs)."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.jsonpatch import (
    JsonPatchError,
    PatchTestFailed,
    apply_json_patch,
    apply_merge_patch,
    json_equal,
    parse_pointer,
)

RFC6902_EXAMPLES: list[tuple[str, Any, list[dict[str, Any]], Any]] = [
    (
        "add member",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux"}],
        {"baz": "qux", "foo": "bar"},
    ),
    (
        "add array element",
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    (
        "remove member",
        {"baz": "qux", "foo": "bar"},
        [{"op": "remove", "path": "/baz"}],
        {"foo": "bar"},
    ),
    (
        "remove array element",
        {"foo": ["bar", "qux", "baz"]},
        [{"op": "remove", "path": "/foo/1"}],
        {"foo": ["bar", "baz"]},
    ),
    (
        "replace",
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        "move member",
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        "move array element",
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        "add nested member",
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        "ignore unrecognized members",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
    ),
    (
        "escape ordering",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": 10}],
        {"/": 9, "~1": 10},
    ),
    (
        "add array value",
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
    (
        "copy",
        {"a": {"b": [1]}},
        [{"op": "copy", "from": "/a/b", "path": "/c"}],
        {"a": {"b": [1]}, "c": [1]},
    ),
    ("replace root", {"a": 1}, [{"op": "replace", "path": "", "value": [1]}], [1]),
    ("add root", {"a": 1}, [{"op": "add", "path": "", "value": {"b": 2}}], {"b": 2}),
    ("value may be null", {"a": 1}, [{"op": "replace", "path": "/a", "value": None}], {"a": None}),
]


@pytest.mark.parametrize(("name", "document", "patch", "expected"), RFC6902_EXAMPLES)
def test_rfc6902_examples(name: str, document: Any, patch: list[dict[str, Any]], expected: Any):
    assert apply_json_patch(document, patch) == expected


def test_test_operation_passes_on_equal_values():
    document = {"baz": "qux", "foo": ["a", 2, "c"]}
    patch = [
        {"op": "test", "path": "/baz", "value": "qux"},
        {"op": "test", "path": "/foo/1", "value": 2},
    ]
    assert apply_json_patch(document, patch) == document


@pytest.mark.parametrize(
    ("document", "operation"),
    [
        ({"baz": "qux"}, {"op": "test", "path": "/baz", "value": "bar"}),
        ({"/": 9, "~1": 10}, {"op": "test", "path": "/~01", "value": "10"}),
        ({"a": 1}, {"op": "test", "path": "/a", "value": True}),
        ({"a": 1}, {"op": "test", "path": "/missing", "value": 1}),
        ({"a": {"b": 1}}, {"op": "test", "path": "/a", "value": {"b": 1, "c": 2}}),
    ],
)
def test_test_operation_fails_on_different_values(document: Any, operation: dict[str, Any]):
    with pytest.raises(PatchTestFailed, match=r"testing value .* failed"):
        apply_json_patch(document, [operation])


@pytest.mark.parametrize(
    ("document", "operation"),
    [
        ({"foo": "bar"}, {"op": "add", "path": "/baz/bat", "value": "qux"}),
        ({"foo": ["bar"]}, {"op": "add", "path": "/foo/2", "value": "x"}),
        ({"foo": ["bar"]}, {"op": "add", "path": "/foo/01", "value": "x"}),
        ({"foo": ["bar"]}, {"op": "replace", "path": "/foo/-", "value": "x"}),
        ({"foo": "bar"}, {"op": "remove", "path": "/nothing"}),
        ({"foo": "bar"}, {"op": "replace", "path": "/nothing", "value": 1}),
        ({"foo": "bar"}, {"op": "remove", "path": ""}),
        ({"foo": "bar"}, {"op": "add", "path": "/x"}),
        ({"foo": "bar"}, {"op": "frobnicate", "path": "/foo"}),
        ({"foo": "bar"}, {"path": "/foo", "value": 1}),
        ({"foo": "bar"}, {"op": "add", "path": "foo", "value": 1}),
        ({"foo": "bar"}, {"op": "add", "path": "/~2", "value": 1}),
        ({"a": {"b": {}}}, {"op": "move", "from": "/a", "path": "/a/b/c"}),
        ({"a": 1}, {"op": "copy", "from": "/nothing", "path": "/b"}),
        ({"a": "text"}, {"op": "add", "path": "/a/b", "value": 1}),
        ({"a": 1}, "not an operation"),
    ],
)
def test_invalid_operations_are_rejected(document: Any, operation: Any):
    with pytest.raises(JsonPatchError):
        apply_json_patch(document, [operation])


def test_a_failed_patch_leaves_the_document_untouched():
    document = {"spec": {"weights": [90, 10]}}
    patch = [
        {"op": "replace", "path": "/spec/weights/0", "value": 50},
        {"op": "test", "path": "/spec/weights/1", "value": 11},
    ]
    with pytest.raises(PatchTestFailed):
        apply_json_patch(document, patch)
    assert document == {"spec": {"weights": [90, 10]}}


def test_patch_must_be_a_list():
    with pytest.raises(JsonPatchError, match="list of operations"):
        apply_json_patch({}, {"op": "add", "path": "/a", "value": 1})


def test_added_values_are_copies():
    value = {"nested": [1]}
    result = apply_json_patch({}, [{"op": "add", "path": "/a", "value": value}])
    value["nested"].append(2)
    assert result == {"a": {"nested": [1]}}


@pytest.mark.parametrize(
    ("pointer", "tokens"),
    [
        ("", []),
        ("/", [""]),
        ("/a~1b", ["a/b"]),
        ("/m~0n", ["m~n"]),
        ("/~01", ["~1"]),
        ("/spec/http/0", ["spec", "http", "0"]),
    ],
)
def test_parse_pointer_unescapes_tokens(pointer: str, tokens: list[str]):
    assert parse_pointer(pointer) == tokens


def test_json_equal_follows_the_json_data_model():
    assert json_equal(1, 1.0)
    assert not json_equal(1, True)
    assert not json_equal(0, False)
    assert not json_equal("1", 1)
    assert json_equal({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert not json_equal([1, 2], [2, 1])
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})


# RFC 7386 appendix A
MERGE_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), MERGE_EXAMPLES)
def test_rfc7386_examples(target: Any, patch: Any, expected: Any):
    assert apply_merge_patch(target, patch) == expected


def test_merge_patch_does_not_touch_its_inputs():
    target, patch = {"a": {"b": 1}}, {"a": {"c": 2}}
    apply_merge_patch(target, patch)
    assert target == {"a": {"b": 1}}
    assert patch == {"a": {"c": 2}}
