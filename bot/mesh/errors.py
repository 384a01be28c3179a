"""Errors of the traffic core. Every message names the object and says what to do."""

from __future__ import annotations


class MeshError(Exception):
    """Base of every error raised by bot.mesh."""


class InvalidRequest(MeshError):
    """The request itself is wrong (weight out of range, bad name, ...)."""


class PlanError(MeshError):
    """The live objects do not allow the requested change as asked."""


class TurnTaken(PlanError):
    """A wave's rollout would start where a rollout of the same wave has its canary already."""


class AmbiguousCanary(PlanError):
    """More than one subset could be the canary; the user must name one."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


class InvalidObject(MeshError):
    """An object (live or planned) breaks the Istio schema or a semantic rule."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


class NotFound(MeshError):
    """The API server has no such object."""


class Forbidden(MeshError):
    """The API server refused access (RBAC)."""


class Conflict(MeshError):
    """The object kept changing under us, or someone else moved the weights."""


class Moved(Conflict):
    """A guarded write found the object changed since it was read; `live` is what is there now."""

    def __init__(self, message: str, live: dict[str, object]) -> None:
        super().__init__(message)
        self.live = live


class ApiError(MeshError):
    """Any other failure talking to the Kubernetes API."""


class Drift(Conflict):
    """The live weights are not what the bot set last: someone edited them by hand."""

    def __init__(self, message: str, *, found: int, expected: int) -> None:
        super().__init__(message)
        self.found, self.expected = found, expected


class NoReadyPods(PlanError):
    """The canary subset selects no pod that is ready: traffic sent there would fail."""
