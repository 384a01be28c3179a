"""What a `/canary` command means, once parsed: a verb and the few values it takes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, Field, model_validator

from commands.cohort import CohortChange
from commands.drill import DrillChange
from commands.grammar import PodLabels


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
    COHORT = "cohort"
    FAULT = "fault"  # fault drills: also written `retries …` and `timeout …`
    LIST = "list"
    HELP = "help"


_SCOPED = frozenset({"service", "namespace"})


@dataclass(frozen=True)
class VerbInfo:
    """Everything about one verb that more than one place needs: read, never copied."""

    mutating: bool  # changes traffic or a rollout, so the policy and the audit apply
    safe: bool = False  # never adds traffic: nothing may stand in its way, nor make it wait
    raising: bool = False  # starts or adds traffic: freezes refuse it, approvals may hold it
    button: bool = False  # a button on the rollout card does the same
    needs: frozenset[str] = frozenset({"service"})  # fields it must have
    may: frozenset[str] = _SCOPED  # fields it may have besides


_WEIGHTED = _SCOPED | {"to"}
_CLUSTERED = _SCOPED | {"cluster"}  # acts on one rollout: the bot's own, or a wave cluster's
_WEIGHT, _MIRROR = frozenset({"service", "weight"}), frozenset({"service", "mirror"})
VERBS: dict[Verb, VerbInfo] = {
    Verb.SET_WEIGHT: VerbInfo(
        True, raising=True, needs=frozenset({"service", "weight"}), may=_WEIGHTED | {"labels"}
    ),
    Verb.START: VerbInfo(
        True,
        raising=True,
        may=_WEIGHTED | {"steps", "interval_s", "analysis_s", "cohort", "clusters"},
    ),
    Verb.STATUS: VerbInfo(False, may=_CLUSTERED),
    Verb.PAUSE: VerbInfo(True, safe=True, button=True, may=_CLUSTERED),
    Verb.RESUME: VerbInfo(True, raising=True, button=True, may=_CLUSTERED),
    Verb.PROMOTE: VerbInfo(True, raising=True, button=True, may=_CLUSTERED),
    Verb.ROLLBACK: VerbInfo(True, safe=True, button=True, may=_CLUSTERED),
    Verb.ABORT: VerbInfo(True, safe=True, may=_CLUSTERED),
    Verb.HISTORY: VerbInfo(False, may=_CLUSTERED),
    # one of weight, cohort or drill; a weight or cohort may be planned on a wave cluster
    Verb.PLAN: VerbInfo(False, may=_WEIGHTED | {"weight", "labels", "cohort", "drill", "cluster"}),
    Verb.MIRROR: VerbInfo(
        True, raising=True, needs=frozenset({"service", "mirror"}), may=_WEIGHTED
    ),
    Verb.COHORT: VerbInfo(
        True, raising=True, needs=frozenset({"service", "cohort"}), may=_WEIGHTED
    ),
    Verb.FAULT: VerbInfo(True, raising=True, needs=frozenset({"service", "drill"})),
    Verb.LIST: VerbInfo(False, needs=frozenset(), may=frozenset()),
    Verb.HELP: VerbInfo(False, needs=frozenset(), may=frozenset({"topic"})),
}
MUTATING = frozenset(v for v, info in VERBS.items() if info.mutating)
SAFE = frozenset(v for v, info in VERBS.items() if info.safe)
RAISING = frozenset(v for v, info in VERBS.items() if info.raising)
BUTTONS = tuple(v for v, info in VERBS.items() if info.button)
# Verbs written as `/canary <service> <verb>`, with at most `cluster NAME` after them.
BARE = tuple(
    v
    for v, info in VERBS.items()
    if info.needs == {"service"} and info.may in (_SCOPED, _CLUSTERED)
)
# Verbs that act on one rollout, which may be a wave cluster's: `cluster NAME` names which.
CLUSTERED = frozenset(v for v, info in VERBS.items() if "cluster" in info.may)


class Command(BaseModel, frozen=True, extra="forbid"):
    """One parsed `/canary` command; fields a verb does not use stay None."""

    verb: Verb
    service: str | None = None  # the VirtualService name
    namespace: str | None = None  # only when written as `vs.namespace`; None = channel default
    weight: int | None = Field(default=None, ge=0, le=100)  # set-weight and plan
    to: str | None = None  # the canary subset, when the user names it
    labels: PodLabels | None = None  # the pods a new `to` subset selects (`labels version=v3`)
    steps: tuple[int, ...] | None = None  # start
    interval_s: int | None = Field(default=None, ge=1)  # start (`every 5m`)
    analysis_s: int | None = Field(default=None, ge=0)  # start (`analysis 10s`; 0: `off`)
    clusters: tuple[str, ...] | None = None  # start: a wave over these clusters, in order
    cluster: str | None = None  # the wave cluster whose rollout it acts on (`cluster prod-eu`)
    mirror: int | None = Field(default=None, ge=0, le=100)  # 0 means `mirror off`
    topic: str | None = None  # help <topic>
    cohort: CohortChange | None = None  # who goes to the canary first; "off" removes the route
    drill: DrillChange | None = None  # a fault drill; "off" ends the service's drills now

    @property
    def mutating(self) -> bool:
        """Whether running it changes traffic or a rollout (so policy and audit apply)."""
        return self.verb in MUTATING

    @model_validator(mode="after")
    def _fields_fit_the_verb(self) -> Self:
        required, allowed = VERBS[self.verb].needs, VERBS[self.verb].may
        given = {name for name in type(self).model_fields if getattr(self, name) is not None}
        given.discard("verb")
        if missing := sorted(required - given):
            raise ValueError(f"{self.verb} needs {', '.join(missing)}")
        if extra := sorted(given - required - allowed):
            raise ValueError(f"{self.verb} does not take {', '.join(extra)}")
        if self.verb is Verb.PLAN and (self.weight, self.cohort, self.drill) == (None, None, None):
            raise ValueError("plan needs a weight, a cohort or a drill")
        if self.labels is not None and (self.to is None or self.weight is None):
            raise ValueError("labels name the pods of the subset given with `to`, with a weight")
        return self
