"""What a `/canary` command means, once parsed: a verb and the few values it takes."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, Field, model_validator


class Verb(StrEnum):
    SET_WEIGHT = "set-weight"
    START = "start"
    STATUS = "status"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    ABORT = "abort"
    HISTORY = "history"
    PLAN = "plan"
    MIRROR = "mirror"
    LIST = "list"
    HELP = "help"


MUTATING = frozenset(
    {
        Verb.SET_WEIGHT,
        Verb.START,
        Verb.PAUSE,
        Verb.RESUME,
        Verb.PROMOTE,
        Verb.ROLLBACK,
        Verb.ABORT,
        Verb.MIRROR,
    }
)
_SCOPED = frozenset({"service", "namespace"})
# (must be set, may be set) per verb; a field outside both must stay None. Buttons and other
# adapters build Commands too, so the model, not only the parser, keeps them coherent.
_FIELDS: dict[Verb, tuple[frozenset[str], frozenset[str]]] = {
    Verb.SET_WEIGHT: (frozenset({"service", "weight"}), _SCOPED | {"to"}),
    Verb.PLAN: (frozenset({"service", "weight"}), _SCOPED | {"to"}),
    Verb.MIRROR: (frozenset({"service", "mirror"}), _SCOPED | {"to"}),
    Verb.START: (frozenset({"service"}), _SCOPED | {"to", "steps", "interval_s"}),
    Verb.LIST: (frozenset(), frozenset()),
    Verb.HELP: (frozenset(), frozenset({"topic"})),
}
_SERVICE_ONLY = (frozenset({"service"}), _SCOPED)


class Command(BaseModel, frozen=True, extra="forbid"):
    """One parsed `/canary` command; fields a verb does not use stay None."""

    verb: Verb
    service: str | None = None  # the VirtualService name
    namespace: str | None = None  # only when written as `vs.namespace`; None = channel default
    weight: int | None = Field(default=None, ge=0, le=100)  # set-weight and plan
    to: str | None = None  # the canary subset, when the user names it
    steps: tuple[int, ...] | None = None  # start
    interval_s: int | None = Field(default=None, ge=1)  # start (`every 5m`)
    mirror: int | None = Field(default=None, ge=0, le=100)  # 0 means `mirror off`
    topic: str | None = None  # help <topic>

    @property
    def mutating(self) -> bool:
        """Whether running it changes traffic or a rollout (so policy and audit apply)."""
        return self.verb in MUTATING

    @model_validator(mode="after")
    def _fields_fit_the_verb(self) -> Self:
        required, allowed = _FIELDS.get(self.verb, _SERVICE_ONLY)
        given = {name for name in type(self).model_fields if getattr(self, name) is not None}
        given.discard("verb")
        if missing := sorted(required - given):
            raise ValueError(f"{self.verb} needs {', '.join(missing)}")
        if extra := sorted(given - required - allowed):
            raise ValueError(f"{self.verb} does not take {', '.join(extra)}")
        return self
