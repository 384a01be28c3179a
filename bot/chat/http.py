"""The bot's HTTP endpoint: Slack's requests and its own probes, served by waitress.

Waitress reads every connection asynchronously and hands a request to a worker thread only once
it is whole, so a slow or idle client holds a socket, never a thread. It refuses a body over
`MAX_BODY` (413) or a bad Content-Length (400) from the headers alone. A Slack request's
signature is checked on its raw bytes before anything parses it, and its envelope is checked
before Bolt sees it: a request that fails gets a 4xx and one log line.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from typing import Annotated, Any, Self
from wsgiref.types import StartResponse, WSGIEnvironment

import waitress
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from slack_bolt import App, BoltRequest
from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier
from waitress import wasyncore

log = logging.getLogger(__name__)
STOP_WAIT_S = 10.0  # for the server's loop to close itself; then it is closed from here
SLACK_PATH = "/slack/events"
MAX_BODY = 1 << 20  # Slack's payloads are a few kB
MAX_TEXT = 4000  # a /canary command is a service and a few words
Probe = Callable[[], tuple[int, str, str]]  # -> (status, content type, body)
SERVER_SETTINGS: dict[str, Any] = {
    "max_request_body_size": MAX_BODY + 1,  # waitress refuses a length at or over this
    "max_request_header_size": 16 << 10,
    "inbuf_overflow": 64 << 10,  # a larger body waits in a temporary file, not in memory
    "channel_timeout": 10,  # seconds a connection may stay silent
    "cleanup_interval": 2,
    "backlog": 1024,
    "connection_limit": 500,  # past it, connections wait in the backlog
    "asyncore_use_poll": True,  # select() cannot watch more than 1,024 sockets
    "threads": 8,
    "ident": "canary-bot",
}
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class _Refused(Exception):
    """A request answered with a 4xx before Bolt sees it."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class BotHttpServer:
    def __init__(
        self,
        app: App | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        signing_secret: str = "",
        probes: dict[str, Probe] | None = None,
        on_slack_request: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        """`app` answers Slack's requests once they pass the signature check with
        `signing_secret` (Slack's app credentials), before anything is parsed."""
        if app is not None and not signing_secret:
            raise ValueError("a Slack app needs its signing secret to check requests")
        self.app, self.probes = app, probes or {}
        self.on_slack_request = on_slack_request  # the ack latency, for the bot's metrics
        self._verifier = SignatureVerifier(signing_secret) if app is not None else None
        self._server = waitress.create_server(self._serve, host=host, port=port, **SERVER_SETTINGS)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="http")

    @property
    def url(self) -> str:
        return f"http://{self._server.effective_host}:{self._server.effective_port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # close from the server's own thread, between two polls
            try:
                self._server.trigger.pull_trigger(self._close)
                self._thread.join(STOP_WAIT_S)
            except OSError:  # its wake-up pipe is closed: the loop cannot be asked
                log.warning("the HTTP server's wake-up pipe was closed before it was stopped")
        self._close()  # again, when the loop did it: harmless, its map is empty by then
        if self._thread.is_alive():  # in a poll that still holds the sockets: until it ends
            self._thread.join(STOP_WAIT_S)

    def _close(self) -> None:
        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(self._server._map)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        if method in ("GET", "HEAD"):
            probe = self.probes.get(path)
            status, content_type, body = probe() if probe else (404, "text/plain", "")
        elif method == "POST" and path == SLACK_PATH and self.app is not None:
            status, content_type, body = self._slack(self.app, environ)
        else:
            status, content_type, body = 404, "text/plain", ""
        data = body.encode()
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", content_type), ("Content-Length", str(len(data)))],
        )
        return [data]

    def _slack(self, app: App, environ: WSGIEnvironment) -> tuple[int, str, str]:
        start = time.perf_counter()
        headers = _headers(environ)
        try:
            body = self._signed_body(environ, headers)
            _check_envelope(body, headers.get("content-type"))
        except _Refused as e:
            remote = environ.get("REMOTE_ADDR")
            log.warning("refused a Slack request from %s: %d %s", remote, e.status, e.reason)
            return e.status, "text/plain", f"{e.reason}\n"
        query = environ.get("QUERY_STRING", "")
        bolt_headers = dict[str, str | Sequence[str]](headers)
        response = app.dispatch(BoltRequest(body=body, query=query, headers=bolt_headers))
        self.on_slack_request(time.perf_counter() - start)
        content_type = (response.headers.get("content-type") or ["text/plain"])[0]
        return response.status, content_type, response.body

    def _signed_body(self, environ: WSGIEnvironment, headers: dict[str, str]) -> str:
        """The body as text, once its signature and timestamp are Slack's; nothing parsed."""
        assert self._verifier is not None
        if "CONTENT_LENGTH" not in environ:  # waitress sets it for a chunked body too
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "a Slack request has a Content-Length")
        raw = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature")
        if signature is None or not _TIMESTAMP.fullmatch(timestamp):
            raise _Refused(HTTPStatus.UNAUTHORIZED, "no Slack signature")
        try:
            text: str = raw.decode()
        except UnicodeDecodeError:
            raise _Refused(HTTPStatus.BAD_REQUEST, "the body is not UTF-8") from None
        if not self._verifier.is_valid(text, timestamp, signature):
            raise _Refused(HTTPStatus.UNAUTHORIZED, "a bad or expired Slack signature")
        return text


def _check_envelope(body: str, content_type: str | None) -> None:
    """Refuse a body Bolt or the bot's listeners could not read: they index it unchecked."""
    try:
        parsed = parse_body(body, content_type)  # exactly what Bolt will make of it
    except (ValueError, RecursionError):
        raise _Refused(HTTPStatus.BAD_REQUEST, "neither a form nor JSON") from None
    if not isinstance(parsed, dict):
        raise _Refused(HTTPStatus.BAD_REQUEST, "not a JSON object")
    try:
        _Envelope.model_validate(parsed)
    except ValidationError as e:
        error = e.errors(include_url=False, include_input=False)[0]
        where = ".".join(map(str, error["loc"])) or "body"
        raise _Refused(HTTPStatus.BAD_REQUEST, f"{where}: {error['msg']}"[:200]) from None


def _headers(environ: WSGIEnvironment) -> dict[str, str]:
    found = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    found["content-type"] = str(environ.get("CONTENT_TYPE", ""))
    return found


def _not_null(value: object) -> object:
    if value is None:
        raise ValueError("is null")  # only a value that is there is checked; None is the default
    return value


Id = Annotated[str, StringConstraints(max_length=255)]
NOT_NULL = AfterValidator(_not_null)


class _Slack(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _Named(_Slack):
    id: Id | None = None
    team_id: Id | None = None
    enterprise_id: Id | None = None


class _ResponseUrl(_Slack):
    response_url: Id | None = None


class _Scope(_Slack):
    """The fields Bolt looks into for ids (slack_bolt/request/internals.py), typed. Bolt takes
    a key that is there for an object, so those may be left out but are never null."""

    enterprise: _Named | Id | None = None
    team: _Named | Id | None = None
    user: _Named | Id | None = None
    channel: _Named | Id | None = None
    enterprise_id: Id | None = None
    team_id: Id | None = None
    user_id: Id | None = None
    channel_id: Id | None = None
    thread_ts: Id | None = None
    response_url: Id | None = None
    # Bolt fails on more than one response URL (it logs through a logger it has yet to set).
    response_urls: Annotated[list[_ResponseUrl] | None, NOT_NULL, Field(max_length=1)] = None
    authorizations: Annotated[list[_Scope] | None, NOT_NULL] = None
    event: Annotated[_Scope | None, NOT_NULL] = None
    message: Annotated[_Scope | None, NOT_NULL] = None
    previous_message: Annotated[_Scope | None, NOT_NULL] = None
    item: Annotated[_Scope | None, NOT_NULL] = None
    assistant_thread: Annotated[_Scope | None, NOT_NULL] = None
    view: Annotated[_Scope | None, NOT_NULL] = None
    function_data: Annotated[_Scope | None, NOT_NULL] = None
    type: Id | None = None


class _Action(_Slack):
    action_id: Id
    value: Annotated[str, StringConstraints(max_length=2000)]  # the bot's buttons all carry one
    block_id: Id | None = None


class _Envelope(_Scope):
    """The requests the bot serves: `/canary`, a press of a button on its cards, the App Home
    opened (an Events API callback), Slack's ssl_check and url_verification. Fields the bot
    reads are typed; all others are kept."""

    type: Id | None = None
    command: Id | None = None
    text: Annotated[str, StringConstraints(max_length=MAX_TEXT)] | None = None
    ssl_check: Id | None = None
    token: Id | None = None
    trigger_id: Id | None = None
    user: _Named | None = None
    channel: _Named | None = None
    actions: Annotated[list[_Action], Field(min_length=1)] | None = None
    challenge: Annotated[str, StringConstraints(max_length=200)] | None = None

    @model_validator(mode="after")
    def _served(self) -> Self:
        if self.type == "block_actions":
            served = self.user is not None and self.user.id is not None and bool(self.actions)
        elif self.type == "event_callback":
            served = self.event is not None and self.event.type == "app_home_opened"
        elif self.type == "url_verification":
            served = self.challenge is not None
        elif self.type is None:
            command = self.command is not None and self.user_id is not None
            served = command or (self.ssl_check is not None and self.token is not None)
        else:
            served = False
        if not served:
            raise ValueError("neither a /canary command, a button press nor the App Home")
        return self
