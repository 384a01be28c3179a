"""The rollout card: one description, two renderings (Slack blocks, terminal text) that agree."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import product
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.chat.cards import (
    ACTION_PREFIX,
    CardView,
    card_blocks,
    card_fallback_text,
    card_text,
    card_view,
    parse_action,
    progress_bar,
)
from bot.rollout.model import Phase, Rollout, StepPlan, Target, Verdict

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
WEIGHTS = (5, 10, 25, 50, 100)


def rollout(
    phase: Phase = Phase.PROGRESSING,
    *,
    weight: int = 30,
    step: int = 2,
    next_in: float | None = None,
    verdict: str | None = None,
    reason: str = "",
    vs: str = "weather",
    namespace: str = "default",
    started_by: str = "alice",
) -> Rollout:
    verdicts = (
        () if verdict is None else (Verdict(outcome="pass", at=NOW, step=step, summary=verdict),)
    )
    return Rollout(
        id="1a2b3c4d",
        target=Target(namespace=namespace, vs=vs, stable="v1", canary="v2"),
        steps=StepPlan(weights=WEIGHTS),
        phase=phase,
        step=step,
        weight=weight,
        started_by=started_by,
        created_at=NOW - timedelta(minutes=10),
        updated_at=NOW,
        next_step_at=None if next_in is None else NOW + timedelta(seconds=next_in),
        verdicts=verdicts,
        reason=reason,
        version=7,
    )


def texts(node: Any) -> Iterator[str]:
    """Every `text` string in a block tree, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                yield value
            else:
                yield from texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from texts(item)


def unescape(mrkdwn: str) -> str:
    return mrkdwn.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def actions_block(blocks: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((b for b in blocks if b["type"] == "actions"), None)


def buttons_of(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    actions = actions_block(blocks)
    return [] if actions is None else list(actions["elements"])


# The contract: both renderers show the same facts and the same buttons.


@dataclass(frozen=True)
class Rendering:
    text: str  # what a person reads, buttons aside
    buttons: list[str]


def slack_rendering(view: CardView) -> Rendering:
    blocks = card_blocks(view)
    shown = [b for b in blocks if b["type"] != "actions"]
    actions = [b["action_id"].removeprefix(ACTION_PREFIX) for b in buttons_of(blocks)]
    return Rendering("\n".join(unescape(t) for t in texts(shown)), actions)


BUTTON_LINE = re.compile(r"(\[[a-z]+\] ?)+")


def terminal_rendering(view: CardView) -> Rendering:
    lines = card_text(view).splitlines()
    button_lines = [line for line in lines if BUTTON_LINE.fullmatch(line)]
    rest = [line for line in lines if line not in button_lines]
    return Rendering("\n".join(rest), re.findall(r"\[([a-z]+)\]", " ".join(button_lines)))


RENDERERS: dict[str, Callable[[CardView], Rendering]] = {
    "slack": slack_rendering,
    "terminal": terminal_rendering,
}


def facts(view: CardView) -> list[str]:
    shown = [
        view.service,
        view.namespace,
        view.stable,
        view.canary,
        f"{view.weight}%",
        view.bar,
        view.phase,
        view.phase_emoji,
        f"step {view.step} of {view.steps}",
        view.started_by,
    ]
    optional = (view.next_step_in, view.last_verdict, view.reason)
    return shown + [fact for fact in optional if fact is not None]


CASES = [
    pytest.param(
        rollout(
            phase,
            weight=weight,
            step=WEIGHTS.index(weight) if weight in WEIGHTS else -1,
            next_in=240 if extras else None,
            verdict="success 99.9%, p99 120 ms" if extras else None,
            reason="canary p99 480 ms > 1.2 × stable" if extras else "",
        ),
        id=f"{phase}-{weight}-{'full' if extras else 'bare'}",
    )
    for phase, weight, extras in product(Phase, (0, 5, 30, 100), (False, True))
]


@pytest.mark.parametrize("render", RENDERERS.values(), ids=RENDERERS.keys())
@pytest.mark.parametrize("case", CASES)
def test_both_renderers_show_the_same_facts(
    render: Callable[[CardView], Rendering], case: Rollout
) -> None:
    view = card_view(case, NOW)
    rendering = render(view)
    missing = [fact for fact in facts(view) if fact not in rendering.text]
    assert not missing, f"{missing} not in:\n{rendering.text}"
    assert rendering.buttons == [b.action for b in view.buttons]


def test_the_card_reads_well() -> None:
    view = card_view(rollout(next_in=25, verdict="success 99.9%", reason=""), NOW)
    assert card_text(view) == "\n".join(
        [
            "🔄 weather in default · v1 → v2",
            "▓▓▓░░░░░░░ 30% to v2",
            "progressing · step 3 of 5 · next step in 25s",
            "last check: pass — success 99.9%",
            "started by alice",
            "[pause] [promote] [rollback]",
        ]
    )
    summary = card_blocks(view)[0]
    assert summary["text"]["text"] == "*weather* in default · v1 → v2\n`▓▓▓░░░░░░░` *30%* to v2"
    at = int((NOW + timedelta(seconds=25)).timestamp())
    assert [field["text"] for field in summary["fields"]] == [
        "🔄 *progressing*",
        "step 3 of 5",
        f"next step in 25s · <!date^{at}^{{time}}|03:00 UTC>",
    ]


def test_the_services_drills_are_on_the_card_each_with_its_end() -> None:
    drills = ("fault delay 7s 10% until 03:10:00 UTC", "retries 3 per-try 2s until 03:05:00 UTC")
    view = card_view(rollout(), NOW, drills=drills)
    lines = card_text(view).splitlines()
    assert [line for line in lines if line.startswith("drill: ")] == [f"drill: {d}" for d in drills]
    sections = [b["text"]["text"] for b in card_blocks(view) if b["type"] == "section"]
    assert "*Fault drills:* " + "\n".join(drills) in sections
    assert not any("drill" in line for line in card_text(card_view(rollout(), NOW)).splitlines())


def test_a_weight_not_yet_live_is_said_on_a_line_of_its_own() -> None:
    view = replace(card_view(rollout(), NOW), pending=50)
    assert card_blocks(view)[0]["text"]["text"].splitlines()[1:] == [
        "`▓▓▓░░░░░░░` *30%* to v2",
        "_setting 50%, not yet live_",
    ]


def test_fallback_text_carries_the_gist() -> None:
    view = card_view(rollout(Phase.PAUSED, reason="paused by bob"), NOW)
    assert card_fallback_text(view) == (
        "⏸️ weather in default: 30% to v2, paused, step 3 of 5 — paused by bob"
    )


# The description.


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (25, "in 25s"),
        (0.2, "in 1s"),
        (59, "in 59s"),
        (60, "in 1m"),
        (240, "in 4m"),
        (269, "in 4m"),
        (270, "in 5m"),
        (3600, "in 1h"),
        (3900, "in 1h 5m"),
        (86_400, "in 24h"),
        (0, "due now"),
        (-30, "due now"),
    ],
)
def test_next_step_is_said_in_round_units(seconds: float, expected: str) -> None:
    assert card_view(rollout(next_in=seconds), NOW).next_step_in == expected


@pytest.mark.parametrize("phase", [p for p in Phase if p is not Phase.PROGRESSING])
def test_only_a_progressing_rollout_has_a_next_step(phase: Phase) -> None:
    assert card_view(rollout(phase, next_in=60), NOW).next_step_in is None


def test_view_facts() -> None:
    view = card_view(
        rollout(Phase.FAILED, weight=0, step=1, verdict="error rate 7%", reason="2 failed checks"),
        NOW,
    )
    assert (view.service, view.namespace, view.stable, view.canary) == (
        "weather",
        "default",
        "v1",
        "v2",
    )
    assert (view.phase, view.phase_emoji, view.step, view.steps) == ("failed", "❌", 2, 5)
    assert view.last_verdict == "pass — error rate 7%"
    assert view.reason == "2 failed checks"
    assert view.value == "1a2b3c4d:7"


def test_before_the_first_step_the_card_says_step_0() -> None:
    view = card_view(rollout(Phase.PENDING_APPROVAL, weight=0, step=-1), NOW)
    assert (view.step, view.bar) == (0, "░" * 10)


@pytest.mark.parametrize(
    ("weight", "bar"),
    [
        (0, "░░░░░░░░░░"),
        (1, "▓░░░░░░░░░"),
        (4, "▓░░░░░░░░░"),
        (5, "▓░░░░░░░░░"),
        (14, "▓░░░░░░░░░"),
        (15, "▓▓░░░░░░░░"),
        (25, "▓▓▓░░░░░░░"),
        (30, "▓▓▓░░░░░░░"),
        (50, "▓▓▓▓▓░░░░░"),
        (94, "▓▓▓▓▓▓▓▓▓░"),
        (95, "▓▓▓▓▓▓▓▓▓░"),
        (99, "▓▓▓▓▓▓▓▓▓░"),
        (100, "▓▓▓▓▓▓▓▓▓▓"),
    ],
)
def test_progress_bar_rounds_half_up_and_only_ends_are_empty_or_full(weight: int, bar: str) -> None:
    assert progress_bar(weight) == bar


def test_progress_bar_other_widths() -> None:
    assert progress_bar(5, cells=20) == "▓" + "░" * 19
    assert progress_bar(50, cells=4) == "▓▓░░"
    assert progress_bar(1, cells=2) == "▓░"


@pytest.mark.parametrize(("weight", "cells"), [(-1, 10), (101, 10), (50, 1), (50, 0)])
def test_progress_bar_rejects_nonsense(weight: int, cells: int) -> None:
    with pytest.raises(ValueError, match=r"percentage|cells"):
        progress_bar(weight, cells)


# Slack blocks.


def test_blocks_are_valid_block_kit() -> None:
    blocks = card_blocks(card_view(rollout(verdict="ok", reason="why", next_in=5), NOW))
    assert [b["type"] for b in blocks] == ["section", "section", "section", "context", "actions"]
    assert [b.to_dict() for b in Block.parse_all(blocks)] == blocks


def test_a_finished_card_has_no_actions_block() -> None:
    blocks = card_blocks(card_view(rollout(Phase.PROMOTED, weight=100, step=4), NOW))
    assert [b["type"] for b in blocks] == ["section", "context"]


EXPECTED_BUTTONS = {
    Phase.PROGRESSING: [
        ("canary:pause", "Pause", None),
        ("canary:promote", "Promote", "primary"),
        ("canary:rollback", "Rollback", "danger"),
    ],
    Phase.PAUSED: [
        ("canary:resume", "Resume", None),
        ("canary:promote", "Promote", "primary"),
        ("canary:rollback", "Rollback", "danger"),
    ],
    Phase.PENDING_APPROVAL: [("canary:rollback", "Rollback", "danger")],
    Phase.PROMOTED: [],
    Phase.ROLLED_BACK: [],
    Phase.FAILED: [],
    Phase.APPLIED: [],
}


@pytest.mark.parametrize("phase", list(Phase))
def test_buttons_per_phase(phase: Phase) -> None:
    buttons = buttons_of(card_blocks(card_view(rollout(phase), NOW)))
    shown = [(b["action_id"], b["text"]["text"], b.get("style")) for b in buttons]
    assert shown == EXPECTED_BUTTONS[phase]
    for button in buttons:
        needs_confirm = button["action_id"] in ("canary:promote", "canary:rollback")
        assert ("confirm" in button) == needs_confirm


def confirm_of(phase: Phase, action: str, **kwargs: Any) -> dict[str, Any]:
    buttons = buttons_of(card_blocks(card_view(rollout(phase, **kwargs), NOW)))
    button = next(b for b in buttons if b["action_id"] == ACTION_PREFIX + action)
    confirm: dict[str, Any] = button["confirm"]
    return confirm


@pytest.mark.parametrize("phase", [Phase.PROGRESSING, Phase.PAUSED, Phase.PENDING_APPROVAL])
def test_rollback_asks_first_naming_the_service(phase: Phase) -> None:
    confirm = confirm_of(phase, "rollback")
    assert confirm["title"]["text"] == "Roll back weather?"
    assert confirm["text"] == {
        "type": "plain_text",
        "text": "Send all traffic for weather back to v1? v2 gets 0%.",
    }
    assert (confirm["confirm"]["text"], confirm["deny"]["text"]) == ("Roll back", "Cancel")
    assert confirm["style"] == "danger"


def test_promote_asks_first_naming_the_service() -> None:
    confirm = confirm_of(Phase.PAUSED, "promote")
    assert confirm["title"]["text"] == "Promote weather?"
    assert confirm["text"]["text"] == (
        "Send all traffic for weather to v2 and make v2 the stable subset?"
    )
    assert (confirm["confirm"]["text"], confirm["deny"]["text"]) == ("Promote", "Cancel")


def test_promote_of_a_host_based_canary_names_services_not_subsets() -> None:
    two_services = Target(
        namespace="default",
        vs="weather",
        stable="weather-stable",
        canary="weather-canary",
        by="host",
    )
    made = rollout(Phase.PAUSED).model_copy(update={"target": two_services})
    buttons = buttons_of(card_blocks(card_view(made, NOW)))
    [promote] = [b for b in buttons if b["action_id"] == ACTION_PREFIX + "promote"]
    text = promote["confirm"]["text"]["text"]
    assert text == "Send all traffic for weather to the weather-canary Service?"
    assert "subset" not in text


def test_confirm_names_the_namespace_outside_default() -> None:
    confirm = confirm_of(Phase.PROGRESSING, "rollback", namespace="prod")
    assert confirm["title"]["text"] == "Roll back weather.prod?"


@pytest.mark.parametrize("phase", list(Phase))
def test_button_values_round_trip(phase: Phase) -> None:
    view = card_view(rollout(phase), NOW)
    for button in buttons_of(card_blocks(view)):
        action = button["action_id"].removeprefix(ACTION_PREFIX)
        assert parse_action(button["action_id"], button["value"]) == (action, "1a2b3c4d", 7)


def test_over_long_text_is_cut_not_refused() -> None:
    long = "x" * 400 + " & <b>" * 2000
    view = card_view(
        rollout(vs="w" * 300, started_by="s" * 300, verdict=long, reason=long, next_in=1), NOW
    )
    blocks = card_blocks(view)
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(text) <= 3000 for text in sections)
    assert sections[1].endswith("…") and sections[2].endswith("…")
    for button in buttons_of(blocks):
        assert len(button["text"]["text"]) <= 75
        assert len(button.get("confirm", {}).get("title", {}).get("text", "")) <= 100
        assert len(button.get("confirm", {}).get("text", {}).get("text", "")) <= 300
    assert all(len(b["elements"]) <= 10 for b in blocks if b["type"] == "context")


@pytest.mark.parametrize("cut_at", range(2985, 3000))
def test_cutting_never_leaves_half_an_entity(cut_at: int) -> None:
    reason = "y" * cut_at + "<" * 10
    blocks = card_blocks(card_view(rollout(Phase.PAUSED, reason=reason), NOW))
    text = blocks[1]["text"]["text"]
    assert len(text) <= 3000
    assert re.search(r"&(?!lt;|gt;|amp;)", text) is None


HOSTILE = ["<!channel>", "<https://evil|x>", "<@U024BE7LH>", "<!here> & <!everyone>"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_user_text_cannot_mention_or_link(hostile: str) -> None:
    view = card_view(
        rollout(Phase.FAILED, reason=hostile, verdict=hostile, vs=hostile, started_by=hostile),
        NOW,
    )
    sent = json.dumps(card_blocks(view)) + card_fallback_text(view)
    assert "<" not in sent and ">" not in sent
    assert hostile.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in sent


def test_escaping_in_the_reason() -> None:
    view = card_view(rollout(Phase.PAUSED, reason="<!channel> see <https://evil|x>"), NOW)
    reason = card_blocks(view)[1]["text"]["text"]
    assert reason == "*Reason:* &lt;!channel&gt; see &lt;https://evil|x&gt;"


def test_terminal_text_has_no_control_characters() -> None:
    view = card_view(rollout(Phase.PAUSED, reason="ok\x1b[2J\x07 then\nmore"), NOW)
    text = card_text(view)
    assert "\x1b" not in text and "\x07" not in text
    assert "reason: ok [2J  then more" in text.splitlines()


# Button payloads.


@pytest.mark.parametrize("action", ["pause", "resume", "promote", "rollback"])
def test_parse_action_accepts_ours(action: str) -> None:
    assert parse_action(f"canary:{action}", "abc-12.3_x:0") == (action, "abc-12.3_x", 0)


@pytest.mark.parametrize(
    "action_id",
    ["pause", "other:pause", "canary:", "canary:delete", "CANARY:pause", "canary:pause ", ""],
)
def test_parse_action_rejects_foreign_action_ids(action_id: str) -> None:
    with pytest.raises(ValueError, match="not a canary button"):
        parse_action(action_id, "1a2b3c4d:7")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1a2b3c4d",
        "1a2b3c4d:",
        ":7",
        "1a2b3c4d:-1",
        "1a2b3c4d:+1",
        "1a2b3c4d:1.5",
        "1a2b3c4d:07",
        "1a2b3c4d:7\n",
        "1a2b3c4d: 7",
        "1a2b3c4d:٣",
        "a b:7",
        "a:b:7",
        "<!channel>:7",
        "x" * 65 + ":7",
        "1a2b3c4d:" + "9" * 19,
    ],
)
def test_parse_action_rejects_bad_values(value: str) -> None:
    with pytest.raises(ValueError, match="not a canary button value"):
        parse_action("canary:rollback", value)


@pytest.mark.parametrize(("action_id", "value"), [(None, "a:1"), ("canary:pause", 7)])
def test_parse_action_rejects_non_strings(action_id: Any, value: Any) -> None:
    with pytest.raises(ValueError, match="strings"):
        parse_action(action_id, value)


def test_parse_action_errors_do_not_echo_whole_payloads() -> None:
    with pytest.raises(ValueError) as caught:
        parse_action("canary:pause", "z" * 10_000)
    assert len(str(caught.value)) < 200
