"""A health check as a compact table: metric | canary | stable | threshold | verdict."""

from __future__ import annotations

from bot.health.verdict import TABLE_HEADER, Thresholds, table
from bot.rollout.model import Verdict

ICONS = {"pass": "✅", "fail": "❌", "inconclusive": "❔"}


def health_table(verdict: Verdict, thresholds: Thresholds) -> str:
    """A monospaced table (for a Slack code block or a terminal), under a one-line verdict."""
    rows = [TABLE_HEADER, *table(verdict, thresholds)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    head = (
        f"{ICONS.get(verdict.outcome, '')} health check at step {verdict.step + 1}: "
        f"{verdict.outcome} — {verdict.summary}"
    )
    return head + "\n```\n" + "\n".join(line.rstrip() for line in lines) + "\n```"
