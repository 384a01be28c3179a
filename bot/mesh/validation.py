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
    problems += _sni_problems(raw)
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
    """Istio's weights are relative (9 and 1 split 90/10, as istioctl accepts); they must not be
    negative, and several destinations must not all weigh 0 (the route would go nowhere)."""
    weights = [d.weight or 0 for d in route.route]
    where = f"/spec/http/{index}/route"
    if any(w < 0 for w in weights):
        return [f"{where}: weights must not be negative, found {weights}"]
    if len(weights) > 1 and sum(weights) == 0:
        return [f"{where}: the weights {weights} are all 0, so the route sends traffic nowhere"]
    return []


def _sni_problems(raw: Mapping[str, Any]) -> list[str]:
    """Istio's rule for tls routes (istioctl validate, istiod's webhook): every SNI host a
    match names falls within one of the VirtualService's hosts ("*.example.com" within "*")."""
    spec = raw.get("spec") or {}
    hosts = [str(h) for h in spec.get("hosts") or []]
    problems = []
    for index, route in enumerate(spec.get("tls") or []):
        for m, match in enumerate((route or {}).get("match") or []):
            for sni in (match or {}).get("sniHosts") or []:
                if not any(_within(str(sni), h) for h in hosts):
                    problems.append(
                        f"/spec/tls/{index}/match/{m}/sniHosts: SNI host '{sni}' is not within "
                        f"any of the VirtualService's hosts ({', '.join(hosts)})"
                    )
    return problems


def _within(name: str, host: str) -> bool:
    """Istio's host.Name.SubsetOf: a name matches itself, or the suffix of a wildcard host."""
    if name.startswith("*"):
        return host.startswith("*") and len(name) >= len(host) and name[1:].endswith(host[1:])
    return name.endswith(host[1:]) if host.startswith("*") else name == host


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
