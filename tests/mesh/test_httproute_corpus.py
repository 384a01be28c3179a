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
from bot.mesh.planner import TrafficPlan
from bot.mesh.request import SplitRequest
from sandbox.seeding import FAST_LOADER
from tests.support.corpus import CORPUS, SUGGESTED
from tests.support.route_invariants import assert_route_invariants

from .conftest import NOW

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


class _Loader(FAST_LOADER):
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
