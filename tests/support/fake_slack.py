"""A fake Slack Web API served over real HTTP on loopback, recording every request whole.

Slack cannot be reached from tests, so the bot's own `slack_sdk.WebClient` (built with
`base_url=fake.url + "/api/"`) and Bolt's `respond()` (given `fake.response_url()`) talk to
this server instead. It answers the way Slack does wherever the bot could tell the difference:
`{"ok": false, "error": ...}` with HTTP 200, tokens checked, 429 with Retry-After, the three
steps of `files_upload_v2`. Tests read back each call's whole body and each channel's messages
as they stand after posts and updates ("the card now").
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import logging
import mimetypes
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

from sandbox.loopback import TrackingHTTPServer

_log = logging.getLogger(__name__)

JsonObject = dict[str, Any]

API_PREFIX = "/api/"
RESPONSE_URL_PREFIX = "/response_url/"
UPLOAD_PREFIX = "/upload/"
RESPONSE_URL = "response_url"
UPLOAD = "upload"
# Form fields that slack_sdk sends as JSON strings; other form values stay strings.
_JSON_FORM_FIELDS = frozenset({"attachments", "blocks", "files", "metadata", "unfurls", "view"})
_MESSAGE_FIELDS = ("text", "blocks", "attachments", "metadata", "files")
VIEW_MAX_BLOCKS = 100
VIEW_MAX_BYTES = 250_000
_TS_EPOCH = 1_700_000_000
_TS_STEPS_PER_SECOND = 10_000  # ts counts up in steps of 100 µs: 1700000000.000100, .000200, ...


@dataclass(frozen=True)
class SlackCall:
    """One request as the fake received it, with the status (and Slack error) it answered."""

    method: str
    token: str | None
    content_type: str
    raw: bytes
    body: JsonObject
    at: float
    status: int
    path: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


class _Refusal(Exception):
    """A Slack-style refusal: HTTP 200 with `{"ok": false, "error": error}`."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True)
class _Request:
    verb: str
    path: str
    query: dict[str, str]
    content_type: str
    authorization: str
    raw: bytes

    @property
    def bearer(self) -> str | None:
        scheme, _, credentials = self.authorization.partition(" ")
        return (credentials.strip() or None) if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class _Reply:
    status: int
    payload: JsonObject | str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def error(self) -> str | None:
        if isinstance(self.payload, str):
            return self.payload if self.status >= 400 else None
        return None if self.payload.get("ok", True) else str(self.payload.get("error"))

    def encoded(self) -> tuple[str, bytes]:
        if isinstance(self.payload, str):
            return "text/plain; charset=utf-8", self.payload.encode()
        return "application/json; charset=utf-8", json.dumps(self.payload).encode()


def _refused(error: str) -> _Reply:
    return _Reply(200, {"ok": False, "error": error})


def _rate_limited(retry_after: int) -> _Reply:
    headers = (("Retry-After", str(retry_after)),)
    return _Reply(429, {"ok": False, "error": "ratelimited"}, headers)


@dataclass
class _File:
    filename: str
    content: bytes | None = None


_Method = Callable[[JsonObject], JsonObject]


class FakeSlack:
    """A Slack Web API on http://127.0.0.1:<port>, for one workspace with one bot user."""

    def __init__(
        self,
        *,
        token: str = "xoxb-test-token",
        team: str = "T0TEST",
        bot_user: str = "U0BOT",
        member_of: Iterable[str] | None = None,
    ) -> None:
        """`member_of`: the channels the bot was invited to; outside them posts and updates are
        refused as Slack refuses them (`not_in_channel`, or `channel_not_found` for a channel
        or DM the bot cannot see). None: the bot is in every channel, for tests about other
        things."""
        self.token = token
        self.team = team
        self.bot_user = bot_user
        self.bot_id = "B" + bot_user.removeprefix("U")
        # One lock guards the log, the workspace and the injections; waiting on it wakes wait_for.
        self._changed = threading.Condition(threading.RLock())
        self._calls: list[SlackCall] = []
        self._injected: defaultdict[str, deque[_Reply]] = defaultdict(deque)
        self._messages: defaultdict[str, dict[str, JsonObject]] = defaultdict(dict)
        self._channels: dict[str, JsonObject] = {}
        self._member_of: set[str] | None = None if member_of is None else set(member_of)
        self._users: dict[str, JsonObject] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._files: dict[str, _File] = {}
        self._homes: dict[str, JsonObject] = {}
        self._held: dict[str, threading.Event] = {}  # channel -> released when set
        self._holding = 0
        self._serial = itertools.count(1)
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._methods = self._method_table()

    # Lifecycle

    def start(self) -> Self:
        self._http = _HttpServer(("127.0.0.1", 0), self)
        self._thread = self._http.serve_in_thread("fake-slack")
        return self

    def stop(self) -> None:
        if self._http is None or self._thread is None:
            return
        self._http.close()
        self._thread.join()
        self._http, self._thread = None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._http is None:
            raise RuntimeError("the fake Slack server is not started")
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def response_url(self, name: str = "") -> str:
        """A URL whose posts are recorded as method "response_url"; a fresh one if unnamed."""
        return f"{self.url}{RESPONSE_URL_PREFIX}{name or f'hook-{next(self._serial)}'}"

    # The log

    @property
    def calls(self) -> list[SlackCall]:
        """Every request so far, rejected ones included, oldest first."""
        with self._changed:
            return list(self._calls)

    def calls_to(self, method: str) -> list[SlackCall]:
        return [call for call in self.calls if call.method == method]

    def clear(self) -> None:
        """Forget the calls so far; messages, users and injections stay."""
        with self._changed:
            self._calls.clear()

    def wait_for(self, predicate: Callable[[SlackCall], bool], timeout: float = 5.0) -> SlackCall:
        """The first recorded call matching `predicate`, waiting for it up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (found := next(filter(predicate, self._calls), None)) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching Slack call within {timeout} s")
                self._changed.wait(remaining)
            return found

    # Workspace state and injections

    def messages(self, channel: str) -> dict[str, JsonObject]:
        """Each message in `channel` by ts, thread replies included, as it stands now."""
        with self._changed:
            return copy.deepcopy(self._messages.get(channel, {}))

    def rate_limit(self, method: str, times: int, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429 and a Retry-After header."""
        self._inject(method, [_rate_limited(retry_after)] * times)

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with `{"ok": false, "error": error}`."""
        self._inject(method, [_refused(error)] * times)

    def hold(self, channel: str) -> threading.Event:
        """Keep every call about `channel` unanswered until the returned event is set: a Slack
        that is slow for one conversation only. Calls about other channels are answered."""
        with self._changed:
            return self._held.setdefault(channel, threading.Event())

    def wait_holding(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` calls are being held."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._holding >= count, timeout):
                raise AssertionError(f"{self._holding} calls held, expected {count}")

    def set_usergroup(self, group_id: str, users: list[str]) -> None:
        with self._changed:
            self._usergroups[group_id] = list(users)

    def set_channel(self, channel_id: str, name: str, members: Iterable[str] = ()) -> None:
        """Name a channel and list its members (unknown channels answer with made-up ones)."""
        with self._changed:
            self._channels[channel_id] = {"name": name, "members": list(members)}

    def invite(self, channel_id: str) -> None:
        """`/invite @canary-bot` in `channel_id`: the bot may post there from now on."""
        with self._changed:
            if self._member_of is not None:
                self._member_of.add(channel_id)

    def set_user(self, user_id: str, name: str, tz: str = "UTC") -> None:
        with self._changed:
            self._users[user_id] = {"name": name, "tz": tz}

    def _inject(self, method: str, replies: list[_Reply]) -> None:
        with self._changed:
            self._injected[method].extend(replies)

    # Request handling

    def _answer(self, request: _Request) -> _Reply:
        """The answer to one request; recorded before it is sent."""
        method, target = _route(request.path)
        self._wait_if_held(method, target, request)
        body: JsonObject = {}
        with self._changed:
            try:
                body = _body_of(method, target, request)
                reply = self._dispatch(method, target, request, body)
            except _Refusal as refusal:
                reply = _refused(refusal.error)
            except Exception:  # a bug in the fake: answer like Slack's outage, keep serving
                _log.exception("fake Slack failed on %s %s", request.verb, request.path)
                reply = _Reply(500, {"ok": False, "error": "fatal_error"})
            self._record(request, method, body, reply)
        return reply

    def _wait_if_held(self, method: str, target: str, request: _Request) -> None:
        with self._changed:
            if not self._held:
                return
            try:
                channel = _body_of(method, target, request).get("channel")
            except _Refusal:
                return
            gate = self._held.get(str(channel))
            if gate is None or gate.is_set():
                return
            self._holding += 1
            self._changed.notify_all()
        try:
            gate.wait()
        finally:
            with self._changed:
                self._holding -= 1

    def _record(self, request: _Request, method: str, body: JsonObject, reply: _Reply) -> None:
        token = request.bearer or _optional_str(body.get("token"))
        call = SlackCall(
            method=method,
            token=token,
            content_type=request.content_type,
            raw=request.raw,
            body=body,
            at=time.time(),
            status=reply.status,
            path=request.path,
            error=reply.error,
        )
        self._calls.append(call)
        self._changed.notify_all()

    def _dispatch(self, method: str, target: str, request: _Request, body: JsonObject) -> _Reply:
        if method == RESPONSE_URL:
            return self._injected_reply(method) or _Reply(200, {"ok": True})
        if method == UPLOAD:
            return self._injected_reply(method) or self._upload(target, request.raw)
        if target != API_PREFIX:
            return _Reply(404, {"ok": False, "error": "not_found"})
        handler = self._methods.get(method)
        if handler is None:
            raise _Refusal("unknown_method")
        self._check_token(request.bearer or _optional_str(body.get("token")))
        return self._injected_reply(method) or _Reply(200, {"ok": True, **handler(body)})

    def _check_token(self, token: str | None) -> None:
        if token is None:
            raise _Refusal("not_authed")
        if token != self.token:
            raise _Refusal("invalid_auth")

    def _injected_reply(self, method: str) -> _Reply | None:
        queue = self._injected.get(method)
        return queue.popleft() if queue else None

    def _method_table(self) -> dict[str, _Method]:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "views.publish": self._views_publish,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
        }

    # Web API methods: each takes the parsed body and returns the fields next to "ok": true

    def _auth_test(self, body: JsonObject) -> JsonObject:
        return {
            "url": f"{self.url}/",
            "team": f"{self.team} workspace",
            "user": "canary-bot",
            "team_id": self.team,
            "user_id": self.bot_user,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _check_member(self, channel: str) -> None:
        """Slack's answer to a bot writing where it was not invited."""
        if self._member_of is None or channel in self._member_of:
            return
        if channel in self._channels and not channel.startswith("D"):
            raise _Refusal("not_in_channel")
        raise _Refusal("channel_not_found")

    def _chat_post_message(self, body: JsonObject) -> JsonObject:
        channel = _required(body, "channel", "channel_not_found")
        self._check_member(channel)
        _require_content(body)
        message = self._post(channel, body)
        return {"channel": channel, "ts": message["ts"], "message": message}

    def _chat_update(self, body: JsonObject) -> JsonObject:
        channel = _required(body, "channel", "channel_not_found")
        ts = _required(body, "ts", "message_not_found")
        self._check_member(channel)
        message = self._messages.get(channel, {}).get(ts)
        if message is None:
            raise _Refusal("message_not_found")
        message.update(_message_fields(body))
        message["edited"] = {"user": self.bot_user, "ts": self._next_ts()}
        return {
            "channel": channel,
            "ts": ts,
            "text": message["text"],
            "message": copy.deepcopy(message),
        }

    def _views_publish(self, body: JsonObject) -> JsonObject:
        """A user's Home tab, checked as Slack checks it: a home view of at most 100 valid
        Block Kit blocks, 250 kB in all."""
        user = _required(body, "user_id", "invalid_arguments")
        view = _view_of(body.get("view"))
        published = {**view, "id": f"V{next(self._serial):08d}", "team_id": self.team}
        published |= {"bot_id": self.bot_id, "hash": self._next_ts()}
        self._homes[user] = copy.deepcopy(published)
        return {"view": published}

    def home(self, user: str) -> JsonObject | None:
        """The Home tab `user` sees now: the view last published for them."""
        with self._changed:
            return copy.deepcopy(self._homes.get(user))

    def _chat_post_ephemeral(self, body: JsonObject) -> JsonObject:
        _required(body, "channel", "channel_not_found")
        _required(body, "user", "user_not_found")
        _require_content(body)
        return {"message_ts": self._next_ts()}

    def _conversations_info(self, body: JsonObject) -> JsonObject:
        channel = _required(body, "channel", "channel_not_found")
        name = self._channels.get(channel, {}).get("name", channel.lower())
        return {"channel": {"id": channel, "name": name, "is_channel": True, "is_member": True}}

    def _conversations_members(self, body: JsonObject) -> JsonObject:
        channel = _required(body, "channel", "channel_not_found")
        members = self._channels.get(channel, {}).get("members", [self.bot_user])
        return {"members": list(members), "response_metadata": {"next_cursor": ""}}

    def _users_info(self, body: JsonObject) -> JsonObject:
        user = _required(body, "user", "user_not_found")
        known = self._users.get(user, {"name": user.lower(), "tz": "UTC"})
        profile = {"real_name": known["name"], "display_name": known["name"]}
        return {"user": {"id": user, **known, "is_bot": user == self.bot_user, "profile": profile}}

    def _usergroups_users_list(self, body: JsonObject) -> JsonObject:
        group = _required(body, "usergroup", "no_such_subteam")
        if group not in self._usergroups:
            raise _Refusal("no_such_subteam")
        return {"users": list(self._usergroups[group])}

    def _files_get_upload_url_external(self, body: JsonObject) -> JsonObject:
        filename = _required(body, "filename", "invalid_arguments")
        _required(body, "length", "invalid_arguments")
        file_id = f"F{next(self._serial):08d}"
        self._files[file_id] = _File(filename)
        return {"upload_url": f"{self.url}{UPLOAD_PREFIX}{file_id}", "file_id": file_id}

    def _files_complete_upload_external(self, body: JsonObject) -> JsonObject:
        entries = body.get("files")
        if not isinstance(entries, list) or not entries:
            raise _Refusal("invalid_arguments")
        files = [self._completed_file(entry) for entry in entries]
        for channel in _share_channels(body):
            shared = {"text": body.get("initial_comment") or "", "files": files}
            self._post(channel, {**shared, "thread_ts": body.get("thread_ts")})
        return {"files": files}

    def _completed_file(self, entry: Any) -> JsonObject:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise _Refusal("invalid_arguments")
        file = self._files.get(entry["id"])
        if file is None or file.content is None:
            raise _Refusal("file_not_found")
        return {
            "id": entry["id"],
            "name": file.filename,
            "title": entry.get("title") or file.filename,
            "mimetype": mimetypes.guess_type(file.filename)[0] or "application/octet-stream",
            "size": len(file.content),
        }

    # Other endpoints and shared state changes

    def _upload(self, file_id: str, content: bytes) -> _Reply:
        file = self._files.get(file_id)
        if file is None:
            return _Reply(404, f"no upload URL issued for file {file_id!r}")
        file.content = content
        return _Reply(200, f"OK - {len(content)}")

    def _post(self, channel: str, body: JsonObject) -> JsonObject:
        ts = self._next_ts()
        message: JsonObject = {"type": "message", "user": self.bot_user, "bot_id": self.bot_id}
        message |= {"ts": ts, "text": "", **_message_fields(body)}
        if thread_ts := _optional_str(body.get("thread_ts")):
            message["thread_ts"] = thread_ts
            self._count_reply(channel, thread_ts)
        self._messages[channel][ts] = message
        return copy.deepcopy(message)

    def _count_reply(self, channel: str, thread_ts: str) -> None:
        parent = self._messages.get(channel, {}).get(thread_ts)
        if parent is not None:
            parent["reply_count"] = parent.get("reply_count", 0) + 1

    def _next_ts(self) -> str:
        seconds, step = divmod(next(self._serial), _TS_STEPS_PER_SECOND)
        return f"{_TS_EPOCH + seconds}.{step * 100:06d}"


# --- Parsing --------------------------------------------------------------------------------


def _route(path: str) -> tuple[str, str]:
    """(method, target): a Web API method and API_PREFIX, or "upload"/"response_url" and a name."""
    for prefix, method in ((UPLOAD_PREFIX, UPLOAD), (RESPONSE_URL_PREFIX, RESPONSE_URL)):
        if path.startswith(prefix):
            return method, path.removeprefix(prefix)
    if path.startswith(API_PREFIX):
        return path.removeprefix(API_PREFIX), API_PREFIX
    return path, ""


def _body_of(method: str, target: str, request: _Request) -> JsonObject:
    if method == UPLOAD:  # raw bytes, though urllib labels them as a form
        return {"file_id": target}
    return {**request.query, **_parsed(request.content_type, request.raw)}


def _parsed(content_type: str, raw: bytes) -> JsonObject:
    media_type = content_type.split(";", maxsplit=1)[0].strip().lower()
    if not raw:
        return {}
    if media_type == "application/json":
        return _json_object(raw)
    if media_type == "application/x-www-form-urlencoded":
        return _form_fields(raw.decode("utf-8", "replace"))
    return {}


def _json_object(raw: bytes) -> JsonObject:
    try:
        parsed = json.loads(raw)
    except ValueError as error:
        raise _Refusal("invalid_json") from error
    if not isinstance(parsed, dict):
        raise _Refusal("invalid_json")
    return parsed


def _form_fields(text: str) -> JsonObject:
    fields: JsonObject = dict(parse_qsl(text, keep_blank_values=True))
    for name in _JSON_FORM_FIELDS & fields.keys():
        with contextlib.suppress(ValueError):  # Slack keeps what does not parse as a string
            fields[name] = json.loads(fields[name])
    return fields


def _required(body: JsonObject, name: str, error: str) -> str:
    value = body.get(name)
    if value is None or value == "":
        raise _Refusal(error)
    return str(value)


def _view_of(raw: Any) -> JsonObject:
    """The `view` argument of views.publish, refused as Slack refuses it."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise _Refusal("invalid_arguments") from None
    if not isinstance(raw, dict) or raw.get("type") != "home":
        raise _Refusal("invalid_arguments")
    if len(json.dumps(raw).encode()) > VIEW_MAX_BYTES:
        raise _Refusal("view_too_large")
    blocks = raw.get("blocks")
    if not isinstance(blocks, list) or len(blocks) > VIEW_MAX_BLOCKS:
        raise _Refusal("invalid_arguments")
    too_long = len(str(raw.get("private_metadata", ""))) > 3000
    if too_long or len(str(raw.get("callback_id", ""))) > 255:
        raise _Refusal("invalid_arguments")
    _check_blocks(blocks)
    return raw


def _check_blocks(blocks: list[Any]) -> None:
    """Each block as slack_sdk's models read it back, and within their limits."""
    try:
        parsed = Block.parse_all(blocks)
        for block in parsed:
            block.validate_json()
    except (SlackObjectFormationError, TypeError, KeyError, AttributeError):
        raise _Refusal("invalid_blocks") from None
    if [block.to_dict() for block in parsed] != blocks:
        raise _Refusal("invalid_blocks")


def _require_content(body: JsonObject) -> None:
    if not any(body.get(name) for name in ("text", "blocks", "attachments")):
        raise _Refusal("no_text")


def _message_fields(body: JsonObject) -> JsonObject:
    fields = {name: body[name] for name in _MESSAGE_FIELDS if body.get(name) is not None}
    return copy.deepcopy(fields)  # the stored message must not share parts with the call log


def _share_channels(body: JsonObject) -> list[str]:
    if channel := _optional_str(body.get("channel_id")):
        return [channel]
    return [name for name in str(body.get("channels") or "").split(",") if name]


def _optional_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


# --- HTTP -----------------------------------------------------------------------------------


class _HttpServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], fake: FakeSlack) -> None:
        super().__init__(address, _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every reply carries its Content-Length
    disable_nagle_algorithm = True  # headers and body are separate writes
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.track(self.connection, open_=False)
        super().finish()

    def do_POST(self) -> None:
        self._send(self.server.fake._answer(self._read_request()))

    do_GET = do_PUT = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake keeps its own call log."""

    def _read_request(self) -> _Request:
        url = urlsplit(self.path)
        return _Request(
            verb=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            content_type=self.headers.get("Content-Type") or "",
            authorization=self.headers.get("Authorization") or "",
            raw=self._read_body(),
        )

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"".join(iter(self._read_chunk, b""))
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunk(self) -> bytes:
        size = int(self.rfile.readline().split(b";")[0], 16)
        chunk = self.rfile.read(size)
        self.rfile.readline()  # the CRLF after the chunk, or the end of the empty trailer
        return chunk

    def _send(self, reply: _Reply) -> None:
        content_type, data = reply.encoded()
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
