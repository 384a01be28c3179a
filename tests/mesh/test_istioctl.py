"""Istio's own validator over the planner's output: `istioctl validate` and `istioctl analyze`.

Every plan the seed tests make, and a batch of plans over the property tests' generated
VirtualServices, goes through a real istioctl (built once by scripts/istioctl.sh):

- `istioctl validate -f`: each planned VirtualService and DestinationRule is valid Istio config;
- `istioctl analyze --use-kube=false`: the planned pair, with the other VirtualServices of its
  seed file, their DestinationRules and the Gateways they name, draws no Error: no route or
  mirror to a subset missing from the DestinationRule (IST0101), no missing Gateway (IST0101),
  no VirtualServices fighting over a host (IST0109), no schema error.

The same analysis of the live objects is clean, so every finding on a plan is the plan's.
Where istioctl and the planner disagree, the case is an xfail(strict=True) that names the
disagreement: istioctl is right until shown otherwise.

All objects go to istioctl in one file per kind of check: a session makes five or six runs.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import Phase, given, settings

from bot.mesh.errors import InvalidObject
from bot.mesh.planner import TrafficPlan, plan_split
from bot.mesh.request import SplitRequest
from sandbox.seeding import bundled_seed_paths
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
from tests.support.seed_cases import CASES, WEIGHTS, dr_for
from tests.support.strategies import destination_rule, requests, virtual_service

from .conftest import NOW, seed_docs

__all__ = ["istioctl"]  # the session fixture, used by name

# The first test on a machine builds istioctl (many minutes); after that a run takes seconds.
pytestmark = [pytest.mark.timeout(300 if is_built() else BUILD_TIMEOUT), pytest.mark.slow]

Json = dict[str, Any]
PROPERTY_EXAMPLES = 200


# ---- the plans ---------------------------------------------------------------------------


@dataclass
class Planned:
    """One plan over a seed (or generated) VirtualService and DestinationRule."""

    id: str
    stem: str | None  # the seed file, None for generated cases
    live_vs: Json
    live_dr: Json
    plan: TrafficPlan

    @property
    def vs(self) -> Json:
        return self.plan.vs.after

    @property
    def dr(self) -> Json:
        return self.plan.dr.after if self.plan.dr else self.live_dr


def _seed_vs(stem: str, name: str) -> Json:
    return next(
        vs for s, vs in seed_docs("VirtualService") if (s, vs["metadata"]["name"]) == (stem, name)
    )


def _plan(vs: Json, dr: Json, **fields: Any) -> TrafficPlan:
    return plan_split(vs, dr, SplitRequest.build(vs=vs["metadata"]["name"], **fields), now=NOW)


@cache
def seed_plans() -> tuple[Planned, ...]:
    """Every plan test_planner_seeds.py makes from the bundled seeds."""
    plans = []
    for case in CASES:
        stem, vs, to, expected = case.values
        if expected is not None:
            continue  # refused: nothing planned
        dr = dr_for(vs)
        for weight in WEIGHTS:
            plan = _plan(vs, dr, weight=weight, to=to)
            plans.append(Planned(f"{case.id}:{weight}", stem, vs, dr, plan))
    weather = _seed_vs("weather", "weather")
    weather_dr = dr_for(weather)
    at70 = _plan(weather, weather_dr, weight=70).vs.after
    mirrored = _plan(weather, weather_dr, mirror=25).vs.after
    promote = {"weight": 100, "to": "v2", "finalize": True}
    promoted = _plan(weather, weather_dr, **promote).vs.after
    mirroring = _seed_vs("bookinfo-reviews-mirroring", "reviews")
    extra = [  # the other plans of test_planner_seeds.py
        ("weather:mirror-25", "weather", weather, {"mirror": 25}),
        ("weather:mirror-25-then-off", "weather", mirrored, {"mirror": 0}),
        ("weather:70-then-80", "weather", at70, {"weight": 80}),
        ("weather:promote-v2", "weather", weather, promote),
        ("weather:promote-v2-again", "weather", promoted, promote),
        ("weather:promoted-then-10-to-v3", "weather", promoted, {"weight": 10, "to": "v3"}),
        ("mirroring:off-v3", "bookinfo-reviews-mirroring", mirroring, {"mirror": 0, "to": "v3"}),
        ("mirroring:30-v3", "bookinfo-reviews-mirroring", mirroring, {"mirror": 30, "to": "v3"}),
    ]
    for id_, stem, vs, fields in extra:
        dr = dr_for(vs)
        plans.append(Planned(id_, stem, vs, dr, _plan(vs, dr, **fields)))
    return tuple(plans)


# ---- what a plan is analyzed with ---------------------------------------------------------


def _ns(obj: Mapping[str, Any], default: str = "default") -> str:
    return str((obj.get("metadata") or {}).get("namespace") or default)


def _with_ns(obj: Mapping[str, Any], namespace: str) -> Json:
    doc = copy.deepcopy(dict(obj))
    doc["metadata"] = {"namespace": namespace, **(doc.get("metadata") or {})}
    return doc


def _short(host: str, namespace: str) -> tuple[str, str] | None:
    """(service, namespace) of a cluster-local host, None for an external host."""
    if "." not in host:
        return host, namespace
    match = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)(?:\.svc(?:\.cluster\.local)?)?", host)
    return (match.group(1), match.group(2)) if match else None


def _hosts(vs: Mapping[str, Any]) -> set[tuple[str, str] | None]:
    spec, ns = vs.get("spec") or {}, _ns(vs)
    found = set()
    for kind in ("http", "tcp", "tls"):
        for route in spec.get(kind) or []:
            found |= {_short(d["destination"]["host"], ns) for d in route.get("route") or []}
            if route.get("mirror"):
                found.add(_short(route["mirror"]["host"], ns))
    return found


def _file_objects(stem: str) -> list[Json]:
    path = next(p for p in bundled_seed_paths() if p.stem == stem)
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def seed_case(planned: Planned, *, live: bool) -> list[Json]:
    """What `istioctl analyze` sees of a seed plan: the planned VS and DR (or the live ones),
    the other VirtualServices of its seed file, the seeds' DestinationRules for their hosts, and
    the seed file's Gateways that they name.

    Services, pods and Deployments would be pointless here: with --use-kube=false istioctl reads
    Istio's kinds only from files and skips the analyzers that need Kubernetes' (destination
    host exists, subset selects pods, gateway selector matches a pod, port names).
    """
    assert planned.stem is not None
    name = planned.live_vs["metadata"]["name"]
    docs = _file_objects(planned.stem)
    siblings = [d for d in docs if d["kind"] == "VirtualService" and d["metadata"]["name"] != name]
    vs = planned.live_vs if live else planned.vs
    dr = planned.live_dr if live else planned.dr
    vss = [vs, *siblings]
    hosts = set().union(*(_hosts(v) for v in vss))
    drs = [dr] + [
        other
        for _, other in seed_docs("DestinationRule")
        if other["metadata"]["name"] != dr["metadata"]["name"]
        and _short(other["spec"]["host"], _ns(other)) in hosts
    ]
    named = {g for v in vss for g in (v.get("spec") or {}).get("gateways") or []}
    gateways = [d for d in docs if d["kind"] == "Gateway" and d["metadata"]["name"] in named]
    return [_with_ns(o, _ns(o)) for o in [*vss, *drs, *gateways]]


# ---- the seed plans through istioctl -----------------------------------------------------


@dataclass(frozen=True)
class SeedReport:
    validate: dict[str, list[str]]  # plan id -> messages, VS then DR
    live_findings: dict[str, list[Finding]]
    planned_findings: dict[str, list[Finding]]


@pytest.fixture(scope="module")
def seed_report(istioctl: Path) -> SeedReport:
    plans = seed_plans()
    objects = [obj for p in plans for obj in (p.vs, p.dr)]
    messages = validate_each(objects)
    by_plan = {p.id: messages[2 * i] + messages[2 * i + 1] for i, p in enumerate(plans)}
    cases = [seed_case(p, live=True) for p in plans] + [seed_case(p, live=False) for p in plans]
    found = analyze_cases(cases)
    live = {p.id: found[i] for i, p in enumerate(plans)}
    planned = {p.id: found[len(plans) + i] for i, p in enumerate(plans)}
    return SeedReport(by_plan, live, planned)


def _cases(kind: str) -> list[Any]:
    out = []
    for planned in seed_plans():
        reason = DISAGREEMENTS.get(f"{kind}:{planned.id}")
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(planned.id, id=planned.id, marks=marks))
    return out


@pytest.mark.parametrize("plan_id", _cases("validate"))
def test_seed_plan_passes_istioctl_validate(seed_report: SeedReport, plan_id: str) -> None:
    messages = seed_report.validate[plan_id]
    assert errors_only(messages) == [], messages


@pytest.mark.parametrize("plan_id", _cases("analyze"))
def test_seed_plan_draws_no_error_from_istioctl_analyze(
    seed_report: SeedReport, plan_id: str
) -> None:
    errors = [str(f) for f in seed_report.planned_findings[plan_id] if f.level == "Error"]
    assert errors == []


def test_seed_cases_are_clean_before_planning(seed_report: SeedReport) -> None:
    """The live objects draw no Error: an Error on a plan is the plan's."""
    errors = {
        plan_id: [str(f) for f in found if f.level == "Error"]
        for plan_id, found in seed_report.live_findings.items()
    }
    assert {k: v for k, v in errors.items() if v} == {}


def test_seed_plans_add_no_warning(seed_report: SeedReport) -> None:
    """Warnings and info a plan draws that the live objects did not: listed, judged below."""
    new = {
        plan_id: sorted(
            {str(f) for f in found} - {str(f) for f in seed_report.live_findings[plan_id]}
        )
        for plan_id, found in seed_report.planned_findings.items()
    }
    assert {k: v for k, v in new.items() if v} == {}


# ---- the property tests' generated VirtualServices through istioctl ----------------------

UNKNOWN_KEY = re.compile(r"x[A-Z][a-zA-Z]{1,6}")  # the property tests' "fields from the future"


def _strip_unknown(vs: Mapping[str, Any]) -> Json:
    """The VirtualService without the generator's unknown fields, which istioctl rejects."""
    doc = copy.deepcopy(dict(vs))
    spec = doc["spec"]
    for key in [k for k in spec if UNKNOWN_KEY.fullmatch(k)]:
        del spec[key]
    for route in spec.get("http") or []:
        for key in [k for k in route if UNKNOWN_KEY.fullmatch(k)]:
            del route[key]
    return doc


@cache
def generated_plans() -> tuple[Planned, ...]:
    """PROPERTY_EXAMPLES plans over the property tests' strategies (derandomized: a stable set)."""
    drawn: list[tuple[Json, Json, SplitRequest]] = []

    @settings(
        max_examples=PROPERTY_EXAMPLES,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
    )
    @given(vs=virtual_service(), dr=destination_rule(), request=requests)
    def draw(vs: Json, dr: Json, request: SplitRequest) -> None:
        drawn.append((vs, dr, request))

    draw()
    return tuple(
        Planned(f"generated-{i}", None, vs, dr, plan_split(vs, dr, request, now=NOW))
        for i, (vs, dr, request) in enumerate(drawn)
    )


WEATHER_GATEWAY = next(g for s, g in seed_docs("Gateway") if s == "weather")


def generated_case(planned: Planned, *, live: bool) -> list[Json]:
    """The VS (without unknown fields) and DR, and the weather Gateway when the VS names it."""
    vs = _strip_unknown(planned.live_vs if live else planned.vs)
    dr = planned.live_dr if live else planned.dr
    gateways = [_with_ns(WEATHER_GATEWAY, _ns(vs))] if vs["spec"].get("gateways") else []
    return [vs, dr, *gateways]


@dataclass(frozen=True)
class GeneratedReport:
    plans: tuple[Planned, ...]
    validate_live: list[list[str]]  # per plan: the live VS's and DR's messages
    validate_planned: list[list[str]]
    live_findings: list[list[Finding]]
    planned_findings: list[list[Finding]]


@pytest.fixture(scope="module")
def generated_report(istioctl: Path) -> GeneratedReport:
    plans = generated_plans()
    live = [o for p in plans for o in (_strip_unknown(p.live_vs), p.live_dr)]
    planned = [o for p in plans for o in (_strip_unknown(p.vs), p.dr)]
    messages = validate_each(live + planned)
    pairs = [messages[i] + messages[i + 1] for i in range(0, len(messages), 2)]
    found = analyze_cases(
        [generated_case(p, live=True) for p in plans]
        + [generated_case(p, live=False) for p in plans]
    )
    n = len(plans)
    return GeneratedReport(plans, pairs[:n], pairs[n:], found[:n], found[n:])


def _show(planned: Planned, problems: Sequence[str]) -> str:
    request = planned.plan.request.model_dump(exclude_defaults=True)
    return yaml.safe_dump(
        {"case": planned.id, "request": request, "problems": list(problems), "vs": planned.vs},
        sort_keys=False,
    )


def test_enough_generated_plans() -> None:
    assert len(generated_plans()) >= PROPERTY_EXAMPLES * 9 // 10


def test_generated_inputs_pass_istioctl_validate(generated_report: GeneratedReport) -> None:
    """Without the unknown fields, the generator makes valid Istio config (else the next test
    would prove little)."""
    bad = [
        _show(p, errors_only(m))
        for p, m in zip(generated_report.plans, generated_report.validate_live, strict=True)
        if errors_only(m)
    ]
    assert bad == [], "\n".join(bad[:3])


def test_generated_plans_pass_istioctl_validate(generated_report: GeneratedReport) -> None:
    bad = [
        _show(p, errors_only(m))
        for p, m in zip(generated_report.plans, generated_report.validate_planned, strict=True)
        if errors_only(m)
    ]
    assert bad == [], f"{len(bad)} of {len(generated_report.plans)} plans:\n" + "\n".join(bad[:3])


def _new(planned: Sequence[Finding], live: Sequence[Finding], levels: set[str]) -> list[str]:
    before = {str(f) for f in live}
    return sorted({str(f) for f in planned if f.level in levels} - before)


def test_generated_plans_draw_no_new_error_from_istioctl_analyze(
    generated_report: GeneratedReport,
) -> None:
    """No Error the live objects did not already draw (the generator's own, such as a mirror
    to a host with no DestinationRule, stay the generator's)."""
    report = generated_report
    bad = [
        _show(p, new)
        for p, planned, live in zip(
            report.plans, report.planned_findings, report.live_findings, strict=True
        )
        if (new := _new(planned, live, {"Error"}))
    ]
    assert bad == [], f"{len(bad)} of {len(report.plans)} plans:\n" + "\n".join(bad[:3])


def test_generated_plans_draw_no_new_warning_from_istioctl_analyze(
    generated_report: GeneratedReport,
) -> None:
    report = generated_report
    bad = [
        _show(p, new)
        for p, planned, live in zip(
            report.plans, report.planned_findings, report.live_findings, strict=True
        )
        if (new := _new(planned, live, {"Warning", "Info"}))
    ]
    assert bad == [], f"{len(bad)} of {len(report.plans)} plans:\n" + "\n".join(bad[:3])


def test_no_generated_plan_routes_to_a_missing_subset(generated_report: GeneratedReport) -> None:
    """The canary subset the bot routes or mirrors to is always in the planned DestinationRule."""
    report = generated_report
    bad = [
        _show(p, [str(f) for f in found])
        for p, found in zip(report.plans, report.planned_findings, strict=True)
        if any(f.code == "IST0101" and "weather-service" in f.message for f in found)
    ]
    assert bad == [], "\n".join(bad[:3])


# ---- negative controls: the wiring can fail ----------------------------------------------


def _weather_plan() -> Planned:
    return next(p for p in seed_plans() if p.id == "weather:weather:None:10")


def test_validate_reports_a_negative_weight_and_only_on_its_object(istioctl: Path) -> None:
    planned = _weather_plan()
    bad = copy.deepcopy(planned.vs)
    bad["spec"]["http"][0]["route"][0]["weight"] = -1
    messages = validate_each([planned.vs, bad, planned.dr])
    assert errors_only(messages[0]) == [] and errors_only(messages[2]) == []
    assert errors_only(messages[1]) == ["weight -1 < 0"], messages[1]


def test_validate_reports_a_route_whose_weights_are_all_zero(istioctl: Path) -> None:
    bad = copy.deepcopy(_weather_plan().vs)
    for dest in bad["spec"]["http"][0]["route"]:
        dest["weight"] = 0
    assert any("total destination weight = 0" in m for m in errors_only(validate_each([bad])[0]))


def test_validate_accepts_a_weight_of_101(istioctl: Path) -> None:
    """Istio's weights are relative proportions: 101 (or a total of 191) is valid config."""
    bad = copy.deepcopy(_weather_plan().vs)
    bad["spec"]["http"][0]["route"][0]["weight"] = 101
    assert errors_only(validate_each([bad])[0]) == []


def test_analyze_reports_a_route_to_a_subset_missing_from_the_rule(istioctl: Path) -> None:
    planned = _weather_plan()
    bad = copy.deepcopy(planned.vs)
    bad["spec"]["http"][0]["route"][1]["destination"]["subset"] = "v3"
    good_case = seed_case(planned, live=False)
    bad_case = [bad, *good_case[1:]]
    good, found = analyze_cases([good_case, bad_case])
    assert [f for f in good if f.level == "Error"] == []
    errors = [f for f in found if f.level == "Error"]
    assert [(f.code, f.origin) for f in errors] == [("IST0101", "VirtualService default/weather")]
    assert "weather-service+v3" in errors[0].message


def test_the_bot_plans_over_live_weights_that_istioctl_accepts(istioctl: Path) -> None:
    """Istio's weights are relative: a live route at 9/1 is 90%/10%, as istioctl accepts; the
    bot reads it so and writes percentages."""
    vs = copy.deepcopy(_seed_vs("weather", "weather"))
    for dest, weight in zip(vs["spec"]["http"][0]["route"], (9, 1), strict=True):
        dest["weight"] = weight
    assert errors_only(validate_each([vs])[0]) == []
    plan = _plan(vs, dr_for(vs), weight=20)
    assert (plan.touched[0].before, plan.touched[0].after) == ((90, 10), (80, 20))
    assert errors_only(validate_each([plan.vs.after])[0]) == []


def test_a_route_whose_weights_are_all_zero_is_refused_as_istioctl_does(istioctl: Path) -> None:
    vs = copy.deepcopy(_seed_vs("weather", "weather"))
    for dest in vs["spec"]["http"][0]["route"]:
        dest["weight"] = 0
    assert errors_only(validate_each([vs])[0]) != []
    with pytest.raises(InvalidObject, match="are all 0, so the route sends traffic nowhere"):
        _plan(vs, dr_for(vs), weight=20)


def _mesh_vs(name: str, host: str) -> Json:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "prod"},
        "spec": {"hosts": [host], "http": [{"route": [{"destination": {"host": "ratings"}}]}]},
    }


def test_analyze_reports_conflicting_hosts_within_a_case_not_across_cases(istioctl: Path) -> None:
    a, b = _mesh_vs("a", "weather.example.com"), _mesh_vs("b", "weather.example.com")
    together, apart_a, apart_b = analyze_cases([[a, b], [a], [b]])
    assert sorted((f.code, f.origin) for f in together) == [
        ("IST0109", "VirtualService prod/a"),
        ("IST0109", "VirtualService prod/b"),
    ]
    assert "prod/a,prod/b" in together[0].message
    assert apart_a == apart_b == []
