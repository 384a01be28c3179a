"""The engine: runs transitions and carries out their effects through injected ports.

Intent first: a transition's new record, with its effects as `pending`, is stored (compare-and-
set on the version, and on the leader's fencing token for scheduled work) before any effect
runs. Each effect is popped from `pending` with another compare-and-set once done, so a crash
between effects leaves exactly what remains to do on record, and `recover` finishes it. Traffic
changes are idempotent (the planner makes a no-op of a weight already set), so an effect that
ran just before a crash runs again harmlessly.
"""

from __future__ import annotations

import logging
import secrets
import threading
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from bot.mesh.errors import Drift, MeshError
from bot.ops.metrics import Metrics
from bot.rollout.model import (
    ApplyWeight,
    Audit,
    CancelSchedule,
    CheckHealth,
    DriftDetected,
    Effect,
    HealthResult,
    Notify,
    Pause,
    Rollout,
    Schedule,
    SetWeight,
    StepDue,
    StepPlan,
    Target,
    Verdict,
)
from bot.rollout.transitions import start, start_manual, transition
from bot.store.errors import VersionConflict
from bot.store.redis_store import RolloutStore

log = logging.getLogger(__name__)
CONFLICT_RETRIES = 5
LOCK_STRIPES = 64


class Traffic(Protocol):
    def resolve(
        self, namespace: str, vs: str, to: str | None, first: int
    ) -> tuple[Target, int]: ...

    def apply(self, target: Target, effect: ApplyWeight) -> None: ...


class Notifier(Protocol):
    def notify(self, rollout: Rollout, message: Notify) -> None: ...


class Health(Protocol):
    def check(self, rollout: Rollout, now: datetime) -> Verdict: ...


class Scheduler(Protocol):
    def schedule(self, rollout_id: str, at: datetime, step: int) -> None: ...

    def cancel(self, rollout_id: str) -> None: ...


class NoActiveRollout(Exception):
    """A command named a service that has no rollout going on."""


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


class Engine:
    def __init__(
        self,
        *,
        store: RolloutStore,
        traffic: Traffic,
        notifier: Notifier,
        clock: Callable[[], datetime],
        scheduler: Scheduler | None = None,
        health: Health | None = None,
        ids: Callable[[], str] = new_id,
        effect_delay: float = 0.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.store, self.traffic, self.notifier = store, traffic, notifier
        self.scheduler = scheduler or NoScheduler()
        self.health = health or AlwaysHealthy()
        self.clock, self.ids = clock, ids
        self.fencing: Callable[[], int | None] = lambda: None  # our token while we lead
        self._effect_delay = effect_delay  # fault injection: widen the gaps between effects
        self.metrics = metrics or Metrics()
        # Striped: a rollout always maps to the same lock, and the set never grows.
        self._locks = tuple(threading.Lock() for _ in range(LOCK_STRIPES))

    def start(
        self,
        *,
        namespace: str,
        vs: str,
        to: str | None,
        steps: StepPlan,
        actor: str,
        channel: str | None,
    ) -> Rollout:
        target, live = self.traffic.resolve(namespace, vs, to, steps.weights[0])
        rollout, effects = start(
            rollout_id=self.ids(),
            target=target,
            steps=steps,
            actor=actor,
            channel=channel,
            live_weight=live,
            now=self.clock(),
            active=self.store.active_for(namespace, vs),
        )
        return self._open(rollout, effects)

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
    ) -> Rollout:
        """A weight set by hand: on the active rollout, or as a new, paused one."""
        active = self.store.active_for(namespace, vs)
        if active is not None:
            return self.handle(active.id, SetWeight(actor=actor, weight=weight))
        target, live = self.traffic.resolve(namespace, vs, to, weight)
        rollout, effects = start_manual(
            rollout_id=self.ids(),
            target=target,
            steps=steps,
            actor=actor,
            channel=channel,
            live_weight=live,
            weight=weight,
            now=self.clock(),
        )
        return self._open(rollout, effects)

    def _open(self, rollout: Rollout, effects: list[Effect]) -> Rollout:
        """Store a new rollout with its first effects pending (the per-VS lock is taken
        here, atomically), then carry them out."""
        created = self.store.create(rollout.model_copy(update={"pending": tuple(effects)}))
        return self._carry_out(created, token=None)

    def act(self, namespace: str, vs: str, event: Any) -> Rollout:
        """A human's command (pause, rollback, ...) on the service's active rollout."""
        active = self.store.active_for(namespace, vs)
        if active is None:
            service = vs if namespace == "default" else f"{vs}.{namespace}"
            raise NoActiveRollout(
                f"{service} has no rollout going on; start one with `/canary {service} start`"
            )
        return self.handle(active.id, event)

    def step_due(self, rollout_id: str, step: int) -> None:
        """The scheduler's callback; does nothing unless this process leads."""
        token = self.fencing()
        if token is None:
            return
        self.handle(rollout_id, StepDue(step=step), token=token)

    def handle(self, rollout_id: str, event: Any, *, token: int | None = None) -> Rollout:
        with self._lock(rollout_id):
            for _ in range(CONFLICT_RETRIES):
                current = self.store.load(rollout_id)
                new, effects = transition(current, event, self.clock())
                if not effects:
                    return current
                try:
                    saved = self._record(current, new, effects, token)
                except VersionConflict:
                    continue  # someone else moved it first: decide again on what is there now
                return self._carry_out(saved, token)
            current = self.store.load(rollout_id)
            raise VersionConflict(rollout_id, current.version, current.version)

    def recover(self, rollout: Rollout) -> Rollout:
        """Finish the effects a crashed process left on record."""
        with self._lock(rollout.id):
            return self._carry_out(self.store.load(rollout.id), self.fencing())

    def _record(
        self, current: Rollout, new: Rollout, effects: list[Effect], token: int | None
    ) -> Rollout:
        """Store the decision with its effects; they replace whatever was still pending."""
        pending = new.model_copy(update={"pending": tuple(effects)})
        return self.store.save(pending, expected_version=current.version, token=token)

    def _carry_out(self, rollout: Rollout, token: int | None) -> Rollout:
        while rollout.pending:
            effect = rollout.pending[0]
            follow_up = self._execute(rollout, effect)
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
                rollout = self.store.save(done, expected_version=rollout.version, token=token)
                continue
            new, effects = transition(done, follow_up, self.clock())
            rollout = self._record(rollout, new, effects, token)
        return rollout

    def _execute(self, rollout: Rollout, effect: Effect) -> Any:
        """Carry out one effect; return the event it gives rise to, if any."""
        if isinstance(effect, ApplyWeight):
            return self._apply(rollout, effect)
        if isinstance(effect, CheckHealth):
            verdict = self.health.check(rollout, self.clock())
            self.metrics.verdict(verdict)
            return HealthResult(verdict=verdict)
        if isinstance(effect, Schedule):
            self.scheduler.schedule(rollout.id, effect.at, effect.step)
        elif isinstance(effect, CancelSchedule):
            self.scheduler.cancel(rollout.id)
        elif isinstance(effect, Notify):
            self._notify(rollout, effect)
        elif isinstance(effect, Audit):
            self._audit(rollout, effect)
        return None

    def _apply(self, rollout: Rollout, effect: ApplyWeight) -> Any:
        try:
            self.traffic.apply(rollout.target, effect)
        except Drift as e:
            return DriftDetected(found=e.found, expected=e.expected)
        except MeshError as e:
            if not effect.guard:
                raise  # a human's rollback or promotion stays on record until it is done
            return Pause(reason=f"could not set {effect.weight}%: {e}")
        return None

    def _notify(self, rollout: Rollout, message: Notify) -> None:
        try:
            self.notifier.notify(rollout, message)
        except Exception:  # a chat outage must not stop traffic changes
            log.exception("could not post %r for rollout %s", message.event, rollout.id)

    def _audit(self, rollout: Rollout, effect: Audit) -> None:
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
            effect_id=f"{rollout.id}@{rollout.version}",  # a replay is not logged twice
        )

    def _lock(self, rollout_id: str) -> threading.Lock:
        return self._locks[zlib.crc32(rollout_id.encode()) % LOCK_STRIPES]
