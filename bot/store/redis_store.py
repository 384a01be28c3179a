"""Rollout records, the audit trail, dedupe keys and small caches, in Redis.

Every write that must be exact runs as one Lua script, so it is atomic and one round trip:
`create` takes the per-VirtualService lock, `save` is a compare-and-set on the record's version
and on the leader's fencing token. The lock, the active index and the due index are only ever
changed by the same script that writes the record, so they cannot drift apart from it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import redis
from pydantic import ValidationError
from redis.backoff import ExponentialBackoff
from redis.commands.core import Script
from redis.retry import Retry

from bot.rollout.model import Rollout, Target
from bot.store.errors import (
    AlreadyActive,
    Fenced,
    RolloutFinished,
    RolloutNotFound,
    StoreError,
    StoreUnavailable,
    VersionConflict,
)

T = TypeVar("T")

# KEYS: per-VS stream, global stream. ARGV: max length, effect id or "", field, value, ...
_AUDIT = """
if ARGV[2] ~= '' then
  for _, entry in ipairs(redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 64)) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'effect' and fields[i + 1] == ARGV[2] then return entry[1] end
    end
  end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
return id
"""

# KEYS: the mutex. ARGV: its owner. Released only by whoever holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
MUTEX_POLL_S = 0.005

TERMINAL_TTL_S = 30 * 24 * 3600  # finished rollouts stay readable for status and history
HEALTH_CHECK_INTERVAL_S = 30

# KEYS: record, lock, active index, due index. ARGV: id, json, due score or "".
_CREATE = """
local holder = redis.call('GET', KEYS[2])
if holder then return {'active', holder} end
local existing = redis.call('HGET', KEYS[1], 'version')
if existing then return {'exists', existing} end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'version', 1, 'json', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1]) end
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1]) end
return {'ok', 1}
"""

# KEYS: record, lock, active index, due index, unfinished index, leader token.
# ARGV: id, expected version, token or "", json, "1" if terminal, due score or "", terminal TTL,
#       unfinished score or "" (the record has effects pending or a write unconfirmed).
_SAVE = """
if ARGV[3] ~= '' then
  local current = redis.call('GET', KEYS[6])
  if current ~= ARGV[3] then return {'fenced', current or ''} end
end
local version = redis.call('HGET', KEYS[1], 'version')
if version ~= ARGV[2] then return {'conflict', version or ''} end
if ARGV[5] == '1' then
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
  redis.call('SREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
elseif redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then
  return {'finished', version}
elseif ARGV[6] == '' then
  redis.call('ZREM', KEYS[4], ARGV[1])
else
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
end
if ARGV[8] == '' then
  redis.call('ZREM', KEYS[5], ARGV[1])
else
  redis.call('ZADD', KEYS[5], ARGV[8], ARGV[1])
end
local written = tonumber(version) + 1
redis.call('HSET', KEYS[1], 'version', written, 'json', ARGV[4])
if ARGV[5] == '1' then redis.call('EXPIRE', KEYS[1], ARGV[7]) end
return {'ok', written}
"""


def connect(url: str, *, timeout: float = 2.0) -> redis.Redis:
    """A client for a `redis://`, `rediss://` (TLS) or `unix://` URL; no I/O until first use."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        decode_responses=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
    )


def address_of(client: redis.Redis) -> str:
    """Where `client` points, as a URL without credentials (safe for messages)."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    db = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={db}"
    scheme = "rediss" if issubclass(pool.connection_class, redis.SSLConnection) else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


@contextmanager
def unavailable_on_error(client: redis.Redis) -> Iterator[None]:
    """Turn any Redis error into StoreUnavailable, naming the server but not its password."""
    try:
        yield
    except redis.RedisError as e:
        raise StoreUnavailable(address_of(client), e) from e


@dataclass(frozen=True)
class Keys:
    """Every Redis key the bot uses, in one place. `leader_prefix`, when set, is where the
    leader's keys are: one leader and one fencing token for every cluster's records."""

    prefix: str = "canary"
    leader_prefix: str | None = None

    def rollout(self, rollout_id: str) -> str:
        return f"{self.prefix}:rollout:{rollout_id}"

    def lock(self, target_key: str) -> str:
        return f"{self.prefix}:active:{target_key}"

    def audit(self, target_key: str) -> str:
        return f"{self.prefix}:audit:{target_key}"

    def seen(self, key: str) -> str:
        return f"{self.prefix}:seen:{key}"

    def cache(self, key: str) -> str:
        return f"{self.prefix}:cache:{key}"

    def mutex(self, name: str) -> str:
        return f"{self.prefix}:mutex:{name}"

    @property
    def active_index(self) -> str:
        return f"{self.prefix}:index:active"

    @property
    def due_index(self) -> str:
        return f"{self.prefix}:index:due"

    @property
    def unfinished_index(self) -> str:
        return f"{self.prefix}:index:unfinished"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}:epoch"

    @property
    def global_audit(self) -> str:
        return f"{self.prefix}:audit"

    @property
    def leader(self) -> str:
        return f"{self.leader_prefix or self.prefix}:leader"

    @property
    def leader_token(self) -> str:
        return f"{self.leader_prefix or self.prefix}:leader:token"


@dataclass(frozen=True)
class AuditEntry:
    """One audit event, as read back from a stream."""

    id: str
    namespace: str
    vs: str
    action: str
    actor: str
    at: datetime
    weight_before: int | None
    weight_after: int | None
    rollout_id: str = ""
    channel: str | None = None
    plan_hash: str = ""
    detail: str = ""

    def to_fields(self) -> dict[str, str]:
        """The stream entry's fields: strings only, None as ""."""
        return {
            "namespace": self.namespace,
            "vs": self.vs,
            "action": self.action,
            "actor": self.actor,
            "at": self.at.isoformat(),
            "weight_before": _optional_int_text(self.weight_before),
            "weight_after": _optional_int_text(self.weight_after),
            "rollout_id": self.rollout_id,
            "channel": self.channel or "",
            "plan_hash": self.plan_hash,
            "detail": self.detail,
        }

    @classmethod
    def from_stream(cls, entry_id: object, fields: Mapping[Any, Any]) -> AuditEntry:
        text = {_text(name): _text(value) for name, value in fields.items()}
        return cls(
            id=_text(entry_id),
            namespace=text["namespace"],
            vs=text["vs"],
            action=text["action"],
            actor=text["actor"],
            at=datetime.fromisoformat(text["at"]),
            weight_before=_parse_optional_int(text.get("weight_before", "")),
            weight_after=_parse_optional_int(text.get("weight_after", "")),
            rollout_id=text.get("rollout_id", ""),
            channel=text.get("channel") or None,
            plan_hash=text.get("plan_hash", ""),
            detail=text.get("detail", ""),
        )


class RolloutStore:
    """Rollout records with compare-and-set, the audit trail, dedupe keys and caches."""

    def __init__(
        self,
        redis: redis.Redis,
        *,
        prefix: str = "canary",
        leader_prefix: str | None = None,
        audit_maxlen: int = 10_000,
    ) -> None:
        self._redis = redis
        self._keys = Keys(prefix, leader_prefix)
        self._audit_maxlen = audit_maxlen
        self._create = redis.register_script(_CREATE)
        self._save = redis.register_script(_SAVE)
        self._audit = redis.register_script(_AUDIT)
        self._release = redis.register_script(_RELEASE)
        self.round_trips = 0  # one per command, pipeline or script sent: benchmarks report it

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    # Rollout records

    def create(self, rollout: Rollout) -> Rollout:
        """Store a new active rollout at version 1, unless its VirtualService has one already."""
        if rollout.settled:
            raise ValueError(f"rollout {rollout.id} is {rollout.phase}: there is nothing to do")
        stored = rollout.model_copy(update={"version": 1})
        keys = [*self._record_keys(rollout)]
        args = [
            rollout.id,
            stored.model_dump_json(),
            _score(rollout.next_step_at),
            _unfinished(rollout),
        ]
        status, detail = self._eval(self._create, keys, args)
        if status in ("active", "exists") and self._ours(stored):
            return stored  # a reply lost to a reset: the client sent it again, and it was ours
        if status == "active":
            raise self._already_active(rollout.target, detail)
        if status == "exists":
            raise VersionConflict(rollout.id, expected=0, found=int(detail))
        return stored

    def save(self, rollout: Rollout, *, expected_version: int, token: int | None = None) -> Rollout:
        """Write `rollout` if the stored version is `expected_version` and `token` is current."""
        stored = rollout.model_copy(update={"version": expected_version + 1})
        keys = [*self._record_keys(rollout), self._keys.leader_token]
        args = [
            rollout.id,
            str(expected_version),
            "" if token is None else str(token),
            stored.model_dump_json(),
            "1" if rollout.settled else "0",
            _score(rollout.next_step_at),
            str(TERMINAL_TTL_S),
            _unfinished(rollout),
        ]
        status, detail = self._eval(self._save, keys, args)
        if status == "conflict" and detail == str(expected_version + 1) and self._ours(stored):
            return stored  # a reply lost to a reset: the client sent it again, and it was ours
        _raise_for_save(status, detail, rollout.id, expected_version, token)
        return stored

    def _ours(self, stored: Rollout) -> bool:
        """Whether the record in Redis is exactly `stored`: a write of ours whose reply was
        lost (a reset connection makes the client send the script again)."""
        try:
            return self.load(stored.id) == stored
        except StoreError:
            return False

    @contextmanager
    def mutex(self, name: str, *, ttl_ms: int, wait_s: float) -> Iterator[bool]:
        """Hold `name` across replicas for at most `ttl_ms`; yields False if it could not be
        had within `wait_s`. Correctness never rests on it (every write is fenced); it keeps
        concurrent writers in line so each is told the outcome of its own change."""
        key, owner = self._keys.mutex(name), secrets.token_hex(8)
        deadline = time.monotonic() + wait_s
        held = False
        while True:
            held = bool(self._run(lambda: self._redis.set(key, owner, nx=True, px=ttl_ms)))
            if held or time.monotonic() >= deadline:
                break
            time.sleep(MUTEX_POLL_S)
        try:
            yield held
        finally:
            if held:
                with suppress(StoreError):
                    self._run(lambda: self._release(keys=[key], args=[owner]))

    def load(self, rollout_id: str) -> Rollout:
        raw = self._run(lambda: self._redis.hget(self._keys.rollout(rollout_id), "json"))
        if raw is None:
            raise RolloutNotFound(rollout_id)
        return _parse_rollout(rollout_id, raw)

    def exists(self, rollout_id: str) -> bool:
        return bool(self._run(lambda: self._redis.exists(self._keys.rollout(rollout_id))))

    def active_for(self, namespace: str, vs: str) -> Rollout | None:
        holder = self._run(lambda: self._redis.get(self._keys.lock(f"{namespace}/{vs}")))
        if holder is None:
            return None
        try:
            return self.load(_text(holder))
        except RolloutNotFound:
            return None  # finished and expired between the two reads

    def list_active(self) -> list[Rollout]:
        """Every active rollout, oldest first, in two round trips."""
        ids = sorted(_text(m) for m in self._run(lambda: self._redis.smembers(self._active)))
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for rollout_id in ids:
            pipe.hget(self._keys.rollout(rollout_id), "json")
        raws = self._run(pipe.execute)
        found = [_parse_rollout(i, raw) for i, raw in zip(ids, raws, strict=True) if raw]
        return sorted(found, key=lambda r: (r.created_at, r.id))

    def due(self, until: datetime) -> list[tuple[str, datetime]]:
        """(rollout id, next_step_at) of active rollouts whose next step is at or before `until`."""
        rows = self._run(
            lambda: self._redis.zrangebyscore(
                self._keys.due_index, "-inf", until.timestamp(), withscores=True
            )
        )
        pairs = cast(list[tuple[Any, float]], rows)
        return [(_text(member), datetime.fromtimestamp(score, UTC)) for member, score in pairs]

    def unfinished(self, until: datetime) -> list[str]:
        """Ids of rollouts with effects pending or a write unconfirmed since `until` or before:
        what a crashed or frozen process left behind (normally none)."""
        members = self._run(
            lambda: self._redis.zrangebyscore(
                self._keys.unfinished_index, "-inf", until.timestamp()
            )
        )
        return [_text(m) for m in cast(list[Any], members)]

    def known(self) -> bool:
        """Whether this Redis holds the bot's mark: it does not on a first start, nor after
        losing its data (restarted empty, failed over without persistence)."""
        return bool(self._run(lambda: self._redis.exists(self._keys.epoch)))

    def mark_known(self) -> None:
        self._run(lambda: self._redis.set(self._keys.epoch, "1"))

    # Audit trail

    def audit(
        self,
        *,
        namespace: str,
        vs: str,
        action: str,
        actor: str,
        at: datetime,
        weight_before: int | None,
        weight_after: int | None,
        rollout_id: str = "",
        channel: str | None = None,
        plan_hash: str = "",
        detail: str = "",
        effect_id: str = "",
    ) -> str:
        """Append one event to the VirtualService's stream and the global one, atomically.

        With `effect_id`, an event whose id is among the stream's last 64 entries is not written
        again: the engine replays an audit effect after a crash, or two writers carry out the
        same owed entry, and the trail stays exact.
        """
        entry = AuditEntry(
            id="",
            namespace=namespace,
            vs=vs,
            action=action,
            actor=actor,
            at=at,
            weight_before=weight_before,
            weight_after=weight_after,
            rollout_id=rollout_id,
            channel=channel,
            plan_hash=plan_hash,
            detail=detail,
        )
        fields = [*entry.to_fields().items(), ("effect", effect_id)]
        keys = [self._keys.audit(f"{namespace}/{vs}"), self._keys.global_audit]
        args = [str(self._audit_maxlen), effect_id, *(v for pair in fields for v in pair)]
        return _text(self._run(lambda: self._audit(keys=keys, args=args)))

    def history(self, namespace: str, vs: str, count: int = 50) -> list[AuditEntry]:
        """The last `count` events on one VirtualService, oldest first."""
        return self._read_stream(self._keys.audit(f"{namespace}/{vs}"), count)

    def global_history(self, count: int = 50) -> list[AuditEntry]:
        """The last `count` events on every VirtualService, oldest first."""
        return self._read_stream(self._keys.global_audit, count)

    # Dedupe, caches, health

    def first_delivery(self, key: str, ttl_s: int = 900) -> bool:
        """True the first time `key` is seen within `ttl_s` (Slack retries, double taps)."""
        created = self._run(lambda: self._redis.set(self._keys.seen(key), "1", nx=True, ex=ttl_s))
        return bool(created)

    def cache_get(self, key: str) -> str | None:
        value = self._run(lambda: self._redis.get(self._keys.cache(key)))
        return None if value is None else _text(value)

    def cache_set(self, key: str, value: str, ttl_s: int) -> None:
        self._run(lambda: self._redis.set(self._keys.cache(key), value, ex=ttl_s))

    def ping(self) -> None:
        self._run(self._redis.ping)

    # Plumbing

    @property
    def _active(self) -> str:
        return self._keys.active_index

    def _record_keys(self, rollout: Rollout) -> tuple[str, str, str, str, str]:
        return (
            self._keys.rollout(rollout.id),
            self._keys.lock(rollout.target.key),
            self._keys.active_index,
            self._keys.due_index,
            self._keys.unfinished_index,
        )

    def _run(self, operation: Callable[[], T]) -> T:
        self.round_trips += 1
        with unavailable_on_error(self._redis):
            return operation()

    def _eval(self, script: Script, keys: Sequence[str], args: Sequence[str]) -> tuple[str, str]:
        reply = self._run(lambda: script(keys=keys, args=args))
        return _text(reply[0]), _text(reply[1]) if len(reply) > 1 else ""

    def _already_active(self, target: Target, holder_id: str) -> AlreadyActive:
        try:
            holder = self.load(holder_id)
            phase, started_by = str(holder.phase), holder.started_by
        except RolloutNotFound:
            phase, started_by = "unknown phase", "someone"
        return AlreadyActive(
            key=target.key,
            service=target.service,
            rollout_id=holder_id,
            phase=phase,
            started_by=started_by,
        )

    def _read_stream(self, stream: str, count: int) -> list[AuditEntry]:
        rows = self._run(lambda: self._redis.xrevrange(stream, count=count)) or []
        return [AuditEntry.from_stream(entry_id, fields or {}) for entry_id, fields in rows][::-1]


def _raise_for_save(
    status: str, detail: str, rollout_id: str, expected: int, token: int | None
) -> None:
    if status == "fenced" and token is not None:
        raise Fenced(token, int(detail) if detail else None)
    if status == "conflict":
        raise VersionConflict(rollout_id, expected, int(detail) if detail else None)
    if status == "finished":
        raise RolloutFinished(rollout_id)


def _parse_rollout(rollout_id: str, raw: object) -> Rollout:
    try:
        return Rollout.model_validate_json(_text(raw))
    except ValidationError as e:
        raise StoreError(
            f"the record of rollout {rollout_id} in Redis is not a valid rollout "
            f"({e.error_count()} problems, first: {e.errors()[0]['msg']}); "
            "was it written by a newer canary-bot?"
        ) from e


def _unfinished(rollout: Rollout) -> str:
    if not rollout.pending and rollout.writing is None:
        return ""
    return repr(rollout.updated_at.timestamp())


def _score(at: datetime | None) -> str:
    return "" if at is None else repr(at.timestamp())


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional_int_text(value: int | None) -> str:
    return "" if value is None else str(value)


def _parse_optional_int(text: str) -> int | None:
    return int(text) if text else None
