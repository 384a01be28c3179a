"""A cohort's route: Istio's match for a cohort, and where the route goes in a VirtualService.

The route is named `canary-bot-cohort` so the bot finds exactly its own route again to change
or remove it; it goes right ahead of the first route the split touches (the catch-all), so
requests of the cohort reach it first and every other request goes on as before. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from commands.cohort import OFF, Cohort, CohortChange

COHORT_ROUTE = "canary-bot-cohort"
Json = dict[str, Any]


def cohort_change(
    weight: int | None, cohort: CohortChange | None, *, finalize: bool = False
) -> CohortChange | None:
    """What a change does to the cohort's route: the cohort asked for, else removing it when
    every request goes back to stable (0%, a rollback) or the canary becomes stable (a
    promotion); None leaves it as it is."""
    if cohort is None and (finalize or weight == 0):
        return OFF
    return cohort


def cohort_match(cohort: Cohort) -> list[Json]:
    """Istio's HTTPMatchRequest list for `cohort`. A cookie is matched in the Cookie header as
    Istio's request-routing task does; the name and value are escaped for RE2 all the same."""
    if cohort.by == "cookie":
        pair = re.escape(f"{cohort.name}={cohort.value}")
        return [{"headers": {"cookie": {"regex": f"^(.*?;\\s*)?({pair})(;.*)?$"}}}]
    return [{"headers": {cohort.name: {"exact": cohort.value}}}]


def cohort_route(cohort: Cohort, destination: Mapping[str, Any]) -> Json:
    """The cohort's route: its match, and all of it to the canary's `destination`."""
    return {
        "name": COHORT_ROUTE,
        "match": cohort_match(cohort),
        "route": [{"destination": dict(destination)}],
    }


def cohort_index(routes: Sequence[Mapping[str, Any]]) -> int | None:
    """Where the bot's cohort route is among `routes`, if it is there."""
    return next((i for i, r in enumerate(routes) if r.get("name") == COHORT_ROUTE), None)


def cohort_of(route: Mapping[str, Any]) -> Cohort | None:
    """The cohort a route of ours selects, read back from its match (None if unreadable)."""
    match = route.get("match")
    if not isinstance(match, list) or len(match) != 1 or not isinstance(match[0], Mapping):
        return None
    headers = match[0].get("headers")
    if not isinstance(headers, Mapping) or len(headers) != 1:
        return None
    [(name, rule)] = headers.items()
    if not isinstance(rule, Mapping):
        return None
    if "exact" in rule:
        by = "user" if name == "end-user" else "header"
        return Cohort(by=by, name=str(name), value=str(rule["exact"]))
    found = re.search(r"\((\\?[^()]*?)\)\(;", str(rule.get("regex", "")))
    if name != "cookie" or found is None:
        return None
    cookie, _, value = found.group(1).replace("\\", "").partition("=")
    return Cohort(by="cookie", name=cookie, value=value)


def live_cohort(vs: Mapping[str, Any]) -> Cohort | None:
    """The cohort the bot's route in VirtualService `vs` sends to the canary, if there is one."""
    routes = (vs.get("spec") or {}).get("http") or []
    at = cohort_index(routes)
    try:
        return None if at is None else cohort_of(routes[at])
    except ValueError:  # edited by hand into something the bot would not write
        return None
