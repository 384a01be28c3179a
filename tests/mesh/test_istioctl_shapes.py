"""Istio's own validator over the plans of the other planner tests: the host-based shapes and
their property test, the TCP/TLS shapes and the real-world corpus (tests/fixtures/corpus/).

As in test_istioctl.py, each plan's VirtualService (and DestinationRule, when the plan changes
one) must pass `istioctl validate -f`, and `istioctl analyze --use-kube=false` over the planned
objects, with the DestinationRules and Gateways they name, must draw nothing that the live
objects did not: the live objects are analyzed too, so a finding already there (a corpus
VirtualService naming a Gateway of a file we do not have) stays its author's.

Every plan of every source goes to istioctl in one `validate` run and one `analyze` run.
Where istioctl and the planner disagree, the plan is listed in DISAGREEMENTS
(tests/support/istioctl_disagreements.py, as "validate:<id>" or "analyze:<id>") with the reason,
and the listed disagreement must still be there (else the entry goes).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from bot.mesh.errors import InvalidObject, MeshError
from bot.mesh.planner import TrafficPlan, plan_traffic
from bot.mesh.request import SplitRequest
from tests.support import corpus
from tests.support import host_shapes as host
from tests.support import tcp_tls_shapes as tcp
from tests.support.host_strategies import virtual_service as host_virtual_service
from tests.support.istioctl import (
    BUILD_TIMEOUT,
    Finding,
    analyze_cases,
    errors_only,
    is_built,
    istioctl,
    validate_each,
)
from tests.support.istioctl_disagreements import DISAGREEMENTS

from .conftest import NOW

__all__ = ["istioctl"]  # the session fixture, used by name

pytestmark = [pytest.mark.timeout(300 if is_built() else BUILD_TIMEOUT), pytest.mark.slow]

Json = dict[str, Any]
HOST_EXAMPLES = 100
SOURCES = ("host", "host-generated", "tcp-tls", "corpus")


@dataclass(frozen=True)
class Shape:
    """One plan: the live objects it was made from, and those istioctl also needs to see."""

    id: str
    source: str  # one of SOURCES
    live_vs: Json
    live_drs: tuple[Json, ...]
    plan: TrafficPlan
    context: tuple[Json, ...] = field(default=())  # Gateways the VirtualService names

    @property
    def vs(self) -> Json:
        return self.plan.vs.after

    def drs(self, *, live: bool) -> list[Json]:
        """The DestinationRules, the planned one in place of its live self."""
        if live or self.plan.dr is None:
            return list(self.live_drs)
        before, after = self.plan.dr.before, self.plan.dr.after
        assert before in self.live_drs, f"{self.id}: the planned DestinationRule is not given"
        return [after if dr == before else dr for dr in self.live_drs]

    def planned_objects(self) -> list[Json]:
        return [self.vs] + ([self.plan.dr.after] if self.plan.dr else [])

    def live_objects(self) -> list[Json]:
        return [self.live_vs] + ([self.plan.dr.before] if self.plan.dr else [])

    def case(self, *, live: bool) -> list[Json]:
        vs = self.live_vs if live else self.vs
        return [vs, *self.drs(live=live), *self.context]


def _request(vs: Mapping[str, Any], weight: int | None, **fields: Any) -> SplitRequest:
    meta = vs["metadata"]
    return SplitRequest.build(
        vs=meta["name"], namespace=meta.get("namespace") or "default", weight=weight, **fields
    )


def _shape(
    id_: str, source: str, vs: Json, drs: Sequence[Json], weight: int | None, **fields: Any
) -> Shape:
    plan = plan_traffic(vs, drs, _request(vs, weight, **fields), now=NOW)
    return Shape(id_, source, vs, tuple(drs), plan)


# ---- the host-based shapes (test_host_shapes.py) ------------------------------------------


def host_shapes() -> list[Shape]:
    """Every plan test_host_shapes.py makes (a refusal makes none)."""
    found = [
        _shape(f"{name}:{weight}", "host", obj, [], weight)
        for name, obj in (("argo", host.ARGO), ("flagger", host.FLAGGER))
        for weight in (0, 10, 50, 99, 100)
    ]
    at_50 = host.plan(host.ARGO, 50).vs.after
    at_30 = host.plan(host.FLAGGER, 30).vs.after
    first = host.plan(host.PINGPONG, 10, to="pong").vs.after
    mirrored = host.plan(host.ARGO, None, mirror=20).vs.after
    lone = host.vs("podinfo", "podinfo", None)
    fqdn = host.vs("web", "web.test.svc.cluster.local", None)
    fqdn["spec"]["http"][0]["route"][0]["destination"]["port"] = {"number": 8080}
    more: list[tuple[str, Json, int | None, dict[str, Any]]] = [
        ("pingpong:10-to-pong", host.PINGPONG, 10, {"to": "pong"}),
        ("pingpong:10-then-40", first, 40, {}),
        ("pingpong:20-to-pong", host.PINGPONG, 20, {"to": "pong"}),
        ("argo:50-then-promote", at_50, 100, {"to": "rollouts-demo-canary", "finalize": True}),
        ("flagger:30-then-0", at_30, 0, {}),
        ("lone:10-to-canary", lone, 10, {"to": "podinfo-canary"}),
        ("fqdn:5-to-canary", fqdn, 5, {"to": "web-canary"}),
        ("argo:mirror-20", host.ARGO, None, {"mirror": 20}),
        ("argo:mirror-20-then-off", mirrored, None, {"mirror": 0}),
    ]
    found += [_shape(i, "host", obj, [], w, **f) for i, obj, w, f in more]
    return found


def host_generated_shapes() -> list[Shape]:
    """HOST_EXAMPLES plans over test_host_shapes_properties' strategy (a stable set)."""
    drawn: list[tuple[Json, str, int, int | None]] = []

    @settings(
        max_examples=HOST_EXAMPLES,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
    )
    @given(
        shape=host_virtual_service(),
        weight=st.integers(0, 100),
        mirror=st.one_of(st.none(), st.integers(0, 100)),
    )
    def draw(shape: tuple[Json, str, str], weight: int, mirror: int | None) -> None:
        vs, _, canary = shape
        drawn.append((vs, canary, weight, mirror))

    draw()
    return [
        _shape(f"generated-{i}", "host-generated", vs, [], weight, to=canary, mirror=mirror)
        for i, (vs, canary, weight, mirror) in enumerate(drawn)
    ]


# ---- TCP and TLS routes (test_tcp_tls_shapes.py) ------------------------------------------


def _gateway(name: str, namespace: str, server: Json) -> Json:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [server]},
    }


TCP_NS = "istio-io-tcp-traffic-shifting"
# The Gateways the shapes' VirtualServices name: istio.io's tcp-echo-gateway, and a TLS
# passthrough server for nginx.example.com (istio.io, Ingress › Gateway without TLS termination).
TCP_GATEWAY = _gateway(
    "tcp-echo-gateway",
    TCP_NS,
    {"port": {"number": 31400, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]},
)
TLS_GATEWAY = _gateway(
    "mygateway",
    TCP_NS,
    {
        "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
        "tls": {"mode": "PASSTHROUGH"},
        "hosts": ["nginx.example.com"],
    },
)


def tcp_tls_shapes() -> list[Shape]:
    """Every plan test_tcp_tls_shapes.py makes."""
    both = copy.deepcopy(tcp.TCP_ECHO)
    both["spec"]["http"] = [{"route": [tcp.dest("tcp-echo", "v1", 100)]}]
    made = [
        (f"tcp-echo:{w}", tcp.TCP_ECHO, tcp.TCP_DR, TCP_GATEWAY, w, {}) for w in (0, 20, 50, 100)
    ] + [
        ("nginx-tls:10-to-v2", tcp.TLS_NGINX, tcp.TLS_DR, TLS_GATEWAY, 10, {"to": "v2"}),
        ("tcp-echo-and-http:30", both, tcp.TCP_DR, TCP_GATEWAY, 30, {}),
    ]
    shapes = []
    for id_, vs, dr, gateway, weight, fields in made:
        shape = _shape(id_, "tcp-tls", vs, [dr], weight, **fields)
        shapes.append(Shape(shape.id, shape.source, vs, (dr,), shape.plan, (gateway,)))
    return shapes


# ---- the corpus (test_corpus.py) -----------------------------------------------------------


def corpus_shapes() -> list[Shape]:
    """Every plan test_corpus.py makes: each VirtualService at 10/50/100/0%, and where a
    refusal suggests a `/canary ... to X` for the same object, that command's plan."""
    shapes = []
    for case in corpus.cases():
        for weight in corpus.WEIGHTS:
            to = None
            try:
                plan = _plan_corpus(case, weight)
            except MeshError as e:
                found = corpus.SUGGESTED.search(str(e))
                if found is None or (found[1], found[2] or "default") != (
                    case.name,
                    case.namespace,
                ):
                    continue
                to = found[4]
                try:
                    plan = _plan_corpus(case, weight, to=to)
                except MeshError:
                    continue
            id_ = f"{case.file}#{case.index}:{case.name}:{weight}" + (f":to-{to}" if to else "")
            shapes.append(Shape(id_, "corpus", case.vs, _named_drs(case), plan))
    return shapes


def _plan_corpus(case: corpus.Case, weight: int, to: str | None = None) -> TrafficPlan:
    """test_corpus.plan_case's plan (whose invariants test_corpus.py checks)."""
    request = SplitRequest.build(vs=case.name, namespace=case.namespace, weight=weight, to=to)
    return plan_traffic(case.vs, case.drs, request, now=NOW)


def _named_drs(case: corpus.Case) -> tuple[Json, ...]:
    """The case's DestinationRules for the Services its VirtualService routes or mirrors to
    (by short name: istioctl needs no others)."""
    named = set()
    for kind in ("http", "tcp", "tls"):
        for route in (case.vs.get("spec") or {}).get(kind) or []:
            dests = [d.get("destination") or {} for d in route.get("route") or []]
            dests.append(route.get("mirror") or {})
            named |= {str(d.get("host", "")).split(".")[0] for d in dests}
    return tuple(dr for dr in case.drs if str(dr["spec"].get("host", "")).split(".")[0] in named)


# ---- all plans through istioctl -----------------------------------------------------------

MAKERS: dict[str, Callable[[], list[Shape]]] = {
    "host": host_shapes,
    "host-generated": host_generated_shapes,
    "tcp-tls": tcp_tls_shapes,
    "corpus": corpus_shapes,
}


@cache
def shapes() -> tuple[Shape, ...]:
    return tuple(s for source in SOURCES for s in MAKERS[source]())


@dataclass(frozen=True)
class Report:
    shapes: tuple[Shape, ...]
    validate_live: list[list[str]]  # per shape: its live VS's (and changed DR's) messages
    validate_planned: list[list[str]]
    live_findings: list[list[Finding]]
    planned_findings: list[list[Finding]]

    def of(self, source: str) -> list[int]:
        return [i for i, s in enumerate(self.shapes) if s.source == source]


def _validate_per_shape(groups: Sequence[Sequence[Json]]) -> list[list[str]]:
    """One `istioctl validate` run for every group of objects: the messages of each group."""
    messages = validate_each([o for group in groups for o in group])
    found, start = [], 0
    for group in groups:
        found.append([m for ms in messages[start : start + len(group)] for m in ms])
        start += len(group)
    return found


T = TypeVar("T")


def _once_each(run: Callable[[list[list[Json]]], list[T]], groups: list[list[Json]]) -> list[T]:
    """`run` over the distinct groups only (a VirtualService's live objects are the same for
    each of its plans), its answers handed back to every group."""
    keys = [json.dumps(g, sort_keys=True) for g in groups]
    distinct = dict(zip(keys, groups, strict=True))
    answers = dict(zip(distinct, run(list(distinct.values())), strict=True))
    return [answers[k] for k in keys]


@pytest.fixture(scope="module")
def report(istioctl: Path) -> Report:
    all_ = shapes()
    n = len(all_)
    messages = _once_each(
        _validate_per_shape, [s.live_objects() for s in all_] + [s.planned_objects() for s in all_]
    )
    found = _once_each(
        analyze_cases, [s.case(live=True) for s in all_] + [s.case(live=False) for s in all_]
    )
    return Report(all_, messages[:n], messages[n:], found[:n], found[n:])


def _new(planned: Sequence[Finding], live: Sequence[Finding], levels: set[str]) -> list[str]:
    before = {str(f) for f in live}
    return sorted({str(f) for f in planned if f.level in levels} - before)


def _problems(report: Report, index: int, check: str) -> list[str]:
    """What istioctl says against the plan `index`: `check` is validate, analyze (a new Error)
    or warning (a new Warning or Info)."""
    if check == "validate":
        return errors_only(report.validate_planned[index])
    levels = {"Error"} if check == "analyze" else {"Warning", "Info"}
    return _new(report.planned_findings[index], report.live_findings[index], levels)


def _listed(shape: Shape, check: str) -> str | None:
    """The listed disagreement about the plan, or about every plan of its VirtualService."""
    kind = "analyze" if check == "warning" else check
    return next(
        (
            reason
            for key, reason in DISAGREEMENTS.items()
            if key == f"{kind}:{shape.id}" or f"{kind}:{shape.id}".startswith(f"{key}:")
        ),
        None,
    )


def _failures(report: Report, source: str, check: str) -> list[str]:
    bad = []
    for i in report.of(source):
        shape = report.shapes[i]
        problems = _problems(report, i, check)
        if problems and not _listed(shape, check):
            request = shape.plan.request.model_dump(exclude_defaults=True)
            bad.append(f"{shape.id} {request}:\n  " + "\n  ".join(problems))
    return bad


def test_every_source_makes_plans() -> None:
    counts = {source: sum(s.source == source for s in shapes()) for source in SOURCES}
    assert counts["host"] == 19 and counts["tcp-tls"] == 6
    assert counts["host-generated"] >= HOST_EXAMPLES * 9 // 10
    assert counts["corpus"] >= 400, counts


@pytest.mark.parametrize("source", SOURCES)
def test_the_live_objects_pass_istioctl_validate(report: Report, source: str) -> None:
    """What the bot planned over is valid Istio config (a plan over invalid config would be a
    refusal the planner owes)."""
    bad = [
        f"{report.shapes[i].id}: {errors_only(report.validate_live[i])}"
        for i in report.of(source)
        if errors_only(report.validate_live[i]) and not _listed(report.shapes[i], "validate")
    ]
    assert bad == [], "\n".join(bad[:5])


@pytest.mark.parametrize("source", SOURCES)
def test_plans_pass_istioctl_validate(report: Report, source: str) -> None:
    bad = _failures(report, source, "validate")
    assert bad == [], f"{len(bad)} plans:\n" + "\n".join(bad[:5])


@pytest.mark.parametrize("source", SOURCES)
def test_plans_draw_no_new_error_from_istioctl_analyze(report: Report, source: str) -> None:
    """No Error that the live objects did not already draw: no route or mirror to a subset
    missing from the DestinationRule (IST0101), no schema error."""
    bad = _failures(report, source, "analyze")
    assert bad == [], f"{len(bad)} plans:\n" + "\n".join(bad[:5])


@pytest.mark.parametrize("source", SOURCES)
def test_plans_draw_no_new_warning_from_istioctl_analyze(report: Report, source: str) -> None:
    bad = _failures(report, source, "warning")
    assert bad == [], f"{len(bad)} plans:\n" + "\n".join(bad[:5])


def test_every_listed_disagreement_is_still_there(report: Report) -> None:
    """An entry of DISAGREEMENTS about these plans goes once istioctl and the bot agree."""
    stale = []
    for key in DISAGREEMENTS:
        check, _, id_ = key.partition(":")
        mine = [i for i, s in enumerate(report.shapes) if f"{s.id}:".startswith(f"{id_}:")]
        checks = ("analyze", "warning") if check == "analyze" else ("validate",)
        if mine and not any(_problems(report, i, c) for i in mine for c in checks):
            stale.append(key)
    assert stale == []


# ---- negative controls: these cases can fail ---------------------------------------------


def _one(source: str, id_: str) -> Shape:
    return next(s for s in shapes() if (s.source, s.id) == (source, id_))


def test_analyze_reports_a_tcp_route_to_a_missing_subset_and_a_missing_gateway(
    istioctl: Path,
) -> None:
    shape = _one("tcp-tls", "tcp-echo:20")
    bad = copy.deepcopy(shape.vs)
    bad["spec"]["tcp"][0]["route"][1]["destination"]["subset"] = "v3"
    good, wrong_subset, no_gateway = analyze_cases(
        [shape.case(live=False), [bad, *shape.case(live=False)[1:]], shape.case(live=False)[:2]]
    )
    assert good == []
    assert [(f.code, f.origin) for f in wrong_subset] == [
        ("IST0101", f"VirtualService {TCP_NS}/tcp-echo")
    ]
    assert "tcp-echo+v3" in wrong_subset[0].message
    missing = [f for f in no_gateway if f.code == "IST0101"]
    assert len(missing) == 1 and "gateway" in missing[0].message, no_gateway


def test_validate_reports_a_host_split_whose_weights_are_all_zero(istioctl: Path) -> None:
    bad = copy.deepcopy(_one("host", "argo:10").vs)
    for dest in bad["spec"]["http"][0]["route"]:
        dest["weight"] = 0
    good, wrong = validate_each([_one("host", "argo:10").vs, bad])
    assert errors_only(good) == []
    assert any("total destination weight = 0" in m for m in errors_only(wrong)), wrong


def test_analyze_sees_a_corpus_plan_with_its_destination_rule(istioctl: Path) -> None:
    """A corpus plan's canary subset dropped from its DestinationRule is an IST0101."""
    shape = next(s for s in shapes() if s.source == "corpus" and s.plan.dr is not None)
    assert shape.plan.dr is not None
    dr = copy.deepcopy(shape.plan.dr.after)
    dr["spec"]["subsets"] = [s for s in dr["spec"]["subsets"] if s["name"] != shape.plan.canary]
    case = shape.case(live=False)
    bad_case = [dr if o is shape.plan.dr.after else o for o in case]
    good, found = analyze_cases([case, bad_case])
    new = _new(found, good, {"Error"})
    assert any("IST0101" in f and f"+{shape.plan.canary}" in f for f in new), new


# ---- where the planner follows istioctl ----------------------------------------------------

# (the VirtualService's hosts, an SNI host of its tls route, whether Istio accepts it)
SNI_CASES = [
    (["nginx.example.com"], "nginx.example.com", True),
    (["*.example.com"], "nginx.example.com", True),
    (["*.example.com"], "*.api.example.com", True),
    (["*"], "nginx.example.com", True),
    (["*"], "*.example.com", True),
    (["a.example.com", "nginx.example.com"], "nginx.example.com", True),
    (["nginx.example.com"], "other.example.com", False),
    (["nginx.example.com"], "*.example.com", False),
    (["*.api.example.com"], "*.example.com", False),
    (["rollouts-demo-vsvc1.local"], "reviews.bookinfo.com", False),
]


def _tls_vs(hosts: list[str], sni: str) -> Json:
    vs = copy.deepcopy(tcp.TLS_NGINX)
    vs["spec"]["hosts"] = hosts
    vs["spec"]["tls"][0]["match"][0]["sniHosts"] = [sni]
    return vs


def test_the_planner_refuses_the_sni_hosts_istioctl_refuses(istioctl: Path) -> None:
    """A tls route's SNI hosts must fall within the VirtualService's hosts (Istio's webhook
    refuses any write of it otherwise): the live object is refused, naming the SNI host."""
    objects = [_tls_vs(hosts, sni) for hosts, sni, _ in SNI_CASES]
    by_istioctl = [not errors_only(m) for m in validate_each(objects)]
    by_bot = []
    for vs, (_, sni, _) in zip(objects, SNI_CASES, strict=True):
        try:
            plan_traffic(vs, [tcp.TLS_DR], _request(vs, 10, to="v2"), now=NOW)
        except InvalidObject as e:
            assert f"SNI host '{sni}' is not within" in str(e), e
            assert str(e).startswith("the live VirtualService 'nginx'"), e
            by_bot.append(False)
        else:
            by_bot.append(True)
    assert by_istioctl == by_bot == [ok for *_, ok in SNI_CASES]
