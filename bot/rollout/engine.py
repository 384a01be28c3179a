"""The engine: runs transitions and carries out their effects through injected ports.

Every traffic change takes one path: decide (a pure transition) → record the decision with its
effects as `pending` → plan the write against what is live → record the write (`writing`, with
the resourceVersion it tests and a write id) → send it → record that it is live → audit → tell.
Each record write is a compare-and-set on the version (and, for the leader's scheduled work, on
its fencing token); each cluster write tests the resourceVersion recorded with it. A process
paused after recording a write and resumed after someone else took over therefore cannot
change the VirtualService: the one who took over either saw that write land (its id is in the
VirtualService's annotation) or fenced the object first, so the late write's test fails.

A write whose test fails is never re-planned on the spot: it goes back through the record (a
deposed writer stops there) and is decided again. A write that fails is not a step taken: the
record keeps the live weight, and the rollout pauses saying why.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any

from bot.mesh.cohort import cohort_change
from bot.mesh.errors import InvalidRequest, MeshError, Moved
from bot.mesh.planner import LastApplied
from bot.ops.metrics import Metrics
from bot.rollout.model import (
    Abort,
    ApplyWeight,
    ApprovalDenied,
    Audit,
    CancelSchedule,
    CheckHealth,
    DriftDetected,
    Effect,
    HealthResult,
    Notify,
    Pause,
    Rollback,
    Rollout,
    Schedule,
    SetCohort,
    SetMirror,
    SetWeight,
    StepDue,
    StepPlan,
    Target,
    Verdict,
    WaveRef,
    Write,
    WriteFailed,
)
from bot.rollout.ports import (
    Health,
    LostWaves,
    Notifier,
    Owner,
    Planned,
    Resolved,
    Scheduler,
    Store,
    Traffic,
)
from bot.rollout.transitions import adopt, start, start_manual, start_one_off, transition
from bot.store.errors import RolloutFinished, StoreError, VersionConflict
from commands.cohort import Cohort, CohortChange
from commands.grammar import PodLabels
from commands.names import service_name

log = logging.getLogger(__name__)
CONFLICT_RETRIES = 5
WRITE_ATTEMPTS = 3  # someone else wrote the object but left the weights: plan and try again
MUTEX_TTL_MS = 5_000  # politeness only: correctness never rests on it (writes are fenced)
MUTEX_WAIT_S = 6.0
KEYS_KEPT = 10_000
# A human's "stop" never queues behind anyone: it supersedes whatever is in flight.
URGENT = (Rollback, Abort, Pause, ApprovalDenied)


class NoActiveRollout(Exception):
    """A command named a service that has no rollout going on."""


class Busy(Exception):
    """Others kept changing the rollout; nothing of this request was done."""


class Unrecorded(Exception):
    """A traffic change went live and Redis went away before it was recorded."""


class NoScheduler:
    """For processes that are not the leader: the leader picks schedules up from Redis."""

    def schedule(self, rollout_id: str, at: datetime, step: int) -> None:
        return None

    def cancel(self, rollout_id: str) -> None:
        return None


class AlwaysHealthy:
    """Used when no health checks are configured: every step passes."""

    def check(self, rollout: Rollout, now: datetime) -> Verdict:
        return Verdict(outcome="pass", at=now, step=rollout.step, summary="(no health checks)")


def new_id() -> str:
    return secrets.token_hex(4)


class _Superseded(Exception):
    """Someone else changed the record after we read it: they carry on from there. `seen` is
    the canary's live weight, when it was read and found to differ from the record: that
    knowledge must not be lost with the decision that failed to record it."""

    def __init__(self, message: str, seen: int | None = None) -> None:
        super().__init__(message)
        self.seen = seen


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        traffic: Traffic,
        notifier: Notifier,
        clock: Callable[[], datetime],
        scheduler: Scheduler | None = None,
        health: Health | None = None,
        ids: Callable[[], str] = new_id,
        effect_delay: float = 0.0,
        metrics: Metrics | None = None,
        fencing: Callable[[], int | None] = lambda: None,
        mutex: tuple[int, float] = (MUTEX_TTL_MS, MUTEX_WAIT_S),
        waves: LostWaves | None = None,
    ) -> None:
        self.store, self.traffic, self.notifier = store, traffic, notifier
        self.waves = waves  # a wave cluster's: the waves its lost rollouts are turns of
        self.scheduler = scheduler or NoScheduler()
        self.health = health or AlwaysHealthy()
        self.clock, self.ids = clock, ids
        self.fencing = fencing  # our token while we lead
        self._mutex_ttl_ms, self._mutex_wait_s = mutex
        self._keys: dict[str, str] = {}  # rollout id -> its service's key
        self._effect_delay = effect_delay  # fault injection: widen the gaps between effects
        self.metrics = metrics or Metrics()

    # Opening a rollout: the live objects are read once, and that plan is the first write.

    def start(
        self,
        *,
        namespace: str,
        vs: str,
        to: str | None,
        steps: StepPlan,
        actor: str,
        channel: str | None,
        resolved: Resolved | None = None,
        wave: WaveRef | None = None,
    ) -> Rollout:
        """A staged rollout (`wave`: a turn of that wave). `resolved`, when the caller already
        read the live objects (to let the policy decide on the plan), is the plan the first
        step writes."""
        with self._serialized(f"{namespace}/{vs}", urgent=False):
            resolved = self._new(resolved) or self._resolve(
                namespace,
                vs,
                to,
                channel,
                weight=steps.weights[0],
                mirror=None,
                cohort=steps.cohort,
                wave=wave,
            )
            rollout, effects = start(
                rollout_id=resolved.rollout_id,
                target=resolved.target,
                steps=steps,
                actor=actor,
                channel=channel,
                live_weight=resolved.planned.live_weight,
                now=self.clock(),
                active=self.store.active_for(namespace, vs),
                wave=wave,
            )
            return self._open(rollout, effects, resolved.first)

    def set_weight(
        self,
        *,
        namespace: str,
        vs: str,
        to: str | None,
        weight: int,
        steps: StepPlan,
        actor: str,
        channel: str | None,
        resolved: Resolved | None = None,
    ) -> Rollout:
        """A weight set by hand: on the active rollout, or as a new, paused one."""
        event = SetWeight(actor=actor, weight=weight)
        with self._serialized(f"{namespace}/{vs}", urgent=False):
            active = self.store.active_for(namespace, vs)
            if active is not None:
                return self._handle(active.id, event, None, _first_for(resolved, active.id))
            resolved = self._new(resolved) or self._resolve(
                namespace, vs, to, channel, weight=weight, mirror=None
            )
            rollout, effects = start_manual(
                rollout_id=resolved.rollout_id,
                target=resolved.target,
                steps=steps,
                actor=actor,
                channel=channel,
                live_weight=resolved.planned.live_weight,
                weight=weight,
                now=self.clock(),
            )
            return self._open(rollout, effects, resolved.first)

    def set_mirror(
        self,
        *,
        namespace: str,
        vs: str,
        to: str | None,
        mirror: int | None,
        actor: str,
        channel: str | None,
        resolved: Resolved | None = None,
        cohort: CohortChange | None = None,
    ) -> Rollout:
        """Mirroring (or a cohort): on the active rollout, or as a one-off change with its own
        record."""
        event: SetMirror | SetCohort = (
            SetMirror(actor=actor, mirror=mirror or 0)
            if cohort is None
            else SetCohort(actor=actor, cohort=cohort)
        )
        with self._serialized(f"{namespace}/{vs}", urgent=False):
            active = self.store.active_for(namespace, vs)
            if active is not None:
                return self._handle(active.id, event, None, _first_for(resolved, active.id))
            resolved = self._new(resolved) or self._resolve(
                namespace, vs, to, channel, weight=None, mirror=mirror, cohort=cohort
            )
            rollout, effects = start_one_off(
                rollout_id=resolved.rollout_id,
                target=resolved.target,
                channel=channel,
                live_weight=resolved.planned.live_weight,
                event=event,
                now=self.clock(),
            )
            return self._open(rollout, effects, resolved.first)

    def set_cohort(
        self,
        *,
        namespace: str,
        vs: str,
        to: str | None,
        cohort: CohortChange,
        actor: str,
        channel: str | None,
        resolved: Resolved | None = None,
    ) -> Rollout:
        """A cohort's route: on the active rollout, or as a one-off change with its own record."""
        return self.set_mirror(
            namespace=namespace,
            vs=vs,
            to=to,
            mirror=None,
            actor=actor,
            channel=channel,
            resolved=resolved,
            cohort=cohort,
        )

    def resolve(
        self,
        namespace: str,
        vs: str,
        *,
        to: str | None,
        channel: str | None,
        weight: int | None,
        mirror: int | None = None,
        cohort: CohortChange | None = None,
        labels: PodLabels | None = None,
    ) -> Resolved:
        """Read the live objects once and plan the change, for a new rollout or the active one:
        what the policy decides on, and what is then written as it is. `labels` name the pods
        of a new canary subset, so only a new rollout takes them."""
        active = self.store.active_for(namespace, vs)
        if active is None or not active.active:
            return self._resolve(
                namespace,
                vs,
                to,
                channel,
                weight=weight,
                mirror=mirror,
                cohort=cohort,
                labels=labels,
            )
        if labels is not None:
            service = service_name(vs, namespace)
            raise InvalidRequest(
                f"{service} has a rollout going on, to {active.target.canary}: `labels` name the "
                "pods of a new subset; leave them out, or end the rollout first"
            )
        owner = Owner(self.ids(), active.id, active.channel, active.wave)
        effect = ApplyWeight(
            weight=active.weight if weight is None else weight,
            previous=active.weight,
            mirror=mirror,
            cohort=cohort,
        )
        planned = self.traffic.plan(active.target, effect, owner)
        return Resolved(owner, active.target, planned, new=False)

    @staticmethod
    def _new(resolved: Resolved | None) -> Resolved | None:
        """The caller's plan, when it was made for a new rollout (else it is read again)."""
        return resolved if resolved is not None and resolved.new else None

    def _resolve(
        self,
        namespace: str,
        vs: str,
        to: str | None,
        channel: str | None,
        *,
        weight: int | None,
        mirror: int | None,
        cohort: CohortChange | None = None,
        wave: WaveRef | None = None,
        labels: PodLabels | None = None,
    ) -> Resolved:
        owner = Owner(self.ids(), self.ids(), channel, wave)
        target, planned = self.traffic.resolve(
            namespace, vs, to, weight, owner, mirror=mirror, cohort=cohort, labels=labels
        )
        return Resolved(owner, target, planned, new=True)

    def adopt_lost(self, namespace: str) -> list[Rollout]:
        """Take back, as paused rollouts, the canaries the bot left in `namespace` whose records
        are gone; each gets its card and a warning in the channel the annotation names."""
        adopted = []
        for vs, last in self.traffic.canaries(namespace):
            known = self.store.active_for(namespace, vs)
            if known is not None or (last.rollout and self.store.exists(last.rollout)):
                continue
            with self._serialized(f"{namespace}/{vs}", urgent=False):
                if self.store.active_for(namespace, vs) is not None:
                    continue
                target, planned = self.traffic.resolve(
                    namespace, vs, last.canary, 0, Owner(self.ids())
                )
                rollout_id = last.rollout or self.ids()
                rollout, effects = adopt(
                    rollout_id=rollout_id,
                    target=target,
                    live_weight=planned.live_weight,
                    channel=last.channel,
                    now=self.clock(),
                    wave=self._wave_of(last, rollout_id, target),
                )
                log.warning("%s: %s", target.service, rollout.reason)
                adopted.append(self._open(rollout, effects, None))
        return adopted

    def _wave_of(self, last: LastApplied, rollout_id: str, target: Target) -> WaveRef | None:
        """The wave a lost canary's annotation names, once it is taken back with the rollout;
        None when it names none, or one that does not go on with it."""
        wave = WaveRef.from_annotation(last.wave)
        if last.wave is not None and wave is None:
            log.warning("%s: the wave its annotation names is unreadable", target.service)
        if wave is None or self.waves is None:
            return None
        taken = self.waves.take_back(
            wave, rollout_id=rollout_id, target=target, channel=last.channel
        )
        return wave if taken else None

    def _open(
        self, rollout: Rollout, effects: list[Effect], first: tuple[str, Planned] | None
    ) -> Rollout:
        """Store a new rollout with its first effects pending (the per-VS lock is taken
        here, atomically), then carry them out."""
        pending = _with_audit_ids(effects, rollout.id, 1)
        created = self.store.create(rollout.model_copy(update={"pending": pending}))
        return self._carry_out(created, None, first)

    # Events on a rollout

    def act(self, namespace: str, vs: str, event: Any) -> Rollout:
        """A human's command (pause, rollback, ...) on the service's active rollout."""
        return self.handle(self.active(namespace, vs).id, event)

    def active(self, namespace: str, vs: str) -> Rollout:
        """The service's rollout going on; NoActiveRollout, saying how to start one, if none."""
        found = self.store.active_for(namespace, vs)
        if found is None or not found.active:
            service = service_name(vs, namespace)
            raise NoActiveRollout(
                f"{service} has no rollout going on; start one with `/canary {service} start`"
            )
        return found

    def step_due(self, rollout_id: str, step: int) -> None:
        """The scheduler's callback; does nothing unless this process leads."""
        token = self.fencing()
        if token is None:
            return
        self.handle(rollout_id, StepDue(step=step), token=token)

    def handle(self, rollout_id: str, event: Any, *, token: int | None = None) -> Rollout:
        urgent = isinstance(event, URGENT)
        key = self._key_of(rollout_id)
        with self._serialized(key, urgent=urgent):
            rollout = self._handle(rollout_id, event, token)
            return self._check_health(rollout, token)

    def recover(self, rollout: Rollout) -> Rollout:
        """Finish the effects a crashed (or paused) process left on record."""
        token = self.fencing()
        with self._serialized(rollout.target.key, urgent=False):
            try:
                current = self._settle(self.store.load(rollout.id), token)
                current = self._carry_out(current, token, None)
            except _Superseded:
                current = self.store.load(rollout.id)
            return self._check_health(current, token)

    def _handle(
        self,
        rollout_id: str,
        event: Any,
        token: int | None,
        first: tuple[str, Planned] | None = None,
    ) -> Rollout:
        seen: int | None = None  # a live weight read and not yet recorded
        for _ in range(CONFLICT_RETRIES):
            try:
                current = self._settle(self.store.load(rollout_id), token)
                current = self._record_seen(current, seen, token)
                seen = None
                new, effects = transition(current, event, self.clock())
                if not effects:
                    return current
                saved = self._record(current, new, effects, token)
            except (_Superseded, VersionConflict) as e:
                seen = e.seen if isinstance(e, _Superseded) and e.seen is not None else seen
                continue  # someone else moved it first: decide again on what is there now
            try:
                return self._carry_out(saved, token, first)
            except _Superseded as e:
                current = self.store.load(rollout_id)  # whoever took over carries on
                with suppress(_Superseded, VersionConflict):
                    current = self._record_seen(current, e.seen, token)
                return current
            finally:
                first = None  # planned on what was live then: good for one try only
        raise Busy(
            "the rollout kept changing while the bot tried to act on it; nothing was done; "
            "try again"
        )

    def _record_seen(self, current: Rollout, seen: int | None, token: int | None) -> Rollout:
        """Record a live weight someone read and lost the race to record, as the drift it is,
        unless a write on record since explains it. It is read again first: a write that
        landed and was recorded after it was seen would make it stale, and a stale weight
        recorded as drift would put in the record a weight that is no longer live."""
        if seen is None or seen == current.weight or current.writing is not None:
            return current
        seen = self._observe(current)
        if seen is None or seen == current.weight:
            return current
        new, effects = transition(
            current, DriftDetected(found=seen, expected=current.weight), self.clock()
        )
        if not effects:
            return current
        return self._carry_out(self._record(current, new, effects, token), token, None)

    def _check_health(self, rollout: Rollout, token: int | None) -> Rollout:
        """Run a pending health check (it has its own deadline) and decide on its verdict,
        unless something else happened to the rollout meanwhile. Called holding the service's
        lease; rollback, abort and pause never wait for it, and a verdict that comes back to a
        record they changed decides nothing (the compare-and-set fails)."""
        while rollout.pending and isinstance(rollout.pending[0], CheckHealth):
            asked = rollout
            verdict = self.health.check(asked, self.clock())
            self.metrics.verdict(verdict)
            try:
                new, effects = transition(asked, HealthResult(verdict=verdict), self.clock())
                saved = self._record(asked, new, effects, token)
                rollout = self._carry_out(saved, token, None)
            except (_Superseded, VersionConflict):
                return self.store.load(asked.id)  # a human acted meanwhile
        return rollout

    # Records

    def _record(
        self, current: Rollout, new: Rollout, effects: list[Effect], token: int | None
    ) -> Rollout:
        """Store the decision with its effects; they replace whatever was still pending, except
        the audit entry and notices of a change that already went live: those are kept, first."""
        stamped = _with_audit_ids(effects, current.id, current.version + 1)
        pending = new.model_copy(update={"pending": (*_owed(current), *stamped)})
        return self._save(pending, current.version, token)

    def _save(self, rollout: Rollout, expected: int, token: int | None) -> Rollout:
        try:
            return self.store.save(rollout, expected_version=expected, token=token)
        except (VersionConflict, RolloutFinished) as e:  # Fenced: we no longer lead; it rises
            log.info("rollout %s: %s; leaving it to whoever changed it", rollout.id, e)
            raise _Superseded(str(e)) from e

    def _save_live(
        self, rollout: Rollout, expected: int, token: int | None, effect: Effect
    ) -> Rollout:
        """Record an effect as done; when it was a traffic change that went live and Redis is
        gone, say that (not "nothing was changed"): the write is on record with its id, and
        whoever next finds Redis up records it as live."""
        try:
            return self._save(rollout, expected, token)
        except StoreError as e:
            if not isinstance(effect, ApplyWeight):
                raise
            raise Unrecorded(
                f"{rollout.target.service}: {effect.weight}% went live, but it could not be "
                f"recorded ({e}); the bot records it as soon as Redis answers again"
            ) from e

    def _settle(self, rollout: Rollout, token: int | None) -> Rollout:
        """A write on record that nobody here is sending: find out whether it landed, and if it
        did not, fence the VirtualService so that it never can. Then the record says what is
        live, and whoever decides next decides on the truth. A write that landed finishes its
        decision first (its audit entry and notices), so no live change goes unrecorded; a
        weight that neither the write nor the record explains is drift, recorded as such."""
        write = rollout.writing
        if write is None:
            return rollout
        landed, live = self._find_out(rollout, write)
        if landed:
            head = rollout.pending[0] if rollout.pending else None
            rest = rollout.pending[1:] if isinstance(head, ApplyWeight) else rollout.pending
            confirmed = _landed(rollout, write).model_copy(update={"pending": rest})
            return self._carry_out(self._save(confirmed, rollout.version, token), token, None)
        cleared = rollout.model_copy(update={"writing": None})
        if live is not None and live != cleared.weight:
            drift = DriftDetected(found=live, expected=cleared.weight)
            new, effects = transition(cleared, drift, self.clock())
            if effects:
                try:
                    recorded = self._record(rollout, new, effects, token)
                except _Superseded as e:
                    raise _Superseded(str(e), live) from e
                return self._carry_out(recorded, token, None)
        return self._save(cleared, rollout.version, token)

    def _find_out(self, rollout: Rollout, write: Write) -> tuple[bool, int | None]:
        landed, live = self.traffic.settle(rollout.target, write.id, self.ids())
        log.info("rollout %s: write %s %s", rollout.id, write.id, "landed" if landed else "fenced")
        return landed, live

    # Effects

    def _carry_out(
        self, rollout: Rollout, token: int | None, first: tuple[str, Planned] | None
    ) -> Rollout:
        while rollout.pending:
            effect = rollout.pending[0]
            if isinstance(effect, CheckHealth):
                return rollout  # run by _check_health, outside the locks
            if not isinstance(effect, ApplyWeight):
                rollout = self._carry_out_local(rollout, token)
                continue
            rollout, follow_up = self._apply(rollout, effect, token, first)
            first = None
            self.metrics.effect_done(effect)
            log.info(
                "rollout %s v%d: %s done, %d left",
                rollout.id,
                rollout.version,
                effect.kind,
                len(rollout.pending) - 1,
            )
            if self._effect_delay:
                threading.Event().wait(self._effect_delay)
            done = rollout.model_copy(update={"pending": rollout.pending[1:]})
            if follow_up is None:
                rollout = self._save_live(done, rollout.version, token, effect)
                continue
            new, effects = transition(done, follow_up, self.clock())
            try:
                rollout = self._record(rollout, new, effects, token)
            except _Superseded as e:
                raise _Superseded(str(e), _seen(follow_up, rollout)) from e
        return rollout

    def _carry_out_local(self, rollout: Rollout, token: int | None) -> Rollout:
        """The run of bookkeeping effects at the head of what is pending (schedule, notices,
        audit), then one record write for all of them. Replayed after a crash, the schedule
        is the same, an audit entry is not written twice (its id), a notice may be posted
        twice (notices are at least once)."""
        batch = list(itertools.takewhile(_local, rollout.pending))
        for offset, effect in enumerate(batch):
            self._execute(rollout, effect, offset)
            self.metrics.effect_done(effect)
        log.info(
            "rollout %s v%d: %s done, %d left",
            rollout.id,
            rollout.version,
            ", ".join(e.kind for e in batch),
            len(rollout.pending) - len(batch),
        )
        if self._effect_delay:
            threading.Event().wait(self._effect_delay)
        done = rollout.model_copy(update={"pending": rollout.pending[len(batch) :]})
        return self._save(done, rollout.version, token)

    def _apply(
        self,
        rollout: Rollout,
        effect: ApplyWeight,
        token: int | None,
        first: tuple[str, Planned] | None,
    ) -> tuple[Rollout, Any]:
        """Send one traffic change, recorded before it is sent. Returns the record with the
        new live weight, or unchanged with the event that says why it did not go live."""
        seen: tuple[int, ...] | None = None
        for _ in range(WRITE_ATTEMPTS):
            try:
                write_id, planned = first or self._plan(rollout, effect)
            except MeshError as e:
                return rollout, WriteFailed(
                    effect=effect, reason=str(e), found=self._observe(rollout)
                )
            first = None
            refusal = _refusal(rollout, effect, planned, seen)
            if refusal is not None:
                return rollout, refusal
            seen = planned.live_weights
            if planned.noop:  # nothing to change, if what was read is still what is live
                try:
                    self.traffic.confirm(planned, write_id)
                except Moved:
                    continue  # it moved since: plan again
                except MeshError as e:
                    return rollout, WriteFailed(
                        effect=effect, reason=str(e), found=self._observe(rollout)
                    )
                return _live(rollout, effect), None
            rollout, outcome = self._send(rollout, effect, write_id, planned, token)
            if outcome is not _AGAIN:
                return rollout, outcome
        return rollout, WriteFailed(
            effect=effect,
            reason=f"the VirtualService kept changing ({WRITE_ATTEMPTS} tries); nothing was "
            "overwritten",
        )

    def _send(
        self,
        rollout: Rollout,
        effect: ApplyWeight,
        write_id: str,
        planned: Planned,
        token: int | None,
    ) -> tuple[Rollout, Any]:
        write = Write(
            id=write_id,
            weight=effect.weight,
            step=effect.step,
            against=planned.against,
            token=token,
        )
        rollout = self._save(rollout.model_copy(update={"writing": write}), rollout.version, token)
        log.info(
            "rollout %s: write %s recorded (%d%% against resourceVersion %s)",
            rollout.id,
            write.id,
            write.weight,
            write.against,
        )
        if self._effect_delay:
            threading.Event().wait(self._effect_delay)
        try:
            self.traffic.write(planned)
        except Moved as e:
            if self.traffic.wrote(e.live, write_id):
                return _live(rollout, effect), None  # it landed; the answer was lost
            cleared = rollout.model_copy(update={"writing": None})
            return self._save(cleared, rollout.version, token), _AGAIN  # decided again
        except MeshError as e:
            return self._failed(rollout, WriteFailed(effect=effect, reason=str(e)), planned, token)
        return _live(rollout, effect), None

    def _observe(self, rollout: Rollout) -> int | None:
        try:
            return self.traffic.observe(rollout.target)
        except MeshError:
            return None

    def _plan(self, rollout: Rollout, effect: ApplyWeight) -> tuple[str, Planned]:
        owner = Owner(self.ids(), rollout.id, rollout.channel, rollout.wave)
        return owner.write, self.traffic.plan(rollout.target, effect, owner)

    def _failed(
        self, rollout: Rollout, failed: WriteFailed, planned: Planned, token: int | None
    ) -> tuple[Rollout, Any]:
        """The API refused the write or did not answer. Whether it landed is found out (and, if
        not, made certain) before anything else is decided; if even that fails, the write stays
        on record as unconfirmed, and the next one to act on the rollout settles it. The record
        takes the live weight as last read."""
        failed = failed.model_copy(update={"found": planned.live_weight})
        write = rollout.writing
        assert write is not None
        try:
            landed, live = self._find_out(rollout, write)
        except MeshError as e:
            log.warning("rollout %s: write not confirmed: %s", rollout.id, e)
            reason = f"{failed.reason} (whether it went live is not known yet)"
            return rollout, failed.model_copy(update={"reason": reason})
        if landed:
            return self._save(_landed(rollout, write), rollout.version, token), None
        cleared = self._save(rollout.model_copy(update={"writing": None}), rollout.version, token)
        return cleared, failed if live is None else failed.model_copy(update={"found": live})

    def _execute(self, rollout: Rollout, effect: Effect, offset: int = 0) -> None:
        """Carry out one bookkeeping effect (`offset`: its place in its run)."""
        if isinstance(effect, Schedule):
            self.scheduler.schedule(rollout.id, effect.at, effect.step)
        elif isinstance(effect, CancelSchedule):
            self.scheduler.cancel(rollout.id)
        elif isinstance(effect, Notify):
            self._notify(rollout, effect)
        elif isinstance(effect, Audit):
            self._audit(rollout, effect, offset)

    def _notify(self, rollout: Rollout, message: Notify) -> None:
        try:
            self.notifier.notify(rollout, message)
        except Exception:  # a chat outage must not stop traffic changes
            log.exception("could not post %r for rollout %s", message.event, rollout.id)

    def _audit(self, rollout: Rollout, effect: Audit, offset: int = 0) -> None:
        self.store.audit(
            namespace=rollout.target.namespace,
            vs=rollout.target.vs,
            action=effect.action,
            actor=effect.actor,
            at=self.clock(),
            weight_before=effect.weight_before,
            weight_after=effect.weight_after,
            rollout_id=rollout.id,
            channel=rollout.channel,
            detail=effect.detail,
            # a replay, or a second writer carrying out what is owed: not logged twice
            effect_id=effect.id or f"{rollout.id}@{rollout.version}.{offset}",
        )

    # Serializing writers

    @contextmanager
    def _serialized(self, key: str, *, urgent: bool) -> Iterator[None]:
        """One writer per VirtualService across replicas; urgent events do not wait."""
        if urgent:
            yield
            return
        with self.store.mutex(key, ttl_ms=self._mutex_ttl_ms, wait_s=self._mutex_wait_s) as held:
            if not held:
                raise Busy(
                    "another change to this service is still being applied; nothing was done; "
                    "try again in a moment"
                )
            yield

    def _key_of(self, rollout_id: str) -> str:
        """The service a rollout moves (it never changes): remembered after the first read."""
        key = self._keys.get(rollout_id)
        if key is None:
            try:
                key = self.store.load(rollout_id).target.key
            except StoreError:
                return rollout_id
            if len(self._keys) >= KEYS_KEPT:
                self._keys.clear()
            self._keys[rollout_id] = key
        return key


_AGAIN = object()  # a write to plan afresh and send again


def _local(effect: Effect) -> bool:
    return not isinstance(effect, ApplyWeight | CheckHealth)


def _seen(event: Any, rollout: Rollout) -> int | None:
    """The live weight an event carries, when it differs from the record's."""
    found = event.found if isinstance(event, DriftDetected | WriteFailed) else None
    return found if found is not None and found != rollout.weight else None


def _with_audit_ids(effects: Iterable[Effect], rollout_id: str, version: int) -> tuple[Effect, ...]:
    """`effects` with each audit entry named by the record version that decides it (a decision
    that fails to be saved is never carried out, so a name is never used twice)."""
    return tuple(
        e.model_copy(update={"id": f"{rollout_id}@{version}.{i}"})
        if isinstance(e, Audit) and not e.id
        else e
        for i, e in enumerate(effects)
    )


def _owed(rollout: Rollout) -> tuple[Effect, ...]:
    """What is still owed for a decision whose traffic change is done (its apply is no longer
    at the head of what is pending): its audit entry and notices."""
    head = rollout.pending[0] if rollout.pending else None
    if head is None or isinstance(head, ApplyWeight | CheckHealth):
        return ()
    return tuple(e for e in rollout.pending if isinstance(e, Audit | Notify))


def _first_for(resolved: Resolved | None, rollout_id: str) -> tuple[str, Planned] | None:
    """The plan read for this very rollout, if that is what `resolved` is."""
    if resolved is None or resolved.new or resolved.owner.rollout != rollout_id:
        return None
    return resolved.first


def _landed(rollout: Rollout, write: Write) -> Rollout:
    head = rollout.pending[0] if rollout.pending else None
    update = {"weight": write.weight, "step": write.step, "writing": None}
    landed = rollout.model_copy(update=update)
    return _with_cohort(landed, head) if isinstance(head, ApplyWeight) else landed


def _live(rollout: Rollout, effect: ApplyWeight) -> Rollout:
    update = {"weight": effect.weight, "step": effect.step, "writing": None}
    return _with_cohort(rollout.model_copy(update=update), effect)


def _with_cohort(rollout: Rollout, effect: ApplyWeight) -> Rollout:
    """The cohort routed to the canary once `effect` is live."""
    change = cohort_change(effect.written_weight, effect.cohort, finalize=effect.finalize)
    if change is None:
        return rollout
    return rollout.model_copy(update={"cohort": change if isinstance(change, Cohort) else None})


def _refusal(
    rollout: Rollout, effect: ApplyWeight, planned: Planned, seen: tuple[int, ...] | None
) -> Any:
    """Why this plan must not be sent: drift under a scheduled step, or weights that moved
    between two tries of a human's change (by a hand edit, or by the rollout itself: a step or
    another person's command, recorded in between)."""
    found = [w for w in planned.live_weights if w != rollout.weight]
    if effect.guard and found:
        return DriftDetected(found=found[0], expected=rollout.weight)
    if seen is not None and planned.live_weights != seen:
        reason = _moved_weights(seen, planned, by_the_rollout=not found)
        return WriteFailed(effect=effect, reason=reason, found=planned.live_weight)
    return None


def _moved_weights(seen: tuple[int, ...], planned: Planned, *, by_the_rollout: bool) -> str:
    before = ", ".join(f"{w}%" for w in seen)
    now = ", ".join(f"{w}%" for w in planned.live_weights)
    who = (
        "the rollout moved on (a step, or someone else's command)"
        if by_the_rollout
        else "someone else changed the canary's weights"
    )
    return (
        f"{who} while the bot was applying yours ({before} became {now}); nothing was "
        "overwritten; check the change and ask again"
    )
