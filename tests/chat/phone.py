"""Block Kit as a phone shows it, in text: about 40 columns, for snapshots a person can read.

Prose wraps at the width, as Slack wraps it; code blocks do not (Slack scrolls them sideways,
which is what a phone-first message must not need), so a wide table or diff shows as a line
over the width. Section fields sit two to a row when both fit in half the width, as Slack
lays them out, else one under the other. Date tokens show their fallback text, mentions as
@ID, links as their label (the address on the next line), buttons as [Label].
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any

WIDTH = 40
HALF = WIDTH // 2

_DATE = re.compile(r"<!date\^[0-9]+\^[^|>]*\|([^>]*)>")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")
_GROUP = re.compile(r"<!subteam\^([A-Z0-9]+)(?:\|[^>]*)?>")
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w])_([^_\n]+)_(?![\w])")
_CODE = re.compile(r"`([^`\n]+)`")


def columns(text: str) -> int:
    """How many columns `text` takes in a monospace font: wide characters (emoji) take two,
    combining marks and variation selectors none."""
    width = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Cf"):
            continue
        if 0xFE00 <= ord(char) <= 0xFE0F:
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def plain(mrkdwn: str) -> str:
    """mrkdwn as a reader sees it: markup gone, tokens shown as Slack shows them."""
    text = _DATE.sub(lambda m: m[1], mrkdwn)
    text = _MENTION.sub(lambda m: f"@{m[1]}", text)
    text = _GROUP.sub(lambda m: f"@{m[1]}", text)
    text = _LINK.sub(lambda m: f"{m[2]}↗", text)
    text = _BOLD.sub(lambda m: m[1], text)
    text = _ITALIC.sub(lambda m: m[1], text)
    text = _CODE.sub(lambda m: m[1], text)
    return html.unescape(text)


def wrap(line: str, width: int = WIDTH) -> list[str]:
    """`line` cut at spaces into lines of at most `width` columns (a longer word alone)."""
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and columns(candidate) > width:
            out.append(current)
            current = word
        else:
            current = candidate
    out.append(current)
    return out


def mrkdwn_lines(mrkdwn: str) -> list[str]:
    """Prose wrapped; the lines of ``` code blocks kept as they are, fenced by a rule."""
    lines: list[str] = []
    for i, part in enumerate(mrkdwn.split("```")):
        if i % 2:
            lines.append("┌" + "─" * 10)
            lines += [html.unescape(line) for line in part.strip("\n").splitlines()]
            lines.append("└" + "─" * 10)
        else:
            for line in part.strip("\n").splitlines() if part.strip("\n") else []:
                lines += wrap(plain(line))
    return lines


def _fields(fields: list[dict[str, Any]]) -> list[str]:
    cells = [[*mrkdwn_lines(field["text"])] for field in fields]
    lines: list[str] = []
    for left, right in zip(cells[::2], [*cells[1::2], []], strict=False):
        if all(columns(line) < HALF for line in [*left, *right]):
            for i in range(max(len(left), len(right))):
                a = left[i] if i < len(left) else ""
                b = right[i] if i < len(right) else ""
                lines.append((a + " " * (HALF - columns(a)) + b).rstrip())
        else:
            lines += left + right
    return lines


def block_lines(block: dict[str, Any]) -> list[str]:
    kind = block["type"]
    if kind == "section":
        text = block.get("text", {}).get("text", "")
        return mrkdwn_lines(text) + _fields(block.get("fields", []))
    if kind == "context":
        return wrap(" ".join(plain(e.get("text", "")) for e in block["elements"]))
    if kind == "actions":
        labels = [f"[{e['text']['text']}]" for e in block["elements"]]
        return wrap(" ".join(labels))
    if kind == "divider":
        return ["─" * WIDTH]
    if kind == "header":
        return wrap(block["text"]["text"].upper())
    raise ValueError(f"no phone rendering for a {kind} block")


def render_blocks(blocks: list[dict[str, Any]]) -> str:
    """The blocks, one under the other, a blank line between two."""
    return "\n\n".join("\n".join(block_lines(block)) for block in blocks) + "\n"


def render_message(message: dict[str, Any]) -> str:
    """A message as its blocks show it, or its text when it has none."""
    if message.get("blocks"):
        return render_blocks(message["blocks"])
    return "\n".join(mrkdwn_lines(message["text"])) + "\n"


def too_wide(text: str) -> list[str]:
    return [line for line in text.splitlines() if columns(line) > WIDTH]
