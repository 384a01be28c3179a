"""One rollout, two chat adapters: the Slack card and the shell card show the same thing.

For a rollout in each phase, the Slack notifier (against the fake Slack Web API) and the shell
notifier render its card; each rendering is read back into the same fields (service, subsets,
weights, phase, step, last check, reason, buttons) and both must equal what `card_view` says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.chat.cards import CardView, card_view
from bot.chat.shell import ShellNotifier
from bot.chat.slack import SlackNotifier, web_client
from bot.rollout.model import Notify, Phase, Rollout, StepPlan, Target, Verdict, Write
from bot.store.redis_store import RolloutStore, connect
from tests.support.fake_slack import FakeSlack

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
CHANNEL = "C0CANARY1"
REASONS = {
    Phase.PROGRESSING: "",
    Phase.PAUSED: "paused by U0ONCALL01: error budget is low",
    Phase.PENDING_APPROVAL: "step 3 (100%) waits for an approval",
    Phase.PROMOTED: "every step was healthy",
    Phase.ROLLED_BACK: "rolled back by U0ONCALL01",
    Phase.FAILED: "2 failed health checks in a row",
    Phase.APPLIED: "mirroring 10% of requests to v2",
}
WEIGHTS = {Phase.PROMOTED: 100, Phase.ROLLED_BACK: 0, Phase.FAILED: 0, Phase.APPLIED: 0}
Shown = dict[str, Any]


def rollout_in(phase: Phase) -> Rollout:
    """A rollout of weather.prod, v1 → v2 in steps 10, 50, 100, at its second step."""
    weight = WEIGHTS.get(phase, 50)
    verdict = Verdict(outcome="pass", at=NOW, step=1, summary="canary 99.9% ok, p99 120 ms")
    moving = phase is Phase.PROGRESSING
    return Rollout(
        id="r1",
        target=Target(namespace="prod", vs="weather", stable="v1", canary="v2"),
        steps=StepPlan(weights=(10, 50, 100), interval_s=300, gates=(100,)),
        phase=phase,
        step=1,
        weight=weight,
        started_by="U0DEV00001",
        channel=CHANNEL,
        created_at=NOW - timedelta(minutes=10),
        updated_at=NOW,
        next_step_at=NOW + timedelta(seconds=95),
        verdicts=(verdict,),
        reason=REASONS[phase],
        # A progressing rollout is caught sending its next weight: both show it as not live.
        writing=Write(id="w1", weight=100, step=2, against="7") if moving else None,
    )


def expected(view: CardView) -> Shown:
    return {
        "emoji": view.phase_emoji,
        "service": view.service,
        "namespace": view.namespace,
        "stable": view.stable,
        "canary": view.canary,
        "bar": view.bar,
        "weight": view.weight,
        "pending": view.pending,
        "phase": view.phase,
        "step": view.step,
        "steps": view.steps,
        "next_step_in": view.next_step_in,
        "last_verdict": view.last_verdict,
        "reason": view.reason,
        "started_by": view.started_by,
        "buttons": [b.action for b in view.buttons],
    }


_PENDING = r"(?: \(setting (?P<pending>\d+)%, not yet live\))?"
_STEP = r"step (?P<step>\d+) of (?P<steps>\d+)(?: · next step (?P<next_step_in>.+))?"
# Slack: the summary's lines, then its fields one to a line (phase, step, next step and when)
_SLACK_SUMMARY = re.compile(
    r"\*(?P<service>[^*]+)\* in (?P<namespace>\S+) · (?P<stable>\S+) → (?P<canary>\S+)\n"
    r"`(?P<bar>[▓░]+)` \*(?P<weight>\d+)%\* to \S+"
    r"(?:\n_setting (?P<pending>\d+)%, not yet live_)?\n"
    r"(?P<emoji>\S+) \*(?P<phase>[a-z-]+)\*\n"
    r"step (?P<step>\d+) of (?P<steps>\d+)"
    r"(?:\nnext step (?P<next_step_in>.+) · <!date\^\d+\^\{time\}\|\d\d:\d\d UTC>)?"
)
_SHELL_HEAD = re.compile(
    r"(?P<emoji>\S+) (?P<service>\S+) in (?P<namespace>\S+) · (?P<stable>\S+) → (?P<canary>\S+)\n"
    rf"(?P<bar>[▓░]+) (?P<weight>\d+)% to \S+{_PENDING}\n"
    rf"(?P<phase>[a-z-]+) · {_STEP}$",
    re.MULTILINE,
)


def fields(match: re.Match[str] | None) -> Shown:
    assert match is not None, "the card's first three lines are not as expected"
    found: Shown = match.groupdict()
    for name in ("weight", "step", "steps"):
        found[name] = int(found[name])
    found["pending"] = None if found["pending"] is None else int(found["pending"])
    return found


def unescaped(mrkdwn: str) -> str:
    """The text as shown: the people Slack mentions (<@U…>) as their IDs, entities decoded."""
    mrkdwn = re.sub(r"<@([UW][A-Z0-9]+)>", r"\1", mrkdwn)
    return mrkdwn.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def read_slack(message: dict[str, Any]) -> Shown:
    """What a Slack card shows, from its blocks."""
    blocks = message["blocks"]
    summary = [blocks[0]["text"]["text"], *(f["text"] for f in blocks[0]["fields"])]
    shown = fields(_SLACK_SUMMARY.fullmatch("\n".join(summary)))
    labelled = {}
    for block in blocks[1:]:
        if block["type"] == "section":
            label, _, value = block["text"]["text"].partition(":* ")
            labelled[label.removeprefix("*")] = unescaped(value)
    [context] = [b for b in blocks if b["type"] == "context"]
    actions = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    return shown | {
        "last_verdict": labelled.get("Last check"),
        "reason": labelled.get("Reason"),
        # Slack mentions the starter (<@U…>), so that it notifies; the shell prints the ID
        "started_by": unescaped(context["elements"][0]["text"].removeprefix("Started by ")),
        "buttons": [e["action_id"].removeprefix("canary:") for e in actions],
    }


def read_shell(text: str) -> Shown:
    """What a shell card shows, from its lines."""
    lines = text.splitlines()
    shown = fields(_SHELL_HEAD.match(text))
    tagged = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in lines[3:] if ": " in line}
    [started] = [line for line in lines if line.startswith("started by ")]
    buttons = re.findall(r"\[([a-z]+)\]", lines[-1]) if lines[-1].startswith("[") else []
    return shown | {
        "last_verdict": tagged.get("last check"),
        "reason": tagged.get("reason"),
        "started_by": started.removeprefix("started by "),
        "buttons": buttons,
    }


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def store(redis_url: str) -> Iterator[RolloutStore]:
    client = connect(redis_url)
    yield RolloutStore(client)
    client.close()


class Adapters:
    """Both notifiers, told the same things; what each one showed."""

    def __init__(self, slack: FakeSlack, store: RolloutStore) -> None:
        self.fake, self.printed = slack, list[str]()
        client = web_client("xoxb-test-token", slack.url + "/api/")
        self.slack = SlackNotifier(client, store, lambda: NOW)
        self.shell = ShellNotifier(self.printed.append, lambda: NOW)

    def notify(self, rollout: Rollout, message: Notify) -> None:
        self.slack.notify(rollout, message)
        self.shell.notify(rollout, message)

    def slack_card(self) -> dict[str, Any]:
        """The card as it stands in the channel now: its one message outside a thread."""
        [card] = [m for m in self.fake.messages(CHANNEL).values() if "thread_ts" not in m]
        return card


@pytest.fixture
def adapters(slack: FakeSlack, store: RolloutStore) -> Adapters:
    return Adapters(slack, store)


@pytest.mark.parametrize("phase", list(Phase), ids=str)
def test_slack_and_the_shell_show_the_same_card(adapters: Adapters, phase: Phase) -> None:
    rollout = rollout_in(phase)

    adapters.notify(rollout, Notify(event="started", text="weather: rollout r1 from v1 to v2"))

    want = expected(card_view(rollout, NOW))
    [printed] = adapters.printed
    assert read_shell(printed) == want
    assert read_slack(adapters.slack_card()) == want


@pytest.mark.parametrize("phase", list(Phase), ids=str)
def test_an_update_shows_the_same_weight_and_phase_in_both(
    adapters: Adapters, phase: Phase
) -> None:
    adapters.notify(rollout_in(Phase.PAUSED), Notify(event="started", text="started"))
    adapters.printed.clear()
    rollout = rollout_in(phase)

    adapters.notify(rollout, Notify(event="note", text="weather: something happened"))

    view = card_view(rollout, NOW)
    [line] = adapters.printed
    match = re.fullmatch(
        r"  ↳ (?P<text>.+)   \[(?P<bar>\S+) (?P<weight>\d+)% (?P<phase>\S+)\]", line
    )
    assert match is not None
    shell = (match["text"], match["bar"], int(match["weight"]), match["phase"])
    card = read_slack(adapters.slack_card())
    [thread] = [c.body for c in adapters.fake.calls_to("chat.postMessage") if "thread_ts" in c.body]
    slack = (thread["text"], card["bar"], card["weight"], card["phase"])
    assert shell == slack == ("weather: something happened", view.bar, view.weight, view.phase)
    assert [c.body["ts"] for c in adapters.fake.calls_to("chat.update")] == [thread["thread_ts"]]


def test_a_reason_with_mrkdwn_in_it_reads_the_same_in_both(adapters: Adapters) -> None:
    reason = "paused by <@U0ONCALL01> & <!channel>: p99 > 500 ms"
    rollout = rollout_in(Phase.PAUSED).model_copy(update={"reason": reason})

    adapters.notify(rollout, Notify(event="started", text="started"))

    [printed] = adapters.printed
    card = adapters.slack_card()
    assert read_shell(printed)["reason"] == read_slack(card)["reason"] == reason
    assert "<!channel>" not in str(card["blocks"])  # escaped for Slack: it pings no one
