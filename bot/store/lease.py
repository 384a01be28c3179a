"""The leader lease: one replica runs the scheduler, and its writes carry a fencing token.

The lease is a key holding the leader's identity with a TTL. Each new leader increments a
counter and gets its value as its fencing token; `RolloutStore.save(token=...)` refuses writes
carrying any other token, so a leader that stalled past its TTL (GC pause, network partition)
cannot overwrite what its successor did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from redis.commands.core import Script

from bot.store.redis_store import Keys, unavailable_on_error

# KEYS: lease, token counter. ARGV: identity, ttl ms.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  local token = redis.call('GET', KEYS[2])
  if token then return tonumber(token) end
  return redis.call('INCR', KEYS[2])
end
if holder then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
"""

# KEYS: lease. ARGV: identity, ttl ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lease. ARGV: identity.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaderLease:
    """A Redis lease held by `identity` (unique per process, e.g. host, pid and a random part)."""

    def __init__(
        self,
        redis: redis.Redis,
        *,
        identity: str,
        ttl_ms: int = 5000,
        prefix: str = "canary",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._keys = Keys(prefix)
        self._identity = identity
        self._ttl_ms = ttl_ms
        self._clock = clock
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._token: int | None = None
        self._valid_until = 0.0

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def token(self) -> int | None:
        """Our fencing token while we surely hold the lease, else None."""
        # Past our own deadline the lease may have expired in Redis and gone to someone else.
        if self._token is not None and self._clock() < self._valid_until:
            return self._token
        return None

    def try_acquire(self) -> int | None:
        """Take the lease if it is free (a new, greater token) or extend it if it is ours."""
        asked_at = self._clock()
        token = self._call(self._acquire, [self._keys.leader, self._keys.leader_token])
        if token is None:
            self._forget()
            return None
        self._token = int(token)
        self._valid_until = asked_at + self._ttl_ms / 1000
        return self._token

    def renew(self) -> bool:
        """Push the expiry out by the TTL; False if the lease is not ours (any more)."""
        asked_at = self._clock()
        if not self._call(self._renew, [self._keys.leader]):
            self._forget()
            return False
        self._valid_until = asked_at + self._ttl_ms / 1000
        return True

    def release(self) -> None:
        """Give the lease up now, so a successor need not wait for the TTL."""
        self._forget()
        self._call(self._release, [self._keys.leader], with_ttl=False)

    def holder(self) -> str | None:
        with unavailable_on_error(self._redis):
            value = self._redis.get(self._keys.leader)
        return value.decode() if isinstance(value, bytes) else value

    def _call(self, script: Script, keys: list[str], *, with_ttl: bool = True) -> Any:
        args = [self._identity, str(self._ttl_ms)] if with_ttl else [self._identity]
        with unavailable_on_error(self._redis):
            return script(keys=keys, args=args)

    def _forget(self) -> None:
        self._token = None
        self._valid_until = 0.0
