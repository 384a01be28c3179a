"""Everything a run did, gathered as plain dataclasses, so a checker can assert invariants such
as "no PATCH from a process not holding the lease" or "final VS weight = record weight = last
audit weight".

    with HistoryRecorder(sandbox=sandbox, redis_url=redis_server.url, slack=slack) as recorder:
        ...  # the run, faults and all
    history = recorder.history()

Where each part comes from, and why:
- Kubernetes requests: the sandbox API server's own log (method, path, body, status, time, the
  fault done to it, and `user`, the bearer token of the caller: give each replica its own with
  `processes.serve_env(user=...)`). The server logs every request it reads, so it is complete.
- Rollout record versions: a MONITOR connection to the real Redis (not through a fault proxy),
  open for the whole run. A record is only written by a Lua script whose HSET runs after its
  version and fencing checks pass, and MONITOR lists the commands scripts run, in the order
  Redis runs them: each such HSET is exactly one version written. Keyspace notifications plus
  HGET, or polling the hashes, lose every version overwritten before the read; MONITOR does not.
  MONITOR is blind while Redis is down: the recorder reconnects at once and keeps the gap, and a
  version written between Redis coming back and the reconnection can be missing (its number
  shows the hole).
- The lease: its acquisitions (SET with the holder's identity, which includes its pid), renewals
  (PEXPIRE) and releases (DEL), from the same MONITOR stream; expiry follows from the TTL.
- Audit entries: the `canary:audit` stream, read after the run: what Redis kept.
- Slack: every call the fake Slack received, with its whole body.
- Final state: the VirtualServices in the sandbox and the rollout hashes in Redis at the end.

All times are wall-clock seconds (`time.time()`): the sandbox and Redis share this machine's clock.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import redis

from bot.store.redis_store import AuditEntry, Keys
from sandbox.apiserver import LoggedRequest, SandboxApiServer
from tests.support.fake_slack import FakeSlack, SlackCall

JsonObject = dict[str, Any]

_RECONNECT_S = 0.005
_MARKER_AGAIN_S = 0.2
_FLUSH_TIMEOUT_S = 10.0
_MONITOR_LINE = re.compile(rb"^\+(\d+\.\d+) \[\d+ ([^\]]*)\] (.*)$")
_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)")
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


@dataclass(frozen=True)
class RedisCommand:
    """One command as MONITOR showed it, before Redis ran it."""

    at: float
    client: str  # "lua" for a command a script ran, else the client's address
    args: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.args[0].upper() if self.args else ""

    @property
    def key(self) -> str:
        return self.args[1] if len(self.args) > 1 else ""


@dataclass(frozen=True)
class Gap:
    """A time MONITOR was disconnected (Redis down): commands then are not in the history."""

    start: float
    end: float


@dataclass(frozen=True)
class RecordVersion:
    """One version of a rollout record, as written."""

    rollout_id: str
    version: int
    record: JsonObject
    at: float


class LeaseChange(StrEnum):
    ACQUIRED = "acquired"
    RENEWED = "renewed"
    RELEASED = "released"


@dataclass(frozen=True)
class LeaseEvent:
    at: float
    change: LeaseChange
    holder: str | None  # the identity the lease was taken by: host:pid:random
    ttl_s: float | None


@dataclass(frozen=True)
class History:
    requests: tuple[LoggedRequest, ...]
    redis_commands: tuple[RedisCommand, ...]
    gaps: tuple[Gap, ...]
    audit: tuple[AuditEntry, ...]
    slack_calls: tuple[SlackCall, ...]
    virtual_services: Mapping[str, JsonObject]  # "namespace/name" -> the object at the end
    records: Mapping[str, JsonObject]  # rollout id -> the stored record at the end
    keys: Keys = field(default_factory=Keys)

    def record_versions(self, rollout_id: str | None = None) -> list[RecordVersion]:
        """Every version written, oldest first; of one rollout, or of all."""
        prefix = self.keys.rollout("")
        versions = []
        for command in self._writes("HSET"):
            fields = dict(zip(command.args[2::2], command.args[3::2], strict=False))
            if not command.key.startswith(prefix) or "json" not in fields:
                continue
            record = json.loads(fields["json"])
            version = int(fields.get("version", record.get("version", 0)))
            versions.append(RecordVersion(command.key[len(prefix) :], version, record, command.at))
        return [v for v in versions if rollout_id in (None, v.rollout_id)]

    def lease_events(self) -> list[LeaseEvent]:
        events: list[LeaseEvent] = []
        holder: str | None = None
        for command in self.redis_commands:
            if self.keys.leader not in command.args[1:2]:
                continue
            if command.name == "SET":
                holder = command.args[2]
                events.append(LeaseEvent(command.at, LeaseChange.ACQUIRED, holder, _px(command)))
            elif command.name == "PEXPIRE":
                ttl = int(command.args[2]) / 1000
                events.append(LeaseEvent(command.at, LeaseChange.RENEWED, holder, ttl))
            elif command.name == "DEL":
                events.append(LeaseEvent(command.at, LeaseChange.RELEASED, holder, None))
                holder = None
        return events

    def lease_holder(self, at: float) -> str | None:
        """Who held the lease at `at` by Redis's account (its TTL not run out), if anyone."""
        holder, until = None, 0.0
        for event in self.lease_events():
            if event.at > at:
                break
            holder = None if event.change is LeaseChange.RELEASED else event.holder
            until = event.at + (event.ttl_s or 0.0)
        return holder if at < until else None

    def _writes(self, name: str) -> Iterator[RedisCommand]:
        return (c for c in self.redis_commands if c.name == name)


class HistoryRecorder:
    """Watches Redis with MONITOR during a run and gathers the rest at the end."""

    def __init__(
        self,
        *,
        sandbox: SandboxApiServer,
        redis_url: str,
        slack: FakeSlack | None = None,
        prefix: str = "canary",
    ) -> None:
        self._sandbox, self._redis_url, self._slack = sandbox, redis_url, slack
        self._keys = Keys(prefix)
        self._monitor = _Monitor(redis_url)

    def start(self) -> Self:
        self._monitor.start()
        return self

    def stop(self) -> None:
        self._monitor.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def history(self) -> History:
        """What happened so far; Redis must be up."""
        self._monitor.flush()
        commands, gaps = self._monitor.recorded()
        with redis.Redis.from_url(self._redis_url, decode_responses=True) as client:
            audit = client.xrange(self._keys.global_audit)
            records = {
                key[len(self._keys.rollout("")) :]: json.loads(client.hget(key, "json") or "{}")
                for key in client.scan_iter(match=self._keys.rollout("*"))
            }
        services = {
            f"{vs['metadata']['namespace']}/{vs['metadata']['name']}": vs
            for vs in self._sandbox.list_objects("virtualservices")
        }
        return History(
            requests=tuple(self._sandbox.requests),
            redis_commands=tuple(commands),
            gaps=tuple(gaps),
            audit=tuple(AuditEntry.from_stream(i, fields) for i, fields in audit),
            slack_calls=tuple(self._slack.calls if self._slack else ()),
            virtual_services=services,
            records=records,
            keys=self._keys,
        )


class _Monitor:
    """A MONITOR connection in a thread, reconnecting whenever Redis comes back."""

    def __init__(self, redis_url: str) -> None:
        self._url = redis_url
        self._commands: list[RedisCommand] = []
        self._gaps: list[Gap] = []
        self._seen = threading.Condition()
        self._markers: set[str] = set()
        self._stopping = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._sock = self._monitor()
        self._thread = threading.Thread(target=self._run, name="history-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(OSError):
            self.flush()
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join()
        self._thread = None

    def recorded(self) -> tuple[list[RedisCommand], list[Gap]]:
        with self._seen:
            return list(self._commands), list(self._gaps)

    def flush(self) -> None:
        """Return once MONITOR has shown every command Redis ran before this call."""
        if self._thread is None:
            return
        marker = f"history-marker-{uuid.uuid4().hex}"
        deadline = time.monotonic() + _FLUSH_TIMEOUT_S
        # Sent again until seen: after a Redis restart the MONITOR connection may come back
        # only after the first marker went by unseen.
        while time.monotonic() < deadline:
            with _connect(self._url) as sock:
                sock.settimeout(_FLUSH_TIMEOUT_S)
                sock.sendall(_resp("ECHO", marker))
                sock.recv(1024)
            with self._seen:
                if self._seen.wait_for(lambda: marker in self._markers, _MARKER_AGAIN_S):
                    return
        raise TimeoutError(f"MONITOR did not show {marker} within {_FLUSH_TIMEOUT_S} s")

    def _monitor(self) -> socket.socket:
        sock = _connect(self._url)
        sock.sendall(_resp("MONITOR"))
        return sock

    def _run(self) -> None:
        sock = self._sock
        while sock is not None:
            with contextlib.suppress(OSError):
                self._read(sock)
            sock.close()
            sock = self._sock = self._reconnect()

    def _read(self, sock: socket.socket) -> None:
        pending = b""
        while chunk := sock.recv(65536):
            *lines, pending = (pending + chunk).split(b"\r\n")
            parsed = [c for c in map(_parse, lines) if c is not None]
            with self._seen:
                for command in parsed:
                    if command.name == "ECHO" and command.key.startswith("history-marker-"):
                        self._markers.add(command.key)
                    else:
                        self._commands.append(command)
                self._seen.notify_all()

    def _reconnect(self) -> socket.socket | None:
        """A new MONITOR connection as soon as Redis answers again; None once stopping."""
        lost = time.time()
        while not self._stopping.is_set():
            try:
                sock = self._monitor()
            except OSError:
                self._stopping.wait(_RECONNECT_S)
                continue
            with self._seen:
                self._gaps.append(Gap(lost, time.time()))
            return sock
        return None


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(parts.path)
        except OSError:
            sock.close()
            raise
        return sock
    return socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))


def _resp(*args: str) -> bytes:
    encoded = [arg.encode() for arg in args]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in encoded)


def _parse(line: bytes) -> RedisCommand | None:
    """`+1796108635.250051 [0 lua] "HSET" "k" "a \\"b\\""` as a RedisCommand; None for +OK."""
    match = _MONITOR_LINE.match(line)
    if match is None:
        return None
    at, client, rest = match.groups()
    args = tuple(_unescape(arg) for arg in _QUOTED.findall(rest))
    return RedisCommand(float(at), client.decode(), args)


def _unescape(quoted: bytes) -> str:
    def one(match: re.Match[bytes]) -> bytes:
        code = match[1]
        if len(code) == 3 and code.startswith(b"x"):
            return bytes([int(code[1:], 16)])
        return _ESCAPES.get(code, code)

    return _ESCAPE.sub(one, quoted).decode("utf-8", "replace")


def _px(command: RedisCommand) -> float | None:
    """The TTL of `SET key value PX ms`, in seconds."""
    upper = [arg.upper() for arg in command.args]
    if "PX" in upper and upper.index("PX") + 1 < len(upper):
        return int(command.args[upper.index("PX") + 1]) / 1000
    return None
