"""Rules every object must pass before the bot writes it: Istio's schema, then the semantics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.mesh.errors import InvalidObject
from bot.mesh.models import DestinationRule, HTTPRoute, VirtualService, fqdn
from bot.mesh.schema import schema_errors


def virtual_service_problems(
    raw: Mapping[str, Any], dr: DestinationRule | None, *, namespace: str, version: str = "v1"
) -> list[str]:
    problems = schema_errors(raw, "VirtualService", version)
    if problems:
        return problems
    vs = VirtualService.parse(raw)
    for index, route in enumerate(vs.spec.http):
        problems += _weight_problems(route, index)
    if dr is not None:
        problems += _subset_problems(vs, dr, namespace)
    return problems


def destination_rule_problems(raw: Mapping[str, Any], *, version: str = "v1") -> list[str]:
    problems = schema_errors(raw, "DestinationRule", version)
    if problems:
        return problems
    names = DestinationRule.parse(raw).subset_names()
    return [f"/spec/subsets: subset '{n}' is defined twice" for n in _duplicates(names)]


def ensure_valid(kind: str, name: str, namespace: str, problems: list[str], *, live: bool) -> None:
    """Raise InvalidObject naming the object when `problems` is not empty."""
    if not problems:
        return
    where = f"{kind} '{name}' in namespace '{namespace}'"
    if live:
        fix = f"fix it by hand first (kubectl -n {namespace} edit {kind.lower()} {name})"
        message = f"the live {where} is not valid: {problems[0]}; {fix}"
    else:
        message = f"the planned {where} would not be valid: {problems[0]}; nothing was changed"
    raise InvalidObject(message, problems)


def _weight_problems(route: HTTPRoute, index: int) -> list[str]:
    weights = [d.weight for d in route.route]
    where = f"/spec/http/{index}/route"
    if any(w is not None and not 0 <= w <= 100 for w in weights):
        return [f"{where}: weights must be between 0 and 100, found {weights}"]
    if len(weights) <= 1:
        return []  # a lone destination takes all traffic, whatever its weight
    total = sum(w or 0 for w in weights)
    if weights and total != 100:
        return [f"{where}: weights {[w or 0 for w in weights]} sum to {total}, not 100"]
    return []


def _subset_problems(vs: VirtualService, dr: DestinationRule, namespace: str) -> list[str]:
    host = fqdn(dr.spec.host, dr.namespace_or(namespace))
    known = set(dr.subset_names())
    problems = []
    for index, route in enumerate(vs.spec.http):
        targets = [(f"route/{i}/destination", d.destination) for i, d in enumerate(route.route)]
        if route.mirror is not None:
            targets.append(("mirror", route.mirror))
        for path, dest in targets:
            if fqdn(dest.host, namespace) != host or dest.subset in (None, *known):
                continue
            problems.append(
                f"/spec/http/{index}/{path}: subset '{dest.subset}' is not defined in "
                f"DestinationRule '{dr.name}' (it has {', '.join(sorted(known)) or 'none'})"
            )
    return problems


def _duplicates(names: list[str]) -> list[str]:
    return sorted({n for n in names if names.count(n) > 1})
