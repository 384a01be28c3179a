"""Each message type as a phone shows it (text form, 40 columns), checked in under snapshots/.

The messages are made by the bot's own renderers (cards and thread posts through the Slack
notifier and the fake Slack Web API, as they are posted), then drawn by tests/chat/phone.py.
A change to how a message looks shows up as a diff of its snapshot. To accept the new look:

    UPDATE_SNAPSHOTS=1 .venv/bin/pytest -p no:cacheprovider tests/chat/test_snapshots.py

and read `git diff tests/chat/snapshots/` before committing it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.chat.approvals import approval_blocks
from bot.chat.cards import card_view
from bot.chat.dispatch import history_text
from bot.chat.health_text import health_blocks
from bot.chat.home import home_view, with_actions
from bot.chat.links import Links
from bot.chat.slack import SlackNotifier, web_client
from bot.health.verdict import Figures, Side, judge
from bot.rollout.model import Notify, Phase, Verdict
from bot.store.approvals import ApprovalRequest
from bot.store.redis_store import AuditEntry, RolloutStore, connect
from policies import NeedsApproval
from policies.model import HealthThresholds
from tests.chat.phone import render_blocks, render_message, too_wide
from tests.support.fake_slack import FakeSlack
from tests.support.sample_rollout import ALICE, SRE, T0, rollout

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
LINKS = Links(
    grafana="https://grafana.example.com/d/istio?var-service={service}.{namespace}",
    kiali="https://kiali.example.com/kiali/console/namespaces/{namespace}/services/{service}",
    jaeger="https://jaeger.example.com/search?service={service}.{namespace}",
)
# A plan's diff as the planner makes it for chat: the bot's own record stamped with the time.
DIFF = """\
--- VirtualService prod/weather (live)
+++ VirtualService prod/weather (planned)
@@ -3,6 +3,9 @@
 metadata:
   name: weather
   namespace: prod
+  annotations:
+    canary-bot/last-applied: '{"stable":"v1","canary":"v2","weights":{"0":30},"mirror":null,\
"at":"2026-11-22T03:00:00+00:00","write":"w-5f0c2a","rollout":"r-8d1e","channel":"C0CANARY"}'
 spec:
   hosts:
   - weather-service.prod.svc.cluster.local
@@ -17,10 +20,10 @@
         host: weather-service.prod.svc.cluster.local
         port:
           number: 80
         subset: v1
-      weight: 90
+      weight: 70
     - destination:
         host: weather-service.prod.svc.cluster.local
         port:
           number: 80
         subset: v2
-      weight: 10
+      weight: 30
"""


def checked(verdict_step: int, p99: float) -> Verdict:
    figures = Figures(
        canary=Side(requests=1_200.0, errors=3.0, p99_ms=p99),
        stable=Side(requests=10_800.0, errors=9.0, p99_ms=240.0),
        window_s=60.0,
    )
    at = T0 + timedelta(minutes=5 * (verdict_step + 1))
    return judge(figures, HealthThresholds(), at=at, step=verdict_step)


@pytest.fixture
def posted(redis_url: str) -> Iterator[dict[str, dict[str, Any]]]:
    """The card and its thread posts as the fake Slack holds them after a rollout's news."""
    with FakeSlack() as slack:
        store = RolloutStore(connect(redis_url))
        fresh = f"r-{uuid.uuid4().hex[:8]}"  # Redis outlives the fake Slack: a card of its own
        notifier = SlackNotifier(
            web_client(slack.token, slack.url + "/api/"),
            store,
            lambda: T0 + timedelta(minutes=15),
            draw=lambda _: b"chart",
            links=LINKS,
        )
        good = checked(2, 260.0)
        running = rollout(Phase.PROGRESSING, (good,), id=fresh)
        notifier.notify(running, Notify(event="health", text="passed"))
        card = _top(slack)
        bad = checked(2, 900.0)
        why = "canary p99 900 ms is above 500 ms"
        failed = rollout(Phase.FAILED, (good, bad), reason=why, id=fresh)
        text = "weather back on v1: canary p99 900 ms is above 500 ms (auto-rollback)"
        notifier.notify(failed, Notify(event="auto-rollback", text=text))
        slack.wait_for(lambda c: c.method == "files.completeUploadExternal")  # the chart
        messages = slack.messages("C0CANARY").values()
        thread = [m for m in messages if m.get("thread_ts") and not m.get("files")]
        yield {"card": card, "health-check": thread[0], "auto-rollback": thread[1]}


def _top(slack: FakeSlack) -> dict[str, Any]:
    [card] = [m for m in slack.messages("C0CANARY").values() if not m.get("thread_ts")]
    return card


def approval_request(kind: str) -> ApprovalRequest:
    return ApprovalRequest(
        id="a1b2c3",
        requester=ALICE,
        channel="C0CANARY",
        command="weather.prod 30%",
        namespace="prod",
        vs="weather",
        change={"action": "set-weight", "plan_hash": "0f1e2d3c4b5a6978"},
        diff=DIFF if kind == "command" else "step 4 of 5: 25% → 50% to v2",
        approvals=[{"user": SRE, "deny": False}] if kind == "gate" else [],
        kind=kind,
    )


def history() -> str:
    entries = [
        AuditEntry("1", "prod", "weather", "start", ALICE, T0, 0, 5, detail=""),
        AuditEntry("2", "prod", "weather", "step", "scheduler", T0 + timedelta(minutes=5), 5, 10),
        AuditEntry("3", "prod", "weather", "rollback", SRE, T0 + timedelta(minutes=7), 10, 0),
    ]
    return history_text("weather.prod", entries)


NEEDS = NeedsApproval(
    count=1, sources=("S0SRE0000",), have=0, reason="raising above 25% needs 1 approval"
)
MADE: dict[str, Callable[[dict[str, dict[str, Any]]], dict[str, Any]]] = {
    "card": lambda posted: posted["card"],
    "thread-health-check": lambda posted: posted["health-check"],
    "thread-auto-rollback": lambda posted: posted["auto-rollback"],
    "approval-card": lambda _: {"blocks": approval_blocks(approval_request("command"), NEEDS)},
    "approval-card-gate": lambda _: {"blocks": approval_blocks(approval_request("gate"), None)},
    "health-table": lambda _: {"blocks": health_blocks(checked(2, 900.0), lead="Now: ")},
    "history": lambda _: {"text": history()},
    "app-home": lambda _: home(),
}


def home() -> dict[str, Any]:
    """The Home tab of an on-call engineer who may pause and roll back, not promote."""
    running = rollout(Phase.PROGRESSING, (checked(2, 260.0),))
    view = with_actions(
        card_view(running, T0 + timedelta(minutes=15), LINKS), ["pause", "rollback"]
    )
    assert view is not None
    return home_view([view], notice="weather.prod: pause done.")


@pytest.mark.parametrize("name", MADE)
def test_each_message_type_reads_at_phone_width_as_its_snapshot(
    name: str, posted: dict[str, dict[str, Any]]
) -> None:
    message = MADE[name](posted)
    if message.get("blocks"):
        assert [b.to_dict() for b in Block.parse_all(message["blocks"])] == message["blocks"]
    shown = render_message(message)
    assert too_wide(shown) == [], f"{name} is wider than a phone"
    snapshot = SNAPSHOTS / f"{name}.txt"
    if UPDATE:
        snapshot.write_text(shown)
    assert snapshot.read_text() == shown, f"{name} looks different: see the module docstring"


def test_the_width_check_catches_a_table_a_phone_would_scroll() -> None:
    """The tables chat posted before: one line per check, 79 to 81 columns wide."""
    row = "p99 latency  900 ms  240 ms  ≤ 500 ms  fail"
    wide = {"text": f"check\n```\n{row}\n```"}
    assert too_wide(render_message(wide)) == [row]
    assert too_wide(render_blocks(health_blocks(checked(2, 900.0)))) == []
