"""Leader election over the Redis lease: one replica drives the scheduled steps."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bot.store.errors import StoreError
from bot.store.lease import LeaderLease

log = logging.getLogger(__name__)
FOLLOWER_LOOK_S = 0.5


class Leadership:
    """Keeps trying to take or renew the lease; calls back when we win it or lose it."""

    def __init__(
        self,
        lease: LeaderLease,
        *,
        ttl_s: float,
        on_elected: Callable[[int], None],
        on_deposed: Callable[[], None],
    ) -> None:
        self.lease = lease
        self._renew_every = ttl_s / 3
        self._look_every = min(ttl_s / 3, FOLLOWER_LOOK_S)  # a released lease is taken at once
        self._on_elected, self._on_deposed = on_elected, on_deposed
        self._leading = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leadership", daemon=True)

    @property
    def leading(self) -> bool:
        return self._leading and self.lease.token is not None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop, and hand the lease over at once instead of letting it expire."""
        self._stop.set()
        self._thread.join()
        self._step_down()
        try:
            self.lease.release()
        except StoreError:
            log.warning("could not release the leader lease; it expires on its own")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._tick()
            self._stop.wait(self._renew_every if self._leading else self._look_every)

    def _tick(self) -> None:
        try:
            held = self.lease.renew() if self._leading else self.lease.try_acquire() is not None
        except StoreError as e:
            log.warning("leader lease: %s", e)
            held = self._leading and self.lease.token is not None  # valid until our deadline
        if held and not self._leading:
            self._leading = True
            token = self.lease.token
            log.info("leading now (fencing token %s)", token)
            self._on_elected(int(token or 0))
        elif not held:
            self._step_down()

    def _step_down(self) -> None:
        if self._leading:
            self._leading = False
            log.info("not leading any more")
            self._on_deposed()
