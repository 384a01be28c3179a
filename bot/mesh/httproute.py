"""The Gateway API's HTTPRoute: canary weights in the `backendRefs` of its catch-all rules.

An HTTPRoute attached to a Gateway, or to a Service (the Service's waypoint, in Istio's ambient
mode), splits traffic between Services by weight, as a host-based VirtualService does:
`foo-stable`/`foo-canary`, Flagger's `foo-primary`/`foo-canary`, or two Services the user tells
apart with `to`. The planner moves the weights of the rules that carry the catch-all (no match,
or a path prefix "/" and nothing else), or of every rule to stable when each has a match, and
leaves all else as it is; `route NAME` names a rule instead. The plan is a TrafficPlan split
"by host", so the adapter writes it, the engine drives it and the health check reads it as it
does a VirtualService's. Pure: no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bot.mesh.errors import AmbiguousCanary, InvalidRequest, PlanError
from bot.mesh.models import VirtualService, fqdn
from bot.mesh.owners import gitops_of, refuse_controlled
from bot.mesh.planner import (
    ANNOTATION,
    Editor,
    LastApplied,
    ObjectChange,
    TouchedRoute,
    TrafficPlan,
    last_applied_of,
    read_last_applied,
    refuse_another_turn,
    render_diff,
    roles_by_name,
    service_in,
    stable_beside,
)
from bot.mesh.request import SplitRequest
from bot.mesh.schema import schema_errors
from bot.mesh.validation import ensure_valid
from commands.cohort import Cohort
from commands.names import service_name

KIND = "HTTPRoute"
GROUP = "gateway.networking.k8s.io"
PLURAL = "httproutes"
VERSION = "v1"  # the standard channel's; v1beta1 is served too, but v1 is what to write
Json = dict[str, Any]


def is_http_route(raw: Mapping[str, Any]) -> bool:
    return raw.get("kind") == KIND


def last_applied(raw: Mapping[str, Any]) -> LastApplied | None:
    """The bot's record of its last write, which lives in the metadata of either kind."""
    meta = raw.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("annotations"), Mapping):
        return None
    annotations = {str(k): str(v) for k, v in meta["annotations"].items()}
    view = {"metadata": {"name": str(meta.get("name", "?")), "annotations": annotations}}
    return read_last_applied(VirtualService.parse({**view, "spec": {}}))


def plan_http_route(
    raw: Mapping[str, Any], request: SplitRequest, *, now: datetime | None
) -> TrafficPlan:
    """Plan the split between the stable and canary Services of the HTTPRoute `raw`.
    `now` stamps the annotation; None leaves the stamp out (stable output)."""
    route = _Route(raw, request.namespace)
    refuse_controlled(raw, route.namespace)
    _check(raw, route, live=True)
    route.refuse_unsupported(request)
    if request.to is not None:
        to = service_in(request.to, route.namespace, route.where())
        request = request.model_copy(update={"to": to})
    last = last_applied(raw)
    refuse_another_turn(route.where(), request, last, lambda other: live_canary_weights(raw, other))
    if request.finalize and last is not None and (last.stable, last.canary) == (request.to, None):
        done = str(request.to)  # promoted already, by the bot's own record: nothing to do
        return _plan(route, request, (done, done), Editor(raw), [])
    stable, canary = route.roles(request, last)
    splitter = _Splitter(route, stable, canary)
    touched = [
        splitter.move(index, reason, request)
        for index, reason in route.touched_rules(stable, request.routes)
    ]
    if splitter.editor.ops:
        last = last_applied_of(stable, canary, touched, request, now, by="host")
        _annotate(splitter.editor, last)
    _check(splitter.editor.doc, route, live=False)
    return _plan(route, request, (stable, canary), splitter.editor, touched)


def live_canary_weights(raw: Mapping[str, Any], last: LastApplied) -> dict[int, int]:
    """The canary's share now in each rule the bot last wrote (0 where it is gone)."""
    route = _Route(raw, "default")
    rules = route.rules if last.canary is not None else []
    return {
        index: route.share_of(rules[index], last.canary) if index < len(rules) else 0
        for index in last.weights
    }


def canary_weight(raw: Mapping[str, Any], stable: str, canary: str) -> int | None:
    """The canary's share in the rules the bot last wrote, else in the first rule that sends
    traffic to the stable or the canary Service (None when no rule does)."""
    last = last_applied(raw)
    if last is not None and last.canary == canary and last.weights:
        return max(live_canary_weights(raw, last).values())
    route = _Route(raw, "default")
    for rule in route.rules:
        names = [route.key(ref) for ref in _refs(rule)]
        if stable in names or canary in names:
            return route.share_of(rule, canary)
    return None


class _Route:
    """An HTTPRoute read for its rules' Service backends (the others are not the bot's)."""

    def __init__(self, raw: Mapping[str, Any], namespace: str) -> None:
        meta = raw.get("metadata") or {}
        self.raw, self.name = raw, str(meta.get("name", "?"))
        self.namespace = str(meta.get("namespace") or namespace)
        self.rules: list[Json] = list((raw.get("spec") or {}).get("rules") or [])

    def where(self) -> str:
        return f"HTTPRoute '{self.name}' in namespace '{self.namespace}'"

    def key(self, ref: Mapping[str, Any]) -> str | None:
        """A backend's Service name, or None for another kind or a Service elsewhere."""
        if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
            return None
        if ref.get("namespace", self.namespace) != self.namespace:
            return None
        return str(ref.get("name"))

    def shares(self, rule: Mapping[str, Any]) -> list[tuple[Json, int]]:
        """Each backend's percent of the rule: weights are relative, and 1 when unset."""
        refs = _refs(rule)
        total = sum(_weight(ref) for ref in refs)
        return [(ref, round(100 * _weight(ref) / total) if total else 0) for ref in refs]

    def share_of(self, rule: Mapping[str, Any], name: str | None) -> int:
        return sum(share for ref, share in self.shares(rule) if self.key(ref) == name)

    def traffic(self, rules: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        found: dict[str, int] = {}
        for rule in rules:
            for ref, share in self.shares(rule):
                if (name := self.key(ref)) is not None:
                    found[name] = found.get(name, 0) + share
        return found

    def primary(self) -> list[Json]:
        """The catch-all rules, or every rule when each has a match."""
        return [r for r in self.rules if _catch_all(r)] or self.rules

    def refuse_unsupported(self, request: SplitRequest) -> None:
        asked = [
            ("mirroring", request.mirror not in (None, 0)),
            ("a cohort", isinstance(request.cohort, Cohort)),
            ("a fault drill", request.drill is not None),
        ]
        for what, wanted in asked:
            if wanted:
                raise InvalidRequest(
                    f"{self.where()} is a Gateway API route, where the bot moves backendRefs "
                    f"weights only, and {what} is for VirtualServices; nothing was changed; "
                    "set a weight instead"
                )

    def roles(self, request: SplitRequest, last: LastApplied | None) -> tuple[str, str]:
        """(stable, canary): as asked, from the bot's record, from `to`, else from the names."""
        traffic = self.traffic(self.primary())
        names = sorted(traffic, key=lambda n: (-traffic[n], n))
        if not names:
            raise PlanError(self._no_service())
        if not any(traffic.values()):
            raise PlanError(
                f"{self.where()} gives each of its backends weight 0 ({', '.join(names)}), so "
                "it sends no traffic to split; give the stable Service a weight by hand first"
            )
        if request.stable is not None and request.stable in traffic and request.to is not None:
            return request.stable, request.to
        if last is not None and last.stable in traffic:
            canary = request.to or last.canary
            if canary is not None and canary != last.stable:
                return last.stable, canary
        if request.to is not None:
            stable = stable_beside(request.to, names, self.where())
            self._check_direction(stable, request.to)
            return stable, request.to
        named = roles_by_name(names)
        if named is None:
            raise self._which(names, request)
        return named

    def _no_service(self) -> str:
        refs = [ref for rule in self.rules for ref in _refs(rule)]
        if not refs:
            return (
                f"{self.where()} has no backendRefs at all; add a rule whose backendRefs name "
                "the stable Service, and try again"
            )
        shown = ", ".join(dict.fromkeys(_shown(ref, self.namespace) for ref in refs))
        return (
            f"{self.where()} routes to {shown}, and none is a Service in namespace "
            f"'{self.namespace}'; the bot moves weights between two Services of the route's "
            "own namespace only; nothing was changed"
        )

    def _check_direction(self, stable: str, canary: str) -> None:
        """Without our record, a canary that already outweighs stable means a wrong guess."""
        for index, rule in enumerate(self.rules):
            ours, theirs = self.share_of(rule, canary), self.share_of(rule, stable)
            if any(self.key(r) == stable for r in _refs(rule)) and ours > theirs:
                raise InvalidRequest(
                    f"in rule {_label(rule, index)} of {self.where()} Service '{canary}' already "
                    f"carries more traffic ({ours}%) than '{stable}' ({theirs}%), and the bot "
                    f"has no record of setting that; if '{canary}' is the new version, set the "
                    "weights by hand; otherwise name the new version with `to`"
                )

    def _which(self, names: list[str], request: SplitRequest) -> PlanError:
        asked = f"/canary {service_name(self.name, self.namespace)} {_asked(request)}%"
        if len(names) < 2:
            return PlanError(
                f"{self.where()} sends all its traffic to Service '{names[0]}'; name the canary "
                f"Service to split between the two: `{asked} to {names[0]}-canary`"
            )
        return AmbiguousCanary(
            f"{self.where()} splits traffic between Services {', '.join(names)}, and their "
            "names do not say which is the canary (-canary) or the stable (-primary, -stable); "
            f"say which is the canary: `{asked} to {names[-1]}`",
            names[1:],
        )

    def touched_rules(self, stable: str, names: tuple[str, ...]) -> list[tuple[int, str]]:
        sending = [
            i for i, r in enumerate(self.rules) if any(self.key(b) == stable for b in _refs(r))
        ]
        if names:
            return [self._named(name, sending) for name in names]
        reason = f"sends traffic to stable Service '{stable}'"
        catch_all = [i for i in sending if _catch_all(self.rules[i])]
        if catch_all:
            note = " (the catch-all rule; rules with a match are left alone)"
            return [(i, reason + note) for i in catch_all]
        return [(i, reason) for i in sending]

    def _named(self, name: str, sending: list[int]) -> tuple[int, str]:
        for index in sending:
            if self.rules[index].get("name") == name:
                return index, f"named with `route {name}`"
        known = [str(r["name"]) for r in self.rules if r.get("name")]
        raise InvalidRequest(
            f"{self.where()} has no rule named '{name}' that sends traffic to the stable "
            f"Service; named rules: {', '.join(known) or 'none'}"
        )

    def split_of(
        self, rule: Mapping[str, Any], index: int, stable: str, canary: str
    ) -> tuple[int, int]:
        """(stable, canary) percent of the rule; a third backend with traffic is refused."""
        for ref, share in self.shares(rule):
            name = self.key(ref)
            if name not in (stable, canary) and share:
                shown = f"Service '{name}'" if name else _shown(ref, self.namespace)
                fix = (
                    f"name it as the canary (`to {name}`) or move that traffic by hand first"
                    if name
                    else "move that traffic by hand first"
                )
                raise PlanError(
                    f"rule {_label(rule, index)} of {self.where()} also sends {share}% to "
                    f"{shown}; the bot splits traffic between two Services only: {fix}"
                )
        return self.share_of(rule, stable), self.share_of(rule, canary)


class _Splitter:
    """Moves traffic between the stable and canary backends of the touched rules."""

    def __init__(self, route: _Route, stable: str, canary: str) -> None:
        self.route, self.stable, self.canary = route, stable, canary
        self.editor = Editor(route.raw)

    def move(self, index: int, reason: str, request: SplitRequest) -> TouchedRoute:
        rule = self.route.rules[index]
        before = self.route.split_of(rule, index, self.stable, self.canary)
        if request.weight is not None:
            self.set_weight(index, request.weight)
        if request.finalize:  # the canary takes it all, and the stable backend goes
            at = self.find(self.rule(index), self.stable)
            self.editor.remove(("spec", "rules", index, "backendRefs", at))
        after = self.route.split_of(self.rule(index), index, self.stable, self.canary)
        return TouchedRoute(index, rule.get("name"), reason, before, after)

    def rule(self, index: int) -> Json:
        rule: Json = self.editor.doc["spec"]["rules"][index]
        return rule

    def set_weight(self, index: int, weight: int) -> None:
        rule, base = self.rule(index), ("spec", "rules", index, "backendRefs")
        at = self.find(rule, self.stable)
        found = [i for i, ref in enumerate(_refs(rule)) if self.route.key(ref) == self.canary]
        if not found and weight == 0:
            if len(_refs(rule)) > 1:
                self.editor.set((*base, at, "weight"), 100)
            return
        if found:
            self.editor.set((*base, found[0], "weight"), weight)
        else:  # a copy of the stable backend (port and filters kept) for the canary Service
            entry = copy.deepcopy(rule["backendRefs"][at])
            self.editor.append(base, {**entry, "name": self.canary, "weight": weight})
        self.editor.set((*base, at, "weight"), 100 - weight)

    def find(self, rule: Mapping[str, Any], name: str) -> int:
        found = [i for i, ref in enumerate(_refs(rule)) if self.route.key(ref) == name]
        if len(found) > 1:
            raise PlanError(
                f"{self.route.where()} has {len(found)} backendRefs to Service '{name}' in one "
                "rule; merge them into one before shifting traffic"
            )
        return found[0]


def _plan(
    route: _Route,
    request: SplitRequest,
    roles: tuple[str, str],
    editor: Editor,
    touched: list[TouchedRoute],
) -> TrafficPlan:
    stable, canary = roles
    change = ObjectChange(
        KIND, route.name, route.namespace, dict(route.raw), editor.doc, tuple(editor.ops)
    )
    gitops = gitops_of(route.raw, route.namespace) if change.ops else None
    return TrafficPlan(
        request=request,
        host=fqdn(stable, route.namespace),
        stable=stable,
        canary=canary,
        vs=change,
        dr=None,
        touched=tuple(touched),
        diff=render_diff([change]),
        by="host",
        reporter="waypoint" if _attached_to_service(route.raw) else "",
        gitops=() if gitops is None else (gitops,),
    )


def _attached_to_service(raw: Mapping[str, Any]) -> bool:
    """Whether the route is bound to a Service (GAMMA): in Istio's ambient mode that Service's
    waypoint carries it, and reports its requests as `reporter="waypoint"`."""
    spec = raw.get("spec")
    parents = spec.get("parentRefs") if isinstance(spec, Mapping) else None
    return any(
        isinstance(p, Mapping) and p.get("kind") == "Service" and p.get("group", "") in ("", "core")
        for p in parents or []
    )


def _annotate(editor: Editor, last: LastApplied) -> None:
    if editor.doc["metadata"].get("annotations") is None:
        editor.set(("metadata", "annotations"), {ANNOTATION: last.to_json()})
    else:
        editor.set(("metadata", "annotations", ANNOTATION), last.to_json())


def _check(raw: Mapping[str, Any], route: _Route, *, live: bool) -> None:
    version = str(raw.get("apiVersion", f"{GROUP}/{VERSION}")).rsplit("/", 1)[-1]
    problems = schema_errors(raw, KIND, version if version in ("v1", "v1beta1") else VERSION)
    ensure_valid(KIND, route.name, route.namespace, problems, live=live)


def _catch_all(rule: Mapping[str, Any]) -> bool:
    """No match, or a match of every path (what the API server fills in for no match)."""
    matches = rule.get("matches")
    return not matches or any(_matches_all(m) for m in matches)


def _matches_all(match: Mapping[str, Any]) -> bool:
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    rest = {k: v for k, v in match.items() if k != "path" and v}
    return (
        not rest
        and path.get("type", "PathPrefix") == "PathPrefix"
        and path.get("value", "/") == "/"
    )


def _refs(rule: Mapping[str, Any]) -> list[Json]:
    return [r for r in rule.get("backendRefs") or [] if isinstance(r, dict)]


def _weight(ref: Mapping[str, Any]) -> int:
    weight = ref.get("weight", 1)
    return weight if isinstance(weight, int) and weight > 0 else 0


def _label(rule: Mapping[str, Any], index: int) -> str:
    return f"'{rule['name']}'" if rule.get("name") else f"#{index}"


def _asked(request: SplitRequest) -> int:
    return 10 if request.weight is None else request.weight


def _shown(ref: Mapping[str, Any], namespace: str) -> str:
    """`Service 'foo'`, `Service 'foo' in namespace 'bar'`, `XBackend 'foo'`."""
    where = ref.get("namespace", namespace)
    elsewhere = f" in namespace '{where}'" if where != namespace else ""
    return f"{ref.get('kind', 'Service')} '{ref.get('name')}'{elsewhere}"
