"""The weather VirtualService as it stands on the running bot's sandbox API server, and the
cohort's route in it."""

from __future__ import annotations

from typing import Any

from bot.mesh.cohort import COHORT_ROUTE
from tests.support.harness import Bot


def live(bot: Bot) -> dict[str, Any]:
    vs = bot.cluster.get_object("default", "virtualservices", "weather")
    assert vs is not None
    return vs


def cohort_route(bot: Bot) -> dict[str, Any] | None:
    return next((r for r in live(bot)["spec"]["http"] if r.get("name") == COHORT_ROUTE), None)
