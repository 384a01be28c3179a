"""The policy file's schema (pydantic), the values `decide` works on, and its decisions."""

from __future__ import annotations

import difflib
import re
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal, Self, TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from commands.model import RAISING, SAFE
from commands.steps import steps_problem
from policies import _freeze, _globs

DEFAULT_STEPS = (5, 10, 25, 50, 100)
MAX_ANALYSIS = timedelta(hours=1)  # as CANARY_ANALYSIS


class Action(StrEnum):
    """What a rule can allow; the same names as the `/canary` verbs, plus `approve`."""

    SET_WEIGHT = "set-weight"
    START = "start"
    PROMOTE = "promote"
    PAUSE = "pause"
    RESUME = "resume"
    ROLLBACK = "rollback"
    ABORT = "abort"
    MIRROR = "mirror"
    COHORT = "cohort"
    FAULT = "fault"
    WAVE = "wave"  # a start over several clusters (`start clusters …`), needing `start` too
    APPROVE = "approve"


# Never add traffic: whoever may roll back may do these at any time, with nothing in the way.
SAFE_ACTIONS = frozenset(Action(verb.value) for verb in SAFE)
# Start or add traffic: what freezes refuse and what approvals hold by default.
RAISING_ACTIONS = frozenset(Action(verb.value) for verb in RAISING) | {Action.WAVE}

# -- Field types: each turns a raw YAML value into a checked one, or says how to fix it.

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
_MENTION = re.compile(r"^<(?:@|!subteam\^)([A-Z0-9]+)(?:\|[^>]*)?>$")
_FIND_ID = (
    "use the member ID (U… or W…: Slack profile → ⋮ → Copy member ID) or a user group's ID (S…)"
)


def is_user(principal: str) -> bool:
    return bool(_USER_ID.match(principal))


def _principal(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a Slack ID as text, got {value!r}; {_FIND_ID}")
    if _USER_ID.match(value) or _GROUP_ID.match(value):
        return value
    raise ValueError(_not_an_id(value))


def _not_an_id(value: str) -> str:
    if mention := _MENTION.match(value):
        return f"{value!r} is a mention; write the bare ID {mention[1]!r}"
    if _USER_ID.match(value.upper()) or _GROUP_ID.match(value.upper()):
        return f"{value!r} is not upper case; Slack IDs are, write {value.upper()!r}"
    if re.match(r"^[UWS][A-Z0-9]?$", value):
        return f"{value!r} is too short for a Slack ID; copy the whole ID (e.g. U0123ABCD)"
    if re.match(r"^[CGD][A-Z0-9]{2,}$", value):
        return f"{value!r} is a channel ID; only people (U…/W…) and user groups (S…) can be named"
    return f"{value!r} looks like a name, not an ID (names change and can be reused); {_FIND_ID}"


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    match = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", str(value).strip())
    if isinstance(value, bool) or not match or not any(match.groups()):
        raise ValueError(
            f"{value!r} is not a duration; write a number with a unit, e.g. 30s, 5m, 1h or 1h30m"
        )
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    span = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if not span:
        raise ValueError(f"{value!r} is zero; write a duration longer than that, e.g. 5m")
    return span


def _analysis(value: object) -> timedelta:
    """How often a held step is looked at: a duration, or 0 / `off` (zero: no looks)."""
    if value == 0 or re.fullmatch(r"off|(?:0+[dhms]?)+", str(value).strip().lower()):
        return timedelta(0)
    try:
        return _duration(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an analysis interval; write a duration, e.g. 10s, "
            "or off to judge each step only when it falls due"
        ) from None


def _glob(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a name or glob as text, got {value!r}; quote it")
    try:
        _globs.tokens(value)
    except _globs.GlobError as e:
        raise ValueError(f"bad glob {value!r}: {e}") from e
    return value


def _time_zone(value: object) -> str:
    name = str(value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, available_timezones(), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "e.g. 'Europe/Berlin' or 'UTC'"
        raise ValueError(f"unknown time zone {name!r}; use an IANA name, {hint}") from None
    return name


Principal = Annotated[str, BeforeValidator(_principal)]
Principals = tuple[Principal, ...]
Duration = Annotated[timedelta, BeforeValidator(_duration)]
AnalysisEvery = Annotated[timedelta, BeforeValidator(_analysis)]
Glob = Annotated[str, BeforeValidator(_glob)]
TimeZone = Annotated[str, BeforeValidator(_time_zone)]
Weekday = Annotated[str, BeforeValidator(lambda v: str(v).lower())]


class _Schema(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Permissions(_Schema):
    """Who may do what: Slack member IDs (U…/W…) and user-group IDs (S…), per action."""

    all_actions: Principals = Field(default=(), alias="all")
    set_weight: Principals = Field(default=(), alias="set-weight")
    start: Principals = ()
    promote: Principals = ()
    pause: Principals = ()
    resume: Principals = ()
    rollback: Principals = ()
    abort: Principals = ()
    mirror: Principals = ()
    cohort: Principals = ()
    fault: Principals = ()
    wave: Principals = ()
    approve: Principals = ()

    def who_may(self, action: Action) -> tuple[str, ...]:
        listed: tuple[str, ...] = getattr(self, action.value.replace("-", "_"))
        return tuple(dict.fromkeys(self.all_actions + listed))

    @property
    def named(self) -> frozenset[str]:
        return frozenset(p for action in Action for p in self.who_may(action))


class ApprovalRule(_Schema):
    """`count` distinct approvers from `from` must approve the matching changes."""

    count: int = Field(default=1, ge=1, le=20)
    sources: Principals = Field(default=(), alias="from")
    actions: tuple[Action, ...] = ()
    above_weight: int | None = Field(default=None, ge=0, le=99)
    expires: Duration = timedelta(hours=1)

    @field_validator("actions")
    @classmethod
    def _not_approve(cls, actions: tuple[Action, ...]) -> tuple[Action, ...]:
        if Action.APPROVE in actions:
            raise ValueError("approvals cannot be required for approve itself; remove it")
        return actions

    def holds(self, action: Action, raising: bool, weight: int | None) -> bool:
        """Whether this requirement applies; a change that lowers traffic never needs one."""
        if action not in (self.actions or RAISING_ACTIONS):
            return False
        if not raising and action in RAISING_ACTIONS:
            return False
        return self.above_weight is None or (weight is not None and weight > self.above_weight)


class Limits(_Schema):
    max_step: int | None = Field(default=None, ge=1, le=100)
    min_interval: Duration | None = None
    staged_only: bool = False


class FreezeWindow(_Schema):
    """Weekly (`days` + `from`/`to`, or `from: fri 16:00` / `to: mon 09:00`) or dated."""

    name: str = ""
    days: tuple[Weekday, ...] | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    tz: TimeZone

    @field_validator("days")
    @classmethod
    def _known_days(cls, days: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if days == ():
            raise ValueError("days is empty; list days like [sat, sun], or remove the window")
        for day in days or ():
            if day not in _freeze.WEEKDAYS:
                raise ValueError(f"{day!r} is not a day; use {', '.join(_freeze.WEEKDAYS)}")
        return days

    @field_validator("from_", "to")
    @classmethod
    def _clock(cls, text: str | None) -> str | None:
        if text is not None:
            _freeze.parse_clock(str(text))
        return text

    @field_validator("start", "end")
    @classmethod
    def _local(cls, moment: datetime | None) -> datetime | None:
        if moment is not None and moment.tzinfo is not None:
            raise ValueError("give a local time without an offset, e.g. 2026-12-20T00:00; set tz")
        return moment

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        dated = self.start is not None or self.end is not None
        if dated:
            self._check_dated()
        else:
            self._check_weekly()
        return self

    def _check_dated(self) -> None:
        if self.days is not None or self.from_ is not None or self.to is not None:
            raise ValueError(
                "a dated freeze has start and end only; put days/from/to in another window"
            )
        if self.start is None or self.end is None or self.end <= self.start:
            raise ValueError(
                "a dated freeze needs a start and a later end; write e.g. "
                "start: 2026-12-20T00:00 and end: 2027-01-03T00:00"
            )

    def _check_weekly(self) -> None:
        clocks = [_freeze.parse_clock(t) for t in (self.from_, self.to) if t is not None]
        if self.days is None and (len(clocks) < 2 or any(c.day is None for c in clocks)):
            raise ValueError(
                "say when: days: [sat, sun] (with optional from/to times), "
                "or from: 'fri 16:00' and to: 'mon 09:00'; or start/end dates"
            )
        if self.days is not None and any(c.day is not None for c in clocks):
            raise ValueError("with days, from/to are times only ('16:00'); drop the day names")
        if self.days is not None and len(set(self._daily_times())) == 1:
            raise ValueError("from and to are the same time; for whole days leave both out")

    def _daily_times(self) -> tuple[int, int]:
        start = _freeze.parse_clock(self.from_ or "00:00").minute
        return start, _freeze.parse_clock(self.to or "24:00").minute

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def label(self) -> str:
        return self.name or ("dated freeze" if self.start else "weekly freeze")

    def ends_after(self, now: datetime) -> datetime | None:
        """When this window, if it holds `now`, ends; None when `now` is outside it."""
        if self.start is not None and self.end is not None:
            start, end = self.start.replace(tzinfo=self.zone), self.end.replace(tzinfo=self.zone)
            return end if start <= now < end else None
        return _freeze.span_end(self._spans(), now.astimezone(self.zone))

    def _spans(self) -> tuple[tuple[int, int], ...]:
        if self.days is not None:
            days = tuple(_freeze.WEEKDAYS.index(d) for d in self.days)
            return _freeze.daily_spans(days, *self._daily_times())
        start, end = (_freeze.parse_clock(t or "") for t in (self.from_, self.to))
        return (_freeze.weekly_span(start, end),)


CHECK_PLACEHOLDERS = frozenset(
    {"namespace", "service", "canary", "stable", "window", "version_label"}
)


class CustomCheck(_Schema):
    """An extra PromQL query per check; its single value must stay under `max` (or above
    `min`). Placeholders: {namespace} {service} {canary} {stable} {window} {version_label}
    (and {canary:re} / {stable:re} inside `=~`); PromQL's own braces are written {{ }}."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,40}$")
    query: str = Field(min_length=1, max_length=2000)
    max: float | None = None
    min: float | None = None

    @field_validator("query")
    @classmethod
    def _known_placeholders(cls, query: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(query) if name}
        except ValueError as e:
            raise ValueError(f"malformed template ({e}); write PromQL's braces as {{{{ }}}}") from e
        unknown = sorted(names - CHECK_PLACEHOLDERS)
        if unknown:
            raise ValueError(f"unknown placeholders {unknown}; use {sorted(CHECK_PLACEHOLDERS)}")
        return query

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if (self.max is None) == (self.min is None):
            raise ValueError("give exactly one of max or min")
        return self


class HealthThresholds(_Schema):
    """When a canary passes a health check: a policy's `health:`, CANARY_THRESHOLDS, and what
    bot/health judges with, as they are. Percentages are 0-100; `min_requests: 0` means no
    minimum beyond some canary traffic."""

    min_success_rate: float = Field(default=99.0, ge=0, le=100)
    max_p99_ms: float = Field(default=500.0, gt=0)
    max_error_rate_increase: float = Field(default=1.0, ge=0, le=100)
    max_p99_ratio: float = Field(default=1.2, ge=1)
    min_requests: int = Field(default=20, ge=0)
    checks: tuple[CustomCheck, ...] = ()


class RolloutSettings(_Schema):
    """The default staged rollout for the services a rule matches."""

    steps: tuple[int, ...] = DEFAULT_STEPS
    every: Duration = timedelta(minutes=5)
    # Seconds between looks at a held step's canary; zero: only when the step falls due;
    # unset: CANARY_ANALYSIS
    analysis: AnalysisEvery | None = None
    gates: tuple[int, ...] = ()
    failure_limit: int = Field(default=2, ge=1)
    inconclusive_limit: int = Field(default=3, ge=1)
    health: HealthThresholds = HealthThresholds()

    @field_validator("steps")
    @classmethod
    def _climbing_to_100(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        problem = steps_problem(steps, example="[5, 10, 25, 50, 100]")
        if problem is not None:
            raise ValueError(problem)
        return steps

    @field_validator("every")
    @classmethod
    def _at_most_a_day(cls, every: timedelta) -> timedelta:
        if every > timedelta(days=1):
            raise ValueError("every is at most 1d; shorten it")
        return every

    @field_validator("analysis")
    @classmethod
    def _at_most_an_hour(cls, analysis: timedelta | None) -> timedelta | None:
        if analysis is not None and analysis > MAX_ANALYSIS:
            raise ValueError("analysis is at most 1h; shorten it, or write off")
        return analysis

    @model_validator(mode="after")
    def _looks_within_a_step(self) -> Self:
        if self.analysis and self.analysis >= self.every:
            look, step = (int(d.total_seconds()) for d in (self.analysis, self.every))
            raise ValueError(
                f"analysis ({look}s) is not shorter than every ({step}s), so no look would come "
                "before the step's own check; shorten analysis (e.g. 10s) or write analysis: off"
            )
        return self

    @model_validator(mode="after")
    def _gates_are_steps(self) -> Self:
        if unknown := sorted(set(self.gates) - set(self.steps)):
            raise ValueError(
                f"gates {unknown} are not among the steps {list(self.steps)}; "
                "make each gate one of the steps"
            )
        return self


class DrillSettings(_Schema):
    """Fault drills on, for the services a rule matches: how long one lasts when the command
    does not say (`default`), and at most (`max`)."""

    default: Duration = timedelta(minutes=10)
    max: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _default_within_max(self) -> Self:
        if self.default > self.max:
            raise ValueError("drills.default is longer than drills.max; shorten it")
        if self.max > timedelta(days=1):
            raise ValueError("drills.max is at most 1d; shorten it")
        return self


class Rule(_Schema):
    """What applies to the VirtualServices whose namespace and name match the globs."""

    name: str = ""
    namespace: Glob
    vs: Glob = "*"
    allow: Permissions = Permissions()
    approvals: tuple[ApprovalRule, ...] = ()
    limits: Limits = Limits()
    freeze: tuple[FreezeWindow, ...] = ()
    rollout: RolloutSettings = RolloutSettings()
    drills: DrillSettings | None = None  # fault drills are off unless a rule turns them on
    # Mentioned, with the starter and the approvers, when a rollout needs a human.
    on_call: Principal | None = Field(default=None, alias="on-call")
    # An object Argo CD or Flux syncs from Git gets its change undone at the next sync: `warn`
    # says so and goes ahead; `refuse` changes nothing and points at Git instead.
    gitops: Literal["warn", "refuse"] = "warn"

    @model_validator(mode="after")
    def _approvals_can_be_met(self) -> Self:
        for i, requirement in enumerate(self.approvals):
            sources = self.approvers(requirement)
            if not sources:
                raise ValueError(
                    f"approvals[{i}] has no `from` and allow.approve names nobody; add from: [S…]"
                )
            if all(is_user(s) for s in sources) and len(sources) < requirement.count:
                raise ValueError(
                    f"approvals[{i}] needs {requirement.count} approvers but names only "
                    f"{len(sources)} people; lower count or add people or a group"
                )
        return self

    @property
    def scope(self) -> str:
        return f"{self.namespace}/{self.vs}"

    @property
    def label(self) -> str:
        return self.name or self.scope

    @property
    def named(self) -> frozenset[str]:
        """Everyone this rule names, for any purpose."""
        approvers = {s for r in self.approvals for s in r.sources}
        return self.allow.named | approvers

    def approvers(self, requirement: ApprovalRule) -> tuple[str, ...]:
        return requirement.sources or self.allow.who_may(Action.APPROVE)


class PolicyFile(_Schema):
    rules: tuple[Rule, ...]

    @field_validator("rules")
    @classmethod
    def _some(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        if not rules:
            raise ValueError("there are no rules, so nobody may change anything; add a rule")
        return rules


# -- A loaded policy: rules with where they came from, most specific first.


@dataclass(frozen=True)
class PlacedRule:
    rule: Rule
    line: int
    source: str

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    @property
    def specificity(self) -> tuple[int, int, int]:
        return _globs.specificity(self.rule.namespace, self.rule.vs)


@dataclass(frozen=True)
class Policy:
    source: str
    rules: tuple[PlacedRule, ...]  # most specific first

    def matching(self, target: Target) -> tuple[PlacedRule, ...]:
        return tuple(r for r in self.rules if _matches(r.rule, target))

    def match(self, target: Target) -> PlacedRule | None:
        """The most specific rule for `target` (load-time checks make it unique)."""
        return next(iter(self.matching(target)), None)


def _matches(rule: Rule, target: Target) -> bool:
    return _globs.matches(rule.namespace, target.namespace) and _globs.matches(rule.vs, target.vs)


# -- What `decide` is asked about.


@dataclass(frozen=True)
class Actor:
    user: str
    groups: frozenset[str] = frozenset()

    def is_one_of(self, principals: tuple[str, ...] | frozenset[str]) -> bool:
        return self.user in principals or not self.groups.isdisjoint(principals)


@dataclass(frozen=True)
class Target:
    namespace: str
    vs: str


@dataclass(frozen=True)
class Change:
    action: str
    weight_before: int | None = None
    weight_after: int | None = None
    last_change_at: datetime | None = None
    plan_hash: str = ""
    # Why a GitOps tool would undo the change, and the command that makes it in Git instead;
    # empty when no tool is known to sync the objects.
    gitops: str = ""


@dataclass(frozen=True)
class Approval:
    user: str
    groups: frozenset[str]
    at: datetime
    plan_hash: str
    deny: bool = False


# -- What `decide` answers. Reasons are sentences for the person who asked.


@dataclass(frozen=True)
class Allow:
    reason: str = ""


@dataclass(frozen=True)
class Deny:
    reason: str


@dataclass(frozen=True)
class NeedsApproval:
    count: int
    sources: tuple[str, ...]
    have: int
    reason: str


Decision = Allow | Deny | NeedsApproval


class StepPlanFields(TypedDict):
    """Keyword arguments for `bot.rollout.model.StepPlan`."""

    weights: tuple[int, ...]
    interval_s: int
    gates: tuple[int, ...]
    failure_limit: int
    inconclusive_limit: int
