"""Cohorts in `canary-bot shell`: the same pipeline as Slack, the card drawn as text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.mesh.cohort import COHORT_ROUTE
from commands import parse
from sandbox.apiserver import SandboxApiServer
from tests.support.terminal import Terminal, terminal


@pytest.fixture
def term(sandbox: SandboxApiServer, api_client: Any, redis_url: str) -> Iterator[Terminal]:
    with terminal(sandbox, api_client, redis_url) as made:
        yield made


def routes(term: Terminal) -> list[str | None]:
    vs = term.cluster.get_object("default", "virtualservices", "weather")
    assert vs is not None
    return [r.get("name") for r in vs["spec"]["http"]]


def test_a_cohort_on_a_rollout_shows_on_its_card_and_in_status(term: Terminal) -> None:
    term.type("weather 20%")
    printed = term.type("weather cohort user jason")
    assert routes(term) == [COHORT_ROUTE, None]
    assert any("weather: cohort user jason sent to v2 by U0REQ00001" in line for line in printed)
    [status] = term.type("weather status")
    assert "cohort: user jason → v2" in status

    term.type("weather rollback")
    assert routes(term) == [None]
    [after] = term.type("weather status")
    assert "cohort" not in after


def test_with_no_rollout_status_reads_the_cohort_from_the_cluster(term: Terminal) -> None:
    term.type("weather cohort cookie user=jason")
    [status] = term.type("weather status")
    assert status.endswith("v1/v2 at 90%/10%; cohort cookie user=jason sent to v2")
    term.type("weather cohort off")
    assert routes(term) == [None]


def test_the_same_cohort_has_the_same_fingerprint_for_approvers(term: Terminal) -> None:
    dispatcher = term.parts.dispatcher
    first, diff = dispatcher.change_for(parse("weather cohort user jason"), "default")
    again, _ = dispatcher.change_for(parse("weather cohort user jason"), "default")
    other, _ = dispatcher.change_for(parse("weather cohort user alice"), "default")
    assert first.plan_hash == again.plan_hash != other.plan_hash
    assert "end-user" in diff and term.cluster.requests[-1].method == "GET"
