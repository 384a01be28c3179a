"""Who a cohort is: the requests that go to the canary ahead of everyone else. Pure.

`header x-beta=1`, `cookie user=jason` or `user jason` (the `end-user` header, as Istio's
Bookinfo lab sets it on sign-in). Names and values are kept to characters that mean the same
in an HTTP header, a cookie and an RE2 regex, so nothing typed in chat can widen the match.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, field_validator

USER_HEADER = "end-user"
OFF: Final = "off"
# RFC 9110 token characters, less those that are special in a regex; lower case in HTTP/2.
_HEADER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_VALUE = re.compile(r"^[A-Za-z0-9._@:+-]{1,128}$")
# Headers Envoy sets or routes on itself: a cohort on one of them would not mean a cohort.
_RESERVED = frozenset({"cookie", "host", "authority", "content-length", "te"})
VALUE_RULE = "letters, digits and . _ @ : + - (up to 128)"
NAME_RULE = "letters, digits, '-' and '_' (up to 63, starting with a letter or digit)"


class Cohort(BaseModel):
    """The requests sent to the canary ahead of the catch-all route."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    by: Literal["header", "cookie", "user"]
    name: str  # the header or cookie name; `end-user` for a user
    value: str

    @field_validator("value")
    @classmethod
    def _plain_value(cls, value: str) -> str:
        if not _VALUE.fullmatch(value):
            raise ValueError(f"{value!r} is not a cohort value: use {VALUE_RULE}")
        return value

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _COOKIE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a header or cookie name: use {NAME_RULE}")
        return name

    @property
    def text(self) -> str:
        """As it is typed after `cohort`: `header x-beta=1`, `cookie user=jason`, `user jason`."""
        if self.by == "user":
            return f"user {self.value}"
        return f"{self.by} {self.name}={self.value}"


CohortChange = Cohort | Literal["off"]  # None, where a change is optional, leaves it alone


def cohort_problem(by: str, name: str, value: str) -> str | None:
    """Why these words make no cohort, in words that say what to write; None when they do."""
    if by == "header" and name.lower() in _RESERVED:
        hint = "`cookie NAME=VALUE`" if name.lower() == "cookie" else "another header"
        return f"the {name.lower()} header cannot pick a cohort: use {hint}"
    pattern = _HEADER_NAME if by == "header" else _COOKIE_NAME
    if by != "user" and not pattern.fullmatch(name.lower() if by == "header" else name):
        return f"{name[:30]!r} is not a {by} name: use {NAME_RULE}"
    if not _VALUE.fullmatch(value):
        return f"{value[:30]!r} is not a {by} value: use {VALUE_RULE}"
    return None


def make_cohort(by: str, name: str, value: str) -> Cohort:
    """The cohort, with header names in lower case (HTTP/2 sends them so); ValueError with the
    problem when the words make none."""
    problem = cohort_problem(by, name, value)
    if problem is not None:
        raise ValueError(problem)
    if by == "user":
        return Cohort(by="user", name=USER_HEADER, value=value)
    if by == "header":
        return Cohort(by="header", name=name.lower(), value=value)
    return Cohort(by="cookie", name=name, value=value)
