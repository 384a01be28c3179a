"""`/canary weather 10% to v3 labels version=v3,track=canary` over signed HTTP: the new subset
selects exactly the pods named, and gets traffic only once one of them is ready; until then
the asker is told why and nothing is written."""

from __future__ import annotations

from typing import Any

from sandbox.seeding import ready_pods_of
from tests.support.harness import Bot, responses_to, wait_until

LABELS = {"app": "weather", "version": "v3", "track": "canary"}
COMMAND = "weather 10% to v3 labels version=v3,track=canary"


def subsets(bot: Bot) -> dict[str, dict[str, str]]:
    dr = bot.cluster.get_object("default", "destinationrules", "weather-service")
    assert dr is not None
    return {s["name"]: s.get("labels", {}) for s in dr["spec"]["subsets"]}


def routes(bot: Bot) -> list[tuple[str, int]]:
    vs = bot.cluster.get_object("default", "virtualservices", "weather")
    assert vs is not None
    return [
        (d["destination"]["subset"], d.get("weight", 100)) for d in vs["spec"]["http"][0]["route"]
    ]


def v3_deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "weather-v3", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "template": {"metadata": {"labels": LABELS}, "spec": {"containers": []}},
        },
    }


def test_the_named_labels_select_the_new_subsets_pods_once_one_is_ready(bot: Bot) -> None:
    assert bot.post(bot.command(COMMAND)) == 200
    wait_until(lambda: responses_to(bot, "cmd") != [])
    [refused] = responses_to(bot, "cmd")
    assert "subset 'v3' selects no ready pods (labels track=canary,version=v3)" in refused
    assert bot.cluster.writes() == [] and "v3" not in subsets(bot)

    for pod in ready_pods_of(v3_deployment()):
        bot.cluster.put_object(pod)
    assert bot.post(bot.command(COMMAND)) == 200
    wait_until(lambda: "v3" in subsets(bot))
    assert subsets(bot)["v3"] == {"track": "canary", "version": "v3"}
    wait_until(lambda: ("v3", 10) in routes(bot))
    assert routes(bot) == [("v1", 90), ("v2", 0), ("v3", 10)]  # v2 stays, at 0


def test_labels_beside_a_rollout_going_on_are_refused_and_change_nothing(bot: Bot) -> None:
    assert bot.post(bot.command("weather 10%")) == 200
    wait_until(lambda: bot.weights() == [90, 10])
    writes = len(bot.cluster.writes())
    assert bot.post(bot.command("weather 20% to v2 labels version=v2")) == 200
    wait_until(lambda: any("`labels`" in r for r in responses_to(bot, "cmd")))
    [said] = [r for r in responses_to(bot, "cmd") if "`labels`" in r]
    assert "has a rollout going on, to v2: `labels` name the pods of a new subset" in said
    assert bot.weights() == [90, 10] and len(bot.cluster.writes()) == writes
