"""What a caller asks the planner for, validated before anything is read."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.mesh.errors import InvalidRequest
from commands.cohort import CohortChange
from commands.drill import Drill
from commands.grammar import GrammarError, PodLabels, check_labels
from commands.names import DNS1123_LABEL

Percent = Annotated[int, Field(strict=True, ge=0, le=100)]


class SplitRequest(BaseModel):
    """Send `weight`% of the stable subset's traffic to the canary of VirtualService `vs`.

    `weight=None` leaves the weights alone (a mirror-only change); `mirror=0` removes mirroring,
    `mirror=None` leaves it as it is.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    vs: str
    namespace: str = "default"
    weight: Percent | None = None
    to: str | None = None
    labels: tuple[tuple[str, str], ...] | None = None  # the pods a new canary subset selects
    stable: str | None = None  # a rollout knows its roles; chat commands leave it to the planner
    routes: tuple[str, ...] = ()
    mirror: Percent | None = None
    cohort: CohortChange | None = None  # a cohort's route to the canary; "off" removes it
    drill: Drill | None = None  # a fault drill to add to the touched routes
    end_drill: Drill | None = None  # a drill to take off them, where it is still as added
    finalize: bool = False  # promotion: the canary takes all traffic and becomes stable
    write: str | None = Field(default=None, pattern=r"^[a-z0-9]{1,32}$")  # see LastApplied
    rollout: str | None = Field(default=None, pattern=r"^[a-z0-9]{1,32}$")
    channel: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{1,32}$")
    wave: dict[str, Any] | None = None  # the wave the rollout is a turn of (see LastApplied)

    @field_validator("vs", "namespace")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and not DNS1123_LABEL.match(value):
            raise ValueError(
                f"{value!r} is not a valid name: use lower-case letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters"
            )
        return value

    @field_validator("labels")
    @classmethod
    def _pod_labels(cls, value: PodLabels | None) -> PodLabels | None:
        """Pod labels as Kubernetes takes them, by the command language's one rule."""
        if value is None:
            return None
        try:
            return check_labels(value)
        except GrammarError as e:
            raise ValueError(str(e)) from None

    @field_validator("to")
    @classmethod
    def _subset_or_host(cls, value: str | None) -> str | None:
        """A subset, or a canary Service by name or host (`NAME.NAMESPACE[.svc…]`): the
        planner says which the route takes."""
        parts = [] if value is None else value.split(".")
        if value is not None and not (len(parts) <= 5 and all(map(DNS1123_LABEL.match, parts))):
            raise ValueError(
                f"{value!r} is not a valid name: use lower-case letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters (a Service "
                "may be named by its host, NAME.NAMESPACE.svc.cluster.local)"
            )
        return value

    @classmethod
    def build(cls, **fields: Any) -> SplitRequest:
        """Validate `fields`, raising InvalidRequest with one readable sentence."""
        try:
            request = cls(**fields)
        except ValidationError as e:
            raise InvalidRequest(_sentence(e)) from e
        asked = (request.weight, request.mirror, request.cohort, request.drill, request.end_drill)
        if all(value is None for value in asked):
            raise InvalidRequest(
                "say what to change: a canary weight, a mirror percentage or a cohort"
            )
        if request.finalize and (request.to is None or request.weight != 100):
            raise InvalidRequest("promotion needs the canary named and its weight at 100%")
        return request


def parse_percent(text: str, what: str = "weight") -> int:
    """`"10"`, `"10%"` → 10; anything else is an InvalidRequest that says what to type."""
    raw = text.strip().removesuffix("%")
    if not raw.isdigit() or not raw.isascii():
        raise InvalidRequest(f"{what} {text!r} is not a whole number from 0 to 100, e.g. 10 or 10%")
    value = int(raw)
    if value > 100:
        raise InvalidRequest(f"{what} {text!r} is over 100; use a whole number from 0 to 100")
    return value


def _sentence(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "request"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"].startswith(("int", "greater", "less")):
        return f"{field} {first.get('input')!r} is not a whole number from 0 to 100"
    return f"{field}: {message}"
