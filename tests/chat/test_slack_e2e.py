"""Slack end to end over the wire: signed HTTP requests into the running bot, a fake Slack Web
API that records whole request bodies, real Redis, the sandbox API server."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.app import Server, Settings
from bot.sandbox.apiserver import SandboxApiServer
from bot.sandbox.fake_slack import FakeSlack
from bot.sandbox.kubeconfig import write_kubeconfig
from bot.sandbox.seeding import load_yaml_documents, seed
from tests.commands.test_parse import MALFORMED

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test-token"
CHANNEL = "C0CANARY"
WEATHER = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "seeds" / "weather.yaml"


class Bot:
    def __init__(self, server: Server, slack: FakeSlack, cluster: SandboxApiServer) -> None:
        self.server, self.slack, self.cluster = server, slack, cluster
        assert server.http is not None
        self.url = server.http.url + "/slack/events"
        self._triggers = 0

    def post(self, body: str, **kwargs: Any) -> int:
        return self.exchange(body, **kwargs)[0]

    def exchange(
        self,
        body: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        sig = signature or SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)
        request = urllib.request.Request(
            self.url,
            data=body.encode(),
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": sig,
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                return int(reply.status), reply.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode()

    def command(self, text: str, *, user: str = "U1", trigger: str | None = None) -> str:
        self._triggers += 1
        return urllib.parse.urlencode(
            {
                "token": "ignored",
                "team_id": "T0TEST",
                "channel_id": CHANNEL,
                "user_id": user,
                "command": "/canary",
                "text": text,
                "response_url": self.slack.response_url("cmd"),
                "trigger_id": trigger or f"trigger-{self._triggers}",
            }
        )

    def click(self, action: str, value: str, *, user: str = "U2") -> str:
        self._triggers += 1
        payload = {
            "type": "block_actions",
            "user": {"id": user},
            "team": {"id": "T0TEST"},
            "channel": {"id": CHANNEL},
            "trigger_id": f"click-{self._triggers}",
            "response_url": self.slack.response_url("click"),
            "actions": [
                {
                    "type": "button",
                    "action_id": f"canary:{action}",
                    "value": value,
                    "block_id": "buttons",
                    "action_ts": str(time.time()),
                }
            ],
        }
        return urllib.parse.urlencode({"payload": json.dumps(payload)})

    def weights(self) -> list[int]:
        vs = self.cluster.get_object("default", "virtualservices", "weather")
        assert vs is not None
        return [d.get("weight", 100) for d in vs["spec"]["http"][0]["route"]]

    def cards(self) -> dict[str, dict[str, Any]]:
        return {
            ts: m
            for ts, m in self.slack.messages(CHANNEL).items()
            if m.get("blocks") and not m.get("thread_ts")
        }


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def flat(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def button_value(card: dict[str, Any], action: str) -> str:
    for block in card["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == f"canary:{action}":
                return str(element["value"])
    raise AssertionError(f"no {action} button on the card")


@contextmanager
def running_bot(tmp_path: Path, redis_url: str, **extra: object) -> Iterator[Bot]:
    """The bot in HTTP mode, with weather at 100/0 in the sandbox and a fake Slack."""
    with SandboxApiServer() as cluster, FakeSlack(token=TOKEN) as slack:
        seed(cluster, load_yaml_documents([WEATHER]))
        cluster.mutate(
            "default",
            "virtualservices",
            "weather",
            lambda vs: [
                vs["spec"]["http"][0]["route"][0].update(weight=100),
                vs["spec"]["http"][0]["route"][1].update(weight=0),
            ],
        )
        cluster.clear_log()
        settings = Settings.model_validate(
            {
                "REDIS_URL": redis_url,
                "KUBECONFIG": str(write_kubeconfig(tmp_path / "kc", cluster.url)),
                "SLACK_BOT_TOKEN": TOKEN,
                "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": slack.url + "/api/",
                "CANARY_HTTP_PORT": 0,
                "CANARY_LEASE_TTL": 1.0,
                **extra,
            }
        )
        server = Server(settings)
        server.start()
        try:
            yield Bot(server, slack, cluster)
        finally:
            server.stop()


@pytest.fixture
def bot(tmp_path: Path, redis_url: str) -> Iterator[Bot]:
    with running_bot(tmp_path, redis_url) as running:
        yield running


def test_set_weight_then_rollback_by_button_updates_the_card_in_place(bot: Bot) -> None:
    assert bot.post(bot.command("weather 10%")) == 200
    wait_until(lambda: bot.weights() == [90, 10] and bot.cards())
    [(ts, card)] = bot.cards().items()
    text = flat(card["blocks"])
    assert "10%" in text and "▓" in text
    assert all(f"canary:{a}" in text for a in ("resume", "promote", "rollback"))
    assert bot.post(bot.click("rollback", button_value(card, "rollback"))) == 200
    wait_until(lambda: bot.weights() == [100, 0])
    wait_until(
        lambda: (
            "rolled-back" in flat(bot.cards()[ts]["blocks"]).lower()
            or "rolled back" in flat(bot.cards()[ts]["blocks"]).lower()
        )
    )
    assert list(bot.cards()) == [ts]  # the same message, updated in place
    updates = bot.slack.calls_to("chat.update")
    assert updates and all(c.body["ts"] == ts for c in updates)


def test_a_replayed_delivery_does_nothing_twice(bot: Bot) -> None:
    body = bot.command("weather 10%", trigger="the-same-trigger")
    assert bot.post(body, headers={"X-Slack-Retry-Num": "0"}) == 200
    wait_until(lambda: bot.weights() == [90, 10] and bot.cards())
    assert bot.post(body, headers={"X-Slack-Retry-Num": "1"}) == 200
    time.sleep(0.3)  # give a wrongly accepted replay the time to act
    assert len(bot.cards()) == 1
    assert len([r for r in bot.cluster.requests if r.method == "PATCH"]) == 1


def test_a_double_tap_on_rollback_acts_once(bot: Bot) -> None:
    bot.post(bot.command("weather 10%"))
    wait_until(lambda: bool(bot.cards()))
    value = button_value(next(iter(bot.cards().values())), "rollback")
    assert bot.post(bot.click("rollback", value)) == 200
    assert bot.post(bot.click("rollback", value)) == 200
    wait_until(lambda: bot.weights() == [100, 0])
    time.sleep(0.3)
    assert [c for c in bot.slack.calls_to("response_url") if "click" in str(c.body)] == []
    assert len([r for r in bot.cluster.requests if r.method == "PATCH"]) == 2  # set + rollback


@pytest.mark.parametrize("forge", ["unsigned", "tampered", "stale"])
def test_unsigned_tampered_and_stale_requests_get_401_and_change_nothing(
    bot: Bot, forge: str
) -> None:
    body = bot.command("weather 50%")
    if forge == "unsigned":
        status = bot.post(body, signature="v0=" + "0" * 64)
    elif forge == "tampered":
        good = SignatureVerifier(SECRET).generate_signature(
            timestamp=str(int(time.time())), body=body
        )
        status = bot.post(body.replace("50%25", "100%25"), signature=good)
    else:
        stale = int(time.time()) - 6 * 60
        status = bot.post(
            body,
            timestamp=stale,
            signature=SignatureVerifier(SECRET).generate_signature(timestamp=str(stale), body=body),
        )
    assert status == 401
    time.sleep(0.2)
    assert bot.weights() == [100, 0]
    assert [r for r in bot.cluster.requests if r.is_write] == []
    assert bot.slack.calls == [] or all(c.method == "auth.test" for c in bot.slack.calls)


def test_every_malformed_command_is_answered_to_the_asker_and_changes_nothing(bot: Bot) -> None:
    for text, fragment in MALFORMED:
        status, body = bot.exchange(bot.command(text))
        assert status == 200, text
        reply = json.loads(body)
        assert reply["response_type"] == "ephemeral", text
        assert fragment in reply["text"], (text, reply["text"])
    time.sleep(0.2)
    assert bot.cards() == {}
    assert [r for r in bot.cluster.requests if r.is_write] == []
    assert bot.slack.calls_to("chat.postMessage") == []


def test_slack_429_on_chat_update_is_retried_and_the_card_ends_right(bot: Bot) -> None:
    bot.post(bot.command("weather 10%"))
    wait_until(lambda: bool(bot.cards()))
    ts = next(iter(bot.cards()))
    bot.slack.rate_limit("chat.update", times=1, retry_after=1)
    bot.post(bot.click("rollback", button_value(bot.cards()[ts], "rollback")))
    wait_until(lambda: "rolled" in flat(bot.cards()[ts]["blocks"]).lower(), timeout=8)
    statuses = [c.status for c in bot.slack.calls_to("chat.update")]
    assert 429 in statuses and statuses[-1] == 200
