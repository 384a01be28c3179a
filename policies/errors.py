"""What a refused policy file says: every problem, each with its line and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a policy file. `path` is like `rules[0].allow.promote[1]`."""

    line: int
    path: str
    message: str

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PolicyError(ValueError):
    """A policy file that cannot be used; the message lists every problem, one a line."""

    def __init__(self, source: str, problems: tuple[Problem, ...]) -> None:
        self.source = source
        self.problems = tuple(sorted(problems, key=lambda p: p.line))
        super().__init__("\n".join(p.render(source) for p in self.problems))
