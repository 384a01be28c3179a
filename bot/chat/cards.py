"""The living rollout card: one description (`CardView`), rendered for Slack and for a terminal.

`card_view` decides everything the card shows; `card_blocks`, `card_fallback_text` and
`card_text` only lay it out. Slack text is escaped for mrkdwn and cut to Block Kit's limits
with "…", so a long or hostile reason can neither break the message nor ping a channel.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.chat.links import Links
from bot.chat.phone import slack_time
from bot.rollout.model import ApplyWeight, Phase, Rollout, Verdict
from bot.rollout.waves import Wave, WaveState
from commands.model import BUTTONS
from policies import is_user

__all__ = [
    "ACTION_PREFIX",
    "Button",
    "CardView",
    "card_blocks",
    "card_fallback_text",
    "card_text",
    "card_view",
    "escaped",
    "parse_action",
    "progress_bar",
    "with_people",
]

ACTION_PREFIX = "canary:"
_ACTIONS = tuple(verb.value for verb in BUTTONS)
# Notices that end a rollout: its chart goes in the thread after them.
FINAL_EVENTS = frozenset({"promoted", "rollback", "auto-rollback", "abort", "denied"})
CARD_ONLY = "card"  # a notice that only redraws the card (its drills changed): nothing to say
# `<rollout id>:<version>`, the id as `cluster/id` for a wave cluster's rollout
_VALUE = re.compile(
    r"(?P<id>(?:[a-z0-9][a-z0-9-]{0,39}/)?[A-Za-z0-9_.-]{1,64}):(?P<version>0|[1-9][0-9]{0,17})"
)

FILLED, EMPTY, ELLIPSIS = "▓", "░", "…"
_BY_PERSON = re.compile(r"\bby ([UW][A-Z0-9]{2,})\b")

# Block Kit limits (https://docs.slack.dev/reference/block-kit), and our own caps on names so
# that the fixed parts of a section always fit.
SECTION_MAX = 3000
BUTTON_TEXT_MAX = 75
CONFIRM_TITLE_MAX = 100
CONFIRM_TEXT_MAX = 300
CONFIRM_BUTTON_MAX = 30
NAME_MAX = 100
FALLBACK_REASON_MAX = 200

_PHASE_EMOJI = {  # Unicode, so the terminal shows the same as Slack (:arrows_counterclockwise: …)
    Phase.PROGRESSING: "🔄",
    Phase.PAUSED: "⏸️",
    Phase.PENDING_APPROVAL: "⌛",
    Phase.PROMOTED: "✅",
    Phase.ROLLED_BACK: "↩️",
    Phase.FAILED: "❌",
    Phase.APPLIED: "☑️",
}
_BUTTONS_BY_PHASE = {
    Phase.PROGRESSING: ("pause", "promote", "rollback"),
    Phase.PAUSED: ("resume", "promote", "rollback"),
    Phase.PENDING_APPROVAL: ("rollback",),
}


@dataclass(frozen=True)
class Button:
    """A card button; `confirm` is the dialog shown before it acts: (title, text, yes, no)."""

    action: str
    label: str
    style: str | None
    confirm: tuple[str, str, str, str] | None


@dataclass(frozen=True)
class CardView:
    """Everything the card shows, as plain (unescaped) text; renderers use nothing else."""

    service: str
    namespace: str
    stable: str
    canary: str
    weight: int  # what is live
    pending: int | None  # a weight decided and being written, not yet confirmed live
    bar: str
    phase: str
    phase_emoji: str
    step: int
    steps: int
    next_step_in: str | None
    next_step_at: datetime | None
    last_verdict: str | None
    reason: str | None
    started_by: str
    buttons: tuple[Button, ...]
    value: str
    links: tuple[tuple[str, str], ...] = ()  # (label, URL): the service in Grafana, Kiali…
    cohort: str | None = None  # the cohort routed to the canary, as typed after `cohort`
    cluster: str | None = None  # the wave cluster the rollout is on (None: the bot's own)
    wave: str | None = None  # that wave's clusters in order: `wave: canary-eu ✓ → prod-eu`
    drills: tuple[str, ...] = ()  # the service's fault drills going on, each with its end


# The description.


def card_view(
    rollout: Rollout,
    now: datetime,
    links: Links | None = None,
    *,
    cluster: str | None = None,
    wave: Wave | None = None,
    drills: Sequence[str] = (),
) -> CardView:
    """What the card of `rollout` shows at `now`. The reason is shown whenever one is set;
    `links` are the observability add-ons' URL templates, if any are set. A wave cluster's
    rollout names its `cluster` (and its buttons carry it), with the `wave` it is part of."""
    target = rollout.target
    ref = rollout.id if cluster is None else f"{cluster}/{rollout.id}"
    return CardView(
        service=target.vs,
        namespace=target.namespace,
        stable=target.stable,
        canary=target.canary,
        weight=rollout.weight,
        pending=_pending_weight(rollout),
        bar=progress_bar(rollout.weight),
        phase=str(rollout.phase),
        phase_emoji=_PHASE_EMOJI[rollout.phase],
        step=max(rollout.step + 1, 0),
        steps=len(rollout.steps.weights),
        next_step_in=_next_step_in(rollout, now),
        next_step_at=rollout.next_step_at if rollout.phase is Phase.PROGRESSING else None,
        last_verdict=_verdict_text(rollout.last_verdict),
        reason=rollout.reason or None,
        started_by=rollout.started_by,
        buttons=_buttons(rollout),
        value=f"{ref}:{rollout.version}",
        links=links.for_target(target) if links is not None else (),
        cohort=None if rollout.cohort is None else rollout.cohort.text,
        cluster=cluster,
        wave=None if cluster is None else _wave_order(cluster, wave),
        drills=tuple(drills),
    )


def _wave_order(cluster: str, wave: Wave | None) -> str | None:
    """`wave: canary-eu ✓ → prod-eu → prod-us`, the promoted clusters ticked."""
    if wave is None or cluster not in wave.clusters:
        return None
    order = " → ".join(f"{c} ✓" if c in wave.promoted else c for c in wave.clusters)
    return f"{'wave halted' if wave.state is WaveState.HALTED else 'wave'}: {order}"


def _pending_weight(rollout: Rollout) -> int | None:
    if rollout.writing is not None:
        return rollout.writing.weight
    head = rollout.pending[0] if rollout.pending else None
    if isinstance(head, ApplyWeight) and head.weight != rollout.weight:
        return head.weight
    return None


def progress_bar(weight: int, cells: int = 10) -> str:
    """`weight` percent as `cells` cells, rounded half up.

    Only 0 is an empty bar and only 100 a full one: 1% shows one ▓, 99% still shows one ░.
    """
    if not 0 <= weight <= 100:
        raise ValueError(f"a weight is a percentage from 0 to 100, not {weight}")
    if cells < 2:
        raise ValueError(f"a progress bar needs at least 2 cells, not {cells}")
    filled = (weight * cells * 2 + 100) // 200
    filled = min(max(filled, int(weight > 0)), cells - int(weight < 100))
    return FILLED * filled + EMPTY * (cells - filled)


def _next_step_in(rollout: Rollout, now: datetime) -> str | None:
    if rollout.phase is not Phase.PROGRESSING or rollout.next_step_at is None:
        return None
    seconds = math.ceil((rollout.next_step_at - now).total_seconds())
    if seconds <= 0:
        return "due now"
    if seconds < 60:
        return f"in {seconds}s"
    hours, minutes = divmod((seconds + 30) // 60, 60)
    if not hours:
        return f"in {minutes}m"
    return f"in {hours}h {minutes}m" if minutes else f"in {hours}h"


def _verdict_text(verdict: Verdict | None) -> str | None:
    if verdict is None:
        return None
    return f"{verdict.outcome} — {verdict.summary}" if verdict.summary else verdict.outcome


def _buttons(rollout: Rollout) -> tuple[Button, ...]:
    made = {
        "pause": Button("pause", "Pause", None, None),
        "resume": Button("resume", "Resume", None, None),
        "promote": _promote_button(rollout),
        "rollback": _rollback_button(rollout),
    }
    return tuple(made[action] for action in _BUTTONS_BY_PHASE.get(rollout.phase, ()))


def _promote_button(rollout: Rollout) -> Button:
    service, canary = rollout.target.service, rollout.target.canary
    text = f"Send all traffic for {service} to {canary} and make {canary} the stable subset?"
    if rollout.target.by == "host":  # two Services: the canary's takes all, no subset moves
        text = f"Send all traffic for {service} to the {canary} Service?"
    return Button(
        "promote", "Promote", "primary", (f"Promote {service}?", text, "Promote", "Cancel")
    )


def _rollback_button(rollout: Rollout) -> Button:
    service, stable, canary = (
        rollout.target.service,
        rollout.target.stable,
        rollout.target.canary,
    )
    text = f"Send all traffic for {service} back to {stable}? {canary} gets 0%."
    return Button(
        "rollback", "Rollback", "danger", (f"Roll back {service}?", text, "Roll back", "Cancel")
    )


# Slack.


def card_blocks(view: CardView) -> list[dict[str, Any]]:
    """The card as Block Kit blocks, built (and so checked) by slack_sdk's models: short lines
    and section fields that read on a phone, the next step's time in the reader's zone."""
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=_summary_mrkdwn(view)), fields=_fields(view))
    ]
    if view.cluster is not None:
        blocks.append(_labelled_section("Cluster", _where(view)))
    if view.cohort is not None:
        blocks.append(_labelled_section("Cohort", f"{view.cohort} → {view.canary}"))
    if view.drills:
        blocks.append(_labelled_section("Fault drills", "\n".join(view.drills)))
    if view.last_verdict is not None:
        blocks.append(_labelled_section("Last check", view.last_verdict))
    if view.reason is not None:
        blocks.append(_labelled_section("Reason", view.reason, people=True))
    started = f"Started by {_person(view.started_by)}"
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=started)]))
    if view.links:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_links_mrkdwn(view))]))
    if view.buttons:
        blocks.append(ActionsBlock(elements=[_slack_button(b, view.value) for b in view.buttons]))
    return [block.to_dict() for block in blocks]


def _links_mrkdwn(view: CardView) -> str:
    """Each add-on as a link labelled with its name; `&`, `<` and `>` in a URL are escaped as
    Slack asks, and `|` percent-encoded so it cannot end the address early."""
    return " · ".join(f"<{_link_url(url)}|{label}>" for label, url in view.links)


def _link_url(url: str) -> str:
    escaped_url = url.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped_url.replace("|", "%7C")


def card_fallback_text(view: CardView) -> str:
    """The message's `text`: what notifications and screen readers get instead of the blocks."""
    text = (
        f"{view.phase_emoji} {_mrkdwn(view.service, NAME_MAX)} in "
        f"{_mrkdwn(view.namespace, NAME_MAX)}{_on_cluster(view)}: {view.weight}% to "
        f"{_mrkdwn(view.canary, NAME_MAX)}, {view.phase}, step {view.step} of {view.steps}"
    )
    if view.reason is not None:
        text += f" — {_mrkdwn(view.reason, FALLBACK_REASON_MAX)}"
    return text


def _on_cluster(view: CardView) -> str:
    return "" if view.cluster is None else f" on {_mrkdwn(view.cluster, NAME_MAX)}"


def _where(view: CardView) -> str:
    """`prod-eu (wave: canary-eu ✓ → prod-eu → prod-us)`."""
    return f"{view.cluster} ({view.wave})" if view.wave else str(view.cluster)


def _summary_mrkdwn(view: CardView) -> str:
    service, namespace = _mrkdwn(view.service, NAME_MAX), _mrkdwn(view.namespace, NAME_MAX)
    stable, canary = _mrkdwn(view.stable, NAME_MAX), _mrkdwn(view.canary, NAME_MAX)
    lines = [
        f"*{service}* in {namespace} · {stable} → {canary}",
        f"`{view.bar}` *{view.weight}%* to {canary}",
    ]
    if view.pending is not None:
        lines.append(f"_setting {view.pending}%, not yet live_")
    return "\n".join(lines)


def _fields(view: CardView) -> list[MarkdownTextObject]:
    shown = [f"{view.phase_emoji} *{view.phase}*", f"step {view.step} of {view.steps}"]
    if view.next_step_in is not None:
        at = f" · {slack_time(view.next_step_at)}" if view.next_step_at is not None else ""
        shown.append(f"next step {view.next_step_in}{at}")
    return [MarkdownTextObject(text=text) for text in shown]


def _pending_text(view: CardView) -> str:
    return "" if view.pending is None else f" (setting {view.pending}%, not yet live)"


def _labelled_section(label: str, raw: str, *, people: bool = False) -> SectionBlock:
    prefix = f"*{label}:* "
    limit = SECTION_MAX - len(prefix)
    text = with_people(raw, limit) if people else _mrkdwn(raw, limit)
    return SectionBlock(text=MarkdownTextObject(text=prefix + text))


def with_people(raw: str, limit: int = SECTION_MAX) -> str:
    """`raw` escaped for mrkdwn, with the people it names as who did something ("by U…",
    IDs the bot itself wrote from Slack's user_id) turned into mentions. Whatever else is in
    `raw` stays inert: `<`, `>` and `&` are escaped before the bot adds its own tokens."""
    return _BY_PERSON.sub(lambda m: f"by <@{m[1]}>", _mrkdwn(raw, limit))


def escaped(raw: str, limit: int = SECTION_MAX) -> str:
    """Text someone typed, for mrkdwn: shown as typed, never a mention or a link."""
    return _mrkdwn(raw, limit)


def _person(who: str) -> str:
    return f"<@{who}>" if is_user(who) else _mrkdwn(who, NAME_MAX)


def _slack_button(button: Button, value: str) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text=_fit(button.label, BUTTON_TEXT_MAX)),
        action_id=ACTION_PREFIX + button.action,
        value=value,
        style=button.style,
        confirm=_confirm(button),
    )


def _confirm(button: Button) -> ConfirmObject | None:
    if button.confirm is None:
        return None
    title, text, yes, no = button.confirm
    return ConfirmObject(
        title=PlainTextObject(text=_fit(title, CONFIRM_TITLE_MAX)),
        text=PlainTextObject(text=_fit(text, CONFIRM_TEXT_MAX)),
        confirm=PlainTextObject(text=_fit(yes, CONFIRM_BUTTON_MAX)),
        deny=PlainTextObject(text=_fit(no, CONFIRM_BUTTON_MAX)),
        style=button.style,
    )


def _mrkdwn(raw: str, limit: int) -> str:
    """`raw` escaped for mrkdwn (no mentions, no links) and cut to `limit` characters."""
    text = raw.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]  # never leave half an entity behind
    return cut + ELLIPSIS


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


# Terminal.


def card_text(view: CardView) -> str:
    """The card as lines of text for `canary-bot shell`; buttons as `[pause] [rollback]`."""
    lines = [
        f"{view.phase_emoji} {view.service} in {view.namespace} · {view.stable} → {view.canary}",
        f"{view.bar} {view.weight}% to {view.canary}{_pending_text(view)}",
        f"{view.phase} · {_step_line(view)}",
    ]
    if view.cluster is not None:
        lines.append(f"cluster: {_where(view)}")
    if view.cohort is not None:
        lines.append(f"cohort: {view.cohort} → {view.canary}")
    lines += [f"drill: {drill}" for drill in view.drills]
    if view.last_verdict is not None:
        lines.append(f"last check: {view.last_verdict}")
    if view.reason is not None:
        lines.append(f"reason: {view.reason}")
    lines.append(f"started by {view.started_by}")
    lines += [f"{label.lower()}: {url}" for label, url in view.links]
    if view.buttons:
        lines.append(" ".join(f"[{button.action}]" for button in view.buttons))
    return "\n".join(_printable(line) for line in lines)


def _printable(line: str) -> str:
    """No control characters: a reason cannot move the cursor or recolour the terminal."""
    return "".join(char if char.isprintable() else " " for char in line)


def _step_line(view: CardView) -> str:
    step = f"step {view.step} of {view.steps}"
    return f"{step} · next step {view.next_step_in}" if view.next_step_in else step


# Button payloads.


def parse_action(action_id: str, value: str) -> tuple[str, str, int]:
    """(action, rollout id, rollout version) from a tapped button; ValueError if it is not ours."""
    if not isinstance(action_id, str) or not isinstance(value, str):
        raise ValueError("a button's action_id and value are strings")
    action = action_id.removeprefix(ACTION_PREFIX)
    if action == action_id or action not in _ACTIONS:
        raise ValueError(f"not a canary button: action_id {action_id[:40]!r}")
    match = _VALUE.fullmatch(value)
    if match is None:
        raise ValueError(f"not a canary button value (<rollout id>:<version>): {value[:40]!r}")
    return action, match["id"], int(match["version"])
