"""Lists in pages, as the real API server serves them (`limit` and `continue`).

A list with `limit=N` gets the first N objects in key order (namespace, then name) and, if any
key is left after them, a `metadata.continue` token and `metadata.remainingItemCount` (left out
where a selector chose the objects, as the count is of keys). A list with that token gets the
next page as things stood at the first page's resourceVersion: objects written since are seen
as they were, and the listing says that resourceVersion. The token is the real server's:
unpadded base64url of `{"v":"meta.k8s.io/v1","rv":<revision>,"start":"<key after the last one>"}`.

Functions here raise ValueError with the real server's words for a 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

_VERSION = "meta.k8s.io/v1"


@dataclass(frozen=True)
class Continue:
    """Where a paged list goes on: the revision of its first page, and the key to start at."""

    revision: int
    start: str

    def encode(self) -> str:
        token = {"v": _VERSION, "rv": self.revision, "start": self.start}
        data = json.dumps(token, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next: Continue | None  # None on the last page
    remaining: int  # objects after this page


def parse_limit(text: str) -> int:
    """The `limit` of a list; 0 (or none) for all of it."""
    if text == "":
        return 0
    try:
        return max(int(text), 0)
    except ValueError:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax') from None


def decode_continue(token: str) -> Continue:
    """A `continue` token, as the server made it."""
    try:
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        parsed = json.loads(data)
    except (binascii.Error, ValueError) as error:
        raise _invalid(str(error)) from None
    if not isinstance(parsed, dict) or parsed.get("v") != _VERSION:
        raise _invalid("server does not recognize this encoded version")
    revision, start = parsed.get("rv"), parsed.get("start")
    if not isinstance(revision, int) or revision <= 0:
        raise _invalid(f"incorrect encoded start resourceVersion (version {_VERSION})")
    if not isinstance(start, str) or not start:
        raise _invalid(f"encoded start key empty (version {_VERSION})")
    return Continue(revision, start)


def page_of(
    keyed: Sequence[tuple[str, Any]],
    chosen: Callable[[Any], bool],
    *,
    limit: int,
    start: str,
    revision: int,
) -> Page:
    """The page of the `chosen` of `keyed` (items by key, in key order) from key `start` (""
    for the first), `limit` long (0: all). As in etcd, a page that is full says where the next
    starts if any key is left after it, chosen or not."""
    after = [(key, item) for key, item in keyed if key >= start]
    shown: list[Any] = []
    for index, (key, item) in enumerate(after):
        if not chosen(item):
            continue
        shown.append(item)
        if limit > 0 and len(shown) == limit and index + 1 < len(after):
            left = len(after) - index - 1
            return Page(shown, Continue(revision, key + "\x00"), left)
    return Page(shown, None, 0)


def _invalid(reason: str) -> ValueError:
    return ValueError(f"invalid continue token: continue key is not valid: {reason}")
