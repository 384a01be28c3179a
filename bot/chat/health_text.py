"""A health check as a table: metric | canary | stable | threshold | verdict; in Slack, as a
section per check that reads at phone width.

Only formatting: the rows are the verdict's own, as they were judged, never judged again.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.chat.cards import NAME_MAX, SECTION_MAX, escaped
from bot.rollout.model import Verdict

TABLE_HEADER = ("metric", "canary", "stable", "threshold", "verdict")
ICONS = {"pass": "✅", "fail": "❌", "inconclusive": "❔"}


def health_table(verdict: Verdict) -> str:
    """A monospaced table (for a Slack code block or a terminal), under a one-line verdict.

    A verdict stored before verdicts kept their rows shows its one line alone."""
    head = health_head(verdict)
    if not verdict.rows:
        return head
    rows = [TABLE_HEADER, *verdict.rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return head + "\n```\n" + "\n".join(lines) + "\n```"


# Slack, phone-first: one short section per check, its figures as section fields.

ROWS_MAX = 40  # a message has at most 50 blocks; a verdict has a handful of checks
FIELD_MAX = 2000
_FIELDS = ("canary", "stable", "needs")


def health_head(verdict: Verdict) -> str:
    """The verdict in one line: the message's text and the top of its blocks."""
    return (
        f"{ICONS.get(verdict.outcome, '')} health check at step {verdict.step + 1}: "
        f"{verdict.outcome} — {verdict.summary}"
    )


def health_blocks(verdict: Verdict, *, lead: str = "") -> list[dict[str, Any]]:
    """The check as Block Kit: its one line, then a section per row (icon and metric, then
    canary, stable and the threshold as fields) that reads at phone width."""
    head = escaped(lead + health_head(verdict), SECTION_MAX)
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=head))]
    shown = verdict.rows[:ROWS_MAX]
    blocks += [_row_section(row) for row in shown]
    if len(verdict.rows) > len(shown):
        more = f"and {len(verdict.rows) - len(shown)} more checks"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=more)]))
    return [block.to_dict() for block in blocks]


def _row_section(row: tuple[str, str, str, str, str]) -> SectionBlock:
    metric, canary, stable, threshold, status = row
    title = f"{ICONS.get(status, '')} *{escaped(metric, NAME_MAX)}* {escaped(status, NAME_MAX)}"
    fields = [
        MarkdownTextObject(text=f"_{name}_ {escaped(value, FIELD_MAX - 20)}")
        for name, value in zip(_FIELDS, (canary, stable, threshold), strict=True)
    ]
    return SectionBlock(text=MarkdownTextObject(text=title), fields=fields)
