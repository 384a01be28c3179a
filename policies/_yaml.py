"""YAML text → plain data, remembering the line of every key and list item."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from policies.errors import Problem

YamlPath = tuple[str | int, ...]
MAX_NODES = 100_000  # aliases can make a tiny file expand enormously


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars: `16:00`, `no` and `2026-12-20T00:00` stay text."""

    yaml_implicit_resolvers = {}  # noqa: RUF012 - PyYAML's own class-level registry


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^[-+]?[0-9]+$", "-+0123456789"),
    ("float", r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$", "-+0123456789."),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^(?:<<)$", "<"),
):
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))


@dataclass
class Document:
    """The data, the 1-based line of each key/item path, and problems found while reading."""

    data: Any = None
    lines: dict[YamlPath, int] = field(default_factory=lambda: {(): 1})
    problems: list[Problem] = field(default_factory=list)

    def line_of(self, path: YamlPath) -> int:
        """The line of `path`, or of its nearest ancestor that the file has."""
        for end in range(len(path), -1, -1):
            if (line := self.lines.get(path[:end])) is not None:
                return line
        return 1


def render_path(path: YamlPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def parse(text: str) -> Document:
    """Read one YAML document; syntax errors and duplicate keys become problems."""
    loader = _Loader(text)
    doc = Document()
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.data = _Walker(loader, doc).value(node, ())
    except _Refused as e:
        doc.problems.append(e.problem)
    except yaml.MarkedYAMLError as e:
        doc.problems.append(_syntax_problem(e))
    except yaml.YAMLError as e:
        doc.problems.append(Problem(1, "", f"cannot read the YAML: {e}; fix the syntax"))
    finally:
        loader.dispose()
    return doc


def _syntax_problem(error: yaml.MarkedYAMLError) -> Problem:
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark else 1
    what = " ".join(part for part in (error.context, error.problem) if part)
    return Problem(line, "", f"YAML syntax error: {what}; check indentation, colons and quotes")


_CORE = "tag:yaml.org,2002:"
_PLAIN_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null", "map", "seq"))


class _Refused(Exception):
    """A well-formed YAML document that is no policy file: the problem and its line."""

    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.problem = Problem(node.start_mark.line + 1, "", message)


class _Walker:
    def __init__(self, loader: _Loader, doc: Document) -> None:
        self.loader = loader
        self.doc = doc
        self.seen = 0

    def value(self, node: Node, path: YamlPath) -> Any:
        self.seen += 1
        if self.seen > MAX_NODES or len(path) > 50:
            raise _Refused(node, "the file is too large or too deeply nested; remove aliases")
        if node.tag not in _PLAIN_TAGS:
            tag = node.tag.replace(_CORE, "!!")
            raise _Refused(node, f"the tag {tag} is not allowed in a policy file; remove it")
        if isinstance(node, MappingNode):
            return self.mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.item(child, (*path, i)) for i, child in enumerate(node.value)]
        return self.loader.construct_object(node)

    def item(self, node: Node, path: YamlPath) -> Any:
        self.doc.lines[path] = node.start_mark.line + 1
        return self.value(node, path)

    def mapping(self, node: MappingNode, path: YamlPath) -> dict[str, Any]:
        self.report_duplicates(node, path)
        self.loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node)
            self.doc.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self.value(value_node, (*path, key))
        return out

    def key(self, node: Node) -> str:
        if not isinstance(node, ScalarNode):
            raise _Refused(node, "a key must be plain text, not a list or mapping; fix the key")
        return str(self.value(node, ()))

    def report_duplicates(self, node: MappingNode, path: YamlPath) -> None:
        first: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.value == "<<":
                continue
            line = key_node.start_mark.line + 1
            if key_node.value not in first:
                first[key_node.value] = line
                continue
            self.doc.problems.append(
                Problem(
                    line,
                    render_path((*path, key_node.value)),
                    f"'{key_node.value}' appears twice in the same mapping (first on line "
                    f"{first[key_node.value]}); keep one and merge them",
                )
            )
