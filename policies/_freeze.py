"""Clock arithmetic for freeze windows, on local wall-clock time (so it is DST-safe)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY = 24 * 60
WEEK = 7 * DAY
_CLOCK = re.compile(r"^(?:(mon|tue|wed|thu|fri|sat|sun)\s+)?([01]?\d|2[0-4]):([0-5]\d)$")


@dataclass(frozen=True)
class Clock:
    """`16:00` (day None) or `fri 16:00`; `minute` counts from midnight, 24:00 is 1440."""

    day: int | None
    minute: int


def parse_clock(text: str) -> Clock:
    match = _CLOCK.match(text.strip().lower())
    if not match or (match[2] == "24" and match[3] != "00"):
        raise ValueError(
            f"{text!r} is not a time of day; write HH:MM on a 24-hour clock, e.g. '16:00' "
            "(or 'fri 16:00' for a span across days)"
        )
    day = WEEKDAYS.index(match[1]) if match[1] else None
    return Clock(day, int(match[2]) * 60 + int(match[3]))


def daily_spans(days: tuple[int, ...], start: int, end: int) -> tuple[tuple[int, int], ...]:
    """From `start` to `end` on each day, into the next day when `end` is not after `start`."""
    length = end - start if end > start else end + DAY - start
    return tuple((day * DAY + start, day * DAY + start + length) for day in days)


def weekly_span(start: Clock, end: Clock) -> tuple[int, int]:
    """From `fri 16:00` to `mon 09:00`: minutes since Monday 00:00; the end may pass Sunday."""
    first = (start.day or 0) * DAY + start.minute
    last = (end.day or 0) * DAY + end.minute
    return first, last if last > first else last + WEEK


def minute_of_week(local: datetime) -> int:
    return local.weekday() * DAY + local.hour * 60 + local.minute


def span_end(spans: tuple[tuple[int, int], ...], local: datetime) -> datetime | None:
    """When the latest span holding `local` ends, as a wall-clock time; None if none holds it."""
    now = minute_of_week(local)
    left = [
        end - minute
        for start, end in spans
        for minute in (now, now + WEEK)
        if start <= minute < end
    ]
    if not left:
        return None
    return local.replace(second=0, microsecond=0) + timedelta(minutes=max(left))
