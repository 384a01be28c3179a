"""The pure traffic planner: live VirtualService + DestinationRule + request → TrafficPlan.

No I/O here. The plan carries the JSON Patch ops for each object that changes, the objects as
they will be, a diff a human can read, and which routes were touched and why. The kube adapter
applies it; `canary-bot plan` prints it.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import yaml

from bot.mesh.cohort import COHORT_ROUTE, cohort_change, cohort_index, cohort_route
from bot.mesh.drills import drill_field, field_at, field_name
from bot.mesh.errors import (
    AmbiguousCanary,
    InvalidObject,
    InvalidRequest,
    PlanError,
    TurnTaken,
)
from bot.mesh.models import (
    Destination,
    DestinationRule,
    HTTPRoute,
    RouteDestination,
    VirtualService,
    fqdn,
)
from bot.mesh.owners import GitOps, gitops_of, refuse_controlled
from bot.mesh.request import SplitRequest
from bot.mesh.validation import (
    destination_rule_problems,
    ensure_valid,
    virtual_service_problems,
)
from commands.cohort import Cohort, CohortChange
from commands.drill import Drill
from commands.names import service_name

ANNOTATION = "canary-bot/last-applied"
DEFAULT_SUBSET_LABEL = "version"
Json = dict[str, Any]


@dataclass(frozen=True)
class LastApplied:
    """What the bot wrote last time (kept in an annotation), to tell its own writes from drift."""

    stable: str
    canary: str | None  # None once a promotion made the canary the stable subset
    weights: dict[int, int]
    mirror: int | None
    at: str | None = None
    write: str | None = None  # the id of the recorded write that put this here
    rollout: str | None = None  # the rollout that wrote it, and its channel: enough to find
    channel: str | None = None  # the rollout again should its record be lost
    by: str = "subset"  # "host": stable and canary are Services, not subsets
    # the wave the rollout is a turn of, as a JSON object its reader validates
    wave: Mapping[str, Any] | None = None

    def key(self, dest: Destination) -> str | None:
        """What this record calls `dest`: its subset, or its Service when split by host."""
        return destination_name(dest, self.by)

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "stable": self.stable,
            "canary": self.canary,
            "weights": {str(k): v for k, v in sorted(self.weights.items())},
            "mirror": self.mirror,
        }
        if self.at is not None:
            body["at"] = self.at
        for key in ("write", "rollout", "channel"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        if self.by != "subset":
            body["by"] = self.by
        if self.wave is not None:
            body["wave"] = dict(self.wave)
        return json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True)
class TouchedRoute:
    index: int
    name: str | None
    reason: str
    before: tuple[int, int]  # (stable, canary) weights
    after: tuple[int, int]


@dataclass(frozen=True)
class ObjectChange:
    kind: str
    name: str
    namespace: str
    before: Json
    after: Json
    ops: tuple[Json, ...]

    @property
    def resource_version(self) -> str | None:
        rv = self.before.get("metadata", {}).get("resourceVersion")
        return None if rv is None else str(rv)

    def guarded_ops(self) -> list[Json]:
        """The ops led by a `test` of the resourceVersion they were planned against."""
        rv = self.resource_version
        guard = [] if rv is None else [test_op("/metadata/resourceVersion", rv)]
        return [*guard, *self.ops]


@dataclass(frozen=True)
class TrafficPlan:
    request: SplitRequest
    host: str
    stable: str
    canary: str
    vs: ObjectChange
    dr: ObjectChange | None
    touched: tuple[TouchedRoute, ...]
    diff: str
    subset_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # after the plan
    by: str = "subset"  # "host": stable and canary are two Services, and there is no subset
    protocol: str = "http"  # "tcp" when the weights moved are tcp or tls routes' (no requests)
    # Which proxy reports the traffic, when the object says: "waypoint" for an HTTPRoute attached
    # to a Service (Istio's ambient mode); "" leaves it to the bot's setting
    reporter: str = ""
    gitops: tuple[GitOps, ...] = ()  # the GitOps tools that would put the changed objects back

    def version_of(self, subset: str) -> str:
        """The value Istio's telemetry gives pods of `subset` in `destination_version`: their
        canonical revision, from the labels the subset selects (Istio's order of precedence),
        or the subset's name when its labels do not say."""
        labels = self.subset_labels.get(subset, {})
        for key in REVISION_LABELS:
            if labels.get(key):
                return labels[key]
        return subset

    @property
    def changes(self) -> list[ObjectChange]:
        return [c for c in (self.dr, self.vs) if c is not None and c.ops]

    @property
    def noop(self) -> bool:
        return not self.changes

    def canary_weight(self) -> int:
        return self.touched[0].after[1] if self.touched else 0


def test_op(path: str, value: Any) -> Json:
    return {"op": "test", "path": path, "value": value}


def plan_traffic(
    vs_raw: Mapping[str, Any],
    drs: Sequence[Mapping[str, Any]],
    request: SplitRequest,
    *,
    now: datetime | None,
    version: str = "v1",
) -> TrafficPlan:
    """Plan the split between two Services (host-based) or two subsets of a DestinationRule."""
    namespace = _raw_namespace(vs_raw) or request.namespace
    if splits_by_host(vs_raw, drs, namespace):
        return plan_split(vs_raw, None, request, now=now, version=version)
    dr = select_destination_rule(vs_raw, drs, namespace, weight=request.weight)
    return plan_split(vs_raw, dr, request, now=now, version=version)


def plan_split(
    vs_raw: Mapping[str, Any],
    dr_raw: Mapping[str, Any] | None,
    request: SplitRequest,
    *,
    now: datetime | None,
    version: str = "v1",
) -> TrafficPlan:
    """Plan the split; with no DestinationRule, between the Services the routes name.
    `now` stamps the annotation; None leaves the stamp out (stable output)."""
    namespace = _raw_namespace(vs_raw) or request.namespace
    for raw in (vs_raw, dr_raw or {}):
        refuse_controlled(raw, namespace)
    _check_live(vs_raw, dr_raw, namespace, version)
    vs = VirtualService.parse(vs_raw)
    dr = None if dr_raw is None else DestinationRule.parse(dr_raw)
    target = _Hosts(vs, namespace) if dr is None else _Target(vs, dr, namespace)
    request = target.canary_named(request)
    last = read_last_applied(vs)
    where = f"VirtualService '{vs.name}' in namespace '{namespace}'"
    refuse_another_turn(where, request, last, lambda other: live_canary_weights(vs_raw, other))
    if request.finalize and last is not None and (last.stable, last.canary) == (request.to, None):
        return _already_final(request, target.host, vs_raw, namespace)
    stable, canary = target.roles(request, last)
    touched = target.touched_routes(stable, request.routes)
    splitter = _Splitter(vs_raw, target, stable, canary)
    routes = splitter.run(touched, request)
    vs_edit = splitter.editor
    if vs_edit.ops:
        _annotate(vs_edit, vs, last_applied_of(stable, canary, routes, request, now, by=target.by))
    dr_edit = None
    if dr_raw is not None and dr is not None:
        referenced = target.references(vs_edit.doc, canary)
        labelled = f"/canary {service_name(vs.name, namespace)} {_asked(request)}% to {canary}"
        dr_edit = _edit_destination_rule(
            dr_raw, dr, canary, referenced, request=request, usage=labelled
        )
    elif request.labels is not None:
        raise InvalidRequest(
            f"VirtualService '{vs.name}' in namespace '{namespace}' splits between Services, "
            "which select their own pods: `labels` name the pods of a new subset; leave them out"
        )
    _check_planned(vs_edit.doc, None if dr_edit is None else dr_edit.doc, namespace, version)
    vs_change = _change("VirtualService", vs.name, namespace, vs_raw, vs_edit)
    dr_change = None
    if dr_raw is not None and dr is not None and dr_edit is not None:
        dr_change = _change("DestinationRule", dr.name, namespace, dr_raw, dr_edit)
    return TrafficPlan(
        request=request,
        host=target.host,
        stable=stable,
        canary=canary,
        vs=vs_change,
        dr=dr_change if dr_change is not None and dr_change.ops else None,
        touched=tuple(routes),
        diff=render_diff([c for c in (dr_change, vs_change) if c is not None]),
        subset_labels={} if dr_edit is None else _subset_labels(dr_edit.doc),
        by=target.by,
        protocol="http" if target.vs.spec.kind == "http" else "tcp",
        gitops=_synced_from_git([c for c in (dr_change, vs_change) if c is not None and c.ops]),
    )


def _synced_from_git(changes: list[ObjectChange]) -> tuple[GitOps, ...]:
    found = (gitops_of(c.before, c.namespace) for c in changes)
    return tuple(g for g in found if g is not None)


# Where Istio's telemetry takes a workload's canonical revision (destination_version) from.
REVISION_LABELS = ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")


def _subset_labels(dr_doc: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    subsets = (dr_doc.get("spec") or {}).get("subsets") or []
    return {
        str(s.get("name")): {str(k): str(v) for k, v in (s.get("labels") or {}).items()}
        for s in subsets
        if isinstance(s, Mapping)
    }


def select_destination_rule(
    vs_raw: Mapping[str, Any],
    drs: Sequence[Mapping[str, Any]],
    namespace: str,
    *,
    weight: int | None = None,
) -> Json:
    """The DestinationRule whose host the VirtualService's routes send traffic to."""
    vs = VirtualService.parse(vs_raw)
    ns = vs.namespace_or(namespace)
    hosts = {fqdn(d.destination.host, ns) for r in vs.spec.routes for d in r.route}
    matches = [dict(d) for d in drs if _dr_host(d, ns) in hosts]
    if len(matches) == 1:
        return matches[0]
    _refuse_delegating(vs, ns, 10 if weight is None else weight)
    if not matches:
        shown = ", ".join(sorted(hosts)) or "no host at all"
        raise PlanError(
            f"VirtualService '{vs.name}' in namespace '{ns}' routes to {shown}, but no "
            f"DestinationRule in '{ns}' has one of these hosts; create one with a subset per "
            "version (e.g. v1, v2) and try again"
        )
    names = ", ".join(sorted(str(d["metadata"]["name"]) for d in matches))
    raise PlanError(
        f"VirtualService '{vs.name}' in namespace '{ns}' routes to several hosts with "
        f"DestinationRules ({names}); split it so that one VirtualService serves one service"
    )


def _refuse_delegating(vs: VirtualService, namespace: str, weight: int) -> None:
    """A root VirtualService that hands its routes to delegates has no weights of its own."""
    for route in vs.spec.http:
        delegate = (route.model_extra or {}).get("delegate")
        if route.route or not isinstance(delegate, Mapping):
            continue
        name = str(delegate.get("name"))
        where = str(delegate.get("namespace") or namespace)
        raise PlanError(
            f"VirtualService '{vs.name}' in namespace '{namespace}' delegates route "
            f"{route.label(vs.spec.http.index(route))} to VirtualService '{name}' in namespace "
            f"'{where}', whose routes carry the weights; nothing was changed; name that one: "
            f"`/canary {service_name(name, where)} {weight}%`"
        )


def read_last_applied(vs: VirtualService) -> LastApplied | None:
    """The bot's own record of its last write, or None when absent or unreadable."""
    text = vs.annotation(ANNOTATION)
    if text is None:
        return None
    try:
        body = json.loads(text)
        return LastApplied(
            stable=str(body["stable"]),
            canary=None if body["canary"] is None else str(body["canary"]),
            weights={int(k): int(v) for k, v in body["weights"].items()},
            mirror=None if body.get("mirror") is None else int(body["mirror"]),
            at=None if body.get("at") is None else str(body["at"]),
            write=_optional_text(body.get("write")),
            rollout=_optional_text(body.get("rollout")),
            channel=_optional_text(body.get("channel")),
            by="host" if body.get("by") == "host" else "subset",
            wave=_optional_object(body.get("wave")),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _optional_object(value: Any) -> dict[str, Any] | None:
    """A JSON object, kept for its reader to validate; anything else is left out."""
    return dict(value) if isinstance(value, dict) else None


def refuse_another_turn(
    where: str,
    request: SplitRequest,
    last: LastApplied | None,
    live: Callable[[LastApplied], Mapping[int, int]],
) -> None:
    """Raise TurnTaken when another rollout of the request's wave left its canary live here
    (`live`: its canary's weight now in each route it wrote): the same wave's turn on this
    cluster, taken already by a rollout whose record Redis lost."""
    if request.wave is None or last is None or last.wave is None or last.canary is None:
        return
    same = last.wave.get("id") == request.wave.get("id") and last.rollout != request.rollout
    if same and any(live(last).values()):
        raise _turn_taken(where, last)


def _turn_taken(where: str, last: LastApplied) -> TurnTaken:
    wave = last.wave or {}
    return TurnTaken(
        f"{where} carries the canary {last.canary} of rollout {last.rollout} of wave "
        f"{wave.get('id')} already; nothing was changed: a second rollout of the wave is never "
        "started beside it (the search for lost rollouts takes that one back, paused, and the "
        "wave waits on it)"
    )


def live_canary_weights(vs_raw: Mapping[str, Any], last: LastApplied) -> dict[int, int]:
    """The canary weight now in each route the bot last wrote (0 where the canary is gone)."""
    vs = VirtualService.parse(vs_raw)
    found: dict[int, int] = {}
    for index in last.weights:
        routes = vs.spec.routes
        route = routes[index] if index < len(routes) else HTTPRoute()
        found[index] = sum(
            _weight(d, route) for d in route.route if last.key(d.destination) == last.canary
        )
    return found


class _Target:
    """The VirtualService and DestinationRule being split, with the host they share."""

    by, word = "subset", "subset"

    def __init__(self, vs: VirtualService, dr: DestinationRule, namespace: str):
        self.vs, self.dr, self.namespace = vs, dr, namespace
        self.host = fqdn(dr.spec.host, dr.namespace_or(namespace))

    def where(self) -> str:
        return f"VirtualService '{self.vs.name}' in namespace '{self.namespace}'"

    def canary_named(self, request: SplitRequest) -> SplitRequest:
        """The request with `to` as this object names canaries: a subset, never a host."""
        if request.to is not None and "." in request.to:
            raise InvalidRequest(
                f"'{request.to}' names a host, and {self.where()} splits between the subsets of "
                f"DestinationRule '{self.dr.name}'; name a subset, like `to v2`"
            )
        return request

    def is_ours(self, dest: RouteDestination) -> bool:
        return fqdn(dest.destination.host, self.namespace) == self.host

    def key(self, dest: Destination) -> str | None:
        """The name the split gives `dest` (its subset), or None when it is not ours."""
        return dest.subset if fqdn(dest.host, self.namespace) == self.host else None

    def noun(self, name: str) -> str:
        return f"subset '{name}'"

    def as_canary(self, stable: Mapping[str, Any], canary: str) -> Json:
        """The canary's destination: a copy of the stable one (port kept)."""
        return {**stable, "subset": canary}

    def traffic_by_subset(self, routes: list[HTTPRoute]) -> dict[str | None, int]:
        traffic: dict[str | None, int] = {}
        for route in routes:
            for dest in filter(self.is_ours, route.route):
                name = self.key(dest.destination)
                traffic[name] = traffic.get(name, 0) + _weight(dest, route)
        return traffic

    def roles(self, request: SplitRequest, last: LastApplied | None) -> tuple[str, str]:
        """(stable, canary): from the bot's own record when it has one, else from the routes
        (the cohort's route, all of it to the canary, says nothing about which is stable)."""
        traffic = self.traffic_by_subset(_shared_routes(self.vs))
        if not traffic:
            raise PlanError(
                f"{self.where()} has no {self.vs.spec.kind} route to host '{self.dr.spec.host}' of "
                f"DestinationRule '{self.dr.name}'; add a route to it first"
            )
        if request.stable is not None and request.stable in traffic:
            return request.stable, self.canary_subset(request.stable, request, last)
        if last is not None and last.stable in traffic and last.stable != request.to:
            return last.stable, self.canary_subset(last.stable, request, last)
        # Catch-all routes carry the bulk of traffic; header-matched tester routes do not.
        catch_all = [r for r in _shared_routes(self.vs) if "match" not in r.model_extra_keys()]
        traffic = self.traffic_by_subset(catch_all) or traffic
        if request.to is not None:
            traffic = {s: w for s, w in traffic.items() if s != request.to}
        stable = self._heaviest(traffic, request)
        canary = self.canary_subset(stable, request, None)
        self._check_direction(stable, canary)
        return stable, canary

    def _check_direction(self, stable: str, canary: str) -> None:
        """Without our record, a canary that already outweighs stable means we guessed wrong."""
        for index, route in enumerate(self.vs.spec.routes):
            shares = {
                self.key(d.destination): _weight(d, route) for d in route.route if self.is_ours(d)
            }
            if stable in shares and shares.get(canary, 0) > shares[stable]:
                raise InvalidRequest(
                    f"in route {route.label(index)} of {self.where()} {self.noun(canary)} already "
                    f"carries more traffic ({shares[canary]}%) than '{stable}' "
                    f"({shares[stable]}%), and the bot has no record of setting that; if "
                    f"'{canary}' is the new version, set the weights by hand; otherwise name "
                    "the new version with `to`"
                )

    def _heaviest(self, traffic: dict[str | None, int], request: SplitRequest) -> str:
        if not traffic:
            raise InvalidRequest(
                f"subset '{request.to}' already takes all the traffic of {self.where()}; "
                "name another subset as the canary"
            )
        top = max(traffic.values())
        leaders = sorted((s for s, w in traffic.items() if w == top), key=str)
        if None in leaders:
            raise PlanError(
                f"{self.where()} sends traffic to '{self.dr.spec.host}' without a subset; "
                f"point its routes at a subset of DestinationRule '{self.dr.name}' first "
                "(e.g. subset: v1) so the bot can tell stable from canary"
            )
        if len(leaders) > 1:
            raise PlanError(
                f"{self.where()} splits traffic evenly between {', '.join(map(str, leaders))}; "
                "the bot cannot tell which one is stable; set the weights by hand so one "
                "subset takes most of the traffic"
            )
        return str(leaders[0])

    def canary_subset(self, stable: str, request: SplitRequest, last: LastApplied | None) -> str:
        if request.to is not None:
            return request.to
        if last is not None and last.stable == stable and last.canary not in (None, stable):
            return last.canary
        others = [s for s in self.dr.subset_names() if s != stable]
        if len(others) == 1:
            return others[0]
        if len(beside := self._beside(stable, others)) == 1:
            return beside[0]  # any other canary would be refused as a third destination
        asked = f"/canary {service_name(self.vs.name, self.namespace)} {_asked(request)}%"
        if not others:
            raise PlanError(
                f"DestinationRule '{self.dr.name}' has only subset '{stable}', the stable one; "
                f"name the canary and the bot adds it: `{asked} to {_next_subset(stable)}`"
            )
        raise AmbiguousCanary(
            f"{self.where()} has subsets {', '.join(others)} besides stable '{stable}' in "
            f"DestinationRule '{self.dr.name}'; say which is the canary: "
            f"`{asked} to {self._idlest(others)}`",
            others,
        )

    def _beside(self, stable: str, subsets: list[str]) -> list[str]:
        """The `subsets` that already take traffic in a catch-all route to stable."""
        routes = [
            r
            for r in _shared_routes(self.vs)
            if "match" not in r.model_extra_keys()
            and any(self.key(d.destination) == stable for d in r.route)
        ]
        traffic = self.traffic_by_subset(routes)
        return [s for s in subsets if traffic.get(s)]

    def _idlest(self, subsets: list[str]) -> str:
        """The subset to suggest as the canary: the last one no route sends traffic to (a
        subset that carries some, such as testers', is in use), else the least used one."""
        traffic = self.traffic_by_subset(self.vs.spec.routes)
        idle = [s for s in subsets if not traffic.get(s)]
        return idle[-1] if idle else min(subsets, key=lambda s: traffic.get(s, 0))

    def touched_routes(self, stable: str, names: tuple[str, ...]) -> list[tuple[int, str]]:
        sending = [
            (i, f"sends traffic to stable {self.stable_text(stable)}")
            for i, r in enumerate(self.vs.spec.routes)
            if any(self.key(d.destination) == stable for d in r.route)
        ]
        if not names:
            if not sending:
                raise PlanError(
                    f"{self.where()} has no {self.vs.spec.kind} route to {self.noun(stable)}"
                )
            # The primary traffic is the catch-all routes': routes with a match (testers'
            # cookies, fault drills) stay as they are unless named with `route NAME`.
            catch_all = [
                (i, f"{reason} (the catch-all route; routes with a match are left alone)")
                for i, reason in sending
                if "match" not in self.vs.spec.routes[i].model_extra_keys()
            ]
            return catch_all or sending
        return [self._named_route(name, sending) for name in names]

    def two_only(self, other: str | None) -> str:
        """What to do about traffic to a third destination (`other`: its name, None when it is
        not one of ours at all: another host, or no subset)."""
        if other is None:
            return (
                f"the bot splits traffic between two {self.word}s of one service only; move "
                "that traffic by hand first"
            )
        return (
            f"the bot splits traffic between two {self.word}s only: name it as the canary "
            f"(`to {other}`) or move that traffic by hand first"
        )

    def stable_text(self, stable: str) -> str:
        return f"subset '{stable}' of {self.dr.spec.host}"

    def _named_route(self, name: str, sending: list[tuple[int, str]]) -> tuple[int, str]:
        for index, _ in sending:
            if self.vs.spec.routes[index].name == name:
                return index, f"named with `route {name}`"
        known = [r.name for r in self.vs.spec.routes if r.name]
        raise InvalidRequest(
            f"{self.where()} has no {self.vs.spec.kind} route named '{name}' that sends traffic "
            "to the stable "
            f"{self.word}; named routes: {', '.join(map(str, known)) or 'none'}"
        )

    def references(self, vs_raw: Mapping[str, Any], subset: str) -> bool:
        """Whether the planned VirtualService sends traffic (or a mirror) to `subset`."""
        vs = VirtualService.parse(vs_raw)
        dests = [d.destination for r in vs.spec.routes for d in r.route]
        dests += [r.mirror for r in vs.spec.routes if r.mirror is not None]
        return any(fqdn(d.host, self.namespace) == self.host and d.subset == subset for d in dests)


# How Argo Rollouts (`-stable`/`-canary`) and Flagger (`-primary`/`-canary`) name the Services.
CANARY_SUFFIXES = ("-canary",)
STABLE_SUFFIXES = ("-primary", "-stable")


def destination_name(dest: Destination, by: str) -> str | None:
    """What a split `by` "host" or "subset" calls `dest`: its Service or its subset."""
    return _host_key(dest) if by == "host" else dest.subset


def _host_key(dest: Destination) -> str | None:
    """A Service destination's name (`foo-canary.prod.svc.cluster.local` → foo-canary)."""
    return dest.host.split(".")[0] if dest.subset is None else None


def _primary_routes(vs: VirtualService) -> list[HTTPRoute]:
    """The catch-all routes (no match), or every route when each has a match."""
    catch_all = [r for r in vs.spec.routes if "match" not in r.model_extra_keys()]
    return catch_all or _shared_routes(vs)


def _shared_routes(vs: VirtualService) -> list[HTTPRoute]:
    """Every route but the bot's cohort route."""
    return [r for r in vs.spec.routes if r.name != COHORT_ROUTE]


def splits_by_host(
    vs_raw: Mapping[str, Any], drs: Sequence[Mapping[str, Any]], namespace: str
) -> bool:
    """Whether the primary routes split between Services rather than subsets: no destination
    names a subset, and they name two Services or more, or one that no DestinationRule gives
    subsets (its canary will be another Service)."""
    try:
        vs = VirtualService.parse(vs_raw)
    except InvalidObject:
        return False  # the subset planner reports what is wrong with it
    dests = [d.destination for r in _primary_routes(vs) for d in r.route]
    if not dests or any(d.subset is not None for d in dests):
        return False
    hosts = {fqdn(d.host, vs.namespace_or(namespace)) for d in dests}
    with_subsets = [d for d in drs if (d.get("spec") or {}).get("subsets")]
    return len(hosts) > 1 or not any(_dr_host(d, namespace) in hosts for d in with_subsets)


class _Hosts(_Target):
    """A VirtualService that splits between two Services (host-based), with no subsets."""

    by, word = "host", "Service"

    def __init__(self, vs: VirtualService, namespace: str):  # no DestinationRule to read
        self.vs, self.namespace = vs, namespace
        hosts = [d.destination.host for r in _primary_routes(vs) for d in r.route]
        self.host = fqdn(hosts[0], namespace) if hosts else ""

    def is_ours(self, dest: RouteDestination) -> bool:
        return _host_key(dest.destination) is not None

    def canary_named(self, request: SplitRequest) -> SplitRequest:
        if request.to is None:
            return request
        return request.model_copy(
            update={"to": service_in(request.to, self.namespace, self.where())}
        )

    def key(self, dest: Destination) -> str | None:
        return _host_key(dest)

    def noun(self, name: str) -> str:
        return f"Service '{name}'"

    def stable_text(self, stable: str) -> str:
        return f"Service '{stable}'"

    def as_canary(self, stable: Mapping[str, Any], canary: str) -> Json:
        """The canary's destination: the stable one with the canary Service's name."""
        host = str(stable["host"]).split(".", 1)
        return {**stable, "host": ".".join([canary, *host[1:]])}

    def references(self, vs_raw: Mapping[str, Any], subset: str) -> bool:
        return False

    def roles(self, request: SplitRequest, last: LastApplied | None) -> tuple[str, str]:
        traffic = self.traffic_by_subset(_primary_routes(self.vs))
        names = [str(n) for n in sorted(traffic, key=lambda n: (-traffic[n], str(n)))]
        if request.stable is not None and request.to is not None and request.stable in traffic:
            return request.stable, request.to
        if last is not None and last.by == "host" and last.stable in traffic:
            canary = request.to or last.canary
            if canary is not None and canary != last.stable:
                return last.stable, canary
        if request.to is not None:
            stable = stable_beside(request.to, names, self.where())
            self._check_direction(stable, request.to)
            return stable, request.to
        named = roles_by_name(names)
        if named is None and len(names) < 2:
            raise PlanError(self._which(names, request))
        if named is None:
            raise AmbiguousCanary(self._which(names, request), names[1:])
        return named

    def _which(self, names: list[str], request: SplitRequest) -> str:
        svc = service_name(self.vs.name, self.namespace)
        weight = _asked(request)
        if len(names) < 2:
            return (
                f"{self.where()} sends all its traffic to Service '{names[0]}' and no "
                "DestinationRule with subsets has that host; name the canary Service to split "
                f"between the two (`/canary {svc} {weight}% to {names[0]}-canary`), or create "
                "a DestinationRule for it with a subset per version"
            )
        return (
            f"{self.where()} splits traffic between Services {', '.join(names)}, and their "
            "names do not say which is the canary (-canary) or the stable (-primary, -stable); "
            f"say which is the canary: `/canary {svc} {weight}% to {names[-1]}`"
        )


def service_in(name: str, namespace: str, where: str) -> str:
    """The Service `name` means in `namespace`: `podinfo-canary`, also written
    `podinfo-canary.test`, `podinfo-canary.test.svc` or `podinfo-canary.test.svc.cluster.local`
    (`where` names the route in messages)."""
    short, _, rest = name.partition(".")
    if not rest:
        return name
    other, _, suffix = rest.partition(".")
    if suffix not in ("", "svc", "svc.cluster.local"):
        raise InvalidRequest(
            f"'{name}' is not a Service's name in the cluster; write it as NAME, NAME.NAMESPACE "
            "or NAME.NAMESPACE.svc.cluster.local"
        )
    if other != namespace:
        raise InvalidRequest(
            f"Service '{short}' is in namespace '{other}', and {where} is in '{namespace}'; "
            "the canary must be a Service of the route's own namespace"
        )
    return short


def stable_beside(canary: str, names: list[str], where: str) -> str:
    """The stable Service beside `canary` among the Services `names` a route sends to (`where`
    names the route in messages): the one its name pairs with, else the only other one."""
    others = [n for n in names if n != canary]
    named = roles_by_name(names)
    if named is not None and named[1] == canary:
        return named[0]
    if len(others) == 1:
        return others[0]
    if not others:
        raise InvalidRequest(
            f"Service '{canary}' already takes all the traffic of {where}; name "
            "another Service as the canary"
        )
    raise PlanError(
        f"{where} sends traffic to Services {', '.join(others)} besides '{canary}'; "
        "the bot splits traffic between two Services only: move the rest by hand first"
    )


def roles_by_name(names: Sequence[str]) -> tuple[str, str] | None:
    """(stable, canary) of Services named like Argo Rollouts' or Flagger's, else None."""
    canaries = [n for n in names if n.endswith(CANARY_SUFFIXES)]
    stables = [n for n in names if n.endswith(STABLE_SUFFIXES)]
    if len(canaries) == 1 and len(stables) == 1:
        return stables[0], canaries[0]
    if len(names) != 2:
        return None
    if len(canaries) == 1:
        return next(n for n in names if n != canaries[0]), canaries[0]
    if len(stables) == 1:
        return stables[0], next(n for n in names if n != stables[0])
    return None


class Editor:
    """A deep copy of a document that records every change as a JSON Patch op."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc: Json = copy.deepcopy(dict(doc))
        self.ops: list[Json] = []

    def set(self, path: tuple[str | int, ...], value: Any) -> None:
        parent, key = self._parent(path)
        if _has(parent, key) and parent[key] == value:
            return
        op = "replace" if _has(parent, key) else "add"
        parent[key] = copy.deepcopy(value)
        self.ops.append({"op": op, "path": pointer(path), "value": copy.deepcopy(value)})

    def append(self, path: tuple[str | int, ...], value: Any) -> None:
        parent, key = self._parent(path)
        if not _has(parent, key):
            self.set(path, [value])
            return
        parent[key].append(copy.deepcopy(value))
        self.ops.append({"op": "add", "path": pointer((*path, "-")), "value": copy.deepcopy(value)})

    def insert(self, path: tuple[str | int, ...], value: Any) -> None:
        """Add `value` to a list at the index `path` ends with, before what is there."""
        parent, key = self._parent(path)
        parent.insert(key, copy.deepcopy(value))
        self.ops.append({"op": "add", "path": pointer(path), "value": copy.deepcopy(value)})

    def remove(self, path: tuple[str | int, ...]) -> None:
        parent, key = self._parent(path)
        if _has(parent, key):
            del parent[key]
            self.ops.append({"op": "remove", "path": pointer(path)})

    def _parent(self, path: tuple[str | int, ...]) -> tuple[Any, Any]:
        node: Any = self.doc
        for part in path[:-1]:
            node = node[part]
        return node, path[-1]


def _has(parent: Any, key: str | int) -> bool:
    if isinstance(parent, list):
        return isinstance(key, int) and 0 <= key < len(parent)
    return key in parent


def pointer(path: Sequence[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _weight(dest: RouteDestination, route: HTTPRoute) -> int:
    """The destination's share of the route in percent. Istio sends all traffic to a lone
    destination, whatever its weight says, and reads weights as relative (9 and 1: 90% and 10%)."""
    if len(route.route) == 1:
        return 100
    total = sum(d.weight or 0 for d in route.route)
    if total in (0, 100):
        return dest.weight or 0
    return round(100 * (dest.weight or 0) / total)


def _check_live(
    vs_raw: Mapping[str, Any], dr_raw: Mapping[str, Any] | None, namespace: str, version: str
) -> None:
    if dr_raw is not None:
        dr_problems = destination_rule_problems(dr_raw, version=version)
        ensure_valid("DestinationRule", _raw_name(dr_raw), namespace, dr_problems, live=True)
    problems = virtual_service_problems(vs_raw, None, namespace=namespace, version=version)
    ensure_valid("VirtualService", _raw_name(vs_raw), namespace, problems, live=True)


def _raw_name(raw: Mapping[str, Any]) -> str:
    meta = raw.get("metadata")
    return str(meta.get("name", "?")) if isinstance(meta, dict) else "?"


def _raw_namespace(raw: Mapping[str, Any]) -> str | None:
    meta = raw.get("metadata")
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    return ns if isinstance(ns, str) and ns else None


def _check_planned(vs_raw: Json, dr_raw: Json | None, namespace: str, version: str) -> None:
    dr = None if dr_raw is None else DestinationRule.parse(dr_raw)
    if dr_raw is not None and dr is not None:
        dr_problems = destination_rule_problems(dr_raw, version=version)
        ensure_valid("DestinationRule", dr.name, namespace, dr_problems, live=False)
    problems = virtual_service_problems(vs_raw, dr, namespace=namespace, version=version)
    ensure_valid(
        "VirtualService", VirtualService.parse(vs_raw).name, namespace, problems, live=False
    )


class _Splitter:
    """Moves traffic between the stable and canary destinations of the touched routes."""

    def __init__(self, vs_raw: Mapping[str, Any], target: _Target, stable: str, canary: str):
        self.editor = Editor(vs_raw)
        self.target, self.stable, self.canary = target, stable, canary
        self.kind = target.vs.spec.kind

    def run(self, touched: list[tuple[int, str]], request: SplitRequest) -> list[TouchedRoute]:
        if request.mirror is not None and self.kind != "http":
            raise InvalidRequest(
                f"{self.target.where()} has {self.kind} routes, and Istio mirrors http traffic "
                "only; nothing was changed; set a weight instead"
            )
        routes = []
        for index, reason in touched:
            route = self.target.vs.spec.routes[index]
            before = self.split_of(route, index)
            if request.finalize:
                self.finalize(route, index)
            elif request.weight is not None:
                self.set_weight(route, index, request.weight)
            if request.mirror is not None:
                self.set_mirror(route, index, request.mirror)
            after = self.split_of(self.current(index), index)
            routes.append(TouchedRoute(index, route.name, reason, before, after))
        cohort = cohort_change(request.weight, request.cohort, finalize=request.finalize)
        return routes if cohort is None else self.set_cohort(cohort, routes)

    def set_cohort(self, cohort: CohortChange, routes: list[TouchedRoute]) -> list[TouchedRoute]:
        """Put the cohort's route ahead of the touched routes (or change it where it is), or
        remove it; the touched routes' indexes follow theirs as they move."""
        if self.kind != "http" and not isinstance(cohort, Cohort):
            return routes  # no http routes, so no cohort route to remove
        if self.kind != "http":
            raise InvalidRequest(
                f"{self.target.where()} has {self.kind} routes, and a cohort is picked by an "
                "HTTP header; nothing was changed; set a weight instead"
            )
        at, shift = cohort_index(self.editor.doc["spec"]["http"]), 0
        if not isinstance(cohort, Cohort):
            if at is not None:
                self.editor.remove(("spec", "http", at))
                shift = -1
        elif at is not None:
            self.editor.set(("spec", "http", at), self.cohort_route(cohort, routes))
        else:
            at, shift = min(r.index for r in routes), 1
            self.editor.insert(("spec", "http", at), self.cohort_route(cohort, routes))
        return [
            replace(r, index=r.index + shift) if at is not None and r.index >= at else r
            for r in routes
        ]

    def cohort_route(self, cohort: Cohort, routes: list[TouchedRoute]) -> Json:
        """The cohort's route, to the canary's destination (a copy of stable's, port kept)."""
        route = self.editor.doc["spec"]["http"][routes[0].index]
        stable = route["route"][self.stable_index(HTTPRoute.model_validate(route))]
        return cohort_route(cohort, self.target.as_canary(stable["destination"], self.canary))

    def current(self, index: int) -> HTTPRoute:
        return HTTPRoute.model_validate(self.editor.doc["spec"][self.kind][index])

    def find(self, route: HTTPRoute, subset: str) -> list[int]:
        return [i for i, d in enumerate(route.route) if self.target.key(d.destination) == subset]

    def stable_index(self, route: HTTPRoute) -> int:
        found = self.find(route, self.stable)
        if len(found) > 1:
            raise PlanError(
                f"{self.target.where()} has {len(found)} destinations for "
                f"{self.target.noun(self.stable)} in one route; merge them into one before "
                "shifting traffic"
            )
        return found[0]

    def split_of(self, route: HTTPRoute, index: int) -> tuple[int, int]:
        shares = {self.stable: 0, self.canary: 0}
        for dest in route.route:
            share = _weight(dest, route)
            key = self.target.key(dest.destination)
            if key in shares:
                shares[str(key)] += share
            elif share:
                raise PlanError(
                    f"route {route.label(index)} of {self.target.where()} also sends {share}% "
                    f"to {_shown_destination(dest.destination)}; {self.target.two_only(key)}"
                )
        return shares[self.stable], shares[self.canary]

    def set_weight(self, route: HTTPRoute, index: int, weight: int) -> None:
        base = ("spec", self.kind, index, "route")
        stable = self.stable_index(route)
        canary = next(iter(self.find(route, self.canary)), None)
        if canary is None and weight == 0:
            if len(route.route) > 1:
                self.editor.set((*base, stable, "weight"), 100)
            return
        if canary is None:
            entry = copy.deepcopy(self.editor.doc["spec"][self.kind][index]["route"][stable])
            entry["destination"] = self.target.as_canary(entry["destination"], self.canary)
            entry["weight"] = weight
            self.editor.append(base, entry)
        else:
            self.editor.set((*base, canary, "weight"), weight)
        self.editor.set((*base, stable, "weight"), 100 - weight)

    def finalize(self, route: HTTPRoute, index: int) -> None:
        """100% to the canary, and the old stable destination (and a mirror to it) gone."""
        self.set_weight(route, index, 100)
        self.editor.remove(("spec", self.kind, index, "route", self.stable_index(route)))
        self.set_mirror(route, index, 0)

    def set_mirror(self, route: HTTPRoute, index: int, percent: int) -> None:
        base: tuple[str | int, ...] = ("spec", self.kind, index)
        if percent == 0:
            if route.mirror is not None and self.target.key(route.mirror) == self.canary:
                self.editor.remove((*base, "mirror"))
                self.editor.remove((*base, "mirrorPercentage"))
                self.editor.remove((*base, "mirrorPercent"))  # deprecated, but still read
            return
        stable = self.editor.doc["spec"][self.kind][index]["route"][self.stable_index(route)]
        self.editor.set(
            (*base, "mirror"), self.target.as_canary(stable["destination"], self.canary)
        )
        self.editor.set((*base, "mirrorPercentage"), {"value": float(percent)})
        self.editor.remove((*base, "mirrorPercent"))  # superseded by mirrorPercentage


def _asked(request: SplitRequest) -> int:
    """The weight to echo in a suggested command: the one asked for, else 10."""
    return 10 if request.weight is None else request.weight


def _next_subset(stable: str) -> str:
    """A name for a new canary subset beside `stable`: v2 → v3, version-v1 → version-v2."""
    found = re.fullmatch(r"(.*?)(\d+)", stable)
    if found is None:
        return "canary" if stable != "canary" else "v2"
    return f"{found[1]}{int(found[2]) + 1}"


def _shown_destination(dest: Destination) -> str:
    return dest.host if dest.subset is None else f"{dest.host} subset '{dest.subset}'"


def plan_drill(
    vs_raw: Mapping[str, Any], request: SplitRequest, *, version: str = "v1"
) -> TrafficPlan:
    """Add `request.drill` to the service's catch-all routes, or take `request.end_drill` off
    them where it is still as the bot added it. Nothing but those fields changes."""
    namespace = _raw_namespace(vs_raw) or request.namespace
    refuse_controlled(vs_raw, namespace)
    _check_live(vs_raw, None, namespace, version)
    vs = VirtualService.parse(vs_raw)
    where = f"VirtualService '{vs.name}' in namespace '{namespace}'"
    editor = Editor(vs_raw)
    if vs.spec.kind != "http" and request.end_drill is None:
        raise InvalidRequest(
            f"{where} has {vs.spec.kind} routes, and Istio injects faults, retries and "
            "timeouts into http routes only; nothing was changed"
        )
    primary = [id(r) for r in _primary_routes(vs)]
    indexes = [i for i, r in enumerate(vs.spec.http) if id(r) in primary]
    for index in indexes:
        route = editor.doc["spec"]["http"][index]
        if request.drill is not None:
            _add_drill(editor, index, route, request.drill, where)
        elif request.end_drill is not None:
            _remove_drill(editor, index, route, request.end_drill)
    _check_planned(editor.doc, None, namespace, version)
    change = _change("VirtualService", vs.name, namespace, vs_raw, editor)
    return TrafficPlan(
        request=request,
        host="",
        stable="",
        canary="",
        vs=change,
        dr=None,
        touched=(),
        diff=render_diff([change]),
    )


def _add_drill(editor: Editor, index: int, route: Json, drill: Drill, where: str) -> None:
    path, value = drill_field(drill)
    found = field_at(route, path)
    if found is not None:
        raise InvalidRequest(
            f"route {HTTPRoute.model_validate(route).label(index)} of {where} already has a "
            f"{field_name(path)} ({json.dumps(found)}); a drill is added only where there is "
            "none, so that ending it takes away exactly what it added; nothing was changed"
        )
    if len(path) == 2 and path[0] not in route:
        editor.set(("spec", "http", index, path[0]), {path[1]: value})
    else:
        editor.set(("spec", "http", index, *path), value)


def _remove_drill(editor: Editor, index: int, route: Json, drill: Drill) -> None:
    path, value = drill_field(drill)
    if field_at(route, path) != value:
        return  # gone already, or changed by someone since: theirs now
    editor.remove(("spec", "http", index, *path))
    if len(path) == 2 and route.get(path[0]) == {}:
        editor.remove(("spec", "http", index, path[0]))


def _annotate(editor: Editor, vs: VirtualService, last: LastApplied) -> None:
    if vs.metadata.annotations is None:
        editor.set(("metadata", "annotations"), {ANNOTATION: last.to_json()})
    else:
        editor.set(("metadata", "annotations", ANNOTATION), last.to_json())


def _weights(routes: list[TouchedRoute]) -> dict[int, int]:
    return {r.index: r.after[1] for r in routes}


def _edit_destination_rule(
    dr_raw: Mapping[str, Any],
    dr: DestinationRule,
    canary: str,
    referenced: bool,
    *,
    request: SplitRequest,
    usage: str,
) -> Editor:
    """The DestinationRule with the canary's subset added where the routes need it: selecting
    the pods the request's `labels` name, or else by the existing subsets' convention."""
    editor = Editor(dr_raw)
    have = {s.name: dict(s.labels or {}) for s in dr.spec.subsets}
    asked = None if request.labels is None else dict(request.labels)
    if asked is not None and canary in have and asked != have[canary]:
        raise InvalidRequest(
            f"DestinationRule '{dr.name}' has subset '{canary}' already, selecting "
            f"{_shown_labels(have[canary])}; `labels` name the pods of a new subset: leave them "
            "out, or change the subset in the DestinationRule"
        )
    if referenced and canary not in have:
        labels = asked if asked is not None else _new_subset_labels(dr, canary, usage)
        editor.append(("spec", "subsets"), {"name": canary, "labels": labels})
    return editor


def _new_subset_labels(dr: DestinationRule, canary: str, usage: str) -> dict[str, str]:
    """The labels of a new subset, following the existing subsets' convention: the label whose
    value their names carry (`v1` ↔ `version: v1`, or istio-tutorial's `version-v1` ↔
    `version: v1`). With no subset to learn from: `version: <name>`. With subsets that show no
    convention, or a canary named against it, the bot cannot know which pods the subset should
    select, and says so rather than add one that selects none."""
    labelled = [(s.name, s.labels or {}) for s in dr.spec.subsets]
    if not labelled:
        return {DEFAULT_SUBSET_LABEL: canary}
    for key, prefix, suffix in _conventions(labelled):
        if canary.startswith(prefix) and canary.endswith(suffix):
            value = canary[len(prefix) : len(canary) - len(suffix)]
            if value:
                return {key: value}
    shown = ", ".join(f"{name} ({_shown_labels(labels)})" for name, labels in labelled)
    key = min(labelled[0][1], default=DEFAULT_SUBSET_LABEL)  # a key the subsets use, to fill
    raise PlanError(
        f"DestinationRule '{dr.name}' has no subset '{canary}', and its subsets ({shown}) do not "
        f"show which labels a subset named '{canary}' would select; name the labels its pods "
        f"carry (`{usage} labels {key}=VALUE`), or add subset '{canary}' with the labels "
        "its pods carry to the DestinationRule, or name the canary like the existing subsets"
    )


def _conventions(labelled: Sequence[tuple[str, Mapping[str, str]]]) -> list[tuple[str, str, str]]:
    """(label key, name prefix, name suffix) that every subset's name and labels agree with."""
    first_name, first_labels = labelled[0]
    found = []
    for key, value in sorted(first_labels.items()):
        at = first_name.find(value) if value else -1
        if at < 0:
            continue
        prefix, suffix = first_name[:at], first_name[at + len(value) :]
        if all(name == f"{prefix}{labels.get(key)}{suffix}" for name, labels in labelled):
            found.append((key, prefix, suffix))
    found.sort(key=lambda c: (c[0] != DEFAULT_SUBSET_LABEL, len(c[1]) + len(c[2])))
    return found


def _shown_labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "no labels"


def _dr_host(dr: Mapping[str, Any], namespace: str) -> str | None:
    spec, meta = dr.get("spec") or {}, dr.get("metadata") or {}
    host = spec.get("host")
    return fqdn(host, meta.get("namespace") or namespace) if isinstance(host, str) else None


def _change(
    kind: str, name: str, namespace: str, before: Mapping[str, Any], editor: Editor
) -> ObjectChange:
    return ObjectChange(kind, name, namespace, dict(before), editor.doc, tuple(editor.ops))


_NOISY_METADATA = ("resourceVersion", "generation", "uid", "creationTimestamp", "managedFields")


def render_diff(changes: Sequence[ObjectChange]) -> str:
    """A unified diff of each object that changes, without the server's bookkeeping fields."""
    chunks: list[str] = []
    for change in changes:
        if not change.ops:
            continue
        label = f"{change.kind} {change.namespace}/{change.name}"
        chunks += difflib.unified_diff(
            _readable(change.before),
            _readable(change.after),
            fromfile=f"{label} (live)",
            tofile=f"{label} (planned)",
        )
    return "".join(chunks)


def _readable(obj: Mapping[str, Any]) -> list[str]:
    shown = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in dict(shown.get("metadata") or {}).items() if k not in _NOISY_METADATA}
    shown["metadata"] = meta
    text = yaml.safe_dump(shown, sort_keys=False, default_flow_style=False, width=1000)
    return text.splitlines(keepends=True)


def _stamp(now: datetime | None) -> str | None:
    return None if now is None else now.isoformat()


def last_applied_of(
    stable: str,
    canary: str,
    routes: list[TouchedRoute],
    request: SplitRequest,
    now: datetime | None,
    *,
    by: str,
) -> LastApplied:
    at, write, rollout = _stamp(now), request.write, request.rollout
    if request.finalize:  # the canary is the stable one now; there is no canary
        zero = {r.index: 0 for r in routes}
        return LastApplied(canary, None, zero, None, at, write, rollout, by=by)
    weights = _weights(routes)
    return LastApplied(
        stable,
        canary,
        weights,
        request.mirror,
        at,
        write,
        rollout,
        channel=request.channel,
        by=by,
        wave=request.wave,
    )


def _already_final(
    request: SplitRequest,
    host: str,
    vs_raw: Mapping[str, Any],
    namespace: str,
) -> TrafficPlan:
    """A promotion that already happened (the bot's record says so): nothing to do."""
    canary = str(request.to)
    vs = _change("VirtualService", _raw_name(vs_raw), namespace, vs_raw, Editor(vs_raw))
    return TrafficPlan(
        request=request,
        host=host,
        stable=canary,
        canary=canary,
        vs=vs,
        dr=None,
        touched=(),
        diff="",
    )
