"""The dispatcher on its own: what each command reads, writes and tells the asker.

Built by the composition root against the sandbox API server (seeded with the weather app, v1
at 90% and v2 at 10%) and real Redis; what reached the cluster is read from the sandbox's log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.chat.cards import card_blocks, card_text, card_view
from bot.chat.dispatch import Asker, Reply
from bot.store.approvals import OPEN
from commands import parse
from sandbox.apiserver import SandboxApiServer
from tests.support.dispatch import (
    OTHER_SRE,
    POLICY,
    REQUESTER,
    SRE,
    STRANGER,
    T0,
    Bot,
    make_bot,
    seeded,
)


@pytest.fixture
def bot(sandbox: SandboxApiServer, api_client: Any, redis_url: str) -> Iterator[Bot]:
    """No policy: everyone may do everything."""
    seeded(sandbox)
    with make_bot(sandbox, api_client, redis_url) as made:
        yield made


@pytest.fixture
def policed(
    sandbox: SandboxApiServer, api_client: Any, redis_url: str, tmp_path: Path
) -> Iterator[Bot]:
    """With a policy: the requester may raise to 25% alone; above it two SREs must approve."""
    seeded(sandbox)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    with make_bot(sandbox, api_client, redis_url, CANARY_POLICY_FILE=str(policy)) as made:
        yield made


def test_help_and_list_answer_without_reading_any_service(bot: Bot) -> None:
    [help_reply] = bot.say("help")
    [start_help] = bot.say("help start")
    [listed] = bot.say("list")

    assert "`/canary weather 10%`" in help_reply.text and "`/canary list`" in help_reply.text
    assert "steps <list climbing to 100>" in start_help.text
    assert listed == Reply("No rollouts going on.")
    assert bot.cluster.requests == []


def test_list_shows_the_first_line_of_each_card_going_on(bot: Bot) -> None:
    assert bot.say("weather 20%") == []
    bot.cluster.clear_log()

    [listed] = bot.say("list")

    assert listed.text == "⏸️ weather in default · v1 → v2"
    assert bot.cluster.requests == []


def test_status_without_a_rollout_shows_the_live_split_and_writes_nothing(bot: Bot) -> None:
    [reply] = bot.say("weather status")

    assert reply == Reply("weather: no rollout going on; v1/v2 at 90%/10%")
    assert bot.cluster.writes() == []
    assert bot.parts.store.active_for("default", "weather") is None


def test_status_of_a_rollout_shows_its_card_and_a_check_made_now(bot: Bot) -> None:
    assert bot.say("weather 20%") == []
    active = bot.parts.store.active_for("default", "weather")
    assert active is not None
    bot.cluster.clear_log()

    [reply] = bot.say("weather status")

    view = card_view(active, T0)
    now = "Now: no health checks are configured (set PROMETHEUS_URL)"
    assert reply.text == f"{card_text(view)}\n\n{now}"
    assert reply.ephemeral
    assert reply.blocks == [
        *card_blocks(view),
        {"type": "section", "text": {"type": "mrkdwn", "text": now}},
    ]
    assert bot.cluster.requests == []  # the card is the record: no need to read the cluster


def test_status_in_a_channel_means_the_channel_namespace(
    sandbox: SandboxApiServer, api_client: Any, redis_url: str
) -> None:
    seeded(sandbox)
    with make_bot(sandbox, api_client, redis_url, CANARY_CHANNEL_NAMESPACES={"C9": "prod"}) as bot:
        [in_prod] = bot.say("weather status", channel="C9")
        [in_default] = bot.say("weather status", channel="C1")

        assert in_prod.text.startswith(
            ":warning: VirtualService 'weather' was not found in namespace 'prod'"
        )
        assert in_default.text == "weather: no rollout going on; v1/v2 at 90%/10%"


def test_plan_shows_the_diff_and_writes_nothing(bot: Bot) -> None:
    [reply] = bot.say("weather plan 30%")

    assert reply.ephemeral
    assert reply.text.startswith("Plan for weather at 30% (v1 → v2), nothing applied:\n```")
    assert "-  weight: 90\n+  weight: 70" in reply.text
    assert "-  weight: 10\n+  weight: 30" in reply.text
    assert bot.cluster.writes() == []
    assert bot.weights() == [90, 10]
    assert bot.parts.store.active_for("default", "weather") is None
    assert bot.trail() == []


def test_plan_at_the_live_weight_says_so(bot: Bot) -> None:
    assert bot.say("weather plan 10%") == [Reply("weather is already at 10%")]
    assert bot.cluster.writes() == []


def test_history_lists_each_event_with_its_time_weights_and_who(bot: Bot) -> None:
    assert bot.say("weather history") == [Reply("weather: nothing in the audit trail yet")]
    assert bot.say("weather 20%", user="U0ALICE00") == []
    bot.clock.advance(90)
    assert bot.say("weather rollback", user="deploy-script", channel=None) == []

    [reply] = bot.say("weather history")

    first, then = int(T0.timestamp()), int(T0.timestamp()) + 90
    assert reply.text.splitlines() == [
        "*weather*, last 2 events:",
        f"<!date^{first}^{{date_short_pretty}} {{time_secs}}|2026-12-01 03:00:00 UTC> "
        "set-weight 10% → 20% by <@U0ALICE00>",
        f"<!date^{then}^{{date_short_pretty}} {{time_secs}}|2026-12-01 03:01:30 UTC> "
        "rollback 20% → 0% by deploy-script (rolled back by deploy-script)",
    ]


def test_a_weight_that_goes_live_gets_no_reply_and_is_written_once(bot: Bot) -> None:
    assert bot.say("weather 20%") == []

    assert bot.weights() == [80, 20]
    assert [r.method for r in bot.cluster.writes()] == ["PATCH"]
    assert bot.trail() == [("set-weight", REQUESTER)]


def test_a_weight_that_does_not_go_live_is_told_as_it_is(bot: Bot) -> None:
    bot.cluster.fail_next(1, 403, method="PATCH")

    [reply] = bot.say("weather 20%")

    assert reply.ephemeral
    assert reply.text.startswith(":warning: could not set 20%: the bot may not patch")
    assert reply.text.endswith("the canary has 10% (nothing else changed)")
    assert bot.weights() == [90, 10]
    touched = {op["path"] for r in bot.cluster.writes() for op in r.json() if op["op"] != "test"}
    assert touched <= {"/metadata/annotations"}  # a fence, so the refused write never lands


def test_a_weight_the_policy_refuses_gets_no_entry_and_writes_nothing(policed: Bot) -> None:
    [reply] = policed.say("weather 20%", user=STRANGER)

    assert reply == Reply(
        f":no_entry: you (<@{STRANGER}>) may not set-weight in */*: ask one of <@{REQUESTER}>"
    )
    assert policed.cluster.writes() == []
    assert policed.trail() == []
    assert policed.parts.store.active_for("default", "weather") is None


def test_a_weight_the_policy_allows_goes_live_with_no_reply(policed: Bot) -> None:
    assert policed.say("weather 20%") == []
    assert policed.weights() == [80, 20]


def test_a_weight_that_needs_approval_opens_a_request_and_writes_nothing(policed: Bot) -> None:
    told, card = policed.say("weather 50%")

    assert told == Reply(
        f":hourglass: production changes above 25% need 2 approvals from <@{SRE}> or "
        f"<@{OTHER_SRE}>; you have 0; I posted an approval request."
    )
    assert not card.ephemeral and card.approval is not None
    assert card.text == "Approval needed: /canary weather 50% (open)"
    book = policed.parts.dispatcher.book
    assert book is not None
    request = book.load(card.approval)
    assert request is not None
    assert (request.requester, request.channel, request.command, request.status) == (
        REQUESTER,
        "C1",
        "weather 50%",
        OPEN,
    )
    assert (request.change["weight_before"], request.change["weight_after"]) == (10, 50)
    assert "-      weight: 10\n+      weight: 50" in request.diff
    values = {e["value"] for b in card.blocks or [] for e in b.get("elements", [])}
    assert values == {f"{request.id}:{request.plan_hash}"}  # both buttons vote for this plan
    assert policed.cluster.writes() == []
    assert policed.weights() == [90, 10]
    [entry] = policed.parts.store.history("default", "weather")
    assert (entry.action, entry.actor, entry.weight_before, entry.weight_after) == (
        "approval-requested",
        REQUESTER,
        10,
        50,
    )
    assert entry.detail == f"request {request.id}: /canary weather 50%"
    assert entry.plan_hash == request.plan_hash


def test_a_change_already_approved_runs_without_asking_again(policed: Bot) -> None:
    dispatcher = policed.parts.dispatcher
    replies = dispatcher.run(
        parse("weather 50%"), Asker(REQUESTER, "C1"), text="weather 50%", approved=True
    )

    assert replies == []
    assert policed.weights() == [50, 50]
    assert policed.trail() == [("set-weight", REQUESTER)]


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        (
            "nosuch 10%",
            ":warning: VirtualService 'nosuch' was not found in namespace 'default'; check the "
            "name and the namespace (kubectl -n default get virtualservices)",
        ),
        ("weather pause", ":warning: weather has no rollout going on"),
        ("weather promote", ":warning: weather has no rollout going on"),
        ("nosuch status", ":warning: VirtualService 'nosuch' was not found"),
        ("weather 20% to v9", ":warning: route #0 of VirtualService 'weather'"),
        (
            "weather start every 30s analysis 1m",
            ":warning: analysis (60s) is not shorter than every (30s), so no look would come "
            "before the step's own check; shorten analysis (e.g. analysis 10s) or write "
            "analysis off",
        ),
    ],
)
def test_a_user_error_is_one_warning_line_and_writes_nothing(
    bot: Bot, text: str, warning: str
) -> None:
    [reply] = bot.say(text)

    assert reply.ephemeral and reply.blocks is None
    assert reply.text.startswith(warning)
    assert "\n" not in reply.text
    assert bot.cluster.writes() == []
    assert bot.trail() == []


def test_a_second_rollout_on_a_busy_service_is_a_warning(bot: Bot) -> None:
    assert bot.say("weather 20%") == []
    writes = len(bot.cluster.writes())

    [reply] = bot.say("weather start steps 30,100")

    assert reply.text.startswith(":warning: weather already has rollout ")
    assert len(bot.cluster.writes()) == writes


@pytest.mark.parametrize(
    ("steps", "said"),
    [
        ("10,50,100", "the steps to 50%, 100% wait for an approval"),
        ("20,100", "the step to 100% waits for an approval"),
    ],
)
def test_a_staged_start_says_which_steps_wait_for_an_approval(
    policed: Bot, steps: str, said: str
) -> None:
    [reply] = policed.say(f"weather start steps {steps}")

    assert reply == Reply(
        f":hourglass: weather: {said}; an approval card is posted when the rollout gets there"
    )
    weights = [int(w) for w in steps.split(",")]
    assert policed.weights() == [100 - weights[0], weights[0]]  # the first step is not held
    active = policed.parts.store.active_for("default", "weather")
    assert active is not None and active.steps.gates == tuple(w for w in weights if w > 25)


def test_a_start_keeps_the_analysis_interval_it_was_given(bot: Bot) -> None:
    assert bot.say("weather start steps 20,100 every 5m analysis 15s") == []
    active = bot.parts.store.active_for("default", "weather")
    assert active is not None and (active.steps.interval_s, active.steps.analysis_s) == (300, 15)


def test_a_staged_start_with_no_gated_step_says_nothing_beyond_its_card(bot: Bot) -> None:
    assert bot.say("weather start steps 20,100") == []
    assert bot.weights() == [80, 20]


def test_a_plan_is_stamped_with_the_bots_clock_and_shown_without_the_stamp(bot: Bot) -> None:
    planned = bot.parts.dispatcher.changes.preview(parse("weather plan 30%"), "default")
    assert f'"at":"{T0.isoformat()}"' in planned.diff
    [reply] = bot.say("weather plan 30%")
    shown = reply.text.split("```")[1].splitlines()
    assert "canary-bot/last-applied" not in reply.text and T0.isoformat() not in reply.text
    assert "-  weight: 90" in shown and "+  weight: 70" in shown
    assert max(len(line) for line in shown) <= 40


def test_history_names_an_actor_that_is_no_slack_id_as_it_is(bot: Bot) -> None:
    assert bot.say("weather 20%", user="Wendy", channel=None) == []

    [reply] = bot.say("weather history")

    assert reply.text.endswith("set-weight 10% → 20% by Wendy")


def test_a_start_that_routes_a_cohort_needs_the_cohort_action_too(policed: Bot) -> None:
    """The requester may start rollouts but is named under no `cohort` rule: a start whose
    first step routes a cohort is refused, and nothing is written."""
    [reply] = policed.say("weather start cohort header x-beta=1")
    assert reply.text.startswith(":no_entry: nobody may cohort in */*")
    assert policed.parts.store.active_for("default", "weather") is None
    assert [r for r in policed.cluster.requests if r.is_write] == []
    policed.say("weather start steps 20,100")  # a plain start is still allowed
    assert policed.weights() == [80, 20]
