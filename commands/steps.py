"""The one rule for a rollout's steps, wherever they are written: chat, a policy file, the CLI."""

from __future__ import annotations

EXAMPLE = "5,10,25,50,100"


def steps_problem(steps: tuple[int, ...], example: str = EXAMPLE) -> str | None:
    """Why `steps` cannot be walked (percentages that climb, each above the last, to 100), in
    words that end with how to write them; None when they can."""
    if not steps or any(not 1 <= step <= 100 for step in steps):
        return f"steps are percentages from 1 to 100; write them like {example}"
    if list(steps) != sorted(set(steps)):
        return (
            f"steps must climb, each above the last; write them like {example}, not {_shown(steps)}"
        )
    if steps[-1] != 100:
        return f"the last step must be 100 so the canary is promoted; write them like {example}"
    return None


def _shown(steps: tuple[int, ...]) -> str:
    return ",".join(str(step) for step in steps)
