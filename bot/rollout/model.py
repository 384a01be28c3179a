"""The rollout record, its events and the effects its transitions ask for. Pure data."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from commands.cohort import Cohort, CohortChange
from commands.names import CLUSTER_NAME, CLUSTER_RULE, service_name
from commands.steps import steps_problem

DEFAULT_WEIGHTS = (5, 10, 25, 50, 100)
VERDICTS_KEPT = 20
WRITE_FAILED = "could not "  # how the reason of a change that did not go live begins


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Phase(StrEnum):
    PENDING_APPROVAL = "pending-approval"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"
    APPLIED = "applied"  # a one-off change with no rollout going on (0%, mirroring)

    @property
    def terminal(self) -> bool:
        return self in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED, Phase.APPLIED)


class Target(_Frozen):
    """Which traffic moves: VirtualService `vs` in `namespace`, from `stable` to `canary`."""

    namespace: str
    vs: str
    stable: str
    canary: str
    routes: tuple[str, ...] = ()
    host: str = ""  # the destination host the routes send to, e.g. weather-service
    # What Istio's telemetry calls each subset's pods (destination_version), from the labels the
    # subset selects; empty in records older than this: then the subset's name is used.
    stable_version: str = ""
    canary_version: str = ""
    # "host": stable and canary are two Services (host-based, no subsets), and telemetry
    # tells them apart by destination_service_name
    by: Literal["subset", "host"] = "subset"
    # "tcp": the weights moved are tcp or tls routes', whose telemetry counts connections
    protocol: Literal["http", "tcp"] = "http"
    # which proxy's telemetry to read, when the routing object says (an HTTPRoute attached to a
    # Service: its ambient waypoint); "" uses the bot's setting (CANARY_HEALTH_REPORTER)
    reporter: Literal["", "destination", "waypoint", "source"] = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.vs}"

    @property
    def service(self) -> str:
        """How chat names it: `weather`, or `weather.prod` outside the default namespace."""
        return service_name(self.vs, self.namespace)


class StepPlan(_Frozen):
    """The weights to walk through, how long to wait between them, and which need a go-ahead.

    With a `cohort` the first step is that cohort's: the cohort's route to the canary and 0%
    for everyone else (the weights start with that 0), checked like any step."""

    weights: tuple[int, ...] = DEFAULT_WEIGHTS
    interval_s: int = Field(default=300, ge=1, le=86_400)
    # seconds between looks at a held step (continuous analysis); 0: only when the step falls
    # due; None: the policy's or the bot's (CANARY_ANALYSIS)
    analysis_s: int | None = Field(default=None, ge=0, le=3_600)
    gates: tuple[int, ...] = ()  # weights that wait for an approval before they are applied
    failure_limit: int = Field(default=2, ge=1)
    inconclusive_limit: int = Field(default=3, ge=1)
    cohort: Cohort | None = None

    @model_validator(mode="before")
    @classmethod
    def _cohort_step_first(cls, fields: Any) -> Any:
        if not isinstance(fields, dict) or fields.get("cohort") is None:
            return fields
        weights = tuple(fields.get("weights") or DEFAULT_WEIGHTS)
        return fields | {"weights": weights if weights[:1] == (0,) else (0, *weights)}

    @model_validator(mode="after")
    def _climbing_to_100(self) -> StepPlan:
        problem = steps_problem(self.weighted)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def weighted(self) -> tuple[int, ...]:
        """The weight steps, after the cohort's step if there is one."""
        return self.weights[1:] if self.cohort is not None else self.weights

    @model_validator(mode="after")
    def _looks_within_a_step(self) -> StepPlan:
        if self.analysis_s and self.analysis_s >= self.interval_s:
            raise ValueError(
                f"analysis ({self.analysis_s}s) is not shorter than every ({self.interval_s}s), "
                "so no look would come before the step's own check; shorten analysis (e.g. "
                "analysis 10s) or write analysis off"
            )
        return self

    @model_validator(mode="after")
    def _gates_are_steps(self) -> StepPlan:
        unknown = sorted(set(self.gates) - set(self.weights))
        if unknown:
            raise ValueError(f"gates {unknown} are not among the steps {list(self.weights)}")
        return self

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.interval_s)


class Verdict(_Frozen):
    """One health check's outcome, with the figures it was decided on."""

    outcome: Literal["pass", "fail", "inconclusive"]
    at: datetime
    step: int
    summary: str = ""
    figures: dict[str, float | None] = Field(default_factory=dict)
    # As judged, one per check: metric, canary, stable, threshold, status. Empty in old records.
    rows: tuple[tuple[str, str, str, str, str], ...] = ()
    # A failure the judge stands by however often it looks (an anytime-valid test): rolled
    # back at once, with no retry after another interval
    final: bool = False
    # The sequential judge's evidence from this step's data alone: each test's log e-value,
    # by test (`errors_vs_stable`, …). A passing verdict's is carried into the next step's
    # judgement (`Carried`). Empty from the fixed thresholds, in old records, and for a test
    # skipped or proving beyond any bound.
    evidence: dict[str, float] = Field(default_factory=dict)
    # When Prometheus last scraped the canary, as the judgement saw it (its newest sample's
    # timestamp): the next look is timed after the next scrape. None: not known (no data, the
    # fixed thresholds). Not kept in records.
    data_at: datetime | None = Field(default=None, exclude=True)


class Carried(_Frozen):
    """The sequential judge's evidence from the steps passed, carried into the next ones.

    Each test's e-value over the rollout is the product of every passed step's final e-value
    (its passing verdict's) and the current step's running one: a test martingale restarted
    at each step's start and concatenated, so still anytime-valid. `log_e` holds each test's
    log of that product, `steps` how many steps' evidence it holds, `through` when the last of
    them was judged: a later judgement's data must begin after it, or it would count the same
    requests twice. Empty (no evidence yet) when the rollout starts, and in records older than
    this field."""

    log_e: dict[str, float] = Field(default_factory=dict)
    steps: int = 0
    through: datetime | None = None

    def carry(self, verdict: Verdict) -> Carried:
        """With a passing step's final evidence; as it was for a verdict without evidence, or
        one judged no later than `through` (already carried, or on data it holds)."""
        if verdict.outcome != "pass" or not verdict.evidence:
            return self
        if self.through is not None and verdict.at <= self.through:
            return self
        tests = self.log_e.keys() | verdict.evidence.keys()
        log_e = {t: self.log_e.get(t, 0.0) + verdict.evidence.get(t, 0.0) for t in tests}
        return Carried(log_e=log_e, steps=self.steps + 1, through=verdict.at)


NO_EVIDENCE = Carried()
WAVE_CLUSTERS_MAX = 32


class WaveRef(_Frozen):
    """A cluster rollout's place in its multi-cluster wave: the wave, its clusters in order,
    this cluster's turn, and the steps and canary the wave starts every cluster with. It goes
    into the VirtualService's annotation with each of the rollout's writes, so a wave whose
    record Redis lost is taken back with its current cluster's canary."""

    id: str = Field(pattern=r"^[a-z0-9]{1,32}$")
    clusters: tuple[str, ...] = Field(min_length=1, max_length=WAVE_CLUSTERS_MAX)
    index: int = Field(ge=0)
    steps: StepPlan
    to: str | None = Field(default=None, min_length=1, max_length=253)

    @model_validator(mode="after")
    def _clusters_in_order(self) -> WaveRef:
        bad = [c for c in self.clusters if not CLUSTER_NAME.fullmatch(c)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a cluster name: use {CLUSTER_RULE}")
        if len(set(self.clusters)) != len(self.clusters):
            raise ValueError(f"clusters {list(self.clusters)} name a cluster twice")
        if self.index >= len(self.clusters):
            raise ValueError(f"index {self.index} is not a cluster of {list(self.clusters)}")
        return self

    @property
    def cluster(self) -> str:
        """The cluster whose turn this rollout is."""
        return self.clusters[self.index]

    def annotation(self) -> dict[str, Any]:
        """As it is written into the VirtualService's annotation."""
        return self.model_dump(mode="json", exclude_defaults=True)

    @classmethod
    def from_annotation(cls, raw: Mapping[str, Any] | None) -> WaveRef | None:
        """The wave an annotation names; None when it names none, or nothing readable (anyone
        who may edit the VirtualService may have written it)."""
        if raw is None:
            return None
        try:
            return cls.model_validate(dict(raw))
        except (ValidationError, TypeError, ValueError):
            return None


# Effects: what a transition asks the engine to do, in order.


class ApplyWeight(_Frozen):
    """Set the canary's weight. The record's `weight` and `step` change only once it is live."""

    kind: Literal["apply"] = "apply"
    weight: int
    previous: int  # what the bot set before this change
    step: int = -1  # the step index that is live once this lands
    guard: bool = False  # a scheduled step: live weights other than `previous` are drift
    finalize: bool = False  # after 100%: the canary becomes the stable subset
    mirror: int | None = None  # also set mirroring to this percentage (0 removes it)
    cohort: CohortChange | None = None  # also route this cohort to the canary ("off": remove)

    @property
    def written_weight(self) -> int | None:
        """The weight the write sets; None when it changes only mirroring or the cohort."""
        routing = self.mirror is not None or self.cohort is not None
        return None if routing and self.weight == self.previous else self.weight


class Write(_Frozen):
    """A write to the cluster, recorded before it is sent.

    `id` goes into the VirtualService's last-applied annotation with the write itself, so
    whoever finds this record later can tell whether it landed. `against` is the
    resourceVersion it was planned against: the PATCH tests it, so once anyone else has
    written the object (another replica, a human, or a fence), this write can never land.
    """

    id: str
    weight: int
    step: int
    against: str
    token: int | None = None  # the fencing token of the leader that recorded it


class Schedule(_Frozen):
    kind: Literal["schedule"] = "schedule"
    at: datetime
    step: int


class CancelSchedule(_Frozen):
    kind: Literal["cancel"] = "cancel"


class CheckHealth(_Frozen):
    kind: Literal["check"] = "check"
    step: int


class Notify(_Frozen):
    """A structured message; the chat layer renders it (card update, thread reply)."""

    kind: Literal["notify"] = "notify"
    event: str
    text: str
    cluster: str | None = None  # the wave cluster whose rollout it is about, as delivered


class Audit(_Frozen):
    kind: Literal["audit"] = "audit"
    action: str
    actor: str
    weight_before: int
    weight_after: int
    detail: str = ""
    # Given when the decision is recorded and kept while the entry is owed, whoever writes it:
    # the trail holds each decision's entry once, even when two writers both carry it out.
    id: str = ""


Effect = Annotated[
    ApplyWeight | Schedule | CancelSchedule | CheckHealth | Notify | Audit,
    Field(discriminator="kind"),
]


class Rollout(_Frozen):
    id: str
    target: Target
    steps: StepPlan
    phase: Phase
    step: int  # index into steps.weights of the weight that is live (-1: below the first)
    weight: int  # the canary weight that is live, as the bot last confirmed it
    started_by: str
    channel: str | None = None
    created_at: datetime
    updated_at: datetime
    next_step_at: datetime | None = None
    verdicts: tuple[Verdict, ...] = ()
    failures: int = 0  # failed health checks in a row
    inconclusive: int = 0  # inconclusive health checks in a row
    reason: str = ""  # why it is paused, failed or rolled back
    pending: tuple[Effect, ...] = ()  # effects decided but not yet carried out
    writing: Write | None = None  # a traffic change sent (or about to be), not yet confirmed
    cohort: Cohort | None = None  # the cohort the bot last routed to the canary, once live
    evidence: Carried = NO_EVIDENCE  # the sequential judge's, from the steps passed
    wave: WaveRef | None = None  # the wave it is a turn of; None in records older than this
    version: int = 0  # bumped by the store on every write

    @property
    def active(self) -> bool:
        return not self.phase.terminal

    @property
    def settled(self) -> bool:
        """Finished, with nothing left to carry out and no write whose fate is unknown: only
        then is the VirtualService free."""
        return self.phase.terminal and not self.pending and self.writing is None

    @property
    def write_failed(self) -> bool:
        """The last change asked for did not go live (the reason says why)."""
        return self.reason.startswith(WRITE_FAILED)

    @property
    def last_verdict(self) -> Verdict | None:
        return self.verdicts[-1] if self.verdicts else None


# Events: what happens to a rollout.


class _Event(_Frozen):
    actor: str = "canary-bot"


class StepDue(_Event):
    kind: Literal["step-due"] = "step-due"
    step: int


class HealthResult(_Event):
    kind: Literal["health-result"] = "health-result"
    verdict: Verdict


class Pause(_Event):
    kind: Literal["pause"] = "pause"
    reason: str = ""


class Resume(_Event):
    kind: Literal["resume"] = "resume"


class Promote(_Event):
    kind: Literal["promote"] = "promote"


class Rollback(_Event):
    kind: Literal["rollback"] = "rollback"
    reason: str = ""


class Abort(_Event):
    kind: Literal["abort"] = "abort"
    reason: str = ""


class SetWeight(_Event):
    kind: Literal["set-weight"] = "set-weight"
    weight: int = Field(ge=0, le=100)


class DriftDetected(_Event):
    kind: Literal["drift-detected"] = "drift-detected"
    found: int
    expected: int


class ApprovalGranted(_Event):
    kind: Literal["approval-granted"] = "approval-granted"
    step: int


class ApprovalDenied(_Event):
    kind: Literal["approval-denied"] = "approval-denied"
    step: int
    reason: str = ""


class WriteFailed(_Event):
    """A traffic change did not go live: the cluster refused it, or could not be reached."""

    kind: Literal["write-failed"] = "write-failed"
    effect: ApplyWeight
    reason: str
    found: int | None = None  # the canary's live weight, when the bot read it and it had moved


class SetMirror(_Event):
    kind: Literal["set-mirror"] = "set-mirror"
    mirror: int = Field(ge=0, le=100)


class SetCohort(_Event):
    kind: Literal["set-cohort"] = "set-cohort"
    cohort: CohortChange


Event = Annotated[
    StepDue
    | HealthResult
    | Pause
    | Resume
    | Promote
    | Rollback
    | Abort
    | SetWeight
    | DriftDetected
    | ApprovalGranted
    | ApprovalDenied
    | WriteFailed
    | SetMirror
    | SetCohort,
    Field(discriminator="kind"),
]
