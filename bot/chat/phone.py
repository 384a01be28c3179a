"""Chat that reads on a phone: about 40 columns, and times in each reader's own time zone.

Slack shows a date token (`<!date^UNIX^FORMAT|FALLBACK>`) in the time zone of whoever reads
it; the fallback, in UTC, is what clients that cannot format it show, and what a terminal shows.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["PHONE_WIDTH", "phone_diff", "plain_dates", "slack_date", "slack_time"]

PHONE_WIDTH = 40
ANNOTATION_KEY = "canary-bot/last-applied"  # the bot's own record: noise to an approver
_DATE_TOKEN = re.compile(r"<!date\^[0-9]+\^[^|>]*(?:\^[^|>]*)?\|([^>]*)>")
_HEADER = re.compile(r"^(?P<sign>---|\+\+\+) (?P<kind>\w+) (?P<rest>.*)$")
_KINDS = {"VirtualService": "VS", "DestinationRule": "DR"}


def slack_date(at: datetime, *, seconds: bool = False) -> str:
    """`at` as a Slack date token: "Today 3:04 AM" in the reader's zone, UTC text elsewhere."""
    at = at.astimezone(UTC)
    time = "{time_secs}" if seconds else "{time}"
    fallback = f"{at:%Y-%m-%d %H:%M:%S} UTC" if seconds else f"{at:%Y-%m-%d %H:%M} UTC"
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {time}|{fallback}>"


def slack_time(at: datetime) -> str:
    """The time of day of `at` as a Slack date token ("3:04 AM" in the reader's zone)."""
    at = at.astimezone(UTC)
    return f"<!date^{int(at.timestamp())}^{{time}}|{at:%H:%M} UTC>"


def plain_dates(text: str) -> str:
    """`text` with each date token replaced by its fallback, for a terminal."""
    return _DATE_TOKEN.sub(lambda m: m[1], text)


def phone_diff(diff: str, width: int = PHONE_WIDTH) -> str:
    """A unified diff of Kubernetes objects cut to about `width` columns: the bot's own
    annotation (a timestamped record over 100 columns wide) left out, kinds abbreviated, one
    line of context on each side of a change, each hunk's common indentation removed, and any
    longer line continued on the next under the same sign."""
    shown: list[str] = []
    for header, hunk, marked in _hunks(_without_annotation(diff.splitlines())):
        shown += [_short_header(line) for line in header]
        body = _near_changes(hunk)
        if body:
            shown += ["⋯"] if marked else []
            shown += [wrapped for line in _dedented(body) for wrapped in _wrapped(line, width)]
    return "\n".join(shown)


def _hunks(lines: list[str]) -> list[tuple[list[str], list[str], bool]]:
    """(file header lines, hunk body lines, whether it had an @@ line) in order; a header
    comes with its first hunk. Lines before any @@ (a diff cut short) are a hunk of their own."""
    found: list[tuple[list[str], list[str], bool]] = []
    header: list[str] = []
    loose: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("--- ") and lines[i + 1 : i + 2] and lines[i + 1].startswith("+++ "):
            header = [line]
        elif line.startswith("+++ ") and len(header) == 1:
            header.append(line)
        elif line.startswith("@@"):
            found.append((header, [], True))
            header = []
        else:
            (found[-1][1] if found else loose).append(line)
    return [([], loose, False), *found] if loose else found


def _near_changes(hunk: list[str], context: int = 1) -> list[str]:
    changed = [i for i, line in enumerate(hunk) if line[:1] in "+-"]
    return [line for i, line in enumerate(hunk) if any(abs(i - j) <= context for j in changed)]


def _dedented(lines: list[str]) -> list[str]:
    bodies = [line[1:] for line in lines]
    indent = min((len(b) - len(b.lstrip(" ")) for b in bodies if b.strip()), default=0)
    return [line[:1] + body[indent:] for line, body in zip(lines, bodies, strict=True)]


def _without_annotation(lines: list[str]) -> list[str]:
    kept: list[str] = []
    for line in lines:
        if ANNOTATION_KEY in line:
            # an `annotations:` key added only to hold the record goes with it
            if kept and kept[-1][:1] == line[:1] == "+" and kept[-1].strip() == "+  annotations:":
                kept.pop()
            continue
        kept.append(line)
    return kept


def _short_header(line: str) -> str:
    match = _HEADER.match(line)
    if match is None:
        return line
    return f"{match['sign']} {_KINDS.get(match['kind'], match['kind'])} {match['rest']}"


def _wrapped(line: str, width: int) -> list[str]:
    if len(line) <= width:
        return [line]
    sign = line[0] if line[:1] in "+- " else " "
    first, rest = line[:width], line[width:]
    more = width - 3
    return [first, *(f"{sign} …{rest[i : i + more]}" for i in range(0, len(rest), more))]
