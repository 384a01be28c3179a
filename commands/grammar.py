"""Small pieces of the command language shared by chat and the CLI. Pure."""

from __future__ import annotations

import re

from bot.mesh.models import DNS1123_LABEL

_DURATION = re.compile(r"^(\d{1,5})([smh])$")
_UNITS = {"s": 1, "m": 60, "h": 3600}
MAX_INTERVAL_S = 86_400


class GrammarError(ValueError):
    """Text that does not parse; the message says what to type instead."""


def parse_service(text: str, default_namespace: str) -> tuple[str, str]:
    """`weather` → (default_namespace, weather); `weather.prod` → (prod, weather)."""
    name, _, namespace = text.strip().lower().partition(".")
    namespace = namespace or default_namespace
    for part in (name, namespace):
        if not DNS1123_LABEL.match(part):
            raise GrammarError(
                f"{text!r} is not a service name: use `name` or `name.namespace`, each in "
                "lower-case letters, digits and '-'"
            )
    return namespace, name


def parse_duration(text: str) -> int:
    """`30s`, `5m`, `1h` → seconds."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise GrammarError(f"{text!r} is not a duration: write it like 30s, 5m or 1h")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not 1 <= seconds <= MAX_INTERVAL_S:
        raise GrammarError(f"{text!r} is out of range: use between 1s and 24h")
    return seconds


def parse_steps(text: str) -> tuple[int, ...]:
    """`5,10,25,50,100` → (5, 10, 25, 50, 100); the rollout checks that they climb to 100."""
    parts = [p.strip().removesuffix("%") for p in text.split(",")]
    if not all(p.isdigit() and p.isascii() for p in parts):
        raise GrammarError(f"{text!r} is not a list of steps: write it like 5,10,25,50,100")
    return tuple(int(p) for p in parts)
