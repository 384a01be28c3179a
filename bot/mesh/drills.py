"""What a fault drill sets on an http route, in Istio's words. Pure.

A drill owns one field of the route: `fault.delay`, `fault.abort`, `retries` or `timeout`. It
is added only where that field is not set, so removing it when the drill ends takes away
exactly what the bot added, and only while it is still what the bot put there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from commands.drill import Drill

Path = tuple[str, ...]


def drill_field(drill: Drill) -> tuple[Path, Any]:
    """(where on the route, what) for `drill`."""
    if drill.kind == "delay":
        return ("fault", "delay"), {
            "fixedDelay": f"{drill.seconds}s",
            "percentage": {"value": float(drill.percent or 0)},
        }
    if drill.kind == "abort":
        return ("fault", "abort"), {
            "httpStatus": drill.status,
            "percentage": {"value": float(drill.percent or 0)},
        }
    if drill.kind == "retries":
        return ("retries",), {"attempts": drill.attempts, "perTryTimeout": f"{drill.seconds}s"}
    return ("timeout",), f"{drill.seconds}s"


def field_at(route: Mapping[str, Any], path: Path) -> Any:
    """The value at `path` in `route`, or None."""
    node: Any = route
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def field_name(path: Path) -> str:
    return ".".join(path)
