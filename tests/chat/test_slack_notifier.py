"""The Slack notifier against the fake Web API: card in place, health tables, the chart."""

from __future__ import annotations

import json
import logging
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block

from bot.chat.health_text import health_head
from bot.chat.slack import SlackNotifier, web_client
from bot.health.chart import ChartError, chart_png, chart_png_isolated
from bot.health.verdict import Figures, Side, judge
from bot.rollout.model import Notify, Phase, Rollout, StepPlan, Target, Verdict
from bot.store.redis_store import RolloutStore, connect
from policies.model import HealthThresholds
from tests.chat.phone import render_blocks, too_wide
from tests.support.fake_slack import FakeSlack

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
DEFAULTS = HealthThresholds()


def verdict(
    step: int,
    success: float,
    p99: float,
    *,
    stable_p99: float = 90.0,
    thresholds: HealthThresholds = DEFAULTS,
) -> Verdict:
    figures = Figures(
        canary=Side(requests=200.0, errors=200 * (100 - success) / 100, p99_ms=p99),
        stable=Side(requests=1800.0, errors=0.0, p99_ms=stable_p99),
        window_s=60.0,
    )
    return judge(figures, thresholds, at=T0 + timedelta(seconds=30 * (step + 1)), step=step)


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
    first = verdict(0, 95.0, 120.0)
    notifier.notify(rollout(Phase.PROGRESSING, ()), Notify(event="started", text="started"))
    notifier.notify(rollout(Phase.PROGRESSING, (first,)), Notify(event="health", text="fail"))
    second = verdict(0, 94.0, 130.0)
    final = rollout(Phase.FAILED, (first, second))
    notifier.notify(final, Notify(event="auto-rollback", text="weather back on v1"))
    [done] = [slack.wait_for(lambda c: c.method == "files.completeUploadExternal", timeout=60)]
    [card] = slack.calls_to("chat.postMessage")[:1]
    ts = next(iter(slack.messages("C1")))
    replies = [c.body for c in slack.calls_to("chat.postMessage")[1:]]
    assert all(r["thread_ts"] == ts for r in replies)
    check = replies[0]
    assert check["text"] == health_head(first) and "95.0%" in json.dumps(check["blocks"])
    assert block_rows(check["blocks"]) == [list(row) for row in first.rows]
    assert agrees_with_rows(check["blocks"])
    assert too_wide(render_blocks(check["blocks"])) == []
    assert replies[1]["text"] == "weather back on v1"
    assert all(c.body["ts"] == ts for c in slack.calls_to("chat.update"))
    [upload] = slack.calls_to("upload")
    png = upload.raw
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert_valid_png(png)
    assert png == chart_png(final)  # drawn in a child process, byte for byte the same
    assert done.body["channel_id"] == "C1" and done.body["thread_ts"] == ts
    assert card.body["channel"] == "C1"


def test_the_thread_table_shows_the_thresholds_the_verdict_was_judged_with(
    slack: FakeSlack, redis_url: str
) -> None:
    notifier = SlackNotifier(
        web_client("xoxb-test-token", slack.url + "/api/"),
        RolloutStore(connect(redis_url)),
        lambda: T0,
    )
    judged = verdict(0, 100.0, 350.0, stable_p99=340.0, thresholds=HealthThresholds(max_p99_ms=300))
    assert judged.outcome == "fail"
    assert verdict(0, 100.0, 350.0, stable_p99=340.0).outcome == "pass"  # as the defaults judge
    notifier.notify(rollout(Phase.PROGRESSING, (judged,)), Notify(event="health", text="fail"))
    [_, reply] = [c.body for c in slack.calls_to("chat.postMessage")]
    assert reply["text"].startswith(
        "❌ health check at step 1: fail — canary p99 350 ms is above 300 ms"
    )
    assert block_rows(reply["blocks"]) == [list(row) for row in judged.rows]
    assert ["p99 latency", "350 ms", "340 ms", "≤ 300 ms", "fail"] in block_rows(reply["blocks"])
    assert agrees_with_rows(reply["blocks"]) and "500 ms" not in json.dumps(reply["blocks"])


def block_rows(blocks: list[dict[str, Any]]) -> list[list[str]]:
    """The rows of a health check posted as blocks: metric, canary, stable, threshold, status;
    the blocks are valid Block Kit."""
    assert [b.to_dict() for b in Block.parse_all(blocks)] == blocks
    rows = []
    for section in blocks[1:]:
        title = re.fullmatch(r"\S+ \*(?P<metric>.+)\* (?P<status>[a-z]+)", section["text"]["text"])
        assert title is not None, section
        figures = [f["text"].split("_ ", 1)[1] for f in section["fields"]]
        rows.append([title["metric"], *figures, title["status"]])
    return rows


def agrees_with_rows(blocks: list[dict[str, Any]]) -> bool:
    """Whether the one line above the rows says what the rows say."""
    statuses = {row[-1] for row in block_rows(blocks)}
    said = next((s for s in ("fail", "inconclusive") if s in statuses), "pass")
    return f": {said} — " in blocks[0]["text"]["text"]


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


class Gate:
    """A chart drawer that waits until the test lets it finish."""

    def __init__(self, fail: bool = False) -> None:
        self.drawing, self.release, self.fail = threading.Event(), threading.Event(), fail

    def __call__(self, rollout: Rollout) -> bytes:
        self.drawing.set()
        self.release.wait(30)
        if self.fail:
            raise ChartError("drawing the chart took more than 30 s")
        return b"\x89PNG not really"


class Logged(logging.Handler):
    """Sets `seen` when a record arrives, so a test can wait for a background thread's log."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen, self.messages = threading.Event(), list[str]()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.seen.set()


@pytest.fixture
def logged() -> Iterator[Logged]:
    handler = Logged()
    logger = logging.getLogger("bot.chat.slack")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def notifier_for(
    slack: FakeSlack, redis_url: str, draw: Callable[[Rollout], bytes]
) -> SlackNotifier:
    client = web_client("xoxb-test-token", slack.url + "/api/")
    return SlackNotifier(client, RolloutStore(connect(redis_url)), lambda: T0, draw=draw)


def test_notify_returns_while_the_chart_is_still_being_drawn(
    slack: FakeSlack, redis_url: str
) -> None:
    gate = Gate()
    notifier = notifier_for(slack, redis_url, gate)
    final = rollout(Phase.FAILED, (verdict(0, 94.0, 130.0),))
    notifier.notify(final, Notify(event="auto-rollback", text="weather back on v1"))
    assert gate.drawing.wait(10), "the chart was never drawn"
    assert [c.body["text"] for c in slack.calls_to("chat.postMessage")[1:]] == [
        "weather back on v1"
    ]
    assert slack.calls_to("upload") == []
    gate.release.set()
    slack.wait_for(lambda c: c.method == "files.completeUploadExternal")
    assert [c.raw for c in slack.calls_to("upload")] == [b"\x89PNG not really"]


def test_a_chart_that_cannot_be_drawn_leaves_the_thread_message_and_a_log_line(
    slack: FakeSlack, redis_url: str, logged: Logged
) -> None:
    gate = Gate(fail=True)
    gate.release.set()
    notifier = notifier_for(slack, redis_url, gate)
    final = rollout(Phase.FAILED, (verdict(0, 94.0, 130.0),))
    notifier.notify(final, Notify(event="auto-rollback", text="weather back on v1"))
    assert logged.seen.wait(10), "nothing was logged"
    assert logged.messages == [
        "rollout r1: posted without its chart: drawing the chart took more than 30 s"
    ]
    assert slack.calls_to("chat.postMessage")[-1].body["text"] == "weather back on v1"
    assert slack.calls_to("files.getUploadURLExternal") == []


def test_a_chart_past_its_deadline_is_given_up() -> None:
    final = rollout(Phase.FAILED, (verdict(0, 94.0, 130.0),))
    with pytest.raises(ChartError, match=r"drawing the chart took more than 0\.001 s"):
        chart_png_isolated(final, deadline_s=0.001)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_a_short_rate_limit_is_waited_out(slack: FakeSlack) -> None:
    sleeps = Sleeps()
    client = web_client("xoxb-test-token", slack.url + "/api/", sleep=sleeps)
    slack.rate_limit("chat.postMessage", times=2, retry_after=3)
    assert client.chat_postMessage(channel="C1", text="hello")["ok"]
    assert sleeps == [3.0, 3.0]


def test_a_rate_limit_storm_fails_the_call_instead_of_holding_it_for_minutes(
    slack: FakeSlack,
) -> None:
    sleeps = Sleeps()
    client = web_client("xoxb-test-token", slack.url + "/api/", sleep=sleeps)
    slack.rate_limit("chat.postMessage", times=3, retry_after=4)
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C1", text="hello")
    assert refused.value.response["error"] == "ratelimited"
    assert sleeps == [4.0, 4.0]  # a third wait would pass the 10 s budget
    slack.rate_limit("chat.postMessage", times=1, retry_after=30)
    sleeps.clear()
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="hello")
    assert sleeps == []  # Retry-After 30 alone is past the budget
    assert client.chat_postMessage(channel="C1", text="hello")["ok"]


def test_a_card_slow_to_post_holds_up_no_other_rollouts_card(
    slack: FakeSlack, redis_url: str
) -> None:
    notifier = notifier_for(slack, redis_url, lambda _: b"")
    slow = rollout(Phase.PROGRESSING, ()).model_copy(update={"id": "r-slow", "channel": "CSLOW"})
    other = rollout(Phase.PROGRESSING, ()).model_copy(update={"id": "r-other"})
    release = slack.hold("CSLOW")
    first = threading.Thread(target=notifier.show_card, args=(slow,))
    first.start()
    slack.wait_holding(1)
    try:
        notifier.show_card(other)  # with one lock for every card, this waits for CSLOW
        assert [c.body["channel"] for c in slack.calls_to("chat.postMessage")] == ["C1"]
    finally:
        release.set()
        first.join()
    assert sorted(c.body["channel"] for c in slack.calls_to("chat.postMessage")) == [
        "C1",
        "CSLOW",
    ]


def test_one_rollouts_card_is_posted_once_however_many_notices_race(
    slack: FakeSlack, redis_url: str
) -> None:
    notifier = notifier_for(slack, redis_url, lambda _: b"")
    card = rollout(Phase.PROGRESSING, ()).model_copy(update={"id": "r-raced"})
    release = slack.hold("C1")
    racers = [threading.Thread(target=notifier.show_card, args=(card,)) for _ in range(4)]
    for racer in racers:
        racer.start()
    slack.wait_holding(1)
    release.set()
    for racer in racers:
        racer.join()
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert len(slack.calls_to("chat.update")) == 3
