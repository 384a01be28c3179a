"""Multi-cluster waves on record in Redis: a record per wave, compare-and-set on its version
and on the leader's fencing token, one running wave per service."""

from __future__ import annotations

from typing import cast

import redis

from bot.rollout.waves import Wave, WaveMoved, WaveRunning, WaveState
from bot.store.errors import Fenced, WaveNotFound
from bot.store.redis_store import Keys, unavailable_on_error

FINISHED_TTL_S = 30 * 24 * 3600

# KEYS: record, the service's lock, running index. ARGV: id, json.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists', ''} end
local holder = redis.call('GET', KEYS[2])
if holder then return {'active', holder} end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'version', 1, 'json', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return {'ok', '1'}
"""

# KEYS: record, the service's lock, running index, leader token.
# ARGV: id, expected version, token or "", json, "1" if the wave ended, TTL once ended.
_SAVE = """
if ARGV[3] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[3] then
  return {'fenced', redis.call('GET', KEYS[4]) or ''}
end
local version = redis.call('HGET', KEYS[1], 'version')
if version ~= ARGV[2] then return {'conflict', version or ''} end
if ARGV[5] == '1' then
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
  redis.call('SREM', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
redis.call('HSET', KEYS[1], 'version', tonumber(version) + 1, 'json', ARGV[4])
return {'ok', tostring(tonumber(version) + 1)}
"""


class WaveStore:
    def __init__(self, client: redis.Redis, *, prefix: str = "canary") -> None:
        self._redis, self._prefix = client, prefix
        self._leader_token = Keys(prefix).leader_token
        self._create = client.register_script(_CREATE)
        self._save = client.register_script(_SAVE)

    def create(self, wave: Wave) -> Wave:
        """Record a new wave at version 1, unless its service has a wave running or a wave
        of that id is on record (WaveMoved: read it)."""
        stored = wave.model_copy(update={"version": 1})
        keys = [self._record(wave.id), self._lock(wave.key), self._running]
        status, detail = self._eval(self._create, keys, [wave.id, stored.model_dump_json()])
        if status == "active":
            raise WaveRunning(wave.service, detail)
        if status == "exists":
            raise WaveMoved(wave.id, 0, "a record")
        return stored

    def save(self, wave: Wave, *, token: int | None = None) -> Wave:
        """Write `wave` over the version it was read at, if `token` is still the leader's."""
        stored = wave.model_copy(update={"version": wave.version + 1})
        ended = wave.state is not WaveState.RUNNING
        keys = [self._record(wave.id), self._lock(wave.key), self._running, self._leader_token]
        args = [
            wave.id,
            str(wave.version),
            "" if token is None else str(token),
            stored.model_dump_json(),
            "1" if ended else "0",
            str(FINISHED_TTL_S),
        ]
        status, detail = self._eval(self._save, keys, args)
        if status == "fenced":
            raise Fenced(token or 0, int(detail) if detail else None)
        if status == "conflict":
            raise WaveMoved(wave.id, wave.version, detail)
        return stored

    def load(self, wave_id: str) -> Wave:
        with unavailable_on_error(self._redis):
            raw = self._redis.hget(self._record(wave_id), "json")
        if raw is None:
            raise WaveNotFound(wave_id)
        return Wave.model_validate_json(cast(str, raw))

    def running(self) -> list[Wave]:
        with unavailable_on_error(self._redis):
            ids = sorted(cast(set[str], self._redis.smembers(self._running)))
        return [self.load(i) for i in ids]

    def for_service(self, namespace: str, vs: str) -> Wave | None:
        with unavailable_on_error(self._redis):
            wave_id = self._redis.get(self._lock(f"{namespace}/{vs}"))
        return None if wave_id is None else self.load(cast(str, wave_id))

    @property
    def _running(self) -> str:
        return f"{self._prefix}:waves:running"

    def _record(self, wave_id: str) -> str:
        return f"{self._prefix}:wave:{wave_id}"

    def _lock(self, key: str) -> str:
        return f"{self._prefix}:wave:active:{key}"

    def _eval(self, script: object, keys: list[str], args: list[str]) -> tuple[str, str]:
        with unavailable_on_error(self._redis):
            status, detail = cast(tuple[str, str], script(keys=keys, args=args))  # type: ignore[operator]
        return status, detail
