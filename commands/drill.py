"""Fault drills: a delay or an abort injected into a share of requests, or retries or a
timeout set on the service's catch-all route, for a while. Pure.

`fault delay 7s 10%` and `fault abort 500 5%` are the Bookinfo lab's ratings tests; `retries
3 per-try 2s` and `timeout 10s` are Istio's request-timeouts and retries tasks. Each ends on
its own (`for 10m`, else the policy's default); `fault off` ends them all at once, and `fault
delay off`, `fault abort off`, `retries off` or `timeout off` only that kind.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DRILL_KINDS = ("delay", "abort", "retries", "timeout")
MAX_DELAY_S = 300
MAX_ATTEMPTS = 10


class Drill(BaseModel):
    """One drill; the fields its kind does not use stay None."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["delay", "abort", "retries", "timeout"]
    seconds: int | None = Field(default=None, ge=1, le=MAX_DELAY_S)  # delay, per-try, timeout
    status: int | None = Field(default=None, ge=200, le=599)  # abort
    percent: float | None = Field(default=None, gt=0, le=100)  # delay, abort
    attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS)  # retries
    for_s: int | None = Field(default=None, ge=1)  # how long; None: the policy's default

    @model_validator(mode="after")
    def _fields_fit_the_kind(self) -> Drill:
        needs = {
            "delay": ("seconds", "percent"),
            "abort": ("status", "percent"),
            "retries": ("attempts", "seconds"),
            "timeout": ("seconds",),
        }[self.kind]
        missing = [name for name in needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} drill needs {', '.join(missing)}")
        return self

    @property
    def text(self) -> str:
        """As it is typed: `fault delay 7s 10%`, `retries 3 per-try 2s`, `timeout 10s`."""
        share = f"{self.percent or 0:g}%"
        return {
            "delay": f"fault delay {self.seconds}s {share}",
            "abort": f"fault abort {self.status} {share}",
            "retries": f"retries {self.attempts} per-try {self.seconds}s",
            "timeout": f"timeout {self.seconds}s",
        }[self.kind]

    def lasting(self, seconds: int) -> Drill:
        return self.model_copy(update={"for_s": seconds})


class DrillOff(BaseModel):
    """Ends the service's drills now: those of one `kind`, or every one (None)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["delay", "abort", "retries", "timeout"] | None = None

    @property
    def text(self) -> str:
        if self.kind in ("delay", "abort"):
            return f"fault {self.kind} off"
        return "fault off" if self.kind is None else f"{self.kind} off"


DrillChange = Drill | DrillOff
