"""The bot's HTTP endpoint: Slack's requests (signature checked by Bolt) and its own probes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import urlsplit

from slack_bolt import App, BoltRequest

log = logging.getLogger(__name__)
SLACK_PATH = "/slack/events"
MAX_BODY = 1 << 20  # Slack's payloads are a few kB; refuse anything absurd
Probe = Callable[[], tuple[int, str, str]]  # -> (status, content type, body)


class BotHttpServer:
    def __init__(
        self,
        app: App | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        probes: dict[str, Probe] | None = None,
        on_slack_request: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.app, self.probes = app, probes or {}
        self.on_slack_request = on_slack_request  # the ack latency, for the bot's metrics
        handler = type("Handler", (_Handler,), {"bot": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="http")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bot: BotHttpServer

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        app = self.bot.app
        if app is None or url.path != SLACK_PATH or length > MAX_BODY:
            self._send(413 if length > MAX_BODY else 404, "text/plain", "")
            return
        start = time.perf_counter()
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        headers: dict[str, str | Sequence[str]] = {k.lower(): v for k, v in self.headers.items()}
        response = app.dispatch(BoltRequest(body=body, query=url.query, headers=headers))
        content_type = (response.headers.get("content-type") or ["text/plain"])[0]
        self._send(response.status, content_type, response.body)
        self.bot.on_slack_request(time.perf_counter() - start)

    def do_GET(self) -> None:
        probe = self.bot.probes.get(urlsplit(self.path).path)
        if probe is None:
            self._send(404, "text/plain", "")
            return
        self._send(*probe())

    def _send(self, status: int, content_type: str, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http: " + format, *args)
