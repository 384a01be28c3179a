"""Child processes a fault campaign can pause, resume, kill and read the log of. For instance
a `serve` replica:

    env = serve_env(tmp_path, kube_url=sandbox.url, redis_url=redis_url, user="replica-1")
    with serve(env, tmp_path / "replica-1.log") as replica:
        replica.wait_for_line("leading now")
        replica.pause()  # SIGSTOP: a GC pause, a stalled VM
        replica.resume()  # SIGCONT

Seen on this machine: a `serve` replica sent SIGTERM within moments of a SIGCONT sometimes never
runs its handler (the signal is taken, its main thread stays parked in `Event.wait()`), so
`terminate()` then times out. Sent half a second after the SIGCONT, it stopped in 60 of 60 tries.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import yaml

from sandbox.kubeconfig import kubeconfig_dict

_POLL_S = 0.01
_LOG_TAIL_CHARS = 2_000


class ChildExited(RuntimeError):
    """The child ended while we waited for it to do something."""


class ChildProcess:
    """One child process, its stdout and stderr in one log file; killed on leaving `with`."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], log: Path) -> None:
        self.argv, self.env, self.log = list(argv), dict(env), log
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.log.open("ab") as output:  # the child keeps its own copy of the descriptor
            self._process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.running:
            self.kill()

    @property
    def pid(self) -> int:
        return self._started.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._started.poll()

    @property
    def paused(self) -> bool:
        """Every thread of the child is stopped."""
        states = set(_thread_states(self.pid)) if self.running else set()
        return bool(states) and states <= _STOPPED

    def pause(self) -> None:
        """SIGSTOP; returns once every thread of the child is stopped."""
        self._started.send_signal(signal.SIGSTOP)
        self._wait_for(lambda: self.paused, "stop")

    def resume(self) -> None:
        """SIGCONT; returns once no thread of the child is stopped."""
        self._started.send_signal(signal.SIGCONT)
        self._wait_for(lambda: not _STOPPED & set(_thread_states(self.pid)), "continue")

    def kill(self) -> int:
        """SIGKILL, as in a crash (a paused child dies too); returns the exit status."""
        self._started.kill()
        return self._started.wait()

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM (a paused child is resumed first); waits for the exit status."""
        if self.paused:
            self.resume()
        self._started.terminate()
        return self._started.wait(timeout)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def mark(self) -> int:
        """Where the log ends now: `wait_for_line(..., since=mark)` looks only past it."""
        return self.log.stat().st_size

    def wait_for_line(self, pattern: str, timeout: float = 20.0, *, since: int = 0) -> str:
        """The first log line after offset `since` that `pattern` (a regex) is found in."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            with self.log.open("rb") as log:
                log.seek(since)
                lines = log.read().decode(errors="replace").splitlines()
            found = next((line for line in lines if regex.search(line)), None)
            if found is not None:
                return found
            if not self.running:
                raise ChildExited(f"{self._name} exited with {self.returncode}{self._tail()}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no line matching {pattern!r} within {timeout} s{self._tail()}")
            time.sleep(_POLL_S)

    @property
    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError(f"{self._name} is not started")
        return self._process

    @property
    def _name(self) -> str:
        return f"the child logging to {self.log.name}"

    def _tail(self) -> str:
        return f"; its log ends with:\n{self.text()[-_LOG_TAIL_CHARS:]}"

    def _wait_for(self, done: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if not self.running:
                raise ChildExited(f"{self._name} exited with {self.returncode}{self._tail()}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self._name} did not {what} within {timeout} s")
            time.sleep(_POLL_S)


_STOPPED = frozenset("Tt")


def _thread_states(pid: int) -> list[str]:
    """The state letter of each thread of `pid`: R, S, D, T (stopped), t (traced), Z, ..."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(FileNotFoundError):  # the thread ended meanwhile
            states.append(stat.read_text().rpartition(")")[2].split()[0])
    return states


def python_module(module: str, *args: str) -> list[str]:
    """argv to run `python -m module args...` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def serve(env: Mapping[str, str], log: Path) -> ChildProcess:
    """`canary-bot serve` as a child process, not started yet (use it with `with`)."""
    return ChildProcess(python_module("bot.cli", "serve"), env=env, log=log)


def cli(
    env: Mapping[str, str], *args: str, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run `canary-bot args...` to the end, its output captured (e.g. `rollout pause weather`)."""
    return subprocess.run(
        python_module("bot.cli", *args),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def serve_env(
    workdir: Path, *, kube_url: str, redis_url: str, user: str, **settings: str
) -> dict[str, str]:
    """The environment of one `serve` replica: its own kubeconfig, whose bearer token `user`
    names it in the sandbox API server's log, plus `settings` (e.g. CANARY_LEASE_TTL="1")."""
    config = kubeconfig_dict(kube_url)
    config["users"][0]["user"]["token"] = user
    kubeconfig = workdir / f"kubeconfig-{user}"
    kubeconfig.write_text(yaml.safe_dump(config), encoding="utf-8")
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "KUBECONFIG": str(kubeconfig),
        "PYTHONUNBUFFERED": "1",
        "CANARY_HTTP_PORT": "0",
        **settings,
    }
