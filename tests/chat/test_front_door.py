"""The HTTP front door over real sockets: the running bot (Bolt app, real Redis, the sandbox API
server, a fake Slack) against huge, unsigned, malformed, slow and simultaneous requests."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bot.chat.http import MAX_BODY, MAX_TEXT
from tests.support.harness import SECRET, Bot

HUGE = 200 << 20
BLOCK = 64 << 10


def address(bot: Bot) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(bot.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def signature(body: bytes, timestamp: str) -> str:
    """Slack's v0 scheme, over the bytes on the wire."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(SECRET.encode(), base, hashlib.sha256).hexdigest()


def signed_post(
    bot: Bot, body: bytes, content_type: str = "application/x-www-form-urlencoded"
) -> tuple[int, str]:
    timestamp = str(int(time.time()))
    conn = http.client.HTTPConnection(*address(bot), timeout=30)
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature(body, timestamp),
    }
    try:
        conn.request("POST", "/slack/events", body=body, headers=headers)
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


def peak_rss_reset() -> int:
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
    return rss("VmRSS")


def rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) << 10
    raise AssertionError(f"no {field} in /proc/self/status")


class Upload:
    """A request head, then a body streamed while the reply is read, as a hostile client would."""

    def __init__(self, bot: Bot, head: bytes, chunks: Iterator[bytes]) -> None:
        self.sock = socket.create_connection(address(bot), timeout=60)
        self.sock.sendall(head)
        self.sent, self.finished = 0, threading.Event()
        self._pump = threading.Thread(target=self._send, args=(chunks,))
        self._pump.start()

    def _send(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                self.sock.sendall(chunk)
                self.sent += len(chunk)
            self.finished.set()
        except OSError:
            pass  # the server closed the connection: it wants no more

    def status(self) -> tuple[int, bool]:
        """The reply's status, and whether the whole body had been sent before it came."""
        line = self.sock.makefile("rb").readline()
        finished = self.finished.is_set()
        with contextlib.suppress(OSError):  # not connected any more: the server closed it
            self.sock.shutdown(socket.SHUT_RDWR)
        self._pump.join()
        self.sock.close()
        return int(line.split()[1]), finished


def blocks(total: int, *, chunked: bool = False) -> Iterator[bytes]:
    block = b"x" * BLOCK
    frame = b"%x\r\n" % BLOCK + block + b"\r\n" if chunked else block
    for _ in range(total // BLOCK):
        yield frame


def head(*lines: str) -> bytes:
    return "\r\n".join(["POST /slack/events HTTP/1.1", "Host: bot", *lines, "", ""]).encode()


@pytest.mark.parametrize(
    ("framing", "expected"),
    [
        ("Content-Length: -1", 400),
        ("Content-Length: two hundred", 400),
        (f"Content-Length: {HUGE}", 413),
        ("Transfer-Encoding: chunked", 413),
    ],
)
def test_a_huge_unsigned_body_is_refused_before_it_is_read(
    bot: Bot, framing: str, expected: int
) -> None:
    before = peak_rss_reset()
    upload = Upload(bot, head(framing), blocks(HUGE, chunked=framing.startswith("Transfer")))
    status, finished = upload.status()
    assert status == expected
    assert not finished and upload.sent < HUGE
    assert rss("VmHWM") - before < 32 << 20  # the body is 200 MiB


def test_a_post_without_a_length_is_refused(bot: Bot) -> None:
    upload = Upload(bot, head(), iter(()))
    assert upload.status()[0] == 411


def test_a_body_over_the_limit_is_refused_even_when_signed(bot: Bot) -> None:
    body = bot.command("weather 10%").encode() + b"&pad=" + b"x" * MAX_BODY
    timestamp = str(int(time.time()))
    framing = [
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {len(body)}",
        f"X-Slack-Request-Timestamp: {timestamp}",
        f"X-Slack-Signature: {signature(body, timestamp)}",
    ]
    assert Upload(bot, head(*framing), iter([body])).status()[0] == 413


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What was logged at WARNING or above about the request; waitress's "Task queue depth is
    1" (all its threads busy, on a loaded machine) is about the server's load, not the request."""
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    return [r for r in logged if r.name != "waitress.queue"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Slack-Request-Timestamp": "1"},
        {"X-Slack-Request-Timestamp": "9" * 5000, "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
    ],
    ids=["none", "no-signature", "huge-timestamp", "word-timestamp"],
)
def test_an_unsigned_request_is_refused_with_401(
    bot: Bot, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    conn = http.client.HTTPConnection(*address(bot), timeout=30)
    conn.request("POST", "/slack/events", body=bot.command("weather 10%"), headers=headers)
    assert conn.getresponse().status == 401
    conn.close()
    [line] = warnings(caplog)
    assert line.name == "bot.chat.http"  # refused at the door: Bolt never saw it


def test_200_simultaneous_connections_are_all_answered(bot: Bot) -> None:
    host, port = address(bot)
    ready = threading.Barrier(200)

    def probe(_: int) -> int:
        ready.wait()
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
        conn.close()
        return status

    with ThreadPoolExecutor(max_workers=200) as pool:
        assert list(pool.map(probe, range(200))) == [200] * 200


def test_idle_clients_hold_no_thread_and_a_signed_command_gets_through(bot: Bot) -> None:
    threads = threading.active_count()
    idle = [socket.create_connection(address(bot), timeout=60) for _ in range(100)]
    for sock in idle:
        sock.sendall(head("Content-Length: 100"))
    # Accepted in order, so these were accepted before the command's connection.
    assert bot.post(bot.command("weather 10%")) == 200
    assert threading.active_count() < threads + 20  # not a thread per idle client
    for sock in idle:
        sock.close()


@pytest.mark.slow
def test_a_silent_client_is_disconnected(bot: Bot) -> None:
    with socket.create_connection(address(bot), timeout=60) as sock:
        sock.sendall(head("Content-Length: 100"))
        with contextlib.suppress(ConnectionResetError):  # closed, either way
            assert sock.recv(1) == b""


def click(**overrides: Any) -> dict[str, Any]:
    payload = {
        "type": "block_actions",
        "user": {"id": "U2"},
        "team": {"id": "T0TEST"},
        "channel": {"id": "C0CANARY"},
        "message": {"user": "U0BOT", "ts": "1.2", "text": "card"},
        "trigger_id": "click-1",
        "actions": [{"action_id": "canary:pause", "value": "r1:1", "block_id": "b"}],
    }
    return payload | overrides


def form(**fields: str) -> bytes:
    return urllib.parse.urlencode(fields).encode()


def payload(value: object) -> bytes:
    return form(payload=json.dumps(value))


def command(**overrides: str) -> dict[str, str]:
    return {"command": "/canary", "user_id": "U1", "text": "help", **overrides}


MALFORMED: dict[str, tuple[bytes, str]] = {
    "not-a-form": (b"just some words", "application/x-www-form-urlencoded"),
    "bad-percent-escapes": (b"%zz=%%&&=&command", "application/x-www-form-urlencoded"),
    "not-utf8": (b"command=/canary&user_id=U1&text=\xff\xfe", "application/x-www-form-urlencoded"),
    "payload-not-json": (form(payload="{'type': block_actions"), ""),
    "payload-a-list": (payload([1, 2]), ""),
    "payload-a-string": (payload("block_actions"), ""),
    "payload-nested-deep": (form(payload="[" * 100_000), ""),
    "payload-empty-object": (payload({}), ""),
    "no-user": (payload({k: v for k, v in click().items() if k != "user"}), ""),
    "user-a-string": (payload(click(user="U2")), ""),
    "user-without-id": (payload(click(user={"name": "x"})), ""),
    "no-actions": (payload({k: v for k, v in click().items() if k != "actions"}), ""),
    "actions-empty": (payload(click(actions=[])), ""),
    "actions-a-string": (payload(click(actions="pause")), ""),
    "action-without-value": (payload(click(actions=[{"action_id": "canary:pause"}])), ""),
    "action-id-a-number": (payload(click(actions=[{"action_id": 7, "value": "r1:1"}])), ""),
    "channel-a-string": (payload(click(channel="C0CANARY")), ""),
    "enterprise-a-number": (payload(click(enterprise=5)), ""),
    "authorizations-a-number": (payload(click(authorizations=5)), ""),
    "response-urls-of-strings": (payload(click(response_urls=["x"])), ""),
    "attachment-action": (payload({"type": "interactive_message", "callback_id": "canary:x"}), ""),
    "json-body-wrong-shape": (json.dumps(click(user=5)).encode(), "application/json"),
    "command-without-user": (form(command="/canary", text="weather 10%"), ""),
    "command-authorizations": (form(**command(authorizations="x")), ""),
    "command-huge-text": (form(**command(text="weather " + "x" * MAX_TEXT)), ""),
    "action-huge-value": (payload(click(actions=[{"action_id": "a", "value": "x" * 900_000}])), ""),
    "ssl-check-without-token": (form(ssl_check="1"), ""),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_signed_request_gets_a_4xx_and_one_log_line(
    bot: Bot, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    body, content_type = MALFORMED[case]
    caplog.clear()
    status, _ = signed_post(bot, body, content_type or "application/x-www-form-urlencoded")
    assert 400 <= status < 500
    [line] = warnings(caplog)
    assert line.name == "bot.chat.http" and len(line.getMessage()) < 300


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
READ_BY_BOLT_OR_US = [
    "type", "user", "team", "channel", "enterprise", "authorizations", "actions", "event",
    "message", "view", "response_url", "response_urls", "ts", "text", "trigger_id",
    "enterprise_id", "team_id", "user_id", "channel_id", "thread_ts", "is_enterprise_install",
    "function_data", "value", "action_id", "id",
]  # fmt: skip


def test_no_signed_button_press_gets_a_5xx(bot: Bot) -> None:
    """Any JSON value in any field that Bolt or the bot reads is answered, and never with 5xx."""

    @hypothesis_settings(max_examples=150)
    @given(
        where=st.sampled_from(["", "user", "channel", "message", "actions.0"]),
        key=st.sampled_from(READ_BY_BOLT_OR_US),
        value=JSON,
    )
    def press(where: str, key: str, value: object) -> None:
        body = click(actions=[{"action_id": "canary:pause", "value": "not-ours"}])
        target: Any = body
        for step in filter(None, where.split(".")):
            target = target[int(step)] if step.isdigit() else target[step]
        target[key] = value
        assert signed_post(bot, payload(body))[0] < 500

    press()


def test_no_signed_command_gets_a_5xx(bot: Bot) -> None:
    """Any text in any form field that Bolt or the bot reads is answered, and never with 5xx."""

    @hypothesis_settings(max_examples=100)
    @given(key=st.sampled_from([*READ_BY_BOLT_OR_US, "command", "text"]), value=st.text())
    def send(key: str, value: str) -> None:
        assert signed_post(bot, form(**command(**{key: value})))[0] < 500

    send()
