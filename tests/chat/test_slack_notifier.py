"""The Slack notifier against the fake Web API: card in place, health tables, the chart."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.chat.slack import SlackNotifier, web_client
from bot.rollout.model import Notify, Phase, Rollout, StepPlan, Target, Verdict
from bot.sandbox.fake_slack import FakeSlack
from bot.store.redis_store import RolloutStore, connect

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def verdict(step: int, outcome: str, success: float, p99: float) -> Verdict:
    return Verdict(
        outcome=outcome,
        at=T0 + timedelta(seconds=30 * (step + 1)),
        step=step,
        summary=f"{outcome} at step {step + 1}",
        figures={
            "window_s": 60.0,
            "canary_requests": 200.0,
            "canary_errors": 200 * (100 - success) / 100,
            "canary_success_rate": success,
            "canary_p99_ms": p99,
            "stable_requests": 1800.0,
            "stable_errors": 0.0,
            "stable_success_rate": 100.0,
            "stable_p99_ms": 90.0,
        },
    )


def rollout(phase: Phase, verdicts: tuple[Verdict, ...]) -> Rollout:
    return Rollout(
        id="r1",
        target=Target(namespace="default", vs="weather", stable="v1", canary="v2"),
        steps=StepPlan(weights=(10, 100), interval_s=30),
        phase=phase,
        step=0,
        weight=10,
        started_by="U1",
        channel="C1",
        created_at=T0,
        updated_at=T0,
        verdicts=verdicts,
    )


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def test_health_tables_go_in_the_thread_and_the_chart_at_the_end(
    slack: FakeSlack, redis_url: str
) -> None:
    notifier = SlackNotifier(
        web_client("xoxb-test-token", slack.url + "/api/"),
        RolloutStore(connect(redis_url)),
        lambda: T0,
    )
    first = verdict(0, "fail", 95.0, 120.0)
    notifier.notify(rollout(Phase.PROGRESSING, ()), Notify(event="started", text="started"))
    notifier.notify(rollout(Phase.PROGRESSING, (first,)), Notify(event="health", text="fail"))
    second = verdict(0, "fail", 94.0, 130.0)
    notifier.notify(
        rollout(Phase.FAILED, (first, second)),
        Notify(event="auto-rollback", text="weather back on v1"),
    )
    [card] = slack.calls_to("chat.postMessage")[:1]
    ts = next(iter(slack.messages("C1")))
    replies = [c.body for c in slack.calls_to("chat.postMessage")[1:]]
    assert all(r["thread_ts"] == ts for r in replies)
    table = replies[0]["text"]
    assert "metric" in table and "success rate" in table and "95.0%" in table
    assert "canary" in table and "stable" in table and "threshold" in table
    assert replies[1]["text"] == "weather back on v1"
    assert all(c.body["ts"] == ts for c in slack.calls_to("chat.update"))
    [upload] = slack.calls_to("upload")
    png = upload.raw
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert_valid_png(png)
    [done] = slack.calls_to("files.completeUploadExternal")
    assert done.body["channel_id"] == "C1" and done.body["thread_ts"] == ts
    assert card.body["channel"] == "C1"


def assert_valid_png(data: bytes) -> None:
    """Walk the chunks and check every CRC; the image header says how big it is."""
    offset, kinds = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc
        kinds.append(kind)
        offset += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 300
