"""Slack: the Bolt app for `/canary` and the card buttons, and the notifier that keeps cards.

The ack path only parses, checks for a replayed delivery and hands the work to a bounded pool;
Slack gets its HTTP 200 in milliseconds and the work happens after. Errors go to the asker
alone (through the command's response_url); state changes are posted in the channel, on the
rollout's card, which is updated in place, with details in its thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.webhook import WebhookClient

from bot.chat.approvals import APPROVAL_PREFIX, GateCards, parse_vote, summary_text
from bot.chat.cards import (
    CARD_ONLY,
    FINAL_EVENTS,
    card_blocks,
    card_fallback_text,
    card_view,
    parse_action,
    with_people,
)
from bot.chat.dispatch import Asker, Dispatcher, Reply, Unreachable
from bot.chat.health_text import health_blocks, health_head
from bot.chat.home import home_view, with_actions
from bot.chat.links import Links
from bot.chat.voting import Approvals
from bot.health.chart import chart_png_isolated
from bot.ops.logs import correlation_id
from bot.ops.watchdog import Watchdog
from bot.rollout.model import Notify, Rollout
from bot.rollout.waves import Wave
from bot.service.waves import WaveBook
from bot.store.errors import StoreError
from bot.store.redis_store import RolloutStore
from commands import Command, CommandError, Verb, parse
from commands.grammar import on_cluster
from commands.model import SAFE
from policies import Policy, is_user, mention, to_alert
from policies import Target as PolicyTarget

log = logging.getLogger(__name__)
# Errors from posts made while a slash command runs, for its asker (see SlackBot._run).
_UNDELIVERED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "undelivered", default=None
)
CARD_TTL_S = 30 * 24 * 3600
RESERVED_TTL_S = 10 * 60
TEXT_MAX = 39_000  # chat.postMessage truncates text after 40,000 characters
# Events that need a person now: they mention people and are broadcast from the thread.
ALERTS = frozenset({"approval-needed", "auto-rollback", "drift"})
SEEN_TTL_S = 15 * 60
# Rollback, abort and pause never wait: they get a lane of their own.
URGENT_VERBS = SAFE
SLACK_TIMEOUT_S = 10
CHARTS_AT_ONCE = 2  # child processes drawing charts: each needs about 85 MB for a second
RATE_LIMIT_BUDGET_S = 10.0


def web_client(
    token: str,
    base_url: str | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    timeout: int = SLACK_TIMEOUT_S,
) -> WebClient:
    """A WebClient that waits out Slack's rate limits (429 + Retry-After), within a budget,
    and gives up on a call not answered within `timeout` seconds."""
    client = WebClient(token=token, timeout=timeout, base_url=base_url or WebClient.BASE_URL)
    client.retry_handlers.append(RateLimitRetry(RATE_LIMIT_BUDGET_S, sleep))
    return client


class RateLimitRetry(RateLimitErrorRetryHandler):
    """Waits out each 429's Retry-After, unless that takes one call past `budget_s` in all.

    A 429 storm with long Retry-Afters then fails the call (`ratelimited`) instead of holding
    a worker for minutes.
    """

    def __init__(self, budget_s: float, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(max_retry_count=5)
        self.budget_s, self._sleep = budget_s, sleep

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        return _waited(state) + _retry_after(response) <= self.budget_s

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        wait = _retry_after(response)
        state.custom_values = {**(state.custom_values or {}), "waited": _waited(state) + wait}
        state.next_attempt_requested = True
        self._sleep(wait)
        state.increment_current_attempt()


def _waited(state: RetryState) -> float:
    return float((state.custom_values or {}).get("waited", 0.0))


def _retry_after(response: HttpResponse | None) -> float:
    headers = {k.lower(): v for k, v in (response.headers if response else {}).items()}
    try:
        return float(headers.get("retry-after", ["1"])[0])
    except ValueError:
        return 1.0


class Workers:
    """Bounded pools: when one is full, the asker is told to try again instead of waiting.

    Urgent work (rollback, abort, pause) has a lane of its own that nothing else can fill, so
    a pile of slow `status` commands never delays a rollback. Every job runs under the
    watchdog: one stuck past its deadline turns /healthz red.
    """

    def __init__(
        self,
        size: int = 8,
        backlog: int = 64,
        *,
        urgent: int = 2,
        watchdog: Watchdog | None = None,
    ) -> None:
        watchdog = watchdog or Watchdog()
        self._normal = _Lane("canary-work", size, backlog, watchdog)
        self._urgent = _Lane("canary-urgent", urgent, backlog, watchdog)

    def submit(self, fn: Callable[[], None], *, urgent: bool = False) -> bool:
        return (self._urgent if urgent else self._normal).submit(fn)

    def shutdown(self) -> None:
        self._normal.shutdown()
        self._urgent.shutdown()


class _Lane:
    def __init__(self, name: str, size: int, backlog: int, watchdog: Watchdog) -> None:
        self._name, self._watchdog = name, watchdog
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(size + backlog)

    def submit(self, fn: Callable[[], None]) -> bool:
        if not self._slots.acquire(blocking=False):
            return False
        future = self._pool.submit(self._watched, fn)
        future.add_done_callback(lambda _: self._slots.release())
        return True

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)

    def _watched(self, fn: Callable[[], None]) -> None:
        with self._watchdog.busy(f"a chat job ({self._name})"):
            fn()


class _KeyedLocks:
    """A lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks.pop(key)
                if users > 1:
                    self._locks[key] = (lock, users - 1)


class SlackNotifier:
    """Renders engine notifications: the card updated in place, the message in its thread."""

    def __init__(
        self,
        client: WebClient,
        store: RolloutStore,
        clock: Callable[[], datetime],
        *,
        gates: GateCards | None = None,
        draw: Callable[[Rollout], bytes] = chart_png_isolated,
        policy: Policy | None = None,
        links: Links | None = None,
        cluster: str | None = None,
        waves: WaveBook | None = None,
        drills: Callable[[str, str], Sequence[str]] | None = None,
    ) -> None:
        self.client, self.store, self.clock = client, store, clock
        self.drills = drills  # the service's fault drills going on, shown on its card
        self.links = links  # the observability add-ons the card links to
        # A wave cluster's rollouts: their cards name the cluster and the wave, and their
        # buttons carry the cluster, so that a tap acts there.
        self.cluster, self.waves = cluster, waves
        self.policy = policy  # names the on-call and the approvers to alert
        self.gates = gates  # with a policy: gated steps get an approval card
        self._posting = _KeyedLocks()  # one card per rollout, without one waiting on another
        self._draw = draw
        self._drawing = threading.BoundedSemaphore(CHARTS_AT_ONCE)

    def notify(self, rollout: Rollout, message: Notify) -> None:
        if rollout.channel is None:
            return  # started outside chat (the CLI): there is no channel to post in
        try:
            self._notify(rollout, message)
        except SlackApiError as e:
            undelivered = _UNDELIVERED.get()
            if undelivered is not None:  # an asker is waiting on this: tell them
                undelivered.append(str(e.response.get("error")))
            raise

    def _notify(self, rollout: Rollout, message: Notify) -> None:
        channel, ts = str(rollout.channel), self.show_card(rollout)
        if message.event in ("started", CARD_ONLY):
            return
        if message.event == "approval-needed" and self.gates is not None:
            request, blocks = self.gates.open_gate(rollout, self.cluster)
            posted = self.client.chat_postMessage(channel=channel, blocks=blocks, text=message.text)
            self.gates.card_posted(request.id, str(posted["ts"]))
        text, blocks = message.text, list[dict[str, Any]]()
        if message.event == "health" and rollout.last_verdict is not None:
            text = health_head(rollout.last_verdict)
            blocks = health_blocks(rollout.last_verdict)
        text, alert = with_people(text, TEXT_MAX), needs_a_human(message)
        if alert and (people := self.to_alert(rollout)):
            text += "\n" + " ".join(mention(p) for p in people)
        # A thread reply that needs someone is also sent to the channel: that notifies.
        self.client.chat_postMessage(
            channel=channel, thread_ts=ts, text=text, blocks=blocks or None, reply_broadcast=alert
        )
        if message.event in FINAL_EVENTS and rollout.verdicts:
            self._post_chart_later(rollout, ts)

    def to_alert(self, rollout: Rollout) -> tuple[str, ...]:
        """The starter, the policy's on-call and approvers for this service."""
        starter = (rollout.started_by,) if is_user(rollout.started_by) else ()
        target = PolicyTarget(rollout.target.namespace, rollout.target.vs)
        named = to_alert(self.policy, target) if self.policy is not None else ()
        return tuple(dict.fromkeys((*starter, *named)))

    def _post_chart_later(self, rollout: Rollout, ts: str) -> None:
        """Draw and upload the chart in the background: `notify` is on the engine's path."""
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run,
            args=(self._post_chart, rollout, ts),
            name=f"chart-{rollout.id}",
            daemon=True,
        ).start()

    def _post_chart(self, rollout: Rollout, ts: str) -> None:
        try:
            with self._drawing:
                png = self._draw(rollout)
            self.client.files_upload_v2(
                channel=rollout.channel,
                thread_ts=ts,
                content=png,
                filename=f"{rollout.target.vs}-{rollout.id}.png",
                title=f"{rollout.target.service}: canary vs stable",
            )
        except Exception as e:  # the thread already has the news; the chart is a picture of it
            log.warning("rollout %s: posted without its chart: %s", rollout.id, e)

    def reserve(self, channel: str, namespace: str, vs: str, text: str) -> None:
        """Post the card of a rollout about to start, before any traffic changes: if Slack
        refuses (the bot is not in the channel, a DM it cannot open), nothing is changed."""
        try:
            posted = self.client.chat_postMessage(channel=channel, text=text)
        except SlackApiError as e:
            raise Unreachable(channel, str(e.response.get("error"))) from e
        except SlackClientError as e:
            raise Unreachable(channel, type(e).__name__) from e
        ref = json.dumps((str(posted["channel"]), str(posted["ts"])))
        self.store.cache_set(_reserved_key(channel, namespace, vs), ref, RESERVED_TTL_S)

    def show_card(self, rollout: Rollout) -> str:
        """Post the rollout's card, or update it in place; returns its ts."""
        view = card_view(
            rollout,
            self.clock(),
            self.links,
            cluster=self.cluster,
            wave=self._wave(rollout),
            drills=self._drills(rollout),
        )
        blocks, text = card_blocks(view), card_fallback_text(view)
        with self._posting.hold(rollout.id):
            ref = self.card_ref(rollout.id) or self._adopt(rollout)
            if ref is None:
                posted = self.client.chat_postMessage(
                    channel=str(rollout.channel), blocks=blocks, text=text
                )
                ref = (str(posted["channel"]), str(posted["ts"]))
                self.store.cache_set(_card_key(rollout.id), json.dumps(ref), CARD_TTL_S)
                return ref[1]
        self.client.chat_update(channel=ref[0], ts=ref[1], blocks=blocks, text=text)
        return ref[1]

    def _drills(self, rollout: Rollout) -> Sequence[str]:
        """The service's drills; a card goes up without them if Redis cannot say."""
        if self.drills is None:
            return ()
        try:
            return self.drills(rollout.target.namespace, rollout.target.vs)
        except StoreError as e:
            log.warning("card of rollout %s shown without its drills: %s", rollout.id, e)
            return ()

    def _wave(self, rollout: Rollout) -> Wave | None:
        """The wave a cluster's rollout is part of; a card goes up without it if Redis cannot
        say (the rollout's news matters more than the wave's order)."""
        if self.cluster is None or self.waves is None:
            return None
        try:
            return self.waves.for_service(rollout.target.namespace, rollout.target.vs)
        except StoreError as e:
            log.warning("card of rollout %s shown without its wave: %s", rollout.id, e)
            return None

    def _adopt(self, rollout: Rollout) -> tuple[str, str] | None:
        """The card `reserve` posted for this rollout, now its own."""
        if rollout.channel is None:
            return None
        key = _reserved_key(rollout.channel, rollout.target.namespace, rollout.target.vs)
        raw = self.store.cache_get(key)
        if not raw:
            return None
        self.store.cache_set(key, "", 1)  # one rollout per reservation
        self.store.cache_set(_card_key(rollout.id), raw, CARD_TTL_S)
        channel, ts = json.loads(raw)
        return str(channel), str(ts)

    def card_ref(self, rollout_id: str) -> tuple[str, str] | None:
        raw = self.store.cache_get(_card_key(rollout_id))
        if raw is None:
            return None
        channel, ts = json.loads(raw)
        return str(channel), str(ts)


def _bolt_app(client: WebClient, signing_secret: str) -> App:
    """The Bolt app, its token checked now (auth.test) so that the first request does not pay
    for it; if Slack cannot be asked now, it is asked on the first request instead: a Slack
    outage must not keep the bot (and its rollbacks) from starting."""
    try:
        return App(client=client, signing_secret=signing_secret, process_before_response=True)
    except (BoltError, SlackClientError, OSError) as e:
        log.warning("could not check the Slack token at start (%s); checking it later", e)
    return App(
        client=client,
        signing_secret=signing_secret,
        process_before_response=True,
        token_verification_enabled=False,
    )


class SlackBot:
    """The Bolt app and what it needs; `app.dispatch` is the whole HTTP surface."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        store: RolloutStore,
        client: WebClient,
        signing_secret: str,
        workers: Workers | None = None,
        on_command: Callable[[str, str], None] = lambda verb, outcome: None,
    ) -> None:
        self.dispatcher, self.store, self.client = dispatcher, store, client
        self.workers = workers or Workers()
        self._count = on_command
        self.app = _bolt_app(client, signing_secret)
        self.app.command("/canary")(self._on_command)
        self.app.action(re.compile(r"^canary:"))(self._on_button)
        self.app.action(re.compile(r"^approval:"))(self._on_approval)
        self.app.event("app_home_opened")(self._on_home_opened)
        self.approvals = Approvals(dispatcher)

    def _on_command(self, ack: Ack, body: dict[str, Any]) -> None:
        if not self._first_delivery(f"command:{body.get('trigger_id')}", ack):
            return
        try:
            command = parse(str(body.get("text", "")))
        except CommandError as e:
            self._count("invalid", "refused")
            ack(response_type="ephemeral", text=f":warning: {e}")
            return
        asker = Asker(user=str(body["user_id"]), channel=body.get("channel_id"))
        response_url = str(body.get("response_url", ""))
        text = str(body.get("text", ""))
        job = _correlated(
            str(body.get("trigger_id", "")),
            lambda: self._run(command, asker, response_url, text),
        )
        log.info("/canary %s from %s in %s", command.verb.value, asker.user, asker.channel)
        if not self.workers.submit(job, urgent=command.verb in URGENT_VERBS):
            ack(response_type="ephemeral", text=":hourglass: The bot is busy; try again.")
            return
        self._count(command.verb.value, "accepted")
        ack()

    def _on_button(self, ack: Ack, body: dict[str, Any]) -> None:
        ack()
        action = body["actions"][0]
        try:
            verb, rollout_ref, version = parse_action(action["action_id"], action["value"])
        except ValueError:
            log.warning("ignored a button with a foreign payload")
            return
        asker = Asker(user=str(body["user"]["id"]), channel=(body.get("channel") or {}).get("id"))
        # A double tap (or Slack's retry) sends the same card version twice: act once. Per
        # user, so that a tap the policy refuses never keeps anyone else's from acting.
        if not self._first_delivery(f"button:{rollout_ref}:{version}:{verb}:{asker.user}", None):
            return
        response_url = str(body.get("response_url", ""))
        home = (body.get("view") or {}).get("type") == "home"
        log.info("%s pressed by %s on rollout %s", verb, asker.user, rollout_ref)
        self.workers.submit(
            _correlated(
                str(body.get("trigger_id", "")),
                lambda: self._press(verb, rollout_ref, asker, response_url, home=home),
            ),
            urgent=verb in URGENT_VERBS,
        )

    def _press(
        self, verb: str, rollout_ref: str, asker: Asker, response_url: str, *, home: bool = False
    ) -> None:
        """A button is the command it stands for, so the policy applies to it the same way;
        on a wave cluster's card (`rollout_ref` is `cluster/id`) it is that command with
        `cluster NAME`. Pressed in the App Home, which has no response_url, the answer is
        shown at the top of the home tab, published again with the rollout as it now stands."""
        cluster, _, rollout_id = rollout_ref.rpartition("/")
        try:
            store = self.dispatcher.desk(cluster).store if cluster else self.store
            target = store.load(rollout_id).target
        except (StoreError, ValueError) as e:
            self._answer_press(response_url, asker, Reply(f":warning: {e}"), home=home)
            return
        command = Command(
            verb=Verb(verb), service=target.vs, namespace=target.namespace, cluster=cluster or None
        )
        text = f"{target.service} {verb}{on_cluster(cluster)}"
        self._count(verb, "pressed")
        if not home:
            self._run(command, asker, response_url, text)
            return
        replies = self.dispatcher.run(command, asker, text=text)
        told = [r.text for r in replies if r.ephemeral]
        done = f"{target.service}: {verb} done." if not told else "\n".join(told)
        self.publish_home(asker.user, notice=done)

    def _answer_press(self, response_url: str, asker: Asker, reply: Reply, *, home: bool) -> None:
        if home:
            self.publish_home(asker.user, notice=reply.text)
        else:
            self._reply(response_url, reply)

    def _on_home_opened(self, ack: Ack, event: dict[str, Any]) -> None:
        ack()
        if event.get("tab") != "home" or not is_user(str(event.get("user", ""))):
            return
        user = str(event["user"])
        self.workers.submit(_correlated("", lambda: self.publish_home(user)))

    def publish_home(self, user: str, *, notice: str | None = None) -> None:
        """Publish `user`'s home tab: each active rollout they may act on, with the buttons
        the policy lets them press."""
        dispatcher, now = self.dispatcher, self.dispatcher.clock()
        cards = []
        desks = [(None, dispatcher), *dispatcher.clusters.items()]  # and each wave cluster's
        for cluster, desk in desks:
            for rollout in desk.store.list_active():
                view = card_view(rollout, now, dispatcher.links, cluster=cluster)
                allowed = desk.actions_for(user, rollout, [b.action for b in view.buttons])
                if (shown := with_actions(view, allowed)) is not None:
                    cards.append(shown)
        try:
            self.client.views_publish(user_id=user, view=home_view(cards, notice=notice))
        except SlackApiError as e:
            log.warning("could not publish the home tab of %s: %s", user, e.response.get("error"))

    def _on_approval(self, ack: Ack, body: dict[str, Any]) -> None:
        ack()
        action = body["actions"][0]
        verb = str(action["action_id"]).removeprefix(APPROVAL_PREFIX)
        try:
            request_id, shown = parse_vote(str(action.get("value", "")))
        except ValueError:
            request_id, shown = "", None
        if verb not in ("approve", "deny") or not request_id:
            log.warning("ignored an approval button with a foreign payload")
            return
        user = str(body["user"]["id"])
        if not self._first_delivery(f"vote:{request_id}:{shown}:{verb}:{user}", None):
            return  # a double tap, or Slack's retry, on the same card
        response_url = str(body.get("response_url", ""))
        self.workers.submit(
            _correlated(
                str(body.get("trigger_id", "")),
                lambda: self._vote(request_id, shown, user, verb, response_url),
            )
        )

    def _vote(
        self, request_id: str, shown: str | None, user: str, verb: str, response_url: str
    ) -> None:
        try:
            outcome = self.approvals.vote(request_id, user, deny=verb == "deny", shown=shown)
        except Exception as e:  # told to the one who pressed, not lost in a log
            self._reply(response_url, Reply(f":warning: {e}"))
            return
        if outcome.message:
            self._reply(response_url, Reply(outcome.message))
        if outcome.request.card_ts and outcome.request.channel:
            self.client.chat_update(
                channel=outcome.request.channel,
                ts=outcome.request.card_ts,
                text=summary_text(outcome.request),
                blocks=outcome.blocks,
            )
        for reply in outcome.replies:
            self._reply(
                response_url, reply, Asker(outcome.request.requester, outcome.request.channel)
            )

    def _run(self, command: Command, asker: Asker, response_url: str, text: str) -> None:
        undelivered: list[str] = []
        token = _UNDELIVERED.set(undelivered)
        try:
            replies = self.dispatcher.run(command, asker, text=text)
        finally:
            _UNDELIVERED.reset(token)
        # What goes to the channel first: an approval request is announced to its asker only
        # once it is posted.
        for reply in sorted(replies, key=lambda r: r.ephemeral):
            if not self._reply(response_url, reply, asker):
                break
        if undelivered:
            errors = ", ".join(sorted(set(undelivered)))
            self._reply(
                response_url,
                Reply(
                    f":warning: Done, but I could not post about it in the channel ({errors}): "
                    "nobody else sees it. `/invite @canary-bot` in the channel, then "
                    f"`/canary {command.service} status` shows where it stands."
                ),
            )

    def _reply(self, response_url: str, reply: Reply, asker: Asker | None = None) -> bool:
        """Send `reply`; False if it was for the channel and Slack refused it (the asker is
        told so instead)."""
        try:
            if reply.ephemeral and response_url:
                WebhookClient(response_url, timeout=SLACK_TIMEOUT_S).send(
                    text=reply.text,
                    blocks=reply.blocks,
                    response_type="ephemeral",
                    replace_original=False,
                )
            elif asker is not None and asker.channel is not None:
                posted = self.client.chat_postMessage(
                    channel=asker.channel, text=reply.text, blocks=reply.blocks
                )
                if reply.approval is not None:
                    self.approvals.card_posted(reply.approval, str(posted["ts"]))
        except SlackApiError as e:
            error = str(e.response.get("error"))
            log.warning("could not reply in Slack: %s", error)
            if not reply.ephemeral and asker is not None:
                self._reply(response_url, _not_posted(reply, error))
                return False
        return True

    def _first_delivery(self, key: str, ack: Ack | None) -> bool:
        try:
            if self.store.first_delivery(key, SEEN_TTL_S):
                return True
        except StoreError as e:
            if ack is not None:
                ack(response_type="ephemeral", text=f":warning: {e}")
            return False
        if ack is not None:
            ack()  # a replay of a delivery we already took: answer it, do nothing
        return False


def needs_a_human(message: Notify) -> bool:
    """Approval needed, an automatic rollback, drift, or a pause nobody asked for."""
    if message.event == "pause":
        return "paused by " not in message.text
    return message.event in ALERTS


def _not_posted(reply: Reply, error: str) -> Reply:
    what = "the approval request" if reply.approval is not None else "that message"
    return Reply(
        f":no_entry: I could not post {what} in this conversation ({error}), so nobody can "
        "act on it and nothing will change. Type `/invite @canary-bot` in a channel, then run "
        "the command there."
    )


def _correlated(correlation: str, fn: Callable[[], None]) -> Callable[[], None]:
    """`fn`, run later in a worker with the request's correlation id in its log lines."""
    context = contextvars.copy_context()
    context.run(correlation_id.set, correlation or secrets.token_hex(6))
    return lambda: context.run(fn)


def _card_key(rollout_id: str) -> str:
    return f"card:{rollout_id}"


def _reserved_key(channel: str, namespace: str, vs: str) -> str:
    return f"card-reserved:{channel}:{namespace}/{vs}"
