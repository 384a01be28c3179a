"""Errors of the Redis store. Every message names the object and says what to do."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit


class StoreError(Exception):
    """Base of every error raised by bot.store."""


class StoreUnavailable(StoreError):
    """Redis could not be reached, or refused the command; nothing was changed."""

    def __init__(self, where: str, cause: BaseException) -> None:
        self.where = mask_url(where)
        self.cause = f"{type(cause).__name__}: {cause}"
        what = next((text for names, text in _UNAVAILABLE if _is_a(cause, *names)), _REFUSED)
        super().__init__(f"Redis at {self.where} {what.format(cause=self.cause)}")


# Matched by class name so this module stays free of the redis import (it is pure).
_UNAVAILABLE: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("AuthenticationError", "AuthenticationWrongNumberOfArgsError"),
        "refused our credentials ({cause}); nothing was changed; "
        "check the user and password in REDIS_URL",
    ),
    (
        ("TimeoutError",),
        "did not answer in time ({cause}); the last write may or may not have landed, "
        "so reload the rollout before trying again; check that Redis is up and not overloaded",
    ),
    (
        ("ConnectionError", "OSError"),
        "cannot be reached ({cause}); the rollout state is safe there, nothing was changed; "
        "check REDIS_URL and that Redis is up",
    ),
)
_REFUSED = (
    "refused the command ({cause}); nothing was changed; "
    "check that REDIS_URL points at a writable Redis primary (6.2 or newer)"
)


class WaveNotFound(StoreError):
    def __init__(self, wave_id: str) -> None:
        super().__init__(f"no wave {wave_id} in Redis; finished waves are kept for 30 days")


class VersionConflict(StoreError):
    """Someone else wrote the rollout record first: reload it and decide again."""

    def __init__(self, rollout_id: str, expected: int, found: int | None) -> None:
        self.rollout_id, self.expected, self.found = rollout_id, expected, found
        if expected == 0:  # from create(): the id is taken
            super().__init__(f"rollout id {rollout_id} is already taken; pick a new id")
            return
        found_text = "no record" if found is None else f"version {found}"
        super().__init__(
            f"rollout {rollout_id} changed under us: expected version {expected}, "
            f"found {found_text}; reload it and try again"
        )


class RolloutFinished(StoreError):
    """A finished rollout cannot be made active again: that would bypass the per-VS lock."""

    def __init__(self, rollout_id: str) -> None:
        self.rollout_id = rollout_id
        super().__init__(
            f"rollout {rollout_id} is already finished and cannot be reopened; "
            "start a new rollout instead"
        )


class AlreadyActive(StoreError):
    """Another rollout is active on the same VirtualService."""

    def __init__(
        self, *, key: str, service: str, rollout_id: str, phase: str, started_by: str
    ) -> None:
        self.key, self.rollout_id, self.phase, self.started_by = key, rollout_id, phase, started_by
        super().__init__(
            f"VirtualService {key} already has an active rollout {rollout_id} "
            f"({phase}, started by {started_by}); see `/canary {service} status`, "
            f"and roll it back or abort it first: `/canary {service} rollback`"
        )


class Fenced(StoreError):
    """This process is no longer the leader: its fencing token is stale."""

    def __init__(self, token: int, current: int | None) -> None:
        self.token, self.current = token, current
        super().__init__(
            f"this replica is no longer the leader (fencing token {token}, "
            f"current {current}); its write was refused and the new leader carries on"
        )


class RolloutNotFound(StoreError):
    """No record under that id (never created, or expired 30 days after it finished)."""

    def __init__(self, rollout_id: str) -> None:
        self.rollout_id = rollout_id
        super().__init__(
            f"no rollout {rollout_id} in Redis; finished rollouts are kept for 30 days"
        )


def mask_url(url: str) -> str:
    """`url` with any password (user info or `?password=`) replaced by `***`, safe to show."""
    parts = urlsplit(url)
    masked = url
    if parts.password is not None:
        user = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
        masked = masked.replace(f"//{parts.netloc}", f"//{user}", 1)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "password" for name, _ in pairs):
        hidden = [(name, "***" if name == "password" else value) for name, value in pairs]
        masked = masked.replace(f"?{parts.query}", f"?{urlencode(hidden, safe='*/')}", 1)
    return masked


def _is_a(cause: BaseException, *names: str) -> bool:
    return any(klass.__name__ in names for klass in type(cause).__mro__)
