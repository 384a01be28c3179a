"""The HTTPRoute planner over the real Gateway API HTTPRoutes of the corpus
(tests/fixtures/corpus/, where each file says its repository, path and commit).

Every HTTPRoute is asked for 10%, 50%, 100% and 0%. Each answer is a plan that holds the
invariants below, or a refusal (a MeshError) whose message names the route and a reason from
the known list; a refusal that proposes a `/canary` command is followed, and that command must
plan or meet an obstacle of another kind. Nothing else may be raised.

`python -m tests.mesh.test_httproute_corpus` prints the counts.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import yaml

from bot.mesh.errors import InvalidObject, MeshError
from bot.mesh.httproute import plan_http_route
from bot.mesh.planner import ANNOTATION, TrafficPlan
from bot.mesh.request import SplitRequest
from bot.mesh.schema import schema_errors
from sandbox.jsonpatch import apply_json_patch

from .conftest import NOW
from .test_corpus import CORPUS, SUGGESTED

WEIGHTS = (10, 50, 100, 0)
REASONS = (
    ("not a valid HTTPRoute", "is not valid"),
    ("not a valid Kubernetes name (capitals)", "is not a valid name"),
    ("owned by a controller", "which would undo any change"),
    ("no backendRefs", "has no backendRefs at all"),
    ("every backend weighs 0", "sends no traffic to split"),
    ("no Service of its namespace (other kinds, other namespaces)", "none is a Service"),
    ("a single Service: name the canary", "sends all its traffic to Service"),
    ("which Service is the canary?", "say which is the canary"),
    ("a third backend takes traffic", "between two Services only"),
    ("the canary is the stable one", "already"),
)


class _Loader(yaml.SafeLoader):
    """YAML as the API server hands it on: a timestamp stays the string it was written as."""


_Loader.yaml_implicit_resolvers = {
    key: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Case:
    file: str
    route: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.route["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.route["metadata"].get("namespace") or "default")


@cache
def cases() -> tuple[Case, ...]:
    found = []
    for path in sorted(CORPUS.glob("*/*.yaml")):
        for doc in yaml.load_all(path.read_text(encoding="utf-8"), _Loader):
            if doc and doc.get("kind") == "HTTPRoute":
                found.append(Case(str(path.relative_to(CORPUS)), doc))
    return tuple(found)


def plan_case(case: Case, weight: int, to: str | None = None) -> TrafficPlan:
    request = SplitRequest.build(vs=case.name, namespace=case.namespace, weight=weight, to=to)
    plan = plan_http_route(copy.deepcopy(case.route), request, now=NOW)
    assert_route_invariants(plan, case.route)
    return plan


def assert_route_invariants(plan: TrafficPlan, before: dict[str, Any]) -> None:
    """Valid against the CRD; the ops give `after`; each touched rule is stable + canary summing
    to 100 (the canary a copy of stable's backendRef); everything else as it was."""
    after = plan.vs.after
    assert plan.vs.before == before and plan.vs.kind == "HTTPRoute" and plan.by == "host"
    for version in ("v1", "v1beta1"):
        assert schema_errors(after, "HTTPRoute", version) == []
    assert apply_json_patch(before, list(plan.vs.ops)) == after
    rules = after["spec"]["rules"]
    for touched in plan.touched:
        refs = rules[touched.index]["backendRefs"]
        if plan.request.weight is not None:
            assert touched.after == (100 - plan.request.weight, plan.request.weight)
        weights = [r.get("weight", 1) for r in refs]
        assert len(refs) == 1 or sum(weights) == 100, refs
        stable = [r for r in refs if r["name"] == plan.stable]
        canary = [r for r in refs if r["name"] == plan.canary]
        assert len(canary) <= 1 and len(stable) <= 1
        if stable and canary:
            assert {**stable[0], "name": plan.canary, "weight": 0} == {**canary[0], "weight": 0}
    assert _strip(before, plan) == _strip(after, plan)
    _assert_only_catch_all_moved(plan, before)


def _strip(obj: dict[str, Any], plan: TrafficPlan) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    annotations = obj["metadata"].get("annotations") or {}
    annotations.pop(ANNOTATION, None)
    if not annotations:
        obj["metadata"].pop("annotations", None)
    for touched in plan.touched:
        rule = obj["spec"]["rules"][touched.index]
        ours = (plan.stable, plan.canary)
        rule["backendRefs"] = [r for r in rule["backendRefs"] if r.get("name") not in ours]
    return obj


def _assert_only_catch_all_moved(plan: TrafficPlan, route: dict[str, Any]) -> None:
    rules = route["spec"]["rules"]
    catch_all = {i for i, r in enumerate(rules) if _is_catch_all(r)}
    touched = {t.index for t in plan.touched}
    if touched & catch_all:
        assert touched <= catch_all


def _is_catch_all(rule: dict[str, Any]) -> bool:
    every_path = {"path": {"type": "PathPrefix", "value": "/"}}
    return not rule.get("matches") or every_path in rule["matches"]


@dataclass(frozen=True)
class Outcome:
    planned: bool
    reason: str = ""
    message: str = ""


def outcome(case: Case, weight: int, to: str | None = None) -> Outcome:
    try:
        plan = plan_case(case, weight, to)
    except MeshError as e:
        return Outcome(False, reason_of(e), str(e))
    assert to is None or plan.canary == to
    return Outcome(True)


def reason_of(error: MeshError) -> str:
    if isinstance(error, InvalidObject):
        return REASONS[0][0]
    return next((reason for reason, phrase in REASONS if phrase in str(error)), "")


CASES = [pytest.param(c, id=f"{c.file}:{c.name}") for c in cases()]


def test_the_corpus_has_its_httproutes() -> None:
    assert len(cases()) == 105


@pytest.mark.parametrize("case", CASES)
def test_each_httproute_is_planned_or_refused_for_a_reason(case: Case) -> None:
    for weight in WEIGHTS:
        result = outcome(case, weight)
        if result.planned:
            continue
        assert result.reason, f"an unexplained refusal at {weight}%: {result.message}"
        if result.reason != REASONS[1][0]:  # a bad name is refused before anything is read
            assert f"'{case.name}'" in result.message, result.message
        found = SUGGESTED.search(result.message)
        if found is not None:
            assert int(found[3]) == weight or weight == 0, result.message
            after = outcome(case, weight, to=found[4])
            assert after.planned or after.reason not in ("", result.reason), after


def counts() -> Counter[str]:
    """Per HTTPRoute at 10%: planned, or refused and why, and where a suggestion leads."""
    tally: Counter[str] = Counter()
    for case in cases():
        result = outcome(case, 10)
        tally["planned" if result.planned else f"refused: {result.reason}"] += 1
        found = None if result.planned else SUGGESTED.search(result.message)
        if found is not None:
            after = outcome(case, 10, to=found[4])
            tally["  its suggestion plans" if after.planned else f"  then: {after.reason}"] += 1
    return tally


def test_most_refusals_say_what_to_type_and_that_plans() -> None:
    tally = counts()
    assert tally["  its suggestion plans"] >= 60, tally


if __name__ == "__main__":
    tally = counts()
    print(f"{len(cases())} HTTPRoutes")
    for key, n in sorted(tally.items(), key=lambda kv: (kv[0].startswith(" "), -kv[1])):
        print(f"{n:4}  {key}")
