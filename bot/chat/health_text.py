"""A health check as a compact table: metric | canary | stable | threshold | verdict.

Only formatting: the rows are the verdict's own, as they were judged, never judged again.
"""

from __future__ import annotations

from bot.rollout.model import Verdict

TABLE_HEADER = ("metric", "canary", "stable", "threshold", "verdict")
ICONS = {"pass": "✅", "fail": "❌", "inconclusive": "❔"}


def health_table(verdict: Verdict) -> str:
    """A monospaced table (for a Slack code block or a terminal), under a one-line verdict.

    A verdict stored before verdicts kept their rows shows its one line alone."""
    head = (
        f"{ICONS.get(verdict.outcome, '')} health check at step {verdict.step + 1}: "
        f"{verdict.outcome} — {verdict.summary}"
    )
    if not verdict.rows:
        return head
    rows = [TABLE_HEADER, *verdict.rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return head + "\n```\n" + "\n".join(lines) + "\n```"
