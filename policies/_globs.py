"""fnmatch globs over Kubernetes names: validation, specificity, and whether two can overlap.

Specificity of a rule is compared as a tuple, larger first:
  1. fewer wildcards across its namespace and vs globs (`*`, `?` and each `[...]` count one),
  2. then more literal characters before the first wildcard (summed over both globs),
  3. then more literal characters in all (summed over both globs).
"""

from __future__ import annotations

import fnmatch
import string
from collections import deque
from dataclasses import dataclass

NAME_CHARS = frozenset(string.ascii_lowercase + string.digits + "-.")
_PICK_ORDER = string.ascii_lowercase + string.digits + "-."


class GlobError(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    """`*` (star), or one character out of `chars` (or out of all but `chars`, if negated)."""

    star: bool = False
    chars: frozenset[str] = frozenset()
    negated: bool = False

    @property
    def literal(self) -> bool:
        return not self.star and not self.negated and len(self.chars) == 1

    def accepts(self, char: str) -> bool:
        return self.star or (char in self.chars) != self.negated


STAR = Token(star=True)
ANY = Token(negated=True)


def tokens(glob: str) -> tuple[Token, ...]:
    """Split a glob into tokens, refusing what could never match a Kubernetes name."""
    if not glob:
        raise GlobError("the glob is empty; write a name, or * for any")
    out: list[Token] = []
    i = 0
    while i < len(glob):
        token, i = _next_token(glob, i)
        out.append(token)
    return tuple(out)


def _next_token(glob: str, i: int) -> tuple[Token, int]:
    char = glob[i]
    if char == "*":
        return STAR, i + 1
    if char == "?":
        return ANY, i + 1
    if char == "[":
        return _char_class(glob, i)
    if char not in NAME_CHARS:
        raise GlobError(
            f"{char!r} cannot appear in a Kubernetes name; use lower-case letters, digits, "
            "'-' and '.', with the wildcards *, ? and [...]"
        )
    return Token(chars=frozenset(char)), i + 1


def _char_class(glob: str, i: int) -> tuple[Token, int]:
    end = glob.find("]", i + 1)
    if end == -1:
        raise GlobError(f"'[' at position {i + 1} is never closed; add ']' (e.g. [0-9])")
    body = glob[i + 1 : end]
    negated = body.startswith("!")
    chars = _class_chars(body[1:] if negated else body)
    return Token(chars=chars, negated=negated), end + 1


def _class_chars(body: str) -> frozenset[str]:
    if not body:
        raise GlobError("'[]' is empty; list the characters it may match, e.g. [abc] or [0-9]")
    chars: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            chars.update(_char_range(body[i], body[i + 2]))
            i += 3
        else:
            chars.add(body[i])
            i += 1
    if bad := sorted(chars - NAME_CHARS):
        raise GlobError(
            f"{''.join(bad)!r} in [...] cannot appear in a Kubernetes name; use lower-case "
            "letters, digits, '-' and '.'"
        )
    return frozenset(chars)


def _char_range(low: str, high: str) -> set[str]:
    if low > high:
        raise GlobError(f"the range {low}-{high} runs backwards; write {high}-{low}")
    return {chr(c) for c in range(ord(low), ord(high) + 1)}


def specificity(*globs: str) -> tuple[int, int, int]:
    """See the module docstring; larger is more specific."""
    wildcards = prefix = literals = 0
    for glob in globs:
        toks = tokens(glob)
        wildcards += sum(not t.literal for t in toks)
        literals += sum(t.literal for t in toks)
        prefix += next((i for i, t in enumerate(toks) if not t.literal), len(toks))
    return (-wildcards, prefix, literals)


def common_name(a: str, b: str) -> str | None:
    """A name both globs match, or None when no name can match both."""
    ta, tb = tokens(a), tokens(b)
    start = (0, 0)
    came_from: dict[tuple[int, int], tuple[tuple[int, int], str]] = {start: (start, "")}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if state == (len(ta), len(tb)):
            return _spell(came_from, state) or "a"  # "" only when both are all stars
        for nxt, char in _moves(ta, tb, state):
            if nxt not in came_from:
                came_from[nxt] = (state, char)
                queue.append(nxt)
    return None


def _moves(
    ta: tuple[Token, ...], tb: tuple[Token, ...], state: tuple[int, int]
) -> list[tuple[tuple[int, int], str]]:
    i, j = state
    a = ta[i] if i < len(ta) else None
    b = tb[j] if j < len(tb) else None
    moves: list[tuple[tuple[int, int], str]] = []
    if a is not None and a.star:
        moves.append(((i + 1, j), ""))  # the star matches nothing more
    if b is not None and b.star:
        moves.append(((i, j + 1), ""))
    if a is not None and b is not None and (char := _shared_char(a, b)) is not None:
        moves.append(((i if a.star else i + 1, j if b.star else j + 1), char))
    return moves


def _shared_char(a: Token, b: Token) -> str | None:
    return next((c for c in _PICK_ORDER if a.accepts(c) and b.accepts(c)), None)


def _spell(
    came_from: dict[tuple[int, int], tuple[tuple[int, int], str]], state: tuple[int, int]
) -> str:
    chars: list[str] = []
    while state != (0, 0):
        state, char = came_from[state]
        chars.append(char)
    return "".join(reversed(chars))


def matches(glob: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, glob)
