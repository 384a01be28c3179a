"""The running bot over the wire, for end-to-end tests: signed HTTP requests into a `Server`
whose Slack is a fake that records every call, the sandbox API server seeded with the bundled
weather app at 100/0, and real Redis. Also: waiting on an event, the bundled seed files, GET."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slack_sdk.signature import SignatureVerifier

from bot.app import Server, Settings
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import write_kubeconfig
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed
from tests.support.fake_slack import FakeSlack

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test-token"
CHANNEL = "C0CANARY"


def seed_file(stem: str) -> Path:
    """The bundled seed file `<stem>.yaml` (weather, httpbin, bookinfo-gateway, ...)."""
    [path] = [p for p in bundled_seed_paths() if p.stem == stem]
    return path


def wait_until(
    predicate: Callable[[], object], timeout: float = 5.0, what: str = "the condition"
) -> None:
    """Return once `predicate()` is true; fail the test if it is not within `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout} s"
        time.sleep(0.01)


def get(url: str) -> tuple[int, str]:
    """GET `url`: its status and body, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


class Bot:
    """A running `Server` seen from Slack's side, with the fake Slack and the sandbox it uses."""

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
        """POST `body` signed with SECRET (or with `signature`); the status and the reply."""
        return signed_post(
            self.url, body, timestamp=timestamp, signature=signature, headers=headers
        )

    def command(
        self, text: str, *, user: str = "U1", trigger: str | None = None, channel: str = CHANNEL
    ) -> str:
        """The form body of `/canary <text>` typed by `user` in `channel`."""
        self._triggers += 1
        return urllib.parse.urlencode(
            {
                "token": "ignored",
                "team_id": "T0TEST",
                "channel_id": channel,
                "user_id": user,
                "command": "/canary",
                "text": text,
                "response_url": self.slack.response_url("cmd"),
                "trigger_id": trigger or f"trigger-{self._triggers}",
            }
        )

    def click(self, action: str, value: str, *, user: str = "U2") -> str:
        """The form body of a press on a card's `action` button carrying `value`."""
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
        """The rollout cards in CHANNEL by ts: messages with blocks, outside any thread."""
        return {
            ts: m
            for ts, m in self.slack.messages(CHANNEL).items()
            if m.get("blocks") and not m.get("thread_ts")
        }

    def drain(self) -> None:
        """Wait until every job the bot took has run to its end; it takes no new work after.

        What a wrongly accepted request would do, it has done by then."""
        assert self.server.slack is not None
        self.server.slack.workers.shutdown()


def signed_post(
    url: str,
    body: str,
    *,
    timestamp: int | None = None,
    signature: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """POST a form `body` to `url` as Slack would, signed with SECRET (or with `signature`)."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    sig = signature or SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)
    request = urllib.request.Request(
        url,
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


def flat(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def button_value(card: dict[str, Any], action: str) -> str:
    for block in card["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == f"canary:{action}":
                return str(element["value"])
    raise AssertionError(f"no {action} button on the card")


def vote(bot: Bot, request_id: str, verb: str, user: str) -> None:
    """`user` presses Approve or Deny (`verb`); replies go to the response_url `vote-<user>`."""
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T0TEST"},
        "channel": {"id": CHANNEL},
        "trigger_id": f"vote-{user}-{verb}",
        "response_url": bot.slack.response_url(f"vote-{user}"),
        "actions": [
            {
                "type": "button",
                "action_id": f"approval:{verb}",
                "value": request_id,
                "block_id": "approval",
                "action_ts": "1",
            }
        ],
    }
    assert bot.post(urllib.parse.urlencode({"payload": json.dumps(payload)})) == 200


def approval_card(bot: Bot, timeout: float = 5.0) -> tuple[str, dict[str, Any]]:
    """The ts and message of the approval card in CHANNEL, once it is posted."""

    def found() -> tuple[str, dict[str, Any]] | None:
        for ts, message in bot.slack.messages(CHANNEL).items():
            if "Approval needed" in flat(message.get("blocks", [])):
                return ts, message
        return None

    wait_until(lambda: found() is not None, timeout, "the approval card")
    card = found()
    assert card is not None
    return card


def request_id(card: dict[str, Any]) -> str:
    for block in card["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == "approval:approve":
                return str(element["value"])
    raise AssertionError("no Approve button")


def responses_to(bot: Bot, name: str) -> list[str]:
    """The texts posted to the response_url called `name`, oldest first."""
    return [
        str(c.body.get("text")) for c in bot.slack.calls_to("response_url") if c.path.endswith(name)
    ]


@contextmanager
def running_bot(tmp_path: Path, redis_url: str, **extra: object) -> Iterator[Bot]:
    """The bot in HTTP mode, with weather at 100/0 in the sandbox and a fake Slack.

    `extra` are more settings by their environment name, e.g. CANARY_POLICY_FILE."""
    with SandboxApiServer() as cluster, FakeSlack(token=TOKEN, member_of=(CHANNEL,)) as slack:
        seed(cluster, load_yaml_documents([seed_file("weather")]))
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


# Each malformed `/canary` text and a fragment of what the asker is told.
MALFORMED = [
    # weights
    ("weather 150%", "150% is over 100"),
    ("weather 101", "101% is over 100"),
    ("weather plan 200%", "200% is over 100"),
    ("weather 99999999999%", "'99999999999%' is over 100"),
    ("weather 10.5%", "weights are whole numbers"),
    ("weather 0,5%", "weights are whole numbers"),
    ("weather .5", "weights are whole numbers"),
    ("weather ten%", "'ten%' is not a weight"),
    ("weather %", "'%' is not a weight"),
    ("weather 10%%", "'10%%' is not a weight"),
    ("weather 1e2", "'1e2' is not a weight"),
    ("weather -5%", "'-5%' is negative"),
    ("weather mirror -1%", "'-1%' is negative"),
    ("weather ١٠%", "write the weight with 0-9"),
    ("weather ５%", "write the weight with 0-9"),
    ("weather 10 %", "put the % right after the number"),
    ("weather mirror on", "'on' is not a weight"),
    # verbs
    ("weather paws", "did you mean `pause`?"),
    ("weather statsu", "did you mean `status`? Try `/canary weather status`"),
    ("weather rollbak", "did you mean `rollback`"),
    ("weather.prod promot", "Try `/canary weather.prod promote`"),
    ("weather dance", "'dance' is not a command: try `/canary weather status`"),
    ("weather help", "`help` goes right after /canary: `/canary help`"),
    ("weather list", "`list` goes right after /canary"),
    ("weather set-weight", "give the weight as a number: `/canary weather 10%`"),
    ("weather to v2", "`to` comes after a weight or `start`"),
    ("weather plan", "`plan` needs a weight: `/canary weather plan 25% to v2`"),
    ("weather mirror", "`mirror` needs a weight or `off`"),
    ("hlep", "did you mean `help`? Try `/canary help`"),
    ("lsit", "did you mean `list`"),
    # service names
    ("Weather! 10%", "'Weather!' is not a service name"),
    ("weather_v2 10%", "up to 63 lower-case letters, digits or '-'"),
    ("-weather 10%", "'-weather' is not a service name"),
    ("weather.prod.eu 10%", "'weather.prod.eu' is not a service name"),
    ("wéather 10%", "'wéather' is not a service name"),
    ("\u212aube 10%", "is not a service name"),  # the Kelvin sign lower-cases to a plain 'k'
    (f"{'a' * 64} 10%", "is not a service name"),
    ("weather", "say what to do with 'weather', like `/canary weather status`"),
    ("status", "`status` needs a service before it: `/canary weather status`"),
    ("10%", "say which service gets the weight"),
    ("10.5% weather", "say which service gets the weight"),
    ("pause weather", "put the service first: `/canary weather pause`"),
    ("10% weather.prod", "put the service first: `/canary weather.prod 10%`"),
    # trailing words
    ("weather 10% foo", "'foo' is unexpected there"),
    ("weather 10% to v2 now", "'now' is unexpected there"),
    ("weather status now", "`status` takes nothing after it; remove 'now'"),
    ("weather abort please", "remove 'please'"),
    ("weather mirror off now", "`mirror off` takes nothing after it; remove 'now'"),
    ("list all", "`list` takes nothing after it; remove 'all'"),
    ("help start now", "`help start` takes nothing after it; remove 'now'"),
    ("weather 10% every 5m", "`every` only goes with `start`"),
    ("weather plan 10% steps 5,100", "`steps` only goes with `start`"),
    # options
    ("weather start to v2 to v3", "`to` is given twice"),
    ("weather start every 5m every 10m", "`every` is given twice"),
    ("weather start steps 5,100 steps 10,100", "`steps` is given twice"),
    ("weather 10% to", "`to` needs a subset, like v2"),
    ("weather start to steps 5,100", "`to` needs a subset"),
    ("weather start steps", "`steps` needs a list, like 5,10,25,50,100"),
    ("weather start every", "`every` needs a duration, like 5m"),
    ("weather start every to v2", "`every` needs a duration"),
    ("weather 10% to V3!", "'V3!' is not a subset or Service name"),
    ("weather 10% to v٣", "'v٣' is not a subset or Service name"),
    ("weather start every 5min", "'5min' is not a duration: write it like 30s, 5m or 1h"),
    ("weather start every 2d", "'2d' is not a duration"),
    ("weather start every ٥m", "'٥m' is not a duration"),
    ("weather start every 25h", "'25h' is out of range"),
    ("weather start every 0s", "'0s' is out of range"),
    ("weather start steps 10,5,100", "steps must climb"),
    ("weather start steps 10,10,100", "steps must climb"),
    ("weather start steps 10,50", "the last step must be 100"),
    ("weather start steps 0,50,100", "steps are percentages from 1 to 100"),
    ("weather start steps 50,150", "steps are percentages from 1 to 100"),
    ("weather start steps 5,x", "'5,x' is not a list of steps"),
    ("weather start steps 5,,100", "is not a list of steps"),
    # help topics and the slash-command echo
    ("help strat", "there is no help on 'strat'; did you mean `start`? Try `/canary help start`"),
    ("help foo", "there is no help on 'foo'; try `/canary help`"),
    ("help weather", "there is no help on 'weather'"),
    ("/cnary weather 10%", "'/cnary' is not needed: start with the service"),
    ("/canary /canary weather 10%", "'/canary' is not needed"),
]
