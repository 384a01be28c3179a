"""Fault drills on record in Redis: one hash, a field per service and kind of drill."""

from __future__ import annotations

from typing import cast

import redis

from bot.rollout.drills import DrillRecord
from bot.store.redis_store import unavailable_on_error

# Removes a drill's record only if it is still the one read: of two replicas ending the same
# drill, one does the bookkeeping.
_REMOVE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


class DrillStore:
    def __init__(self, client: redis.Redis, *, prefix: str = "canary") -> None:
        self._redis = client
        self._key = f"{prefix}:drills"
        self._remove = client.register_script(_REMOVE)

    def add(self, record: DrillRecord) -> bool:
        """Record a new drill; False when that service already has one of that kind."""
        with unavailable_on_error(self._redis):
            return bool(self._redis.hsetnx(self._key, record.key, record.model_dump_json()))

    def put(self, record: DrillRecord) -> None:
        with unavailable_on_error(self._redis):
            self._redis.hset(self._key, record.key, record.model_dump_json())

    def remove(self, record: DrillRecord) -> bool:
        """Forget `record` if it is still on record as it is; False if someone else did."""
        with unavailable_on_error(self._redis):
            done = self._remove(keys=[self._key], args=[record.key, record.model_dump_json()])
        return bool(done)

    def all(self) -> list[DrillRecord]:
        with unavailable_on_error(self._redis):
            raw = cast(dict[bytes, bytes], self._redis.hgetall(self._key))
        records = [DrillRecord.model_validate_json(v) for v in raw.values()]
        return sorted(records, key=lambda r: (r.ends_at, r.key))

    def for_service(self, namespace: str, vs: str) -> list[DrillRecord]:
        return [r for r in self.all() if (r.namespace, r.vs) == (namespace, vs)]
