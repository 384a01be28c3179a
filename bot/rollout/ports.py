"""The engine's ports: what it needs of the cluster, the store, the chat, the health checks and
the scheduler, as protocols, and the values that cross them. The adapters implement these;
the engine imports nothing else of theirs."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from bot.mesh.planner import LastApplied, TrafficPlan
from bot.rollout.model import ApplyWeight, Notify, Rollout, Target, Verdict, WaveRef
from commands.cohort import CohortChange
from commands.grammar import PodLabels


class Owner(NamedTuple):
    """Who a write is: its id, and the rollout (with its channel, and the wave it is a turn
    of) it belongs to. It goes into the VirtualService's annotation with the write."""

    write: str
    rollout: str | None = None
    channel: str | None = None
    wave: WaveRef | None = None

    def fields(self) -> dict[str, object]:
        """As a SplitRequest takes them."""
        wave = None if self.wave is None else self.wave.annotation()
        return {"write": self.write, "rollout": self.rollout, "channel": self.channel, "wave": wave}


@dataclass(frozen=True)
class Planned:
    """A write planned against what is live now; `against` is the resourceVersion it tests."""

    plan: TrafficPlan
    live_weights: tuple[int, ...]  # the canary's weight in each route the plan touches
    against: str

    @property
    def live_weight(self) -> int:
        return self.live_weights[0] if self.live_weights else 0

    @property
    def noop(self) -> bool:
        return self.plan.noop


@dataclass(frozen=True)
class Resolved:
    """The live objects read once for a change: its target, and the plan the engine writes
    as it is (`owner` names the write and its rollout; `new` when no rollout was active)."""

    owner: Owner
    target: Target
    planned: Planned
    new: bool

    @property
    def rollout_id(self) -> str:
        return str(self.owner.rollout)

    @property
    def first(self) -> tuple[str, Planned]:
        return self.owner.write, self.planned


class Store(Protocol):
    """Rollout records with compare-and-set, the audit trail, and a lease per service."""

    def create(self, rollout: Rollout) -> Rollout: ...

    def save(
        self, rollout: Rollout, *, expected_version: int, token: int | None = None
    ) -> Rollout: ...

    def load(self, rollout_id: str) -> Rollout: ...

    def exists(self, rollout_id: str) -> bool: ...

    def active_for(self, namespace: str, vs: str) -> Rollout | None: ...

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
    ) -> str: ...

    def mutex(self, name: str, *, ttl_ms: int, wait_s: float) -> AbstractContextManager[bool]: ...


class Traffic(Protocol):
    def resolve(
        self,
        namespace: str,
        vs: str,
        to: str | None,
        weight: int | None,
        write: Owner,
        *,
        mirror: int | None = None,
        cohort: CohortChange | None = None,
        labels: PodLabels | None = None,
    ) -> tuple[Target, Planned]: ...

    def plan(self, target: Target, effect: ApplyWeight, write: Owner) -> Planned: ...

    def write(self, planned: Planned) -> None: ...

    def confirm(self, planned: Planned, write_id: str) -> None: ...

    def wrote(self, live: dict[str, object], write_id: str) -> bool: ...

    def settle(self, target: Target, write_id: str, fence_id: str) -> tuple[bool, int | None]: ...

    def canaries(self, namespace: str) -> list[tuple[str, LastApplied]]: ...

    def observe(self, target: Target) -> int | None: ...


class LostWaves(Protocol):
    """The waves of one cluster's rollouts, for the search that takes lost rollouts back."""

    def take_back(
        self, wave: WaveRef, *, rollout_id: str, target: Target, channel: str | None
    ) -> bool:
        """Whether the wave a lost canary's annotation names goes on with its rollout taken
        back: its record rebuilt from `wave` if Redis lost it too, or found waiting on it."""
        ...


class Notifier(Protocol):
    def notify(self, rollout: Rollout, message: Notify) -> None: ...


class Health(Protocol):
    def check(self, rollout: Rollout, now: datetime) -> Verdict: ...


class Scheduler(Protocol):
    def schedule(self, rollout_id: str, at: datetime, step: int) -> None: ...

    def cancel(self, rollout_id: str) -> None: ...
