"""What the sandbox's real servers (Redis, Prometheus) share: a child process in a private
temp dir, its output in a log there, started until it answers, stopped or killed on demand."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Self

_LOG_TAIL_CHARS = 2_000


class ServerProcess:
    program: ClassVar[str]  # for messages, e.g. "redis-server"
    not_ready: ClassVar[str]  # "did not answer PING", ...
    error: ClassVar[type[Exception]]
    ready_timeout_s: ClassVar[float]
    stop_timeout_s: ClassVar[float]
    poll_interval_s: ClassVar[float]

    def __init__(self) -> None:
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """SIGTERM and wait: the server shuts down cleanly."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash."""
        self._end(signal.SIGKILL)

    def close(self) -> None:
        """Stop the server and remove its temp dir."""
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

    def start(self) -> Self:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _ensure_workdir(self) -> Path:
        if self._workdir is None:
            # Short, private and fresh: unix socket paths are limited to about 100 bytes.
            self._workdir = Path(tempfile.mkdtemp(prefix=f"canary-{self.program}-"))
        return self._workdir

    def _spawn(self, argv: list[str]) -> None:
        """Run `argv` with its output in the log, and wait until the server answers."""
        self._log = (self._ensure_workdir() / f"{self.program}.log").open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - our own binary and config, no shell
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        atexit.register(self.close)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                self._fail(f"{self.program} exited with code {self._process.returncode}")
            if self._ready():
                return
            time.sleep(self.poll_interval_s)
        self._fail(f"{self.program} {self.not_ready} within {self.ready_timeout_s:.0f} s")

    def _fail(self, reason: str) -> None:
        tail = self._log_tail()
        self.kill()
        raise self.error(f"{reason} ({self.url}); its log ends with:\n{tail}")

    def _log_tail(self) -> str:
        log = self._workdir / f"{self.program}.log" if self._workdir else None
        return log.read_text(errors="replace")[-_LOG_TAIL_CHARS:] if log and log.exists() else ""

    def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(how)
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
