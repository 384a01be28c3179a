"""Fault drills end on time whichever replica is there then: the drill is on record in Redis,
not in the process that started it. Virtual time (an injected clock), the sandbox API server
and real Redis; the replica that started the drill is gone before it ends."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import Parts, Settings, build
from bot.chat.dispatch import Asker
from commands import parse
from sandbox.apiserver import SandboxApiServer
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
QA = "U0QA000001"
POLICY = f"""
rules:
  - namespace: "*"
    allow:
      fault: [{QA}]
      set-weight: [{QA}]
      rollback: [{QA}]
      promote: [{QA}]
    drills:
      default: 10m
      max: 30m
"""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def cluster(sandbox: SandboxApiServer) -> SandboxApiServer:
    seeds = [p for p in bundled_seed_paths() if p.name == "weather.yaml"]
    seed(sandbox, load_yaml_documents(seeds))
    return sandbox


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return path


@contextmanager
def replica(
    api_client: Any, redis_url: str, policy: Path, clock: Clock, told: list[str]
) -> Iterator[Parts]:
    parts = build(
        Settings(REDIS_URL=redis_url, CANARY_POLICY_FILE=str(policy)),
        clock=clock,
        kube_api=api_client,
        tell=lambda channel, text: told.append(f"{channel}: {text}"),
    )
    try:
        yield parts
    finally:
        parts.mesh.close()


def say(parts: Parts, text: str) -> list[str]:
    return [r.text for r in parts.dispatcher.run(parse(text), Asker(QA, "C1"), text=text)]


def live(cluster: SandboxApiServer) -> dict[str, Any]:
    vs = cluster.get_object("default", "virtualservices", "weather")
    assert vs is not None
    return copy.deepcopy(vs)


def test_a_drill_ends_on_time_after_the_replica_that_started_it_is_replaced(
    cluster: SandboxApiServer, api_client: Any, redis_url: str, policy_file: Path
) -> None:
    before = live(cluster)["spec"]
    clock, told = Clock(), []
    with replica(api_client, redis_url, policy_file, clock, told) as first:
        [reply] = say(first, "weather fault delay 7s 10% for 15m")
        assert "weather: fault delay 7s 10% on the catch-all route until 03:15:00 UTC" in reply
        route = live(cluster)["spec"]["http"][0]
        assert route["fault"] == {"delay": {"fixedDelay": "7s", "percentage": {"value": 10.0}}}
    # the first replica is gone; another one leads from now on

    with replica(api_client, redis_url, policy_file, clock, told) as second:
        assert second.drills is not None
        clock.now = T0 + timedelta(minutes=14, seconds=59)
        assert second.drills.expire_due() == []
        assert "fault" in live(cluster)["spec"]["http"][0]
        clock.now = T0 + timedelta(minutes=15)
        [ended] = second.drills.expire_due()
        assert ended.drill.text == "fault delay 7s 10%"
        assert live(cluster)["spec"] == before
        assert second.drills.expire_due() == []  # once
        actions = [(e.action, e.detail) for e in second.store.history("default", "weather")]
    assert actions == [
        ("fault", "fault delay 7s 10% for 15m"),
        ("fault-ended", "fault delay 7s 10%: its time was up"),
    ]
    assert told[-1] == "C1: weather: fault delay 7s 10% removed (its time was up)"


def test_a_drill_takes_off_only_what_it_added(
    cluster: SandboxApiServer, api_client: Any, redis_url: str, policy_file: Path
) -> None:
    clock, told = Clock(), []
    with replica(api_client, redis_url, policy_file, clock, told) as parts:
        assert parts.drills is not None
        say(parts, "weather timeout 10s")  # the policy's default: 10m
        say(parts, "weather fault abort 503 5% for 5m")
        cluster.mutate(
            "default",
            "virtualservices",
            "weather",
            lambda vs: vs["spec"]["http"][0].update(retries={"attempts": 2}),
        )
        clock.now = T0 + timedelta(minutes=5)
        [aborted] = parts.drills.expire_due()
        route = live(cluster)["spec"]["http"][0]
        assert aborted.drill.kind == "abort" and "fault" not in route
        assert route["timeout"] == "10s" and route["retries"] == {"attempts": 2}
        cluster.mutate(
            "default",
            "virtualservices",
            "weather",
            lambda vs: vs["spec"]["http"][0].update(timeout="20s"),
        )
        clock.now = T0 + timedelta(minutes=10)
        [timed] = parts.drills.expire_due()  # changed by hand since: left as it is
        route = live(cluster)["spec"]["http"][0]
        assert timed.drill.kind == "timeout" and route["timeout"] == "20s"


@pytest.mark.parametrize(("verb", "ended"), [("rollback", "rolled back"), ("promote", "promoted")])
def test_the_end_of_a_rollout_ends_the_drills_that_went_along_with_it(
    cluster: SandboxApiServer,
    api_client: Any,
    redis_url: str,
    policy_file: Path,
    verb: str,
    ended: str,
) -> None:
    clock, told = Clock(), []
    with replica(api_client, redis_url, policy_file, clock, told) as parts:
        assert parts.drills is not None
        say(parts, "weather 20%")
        say(parts, "weather retries 3 per-try 2s for 30m")
        assert live(cluster)["spec"]["http"][0]["retries"] == {
            "attempts": 3,
            "perTryTimeout": "2s",
        }
        say(parts, f"weather {verb}")
        clock.now = T0 + timedelta(seconds=1)
        [gone] = parts.drills.expire_due()
        assert gone.drill.kind == "retries"
        assert "retries" not in live(cluster)["spec"]["http"][0]
    assert told[-1] == f"C1: weather: retries 3 per-try 2s removed (the rollout was {ended})"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("weather fault delay 7s 10% for 1h", "1h is longer than the policy lets a drill on"),
        ("weather fault abort 500 5%", None),
    ],
)
def test_the_policy_bounds_how_long_a_drill_lasts(
    cluster: SandboxApiServer,
    api_client: Any,
    redis_url: str,
    policy_file: Path,
    text: str,
    said: str | None,
) -> None:
    with replica(api_client, redis_url, policy_file, Clock(), []) as parts:
        [reply] = say(parts, text)
        if said is None:
            assert "until 03:10:00 UTC" in reply  # the policy's default
        else:
            assert said in reply and "for 30m" in reply
            assert "fault" not in live(cluster)["spec"]["http"][0]


def test_drills_are_off_without_a_policy_that_allows_them(
    cluster: SandboxApiServer, api_client: Any, redis_url: str, tmp_path: Path
) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text(f'rules:\n  - namespace: "*"\n    allow:\n      all: [{QA}]\n')
    with replica(api_client, redis_url, strict, Clock(), []) as parts:
        cluster.clear_log()
        [reply] = say(parts, "weather fault delay 7s 10%")
        assert "fault drills are off for weather" in reply
        assert [r for r in cluster.requests if r.is_write] == []


def test_a_second_drill_of_a_kind_is_refused_and_fault_off_ends_them(
    cluster: SandboxApiServer, api_client: Any, redis_url: str, policy_file: Path
) -> None:
    before = live(cluster)["spec"]
    with replica(api_client, redis_url, policy_file, Clock(), []) as parts:
        say(parts, "weather fault delay 7s 10%")
        [again] = say(parts, "weather fault delay 3s 50%")
        assert "weather already has a delay drill (fault delay 7s 10%)" in again
        [status] = say(parts, "weather status")
        assert "drill: fault delay 7s 10% until 03:10:00 UTC" in status
        [off] = say(parts, "weather fault off")
        assert off == "weather: 1 drill(s) ended"
        assert live(cluster)["spec"] == before


def test_one_kinds_off_ends_that_drill_and_leaves_the_other(
    cluster: SandboxApiServer, api_client: Any, redis_url: str, policy_file: Path
) -> None:
    before = live(cluster)["spec"]["http"][0]
    with replica(api_client, redis_url, policy_file, Clock(), []) as parts:
        say(parts, "weather fault delay 7s 10%")
        say(parts, "weather retries 3 per-try 2s")
        assert {"fault", "retries"} <= set(live(cluster)["spec"]["http"][0])
        [none] = say(parts, "weather timeout off")
        assert none == "weather has no timeout drill going on"
        [off] = say(parts, "weather retries off")
        assert off == "weather: 1 drill(s) ended"
        route = live(cluster)["spec"]["http"][0]
        assert "retries" not in route and route["fault"]["delay"]["fixedDelay"] == "7s"
        assert [r.drill.kind for r in parts.drills.book.all()] == ["delay"]  # type: ignore[union-attr]
        [off] = say(parts, "weather fault delay off")
        assert live(cluster)["spec"]["http"][0] == before


def test_plan_shows_a_drills_change_and_writes_nothing(
    cluster: SandboxApiServer, api_client: Any, redis_url: str, policy_file: Path
) -> None:
    with replica(api_client, redis_url, policy_file, Clock(), []) as parts:
        cluster.clear_log()
        [reply] = say(parts, "weather plan fault delay 7s 10%")
        assert reply.startswith("Plan for weather: fault delay 7s 10% for 10m, nothing applied")
        assert "+    fault:" in reply and "fixedDelay: 7s" in reply
        assert [r for r in cluster.requests if r.is_write] == []
        assert parts.drills is not None and parts.drills.book.all() == []
