"""Policy YAML text → a checked `Policy`, or a `PolicyError` listing every problem by line."""

from __future__ import annotations

import difflib
from itertools import combinations
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from policies import _globs, _yaml
from policies.errors import PolicyError, Problem
from policies.model import Action, PlacedRule, Policy, PolicyFile

_SHAPE = "the file is a mapping with a `rules:` list; see policies/production.yaml"


def load_policy(text: str, source: str = "policy.yaml") -> Policy:
    """Parse and check a policy file; `source` names it in error messages."""
    doc = _yaml.parse(text)
    problems = list(doc.problems)
    spec = _validate(doc, problems) if doc.data is not None or not problems else None
    placed = _place(spec, doc, source) if spec else ()
    problems += _overlaps(placed)
    if problems or spec is None:
        raise PolicyError(source, tuple(problems))
    return Policy(source, tuple(sorted(placed, key=_most_specific_first)))


def _place(spec: PolicyFile, doc: _yaml.Document, source: str) -> tuple[PlacedRule, ...]:
    return tuple(
        PlacedRule(rule, doc.line_of(("rules", i)), source) for i, rule in enumerate(spec.rules)
    )


def _most_specific_first(rule: PlacedRule) -> tuple[int, ...]:
    return (*(-part for part in rule.specificity), rule.line)


def _validate(doc: _yaml.Document, problems: list[Problem]) -> PolicyFile | None:
    if doc.data is None:
        problems.append(Problem(1, "", f"the file is empty; {_SHAPE}"))
        return None
    if not isinstance(doc.data, dict):
        problems.append(Problem(1, "", f"expected a mapping, got {_show(doc.data)}; {_SHAPE}"))
        return None
    try:
        return PolicyFile.model_validate(doc.data)
    except ValidationError as e:
        problems += (_problem(doc, error) for error in e.errors())
        return None


def _problem(doc: _yaml.Document, error: ErrorDetails) -> Problem:
    loc = tuple(error["loc"])
    return Problem(doc.line_of(loc), _yaml.render_path(loc), _message(error))


_FRIENDLY = {
    "int_type": "expected a whole number, got {input}; write e.g. 25",
    "int_parsing": "expected a whole number, got {input}; write e.g. 25",
    "int_from_float": "expected a whole number, got {input}; drop the fraction",
    "float_type": "expected a number, got {input}; write e.g. 99.5",
    "float_parsing": "expected a number, got {input}; write e.g. 99.5",
    "bool_type": "expected true or false, got {input}; write true or false",
    "bool_parsing": "expected true or false, got {input}; write true or false",
    "string_type": "expected text, got {input}; quote it",
    "tuple_type": "expected a list, got {input}; write [a, b] or one `- item` per line",
    "list_type": "expected a list, got {input}; write [a, b] or one `- item` per line",
    "model_type": "expected a mapping of keys to values, got {input}; indent keys under it",
    "model_attributes_type": "expected a mapping of keys to values, got {input}; indent keys",
    "dict_type": "expected a mapping of keys to values, got {input}; indent keys under it",
    "datetime_type": "expected a date and time, got {input}; write e.g. 2026-12-20T00:00",
    "datetime_parsing": "expected a date and time, got {input}; write e.g. 2026-12-20T00:00",
    "datetime_from_date_parsing": "expected a date and time, got {input}; write e.g. "
    "2026-12-20T00:00",
    "too_short": "the list is empty; add at least one entry",
    "enum": "unknown action {input}; use one of: " + ", ".join(Action),
    "greater_than_equal": "{input} is too small; use {ge:g} or more",
    "greater_than": "{input} is too small; use more than {gt:g}",
    "less_than_equal": "{input} is too large; use {le:g} or less",
    "less_than": "{input} is too large; use less than {lt:g}",
}


def _message(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "extra_forbidden":
        return _unknown_key(error["loc"])
    if kind == "missing":
        return f"{error['loc'][-1]!r} is required; add it"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    template = _FRIENDLY.get(kind, "{msg} (got {input}); fix the value")
    return template.format(input=_show(error["input"]), msg=error["msg"], **ctx)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    key = str(loc[-1])
    allowed = _keys_at(loc[:-1])
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {key!r}; {hint}use one of: {', '.join(allowed)}"


def _keys_at(path: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] | None = PolicyFile
    for part in path:
        if model is None:
            return []
        if isinstance(part, str):
            model = _model_in(_field_annotation(model, part))
    return [field.alias or name for name, field in model.model_fields.items()] if model else []


def _field_annotation(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field.annotation
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for arg in get_args(annotation) if (m := _model_in(arg))), None)


def _overlaps(rules: tuple[PlacedRule, ...]) -> list[Problem]:
    problems = []
    for (_, a), (j, b) in combinations(enumerate(rules), 2):
        if a.specificity != b.specificity:
            continue
        namespace = _globs.common_name(a.rule.namespace, b.rule.namespace)
        vs = _globs.common_name(a.rule.vs, b.rule.vs)
        if namespace is not None and vs is not None:
            problems.append(Problem(b.line, f"rules[{j}]", _tie(a, b, f"{namespace}/{vs}")))
    return problems


def _tie(a: PlacedRule, b: PlacedRule, example: str) -> str:
    return (
        f"rules {a.rule.label!r} (line {a.line}) and {b.rule.label!r} (line {b.line}) both "
        f"match {example} and are equally specific, so neither wins; make one more specific "
        "(fewer wildcards or a longer literal prefix) or merge them"
    )
