"""A randomized fault campaign against the engine's guarantees.

One schedule is a seeded sequence of operations on one service, run against the sandbox API
server and a real Redis by two replicas of the engine: humans' commands (from either replica,
sometimes two at once), the leader's scheduled steps, the lease moving, a replica frozen right
before or right after it sends a write (and let go later), 500s and 409 storms and hand edits
in the API, writes that land but are never answered (or are cut off, or swallowed whole), a
replica killed at a write and replaced, Redis connections reset and Redis pausing its writes
longer than the clients wait, a health check that hangs while humans act. Health verdicts
come from the seed. Everything that
happened is kept (every record version the store wrote, every request the API server saw,
the audit trail, every answer a human got) and the invariants are checked on that history.
A failing schedule names its seed; `run_schedule(seed)` replays it.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from bot.mesh.kube import KubeMesh
from bot.mesh.planner import ANNOTATION
from bot.rollout.engine import Engine
from bot.rollout.model import (
    ApplyWeight,
    Audit,
    Pause,
    Phase,
    Promote,
    Resume,
    Rollback,
    Rollout,
    StepPlan,
    Verdict,
)
from bot.rollout.ports import Planned
from bot.rollout.traffic import KubeTraffic
from bot.store.redis_store import RolloutStore, connect
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed

STEPS = StepPlan(weights=(10, 20, 30, 40, 100), interval_s=30, failure_limit=2)
NS, VS = "default", "weather"
OPS = (
    ("start", 6),
    ("set", 6),
    ("step", 14),
    ("rollback", 2),
    ("pause", 2),
    ("resume", 4),
    ("promote", 1),
    ("together", 3),
    ("freeze", 3),
    ("thaw", 3),
    ("lease", 3),
    ("api-500", 2),
    ("api-409", 2),
    ("hand-edit", 2),
    ("redis-reset", 2),
    ("kill", 2),
    ("api-hang", 1),
    ("api-drop", 1),
    ("api-black-hole", 1),
    ("redis-pause", 1),
    ("health-hang", 2),
)
WEIGHTS = (0, 5, 15, 25, 35, 45, 60, 75)
JOIN_S = 20.0
READ_TIMEOUT_S = 0.5  # the replicas' deadline for an answer from the API server and from Redis


class RecordingStore(RolloutStore):
    """The store, keeping every record version it wrote (with when), for the checks."""

    def __init__(self, client: redis.Redis, versions: list[tuple[float, Rollout]]) -> None:
        super().__init__(client)
        self._versions, self._guard = versions, threading.Lock()

    def create(self, rollout: Rollout) -> Rollout:
        return self._kept(super().create(rollout))

    def save(self, rollout: Rollout, *, expected_version: int, token: int | None = None) -> Rollout:
        return self._kept(super().save(rollout, expected_version=expected_version, token=token))

    def _kept(self, stored: Rollout) -> Rollout:
        with self._guard:
            self._versions.append((time.time(), stored))
        return stored


class Killed(BaseException):
    """The replica's process died here: nothing after this point of its thread runs (a
    BaseException, so no `except Exception` of the engine's can carry on for it)."""


class FreezingTraffic(KubeTraffic):
    """The real adapter; when told to, the next write waits right before or right after it is
    sent, as a replica frozen by SIGSTOP at that boundary would; or, told to kill, the replica
    dies there when let go."""

    def __init__(self, mesh: KubeMesh) -> None:
        super().__init__(mesh)
        self.freeze: str | None = None  # "before" or "after" the next write
        self.kill = False  # when let go, die instead of going on
        self.frozen = threading.Event()
        self.thawed = threading.Event()

    def write(self, planned: Planned) -> None:
        where, self.freeze = self.freeze, None
        if where == "before":
            self._wait()
        super().write(planned)
        if where == "after":
            self._wait()

    def _wait(self) -> None:
        self.frozen.set()
        self.thawed.wait(JOIN_S)
        if self.kill:
            raise Killed


class ScriptedHealth:
    """Verdicts from the seed. Told to hang, the next check waits until let go, as one against
    a Prometheus that trickles its answer does until its deadline, and is then inconclusive."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.hang = False
        self.hanging = threading.Event()
        self.released = threading.Event()

    def check(self, rollout: Rollout, now: datetime) -> Verdict:
        outcome = self._rng.choices(("pass", "fail", "inconclusive"), (70, 15, 15))[0]
        if self.hang:
            self.hang = False
            self.hanging.set()
            self.released.wait(JOIN_S)
            self.hanging.clear()
            outcome = "inconclusive"
        return Verdict(outcome=outcome, at=now, step=rollout.step, summary="scripted")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
        self._guard = threading.Lock()

    def __call__(self) -> datetime:
        with self._guard:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._guard:
            self.now += timedelta(seconds=seconds)


@dataclass
class Answer:
    """What one operation got back: the record, or the exception."""

    op: str
    actor: str
    weight: int | None
    result: Rollout | None = None
    error: str = ""


@dataclass
class History:
    seed: int
    ops: list[str] = field(default_factory=list)
    versions: list[tuple[float, Rollout]] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    takeovers: dict[int, float] = field(default_factory=dict)  # old token -> takeover done
    hand_edits: list[float] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)
    audit: list[Any] = field(default_factory=list)
    live: dict[str, Any] = field(default_factory=dict)
    hung: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # urgent commands that waited on a check


class World:
    """The shared parts, reused from schedule to schedule: one API server, one Redis."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.cluster = SandboxApiServer().start()
        weather = [p for p in bundled_seed_paths() if p.name == "weather.yaml"]
        self._seed = load_yaml_documents(weather)
        self.admin = redis.Redis.from_url(redis_url)

    def close(self) -> None:
        self.cluster.stop()
        self.admin.close()

    def reset(self) -> None:
        self.cluster.clear_faults()
        seed(self.cluster, self._seed)
        self.cluster.clear_log()
        self.admin.flushdb()


class Schedule:
    def __init__(self, world: World, seed_value: int, length: int) -> None:
        self.world, self.rng = world, random.Random(seed_value)
        self.length = length
        self.history = History(seed_value)
        self.clock = Clock()
        self.token, self.leader = 1, 0
        world.admin.set("canary:leader:token", self.token)
        self.records = RolloutStore(connect(world.redis_url))  # what the checks read
        self.replicas = [self._replica(i) for i in range(2)]
        self.dead: list[Engine] = []  # killed replicas, their connections closed at the end
        self.threads: list[tuple[str, threading.Thread]] = []
        self._count = 0

    def _replica(self, index: int) -> Engine:
        mesh = KubeMesh(
            api_client_for(self.world.cluster.url),
            sleep=lambda _: None,
            timeout=(1.0, READ_TIMEOUT_S),
        )
        engine = Engine(
            store=RecordingStore(
                connect(self.world.redis_url, timeout=READ_TIMEOUT_S), self.history.versions
            ),
            traffic=FreezingTraffic(mesh),
            notifier=_Silent(),
            clock=self.clock,
            health=ScriptedHealth(random.Random(self.rng.random())),
            mutex=(400, 3.0),
        )
        # the token while this very process leads: a dead one's never comes back
        engine.fencing = lambda: self.token if self.replicas[self.leader] is engine else None
        return engine

    # Running

    def run(self) -> History:
        for _ in range(self.length):
            op = self.rng.choices([o for o, _ in OPS], [w for _, w in OPS])[0]
            self.history.ops.append(op)
            getattr(self, "_" + op.replace("-", "_"))()
        self._finish()
        return self.history

    def _finish(self) -> None:
        self.world.cluster.clear_faults()
        self.world.admin.client_unpause()
        self._thaw()
        for name, thread in self.threads:
            thread.join(JOIN_S)
            if thread.is_alive():
                self.history.hung.append(name)
        self._recover_all(self.replicas[self.leader])
        for engine in (*self.replicas, *self.dead):
            _traffic(engine).mesh.close()
        h = self.history
        h.requests = list(self.world.cluster.requests)
        h.audit = self.records.history(NS, VS, count=10_000)
        h.live = self.world.cluster.get_object(NS, "virtualservices", VS) or {}

    def _in_thread(
        self, name: str, fn: Callable[[], Any], op: str, actor: str, weight: int | None
    ) -> None:
        answer = Answer(op, actor, weight)
        self.history.answers.append(answer)

        def body() -> None:
            try:
                answer.result = fn()
            except Exception as e:  # every answer is kept, errors included
                answer.error = f"{type(e).__name__}: {e}"
            except Killed:
                answer.error = "killed"

        thread = threading.Thread(target=body, name=name, daemon=True)
        thread.start()
        self.threads.append((name, thread))
        urgent = op in ("Rollback", "Pause")
        deadline = time.monotonic() + JOIN_S
        while thread.is_alive() and time.monotonic() < deadline:
            if any(_traffic(e).frozen.is_set() for e in self._all()):
                return  # frozen at a write: it goes on in the background until thawed
            if not urgent and any(_health(e).hanging.is_set() for e in self._all()):
                return  # behind a hung health check, as it may be; it goes on when let go
            thread.join(0.005)
        if thread.is_alive() and any(_health(e).hanging.is_set() for e in self._all()):
            self.history.blocked.append(name)  # rollback and pause must never wait for one

    def _all(self) -> list[Engine]:
        return [*self.replicas, *self.dead]

    def _actor(self) -> str:
        self._count += 1
        return f"U{self._count:03d}"

    def _engine(self) -> Engine:
        return self.rng.choice(self.replicas)

    def _active(self) -> Rollout | None:
        try:
            return self.records.active_for(NS, VS)
        except Exception:
            return None

    # Operations

    def _start(self) -> None:
        engine, actor = self._engine(), self._actor()
        fn = lambda: engine.start(  # noqa: E731
            namespace=NS, vs=VS, to=None, steps=STEPS, actor=actor, channel="C1"
        )
        self._in_thread(f"start {actor}", fn, "start", actor, None)

    def _set(self, engine: Engine | None = None) -> None:
        engine, actor = engine or self._engine(), self._actor()
        weight = self.rng.choice(WEIGHTS)
        fn = lambda: engine.set_weight(  # noqa: E731
            namespace=NS, vs=VS, to=None, weight=weight, steps=STEPS, actor=actor, channel="C1"
        )
        self._in_thread(f"set {weight} {actor}", fn, "set", actor, weight)

    def _act(self, event_type: type, engine: Engine | None = None) -> None:
        engine, actor = engine or self._engine(), self._actor()
        fn = lambda: engine.act(NS, VS, event_type(actor=actor))  # noqa: E731
        self._in_thread(f"{event_type.__name__} {actor}", fn, event_type.__name__, actor, None)

    def _rollback(self) -> None:
        self._act(Rollback)

    def _pause(self) -> None:
        self._act(Pause)

    def _resume(self) -> None:
        self._act(Resume)

    def _promote(self) -> None:
        self._act(Promote)

    def _together(self) -> None:
        """Two humans at once, one on each replica."""
        first, second = self.replicas
        for engine in (first, second):
            choice = self.rng.choice(("set", "set", "rollback", "pause", "resume"))
            if choice == "set":
                self._set(engine)
            else:
                self._act({"rollback": Rollback, "pause": Pause, "resume": Resume}[choice], engine)

    def _step(self) -> None:
        active = self._active()
        if active is None or active.phase is not Phase.PROGRESSING or active.next_step_at is None:
            return
        self.clock.advance(STEPS.interval_s)
        leader = self.replicas[self.leader]
        step = active.step
        fn = lambda: leader.step_due(active.id, step)  # noqa: E731
        self._in_thread(f"step {step} of {active.id}", fn, "step", "canary-bot", None)

    def _freeze(self) -> FreezingTraffic:
        traffic = _traffic(self._engine())
        traffic.frozen.clear()
        traffic.thawed.clear()
        traffic.freeze = self.rng.choice(("before", "after"))
        return traffic

    def _thaw(self) -> None:
        for engine in self._all():
            _health(engine).released.set()
        for index, engine in enumerate(list(self.replicas)):
            traffic = _traffic(engine)
            dies = traffic.kill and traffic.frozen.is_set()
            traffic.freeze, traffic.kill = None, dies
            traffic.thawed.set()
            if dies:
                self._replace(index)

    def _kill(self) -> None:
        """The next write of one replica is its last: it dies right before or right after
        sending it (when next let go), and a new replica takes its place."""
        traffic = self._freeze()
        traffic.kill = True

    def _replace(self, index: int) -> None:
        """A new process in place of a dead one; if the dead one led, the lease has moved."""
        self.dead.append(self.replicas[index])
        self.replicas[index] = self._replica(index)
        if index == self.leader:
            self._lease()

    def _lease(self) -> None:
        """The lease moves to the other replica, which takes over as a newly elected leader
        does: everything on record with work unfinished is settled and carried on."""
        old = self.token
        self.token += 1
        self.leader = 1 - self.leader
        self.world.admin.set("canary:leader:token", self.token)
        if self._recover_all(self.replicas[self.leader]):
            # Settled: from here on no write of the old leader's can land. (If the API refused
            # the fence, the takeover is not done: the next resync tries again.)
            self.history.takeovers[old] = time.time()

    def _recover_all(self, engine: Engine) -> bool:
        # Run here, in the schedule's own thread: a freeze (or kill) armed on this replica
        # waits for its next write of another kind
        traffic = _traffic(engine)
        armed, traffic.freeze = traffic.freeze, None
        try:
            for rollout in self.records.list_active():
                if rollout.pending or rollout.writing is not None:
                    engine.recover(rollout)
        except Exception as e:  # a takeover that fails is retried by the next resync
            self.history.answers.append(Answer("recover", "canary-bot", None, error=str(e)))
            return False
        finally:
            traffic.freeze = traffic.freeze or armed
        return True

    def _api_500(self) -> None:
        self.world.cluster.fail_next(
            self.rng.randint(1, 4), 500, method="PATCH", path_contains="virtualservices"
        )

    def _api_409(self) -> None:
        self.world.cluster.fail_next(
            self.rng.randint(1, 6), 409, method="PATCH", path_contains="virtualservices"
        )

    def _hand_edit(self) -> None:
        canary = self.rng.choice((0, 5, 50, 90))

        def edit(vs: dict[str, Any]) -> None:
            self.history.hand_edits.append(time.time())
            routes = vs["spec"]["http"][0]["route"]
            if len(routes) == 2:
                routes[0]["weight"], routes[1]["weight"] = 100 - canary, canary

        self.world.cluster.after_next_get(NS, "virtualservices", VS, edit)

    def _redis_reset(self) -> None:
        self.world.admin.client_kill_filter(_type="normal", skipme=True)

    def _redis_pause(self) -> None:
        """Redis takes no writes for a while (a failover's CLIENT PAUSE), sometimes longer than
        the clients wait for an answer."""
        self.world.admin.client_pause(self.rng.randint(100, 1_200), all=False)

    def _api_hang(self) -> None:
        """The next write lands but is answered only after the client gave up waiting."""
        answer_after = READ_TIMEOUT_S + 0.3
        self.world.cluster.hang_next(
            1, answer_after, method="PATCH", path_contains="virtualservices"
        )

    def _api_drop(self) -> None:
        """The next write's connection is cut without an answer, after it took effect or not."""
        applied = self.rng.random() < 0.5
        self.world.cluster.drop_next(
            1, applied=applied, method="PATCH", path_contains="virtualservices"
        )

    def _api_black_hole(self) -> None:
        """The next write is swallowed: never handled, never answered."""
        self.world.cluster.black_hole(1, method="PATCH", path_contains="virtualservices")

    def _health_hang(self) -> None:
        health = _health(self._engine())
        health.released.clear()
        health.hang = True


class _Silent:
    def notify(self, rollout: Rollout, message: Any) -> None:
        return None


def _health(engine: Engine) -> ScriptedHealth:
    health = engine.health
    assert isinstance(health, ScriptedHealth)
    return health


def _traffic(engine: Engine) -> FreezingTraffic:
    traffic = engine.traffic
    assert isinstance(traffic, FreezingTraffic)
    return traffic


# The invariants


def violations(h: History) -> list[str]:
    """Every broken guarantee in one schedule's history; empty when all held."""
    found: list[str] = []
    recorded = _recorded_writes(h)
    landed = _landed_writes(h)
    found += [f"hung: {name}" for name in h.hung]
    found += [f"waited behind a hung health check: {name}" for name in h.blocked]
    for write_id, at in landed:
        if write_id not in recorded:
            found.append(f"write {write_id} went live but was never recorded")
            continue
        saved_at, rollout = recorded[write_id]
        if saved_at > at:
            found.append(f"write {write_id} went live before it was recorded")
        token = rollout.writing.token if rollout.writing else None
        if token is not None and token in h.takeovers and at > h.takeovers[token]:
            found.append(f"write {write_id} of deposed leader {token} went live after takeover")
    found += _final_state(h)
    found += _steps(h, recorded, landed)
    found += _answers(h)
    found += _promotions(h)
    return found


def _recorded_writes(h: History) -> dict[str, tuple[float, Rollout]]:
    first: dict[str, tuple[float, Rollout]] = {}
    for at, rollout in h.versions:
        if rollout.writing is not None and rollout.writing.id not in first:
            first[rollout.writing.id] = (at, rollout)
    return first


def _landed_writes(h: History) -> list[tuple[str, float]]:
    """(write id, when) of every VirtualService PATCH that succeeded and set the annotation."""
    found = []
    for request in h.requests:
        if not _is_vs_patch(request) or not request.succeeded:
            continue
        for op in request.json() or []:
            value = op.get("value")
            text = value.get(ANNOTATION) if isinstance(value, dict) else None
            if op.get("path", "").endswith("canary-bot~1last-applied"):
                text = value
            if isinstance(text, str):
                write = json.loads(text).get("write")
                if write:
                    found.append((str(write), request.at))
    return found


def _is_vs_patch(request: Any) -> bool:
    return request.method == "PATCH" and "virtualservices" in request.path


def _final_state(h: History) -> list[str]:
    latest = _latest_records(h)
    if not latest:
        return []
    rollout = latest[_created_last(h)]
    found = [f"rollout {r.id} left with work unfinished" for r in latest.values() if r.pending]
    found += [f"rollout {r.id} left a write unconfirmed" for r in latest.values() if r.writing]
    bot_writes = [r.at for r in h.requests if _is_vs_patch(r) and r.succeeded]
    if h.hand_edits and max(h.hand_edits) > max(bot_writes, default=0.0):
        return found  # the bot has not touched the VirtualService since a hand edit
    live = _canary_weight(h.live, rollout.target.canary)
    if live != rollout.weight:
        found.append(f"record says {rollout.weight}% but {live}% is live ({rollout.id})")
    audited = [e for e in h.audit if e.weight_after is not None and e.rollout_id == rollout.id]
    if audited and audited[-1].weight_after != live:
        found.append(f"last audit says {audited[-1].weight_after}% but {live}% is live")
    return found


def _created_last(h: History) -> str:
    """The rollout that owns the VirtualService at the end: the one created last (a rollout is
    created only while no other is active). Not the one whose save returned last: a save whose
    reply a Redis reset delayed returns after later rollouts' saves, though it was written
    before them."""
    created = {r.id: at for at, r in reversed(h.versions) if r.version == 1}
    return max(created, key=created.__getitem__)


def _latest_records(h: History) -> dict[str, Rollout]:
    latest: dict[str, Rollout] = {}
    for _, rollout in h.versions:
        known = latest.get(rollout.id)
        if known is None or rollout.version >= known.version:
            latest[rollout.id] = rollout
    return latest


def _canary_weight(vs: dict[str, Any], canary: str) -> int:
    routes = vs.get("spec", {}).get("http", [{}])[0].get("route", [])
    on_canary = [d for d in routes if d["destination"].get("subset") == canary]
    return sum(d.get("weight", 100 if len(routes) == 1 else 0) for d in on_canary)


def _steps(
    h: History, recorded: dict[str, tuple[float, Rollout]], landed: list[tuple[str, float]]
) -> list[str]:
    """A scheduled step is decided on the live step and goes one further, and lands once
    unless the live step went below it in between."""
    found = []
    for _, rollout in h.versions:
        head = rollout.pending[0] if rollout.pending else None
        w = rollout.writing
        if w is None or not isinstance(head, ApplyWeight) or not head.guard:
            continue
        if w.step != rollout.step + 1 and rollout.step >= 0:
            found.append(f"rollout {rollout.id}: step {w.step} decided at live step {rollout.step}")
    last: dict[tuple[str, int], float] = {}
    for write_id, at in landed:
        if write_id not in recorded:
            continue
        rollout = recorded[write_id][1]
        head = rollout.pending[0] if rollout.pending else None
        if not (isinstance(head, ApplyWeight) and head.guard and rollout.writing):
            continue
        key = (rollout.id, rollout.writing.step)
        if key in last and not _went_below(h, key, last[key], at):
            found.append(f"rollout {rollout.id}: step {key[1]} went live twice")
        last[key] = at
    return found


def _went_below(h: History, key: tuple[str, int], since: float, until: float) -> bool:
    """Whether the rollout's live step was below `key`'s between two landings of it (a human
    set a lower weight, or a hand edit was recorded): then taking the step again is right."""
    rollout_id, step = key
    return any(since < at < until and r.id == rollout_id and r.step < step for at, r in h.versions)


def _answers(h: History) -> list[str]:
    """Whoever was told their weight is live has it in the audit trail, under their name."""
    found = []
    by_actor = {(e.actor, e.weight_after) for e in h.audit if e.action == "set-weight"}
    others: dict[int | None, set[str]] = {}
    for e in h.audit:
        others.setdefault(e.weight_after, set()).add(e.actor)
    for answer in h.answers:
        if answer.op != "set" or answer.result is None:
            continue
        r = answer.result
        told_live = r.weight == answer.weight and r.writing is None and not r.write_failed
        if told_live and (answer.actor, answer.weight) not in by_actor:
            if others.get(answer.weight, set()) - {answer.actor}:
                continue  # someone else brought it to that weight: the answer is true anyway
            found.append(f"{answer.actor} was told {answer.weight}% is live, but it never was")
    return found


def _promotions(h: History) -> list[str]:
    found = []
    for _, rollout in h.versions:
        audits = [e for e in rollout.pending if isinstance(e, Audit)]
        if any(a.action == "promote" and a.actor == "canary-bot" for a in audits):
            last = rollout.last_verdict
            if last is None or last.outcome != "pass":
                found.append(f"rollout {rollout.id} promoted without a passing check")
    return found


def run_schedule(world: World, seed_value: int, length: int = 24) -> tuple[History, list[str]]:
    world.reset()
    history = Schedule(world, seed_value, length).run()
    return history, violations(history)


def describe(history: History, problems: list[str]) -> str:
    return (
        f"seed {history.seed}: {'; '.join(problems)}\n  ops: {' '.join(history.ops)}\n"
        f"  replay: run_schedule(world, {history.seed})"
    )
