"""Approve and Deny on an approval card, one vote at a time, straight into `Approvals.vote`.

The policy (see test_dispatch.POLICY): the requester may raise weather to 25% alone; above it
two of two named SREs must approve. The bot runs against the sandbox API server and real Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.chat.approvals import GateCards
from bot.chat.dispatch import Reply
from bot.chat.voting import OWN_APPROVAL, PLAN_CHANGED, Approvals, RequestClosed
from bot.rollout.model import Phase, StepDue
from bot.store.approvals import APPROVED, DENIED, OPEN, ApprovalBook, ApprovalRequest
from sandbox.apiserver import SandboxApiServer
from tests.support.dispatch import (
    OTHER_SRE,
    POLICY,
    REQUESTER,
    SRE,
    STRANGER,
    Bot,
    make_bot,
    seeded,
)

NOT_YOURS = "You may not approve or deny changes to this service (see the policy)."


@pytest.fixture
def bot(
    sandbox: SandboxApiServer, api_client: Any, redis_url: str, tmp_path: Path
) -> Iterator[Bot]:
    seeded(sandbox)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    with make_bot(sandbox, api_client, redis_url, CANARY_POLICY_FILE=str(policy)) as made:
        yield made


def book(bot: Bot) -> ApprovalBook:
    assert bot.parts.dispatcher.book is not None
    return bot.parts.dispatcher.book


def ask_for_50(bot: Bot) -> ApprovalRequest:
    """The requester asks for 50%: held for two approvals, nothing written."""
    _, card = bot.say("weather 50%")
    assert card.approval is not None
    request = book(bot).load(card.approval)
    assert request is not None and bot.cluster.writes() == []
    return request


def vote(bot: Bot, request: ApprovalRequest, user: str, *, deny: bool = False) -> Any:
    return Approvals(bot.parts.dispatcher).vote(
        request.id, user, deny=deny, shown=request.plan_hash
    )


def stored(bot: Bot, request: ApprovalRequest) -> ApprovalRequest:
    found = book(bot).load(request.id)
    assert found is not None
    return found


def text_of(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(b["text"]["text"] for b in blocks if "text" in b)


def buttons(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks for e in b.get("elements", [])]


def test_the_requesters_own_approval_is_refused_and_not_recorded(bot: Bot) -> None:
    request = ask_for_50(bot)

    outcome = vote(bot, request, REQUESTER)

    assert outcome.message == OWN_APPROVAL
    assert outcome.request.status == OPEN and outcome.replies == []
    assert stored(bot, request).approvals == []
    assert buttons(outcome.blocks) == ["approval:approve", "approval:deny"]
    assert bot.cluster.writes() == []
    assert bot.trail() == [("approval-requested", REQUESTER)]


@pytest.mark.parametrize("deny", [False, True], ids=["approve", "deny"])
def test_a_voter_the_policy_does_not_name_is_refused_and_not_recorded(bot: Bot, deny: bool) -> None:
    request = ask_for_50(bot)

    outcome = vote(bot, request, STRANGER, deny=deny)

    assert outcome.message == NOT_YOURS
    assert stored(bot, request).status == OPEN
    assert stored(bot, request).approvals == []
    assert bot.cluster.writes() == []
    assert bot.trail() == [("approval-requested", REQUESTER)]


def test_the_vote_that_completes_the_approvals_runs_the_change_once(bot: Bot) -> None:
    request = ask_for_50(bot)

    first = vote(bot, request, SRE)
    assert (first.request.status, first.message, first.replies) == (OPEN, "", [])
    assert f"Approved by <@{SRE}>" in text_of(first.blocks)
    assert bot.cluster.writes() == [] and bot.weights() == [90, 10]

    second = vote(bot, request, OTHER_SRE)
    assert second.request.status == APPROVED
    assert second.replies == []  # it went live: nothing to tell beyond the rollout card
    assert ":white_check_mark: Approved and applied" in text_of(second.blocks)
    assert buttons(second.blocks) == []
    assert bot.weights() == [50, 50]
    assert [r.method for r in bot.cluster.writes()] == ["PATCH"]
    assert bot.trail() == [
        ("approval-requested", REQUESTER),
        ("approve", SRE),
        ("approve", OTHER_SRE),
        ("set-weight", REQUESTER),  # run as the person who asked
    ]

    with pytest.raises(RequestClosed, match="already approved; your approval was not counted"):
        vote(bot, request, SRE)
    assert len(bot.cluster.writes()) == 1


def test_a_deny_closes_the_request_for_good(bot: Bot) -> None:
    request = ask_for_50(bot)
    vote(bot, request, OTHER_SRE)

    denied = vote(bot, request, SRE, deny=True)

    assert denied.request.status == DENIED
    assert denied.replies == [
        Reply(
            f"<@{REQUESTER}>: <@{SRE}> denied this change; it stays denied until the plan changes"
        )
    ]
    assert ":x: Denied" in text_of(denied.blocks) and buttons(denied.blocks) == []
    with pytest.raises(RequestClosed, match=f"already denied by <@{SRE}>; your approval was not"):
        vote(bot, request, OTHER_SRE)
    assert stored(bot, request).status == DENIED
    assert bot.cluster.writes() == [] and bot.weights() == [90, 10]
    assert bot.trail()[-1] == ("deny", SRE)


def test_the_requester_may_withdraw_their_own_request(bot: Bot) -> None:
    request = ask_for_50(bot)

    withdrawn = vote(bot, request, REQUESTER, deny=True)

    assert withdrawn.request.status == DENIED
    assert bot.cluster.writes() == []


def test_an_approval_for_a_plan_that_has_moved_asks_to_look_again(bot: Bot) -> None:
    request = ask_for_50(bot)

    def hand_edit(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["route"][0]["weight"] = 80
        vs["spec"]["http"][0]["route"][1]["weight"] = 20

    bot.cluster.mutate("default", "virtualservices", "weather", hand_edit)
    bot.cluster.clear_log()

    outcome = vote(bot, request, SRE)

    assert outcome.message == PLAN_CHANGED
    renewed = stored(bot, request)
    assert renewed.status == OPEN and renewed.voided and renewed.approvals == []
    assert renewed.plan_hash != request.plan_hash
    assert "-      weight: 20\n+      weight: 50" in renewed.diff
    assert bot.cluster.writes() == []

    assert vote(bot, renewed, SRE).request.status == OPEN
    assert vote(bot, renewed, OTHER_SRE).request.status == APPROVED
    assert bot.weights() == [50, 50]


def test_a_vote_on_a_request_that_is_not_there_is_refused(bot: Bot) -> None:
    with pytest.raises(RequestClosed, match="expired; ask again"):
        Approvals(bot.parts.dispatcher).vote("0badc0de", SRE, deny=False)


def parked_at_its_gate(bot: Bot) -> ApprovalRequest:
    """A start at 20% whose step to 100% waits; its gate card opened as the notifier would."""
    bot.say("weather start steps 20,100")
    started = bot.parts.store.active_for("default", "weather")
    assert started is not None
    parked = bot.parts.engine.handle(started.id, StepDue(step=started.step))
    assert parked.phase is Phase.PENDING_APPROVAL and bot.weights() == [80, 20]
    cards = GateCards(book(bot), bot.parts.store, bot.clock)
    request, _ = cards.open_gate(parked)
    return request


def test_an_approved_gate_lets_the_rollout_take_its_step(bot: Bot) -> None:
    request = parked_at_its_gate(bot)

    assert vote(bot, request, REQUESTER).message == OWN_APPROVAL
    assert vote(bot, request, SRE).request.status == OPEN
    assert bot.weights() == [80, 20]
    done = vote(bot, request, OTHER_SRE)

    assert done.request.status == APPROVED and done.replies == []
    assert bot.weights() == [0, 100]
    rollout = bot.parts.store.load(request.rollout_id)
    assert (rollout.phase, rollout.step, rollout.weight) == (Phase.PROGRESSING, 1, 100)


def test_a_denied_gate_rolls_the_rollout_back(bot: Bot) -> None:
    request = parked_at_its_gate(bot)

    denied = vote(bot, request, SRE, deny=True)

    assert denied.request.status == DENIED
    assert bot.weights() == [100, 0]
    rollout = bot.parts.store.load(request.rollout_id)
    assert rollout.phase is Phase.ROLLED_BACK and rollout.reason == f"denied by {SRE}"


def test_approving_the_gate_of_a_rollout_that_has_ended_leaves_it_unapproved(bot: Bot) -> None:
    request = parked_at_its_gate(bot)
    assert bot.say("weather rollback") == []
    for voter in (SRE, OTHER_SRE):
        with pytest.raises(RequestClosed, match="no longer waits for this approval"):
            vote(bot, request, voter)

    assert stored(bot, request).status != APPROVED
    assert bot.weights() == [100, 0]
