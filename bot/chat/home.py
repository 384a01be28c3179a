"""The App Home tab: every rollout going on that the viewer may act on, as its card, with the
buttons the policy lets them press — the one place on a phone to see what is moving.

Pure: the views and the actions allowed come in; a Block Kit home view goes out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from slack_sdk.models.blocks import (
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.chat.cards import CardView, card_blocks, escaped

__all__ = ["BLOCKS_MAX", "HOME_CALLBACK", "home_view", "with_actions"]

BLOCKS_MAX = 100  # a home view's limit
HOME_CALLBACK = "canary-home"
_TITLE = "Rollouts you can act on"


def with_actions(view: CardView, allowed: Sequence[str]) -> CardView | None:
    """`view` with only the buttons in `allowed`; None when none is left to press."""
    buttons = tuple(b for b in view.buttons if b.action in allowed)
    return replace(view, buttons=buttons) if buttons else None


def home_view(cards: Sequence[CardView], *, notice: str | None = None) -> dict[str, Any]:
    """The home tab: a title, what the viewer's last press came to (`notice`), then each card
    under a divider; cards past Slack's 100 blocks are counted, not shown."""
    head: list[dict[str, Any]] = [HeaderBlock(text=PlainTextObject(text=_TITLE)).to_dict()]
    if notice:
        head.append(_mrkdwn_section(escaped(notice, 2900)))
    body: list[dict[str, Any]] = []
    shown = 0
    for card in cards:
        blocks = [DividerBlock().to_dict(), *card_blocks(card)]
        if len(head) + len(body) + len(blocks) + 1 > BLOCKS_MAX:
            break
        body += blocks
        shown += 1
    tail = _tail(len(cards), shown)
    view = View(type="home", callback_id=HOME_CALLBACK, blocks=[*head, *body, *tail])
    return view.to_dict()


def _tail(total: int, shown: int) -> list[dict[str, Any]]:
    if total == 0:
        text = "Nothing is moving that you may act on. `/canary list` shows every rollout."
        return [_mrkdwn_section(text)]
    if shown < total:
        more = f"{total - shown} more not shown here: `/canary list` shows every rollout."
        return [ContextBlock(elements=[MarkdownTextObject(text=more)]).to_dict()]
    return []


def _mrkdwn_section(text: str) -> dict[str, Any]:
    return SectionBlock(text=MarkdownTextObject(text=text)).to_dict()
