"""Cohorts over the wire: signed slash commands into the running bot, the sandbox API server,
real Redis and the fake Slack. A cohort's route is added ahead of the catch-all route and
removed again with nothing else in the VirtualService changed; bad input changes nothing."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bot.mesh.cohort import COHORT_ROUTE
from bot.mesh.planner import ANNOTATION
from tests.support.harness import Bot, flat, responses_to, wait_until
from tests.support.live_routes import cohort_route, live


def spec_and_labels(vs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a person reads of the VirtualService: its spec, labels and annotations but ours."""
    meta = vs["metadata"]
    notes = {k: v for k, v in (meta.get("annotations") or {}).items() if k != ANNOTATION}
    return copy.deepcopy(vs["spec"]), {"labels": meta.get("labels"), "annotations": notes}


def told(bot: Bot, reply: str) -> list[str]:
    texts = responses_to(bot, "cmd")
    return [t for t in [*texts, json.loads(reply).get("text", "") if reply else ""] if t]


def test_a_cohort_route_is_added_ahead_of_the_catch_all_and_removed_exactly(bot: Bot) -> None:
    spec, meta = spec_and_labels(live(bot))

    assert bot.post(bot.command("weather cohort header x-beta=1 to v2")) == 200
    wait_until(lambda: cohort_route(bot) is not None, what="the cohort route")
    added = live(bot)["spec"]
    assert added["http"][0] == {
        "name": COHORT_ROUTE,
        "match": [{"headers": {"x-beta": {"exact": "1"}}}],
        "route": [
            {"destination": {"host": "weather-service", "port": {"number": 80}, "subset": "v2"}}
        ],
    }
    assert {**added, "http": added["http"][1:]} == spec
    assert spec_and_labels(live(bot))[1] == meta
    assert [d["weight"] for d in added["http"][1]["route"]] == [100, 0]

    wait_until(lambda: any("Cohort" in flat(c["blocks"]) for c in bot.cards().values()))
    [card] = bot.cards().values()
    assert "*Cohort:* header x-beta=1 → v2" in flat(card["blocks"])
    store = bot.server.parts.store
    wait_until(lambda: any(e.action == "cohort" for e in store.history("default", "weather")))
    [entry] = [e for e in store.history("default", "weather") if e.action == "cohort"]
    assert (entry.actor, entry.detail) == ("U1", "cohort header x-beta=1")

    assert bot.post(bot.command("weather cohort off")) == 200
    wait_until(lambda: cohort_route(bot) is None, what="the cohort route gone")
    assert spec_and_labels(live(bot)) == (spec, meta)
    bot.drain()
    entries = [e for e in store.history("default", "weather") if e.action == "cohort"]
    assert [e.detail for e in entries] == ["cohort header x-beta=1", "cohort off"]


def test_status_and_plan_show_the_cohort_and_plan_writes_nothing(bot: Bot) -> None:
    status, reply = bot.exchange(bot.command("weather plan cohort user jason"))
    assert status == 200
    bot.drain()
    [text] = told(bot, reply)
    assert text.startswith("Plan for weather cohort user jason sent to v2 (v1 → v2), nothing")
    assert "end-user" in text and "jason" in text
    assert [r for r in bot.cluster.requests if r.is_write] == []
    assert cohort_route(bot) is None


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("weather cohort header x-beta", "`header` needs a header and its value (NAME=VALUE)"),
        ("weather cohort header x-beta=1;evil", "is not a header value"),
        ("weather cohort team a=b", "'team' is not a kind of cohort"),
        ("weather cohort user jason to v9!", "is not a subset or Service name"),
    ],
)
def test_a_bad_cohort_gets_one_sentence_and_changes_nothing(bot: Bot, text: str, said: str) -> None:
    status, reply = bot.exchange(bot.command(text))
    assert status == 200
    bot.drain()
    [answer] = told(bot, reply)
    assert said in answer and "\n" not in answer
    assert [r for r in bot.cluster.requests if r.is_write] == []
    assert bot.server.parts.store.history("default", "weather") == []
    assert bot.cards() == {}


def test_a_cohort_on_a_tcp_service_is_refused_in_a_sentence_and_changes_nothing(bot: Bot) -> None:
    bot.cluster.mutate(
        "default",
        "virtualservices",
        "weather",
        lambda vs: vs["spec"].update(tcp=vs["spec"].pop("http")),
    )
    bot.cluster.clear_log()
    status, reply = bot.exchange(bot.command("weather cohort user jason"))
    assert status == 200
    bot.drain()
    texts = told(bot, reply)
    assert any("a cohort is picked by an HTTP header; nothing was changed" in t for t in texts)
    assert [r for r in bot.cluster.requests if r.is_write] == []
