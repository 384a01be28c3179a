"""Approval cards and who may vote on them: gate requests for staged rollouts, the card's
blocks, the user-group directory and the policy asked on a Slack user's behalf (real Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.chat.approvals import (
    Gate,
    GateCards,
    GroupDirectory,
    approval_blocks,
    group_ids,
    parse_vote,
)
from bot.rollout.model import Phase, Rollout, StepPlan, Target
from bot.store.approvals import APPROVED, DENIED, ApprovalBook, ApprovalRequest
from bot.store.redis_store import RolloutStore, connect
from policies import Allow, Change, Deny, NeedsApproval, load_policy

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
REQUESTER, SRE, OTHER_SRE, STRANGER = "U0REQ00001", "U0SRE00002", "U0SRE00003", "U0XXX00009"
SRE_GROUP, DEV_GROUP = "S0SRE00000", "S0DEV00000"
POLICY = f"""
rules:
  - name: production
    namespace: "*"
    allow:
      set-weight: [{REQUESTER}, {DEV_GROUP}]
      approve: [{SRE_GROUP}]
    approvals:
      - count: 1
        from: [{SRE_GROUP}]
        above_weight: 25
"""


@pytest.fixture
def store(redis_url: str) -> Iterator[RolloutStore]:
    client = connect(redis_url)
    yield RolloutStore(client)
    client.close()


def waiting(*, namespace: str = "default", step: int = 0) -> Rollout:
    """A rollout of weather, steps 10, 50, 100, waiting for the go-ahead to its next step."""
    weights = (10, 50, 100)
    return Rollout(
        id="r1",
        target=Target(namespace=namespace, vs="weather", stable="v1", canary="v2"),
        steps=StepPlan(weights=weights, interval_s=60, gates=(50, 100)),
        phase=Phase.PENDING_APPROVAL,
        step=step,
        weight=weights[step],
        started_by=REQUESTER,
        channel="C1",
        created_at=T0,
        updated_at=T0,
    )


def text_of(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(b["text"]["text"] for b in blocks if "text" in b)


def test_a_gate_asks_for_the_next_step_with_its_diff_and_is_audited(
    store: RolloutStore,
) -> None:
    book = ApprovalBook(store)
    cards = GateCards(book, store, lambda: T0 + timedelta(minutes=5))

    request, blocks = cards.open_gate(waiting())

    assert book.load(request.id) == request
    assert (request.kind, request.rollout_id, request.step, request.status) == (
        "gate",
        "r1",
        1,
        "open",
    )
    assert (request.requester, request.channel, request.command) == (
        REQUESTER,
        "C1",
        "weather resume",
    )
    assert request.diff == "step 2 of 3: 10% → 50% to v2"
    assert request.change_now() == Change(
        action="start", weight_before=10, weight_after=50, plan_hash=request.plan_hash
    )
    assert text_of(blocks) == (
        f"*Approval needed* — the rollout of weather (started by <@{REQUESTER}>) waits: "
        "step 2 of 3: 10% → 50% to v2"
    )
    values = [e["value"] for b in blocks for e in b.get("elements", [])]
    assert values == [f"{request.id}:{request.plan_hash}"] * 2
    [entry] = store.history("default", "weather")
    assert (entry.action, entry.actor, entry.weight_before, entry.weight_after) == (
        "approval-requested",
        REQUESTER,
        10,
        50,
    )
    assert entry.at == T0 + timedelta(minutes=5)
    assert (entry.channel, entry.plan_hash) == ("C1", request.plan_hash)
    assert entry.detail == f"request {request.id}: /canary weather resume by {REQUESTER}"


def test_a_gate_outside_the_default_namespace_names_the_service_as_chat_does(
    store: RolloutStore,
) -> None:
    request, _ = GateCards(ApprovalBook(store), store, lambda: T0).open_gate(
        waiting(namespace="prod")
    )
    assert request.command == "weather.prod resume"
    assert request.namespace == "prod" and request.vs == "weather"
    assert [e.action for e in store.history("prod", "weather")] == ["approval-requested"]


def test_each_gate_of_a_rollout_has_a_plan_of_its_own(store: RolloutStore) -> None:
    cards = GateCards(ApprovalBook(store), store, lambda: T0)

    first, _ = cards.open_gate(waiting(step=0))
    again, _ = cards.open_gate(waiting(step=0))
    second, _ = cards.open_gate(waiting(step=1))

    assert first.id != again.id and first.plan_hash == again.plan_hash
    assert second.plan_hash != first.plan_hash
    assert second.diff == "step 3 of 3: 50% → 100% to v2"


def test_the_posted_card_is_remembered_on_its_request(store: RolloutStore) -> None:
    book = ApprovalBook(store)
    cards = GateCards(book, store, lambda: T0)
    request, _ = cards.open_gate(waiting())

    cards.card_posted(request.id, "1700000000.000100")

    found = book.load(request.id)
    assert found is not None and found.card_ts == "1700000000.000100"


def command_request(**changes: Any) -> ApprovalRequest:
    fields: dict[str, Any] = {
        "id": "abc123",
        "requester": REQUESTER,
        "channel": "C1",
        "command": "weather 50%",
        "namespace": "default",
        "vs": "weather",
        "change": {"action": "set-weight", "plan_hash": "0f1e2d"},
        "diff": "-      weight: 10\n+      weight: 50",
    }
    return ApprovalRequest(**(fields | changes))


def test_an_open_card_shows_the_ask_the_reason_the_diff_and_both_buttons() -> None:
    needs = NeedsApproval(count=1, sources=(SRE_GROUP,), have=0, reason="needs 1 approval")
    blocks = approval_blocks(command_request(), needs)

    text = text_of(blocks)
    assert text.startswith(f"*Approval needed* — <@{REQUESTER}> asks: `/canary weather 50%`")
    assert "needs 1 approval" in text
    assert "```-weight: 10\n+weight: 50```" in text  # shown at phone width
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [(e["action_id"], e["value"], e["style"]) for e in actions["elements"]] == [
        ("approval:approve", "abc123:0f1e2d", "primary"),
        ("approval:deny", "abc123:0f1e2d", "danger"),
    ]


def test_a_card_says_who_approved_and_when_earlier_approvals_were_voided() -> None:
    approvals = [
        {"user": SRE, "deny": False},
        {"user": STRANGER, "deny": True},
        {"user": OTHER_SRE, "deny": False},
    ]
    text = text_of(approval_blocks(command_request(approvals=approvals, voided=True), None))

    assert f"Approved by <@{SRE}>, <@{OTHER_SRE}>" in text
    assert STRANGER not in text
    assert "approvals given before no longer count" in text


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(APPROVED, ":white_check_mark: Approved and applied"), (DENIED, ":x: Denied")],
)
def test_a_closed_card_shows_its_outcome_and_no_buttons(status: str, outcome: str) -> None:
    blocks = approval_blocks(command_request(status=status), None)

    assert blocks[-1] == {"type": "section", "text": {"type": "mrkdwn", "text": outcome}}
    assert all(b["type"] != "actions" for b in blocks)


class Members:
    """Slack's usergroups.users.list, counted: who is in which group."""

    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.groups, self.asked = groups, list[str]()

    def __call__(self, group: str) -> list[str]:
        self.asked.append(group)
        return self.groups.get(group, [])


def test_group_members_are_looked_up_once_and_kept_in_redis(store: RolloutStore) -> None:
    members = Members({SRE_GROUP: [SRE, OTHER_SRE], DEV_GROUP: [REQUESTER]})
    directory = GroupDirectory(members, store, [SRE_GROUP, DEV_GROUP])

    assert directory.groups_of(SRE) == {SRE_GROUP}
    assert directory.groups_of(REQUESTER) == {DEV_GROUP}
    assert directory.groups_of(STRANGER) == frozenset()
    assert sorted(members.asked) == [DEV_GROUP, SRE_GROUP]

    another_replica = GroupDirectory(members, store, [SRE_GROUP, DEV_GROUP])
    assert another_replica.groups_of(OTHER_SRE) == {SRE_GROUP}
    assert sorted(members.asked) == [DEV_GROUP, SRE_GROUP]  # read from Redis, not Slack


def test_only_the_groups_a_policy_names_are_looked_up(store: RolloutStore) -> None:
    policy = load_policy(POLICY)
    members = Members({SRE_GROUP: [SRE], "S0OTHER000": [SRE]})

    assert group_ids(policy) == {SRE_GROUP, DEV_GROUP}
    directory = GroupDirectory(members, store, group_ids(policy))
    assert directory.groups_of(SRE) == {SRE_GROUP}
    assert "S0OTHER000" not in members.asked


def test_the_policy_is_asked_with_the_users_groups(store: RolloutStore) -> None:
    members = Members({SRE_GROUP: [SRE], DEV_GROUP: ["U0DEV00004"]})
    policy = load_policy(POLICY)
    gate = Gate(policy, GroupDirectory(members, store, group_ids(policy)), lambda: T0)
    raise_to_20 = Change(action="set-weight", weight_before=10, weight_after=20, plan_hash="h")
    raise_to_50 = Change(action="set-weight", weight_before=10, weight_after=50, plan_hash="h")

    assert isinstance(gate.decide("U0DEV00004", raise_to_20, "default", "weather"), Allow)
    assert isinstance(gate.decide(STRANGER, raise_to_20, "default", "weather"), Deny)
    assert isinstance(gate.decide(REQUESTER, raise_to_50, "default", "weather"), NeedsApproval)
    assert gate.may_vote(SRE, raise_to_50, "default", "weather")
    assert not gate.may_vote(STRANGER, raise_to_50, "default", "weather")
    assert gate.actor(SRE).groups == {SRE_GROUP}


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("abc123:0f1e2d", ("abc123", "0f1e2d")), ("abc123", ("abc123", None))],
)
def test_a_vote_button_carries_the_request_and_the_plan_on_the_card(
    value: str, parsed: tuple[str, str | None]
) -> None:
    assert parse_vote(value) == parsed


@pytest.mark.parametrize("value", ["", "abc:XYZ", "a b:00", "x" * 33])
def test_a_foreign_vote_value_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not an approval button value"):
        parse_vote(value)


def confirms(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [b.to_dict() for b in Block.parse_all(blocks)] == blocks  # valid Block Kit
    return {e["action_id"].removeprefix("approval:"): e["confirm"] for e in actions["elements"]}


def test_approve_and_deny_ask_for_confirmation_first() -> None:
    needs = NeedsApproval(count=1, sources=(SRE_GROUP,), have=0, reason="needs 1 approval")
    dialogs = confirms(approval_blocks(command_request(), needs))
    assert dialogs["approve"]["text"]["text"].startswith("Approve /canary weather 50%?")
    assert dialogs["deny"]["text"]["text"].startswith("Deny /canary weather 50%? Nothing changes")
    assert dialogs["deny"]["style"] == "danger" and dialogs["approve"]["style"] == "primary"


def test_a_gates_deny_says_it_rolls_back(store: RolloutStore) -> None:
    _, blocks = GateCards(ApprovalBook(store), store, lambda: T0).open_gate(waiting())
    dialogs = confirms(blocks)
    assert dialogs["deny"]["title"]["text"] == "Deny and roll back?"
    assert "rolled back" in dialogs["deny"]["text"]["text"]
    assert dialogs["approve"]["confirm"]["text"] == "Approve"
