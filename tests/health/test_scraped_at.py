"""When the canary was last scraped, read from its own series in the look's first query: it
never counts as requests, and a timestamp that is no time at all is not known, never an error
that stops the look."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from bot.health.analysis import counts_of, scraped_at
from bot.health.client import Vector

LABEL = "destination_version"
AT = datetime(2026, 12, 2, 18, 0, 15, tzinfo=UTC)


def answer(canary_stamp: float, stable_stamp: float = 1.0) -> Vector:
    return {
        ((LABEL, "v2"), ("response_class", "2xx")): 95.0,
        ((LABEL, "v2"), ("response_class", "5xx")): 5.0,
        ((LABEL, "v1"), ("response_class", "2xx")): 900.0,
        ((LABEL, "v2"), ("scrape", "newest")): canary_stamp,
        ((LABEL, "v1"), ("scrape", "newest")): stable_stamp,
    }


def test_the_timestamps_are_read_per_version_and_never_counted_as_requests() -> None:
    requests = answer(AT.timestamp(), stable_stamp=AT.timestamp() - 7)
    canary, stable = counts_of("v2", LABEL, requests, {}), counts_of("v1", LABEL, requests, {})
    assert (canary.requests, canary.errors, canary.scraped_at) == (100.0, 5.0, AT)
    assert (stable.requests, stable.errors) == (900.0, 0.0)
    assert stable.scraped_at is not None and (AT - stable.scraped_at).total_seconds() == 7


@pytest.mark.parametrize("stamp", [math.nan, math.inf, -math.inf, 1e300, -1e300])
def test_a_timestamp_that_is_no_time_is_not_known(stamp: float) -> None:
    assert scraped_at("v2", LABEL, answer(stamp)) is None
    assert counts_of("v2", LABEL, answer(stamp), {}).requests == 100.0


def test_no_timestamp_series_is_not_known() -> None:
    requests = {k: v for k, v in answer(AT.timestamp()).items() if ("scrape", "newest") not in k}
    assert scraped_at("v2", LABEL, requests) is None
