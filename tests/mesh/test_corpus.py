"""The planner over real VirtualServices from public projects (tests/fixtures/corpus/, where
each file says its repository, path and commit).

Every VirtualService is asked for 10%, 50%, 100% and 0% (a rollback) against the
DestinationRules of its source (its own file first, else its directory's). Each answer is a
plan that holds the seed tests' invariants, or a refusal (a MeshError) whose message names the
object and a reason from the known list; a refusal that proposes a `/canary` command is
followed, and that command must plan. Nothing else may be raised.

`python -m tests.mesh.test_corpus` prints the counts (planned and refused, by reason).
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from bot.mesh.errors import InvalidObject, MeshError
from bot.mesh.models import VirtualService
from bot.mesh.planner import TrafficPlan, plan_split, select_destination_rule, splits_by_host
from bot.mesh.request import SplitRequest
from tests.support.corpus import CORPUS, SUGGESTED, WEIGHTS, Case, _source_dir, cases

from .conftest import NOW
from .invariants import assert_plan_invariants

# Why the planner refuses, as its messages say it: (reason, a phrase of the message).
REASONS = (
    ("not a valid Istio object", "is not valid"),
    ("not a valid Kubernetes name (underscores)", "is not a valid name"),
    ("owned by a controller", "which would undo any change"),
    ("delegates its routes", "delegates route"),
    ("no DestinationRule for its hosts", "but no DestinationRule"),
    ("routes to several services", "routes to several hosts"),
    ("no route to the stable destination", "route to"),
    ("destination without a subset", "without a subset"),
    ("even split: which is stable?", "splits traffic evenly"),
    ("which subset is the canary?", "say which is the canary"),
    ("only the stable subset: name the canary", "has only subset"),
    ("a third destination takes traffic", "between two"),
    ("a new subset's labels cannot be inferred", "labels"),
    ("mirroring is http only", "mirrors http traffic only"),
    ("a single Service: name the canary", "sends all its traffic to Service"),
    ("the canary is the stable one", "already"),
)


@dataclass(frozen=True)
class Outcome:
    planned: bool
    reason: str = ""
    message: str = ""


def plan_case(case: Case, weight: int, to: str | None = None) -> TrafficPlan:
    """As `plan_traffic` does, keeping the DestinationRule to check the plan against."""
    vs, drs = copy.deepcopy(case.vs), [copy.deepcopy(d) for d in case.drs]
    request = SplitRequest.build(vs=case.name, namespace=case.namespace, weight=weight, to=to)
    dr = None if splits_by_host(vs, drs, case.namespace) else _dr(vs, drs, case, weight)
    plan = plan_split(vs, dr, request, now=NOW)
    assert_plan_invariants(plan, case.vs, dr)
    _assert_only_catch_all_moved(plan, case.vs)
    _assert_new_subset_follows_convention(plan, dr)
    return plan


def _dr(vs: dict[str, Any], drs: list[dict[str, Any]], case: Case, weight: int) -> Any:
    return select_destination_rule(vs, drs, case.namespace, weight=weight)


def _assert_only_catch_all_moved(plan: TrafficPlan, vs: dict[str, Any]) -> None:
    routes = vs["spec"][VirtualService.parse(vs).spec.kind]
    catch_all = {i for i, r in enumerate(routes) if "match" not in r}
    touched = {t.index for t in plan.touched}
    if touched & catch_all:
        assert touched <= catch_all, f"a route with a match moved: {touched - catch_all}"


def _assert_new_subset_follows_convention(plan: TrafficPlan, dr: dict[str, Any] | None) -> None:
    if plan.dr is None or dr is None:
        return
    before = dr["spec"]["subsets"]
    [added] = plan.dr.after["spec"]["subsets"][len(before) :]
    keys = {frozenset((s.get("labels") or {}).keys()) for s in before}
    if len(keys) == 1:
        assert frozenset(added["labels"]) == next(iter(keys)), added
    assert all(added["labels"] != (s.get("labels") or {}) for s in before), added


def outcome(case: Case, weight: int) -> Outcome:
    try:
        plan_case(case, weight)
    except MeshError as e:
        return Outcome(False, reason_of(e), str(e))
    return Outcome(True)


def reason_of(error: MeshError) -> str:
    return REASONS[0][0] if isinstance(error, InvalidObject) else reason_of_text(str(error))


def reason_of_text(text: str) -> str:
    return next((reason for reason, phrase in REASONS if phrase in text), "")


CASES = [pytest.param(c, id=f"{c.file}#{c.index}:{c.name}") for c in cases()]


def test_the_corpus_is_there_and_says_where_it_came_from() -> None:
    assert len(cases()) >= 250
    sources = (CORPUS / "SOURCES.md").read_text(encoding="utf-8")
    for path in CORPUS.glob("*/*.yaml"):
        repo, _ = _source_dir(path)
        assert repo in sources


@pytest.mark.parametrize("case", CASES)
def test_each_virtual_service_is_planned_or_refused_for_a_reason(case: Case) -> None:
    for weight in WEIGHTS:
        result = outcome(case, weight)
        if result.planned:
            continue
        assert result.reason, f"an unexplained refusal at {weight}%: {result.message}"
        named = (f"'{case.name}'", "DestinationRule", "Service '")
        assert any(n in result.message for n in named), result.message
        _follow_suggestion(case, weight, result.message)


def _follow_suggestion(case: Case, weight: int, message: str) -> None:
    """A refusal that says what to type: typing it plans (for the same VirtualService), or
    meets a second obstacle, which is told for a reason of its own (see `followed`)."""
    found = SUGGESTED.search(message)
    if found is None:
        return
    vs, namespace, asked, to = found.groups()
    assert int(asked) == weight or weight == 0, message
    if vs != case.name or (namespace or "default") != case.namespace:
        return  # a delegate: another VirtualService
    after = followed(case, weight, to)
    assert after.planned or (after.reason and after.reason != reason_of_text(message)), after


def followed(case: Case, weight: int, to: str) -> Outcome:
    try:
        plan = plan_case(case, weight, to=to)
    except MeshError as e:
        return Outcome(False, reason_of(e), str(e))
    assert plan.canary == to
    return Outcome(True)


def test_a_subset_already_beside_stable_in_the_catch_all_route_is_the_canary() -> None:
    """Bookinfo's reviews at v1 80% / v2 20% with v3 also in the DestinationRule: v2 is the
    canary (any other would be refused as a third destination), not a question."""
    [case] = [c for c in cases() if c.file.endswith("virtual-service-reviews-80-20.yaml")]
    plan = plan_case(case, 50)
    assert (plan.stable, plan.canary) == ("v1", "v2")


def counts() -> tuple[Counter[str], int]:
    """Per VirtualService (at 10%): planned, or refused and why, and where a refusal's
    suggested command leads; and how many there are."""
    tally: Counter[str] = Counter()
    for case in cases():
        result = outcome(case, 10)
        tally["planned" if result.planned else f"refused: {result.reason}"] += 1
        found = None if result.planned else SUGGESTED.search(result.message)
        if found and (found[1], found[2] or "default") == (case.name, case.namespace):
            after = followed(case, 10, found[4])
            tally["  its suggestion plans" if after.planned else f"  then: {after.reason}"] += 1
    return tally, len(cases())


if __name__ == "__main__":
    tally, total = counts()
    print(f"{total} VirtualServices")
    for key, n in sorted(tally.items(), key=lambda kv: (kv[0].startswith(" "), -kv[1])):
        print(f"{n:4}  {key}")
