"""A multi-cluster wave: one staged rollout per cluster, one cluster after the other. Pure.

The wave is a record (kept in Redis by the adapter); `observe` decides, from the phase of the
rollout on the wave's current cluster, what happens next: a promotion starts the next cluster,
a rollback or a failure halts the wave (the clusters promoted before stay promoted, the later
ones are never started). Like the rollout transitions it returns the new record and what to
do, and does nothing itself.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.rollout.model import Phase, StepPlan, Target, WaveRef
from commands.names import service_name

HALTING = {
    Phase.ROLLED_BACK: "was rolled back",
    Phase.FAILED: "failed",
    Phase.APPLIED: "was ended by hand",
}


class WaveRunning(Exception):
    """The service has a wave running already: one at a time."""

    def __init__(self, service: str, wave_id: str) -> None:
        self.wave_id = wave_id
        super().__init__(
            f"{service} already has a wave running ({wave_id}); wait for it to end, or roll "
            f"back its current cluster to halt it: `/canary {service} rollback`"
        )


class WaveMoved(Exception):
    """The wave's record changed after it was read: read it again and decide again."""

    def __init__(self, wave_id: str, expected: int, found: str) -> None:
        super().__init__(
            f"wave {wave_id} changed under us (expected version {expected}, found "
            f"{found or 'no record'}); it is decided again on the next pass"
        )


class WaveState(StrEnum):
    RUNNING = "running"
    HALTED = "halted"
    DONE = "done"


class Wave(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    namespace: str
    vs: str
    to: str | None = None
    clusters: tuple[str, ...] = Field(min_length=1)
    steps: StepPlan
    started_by: str
    channel: str | None = None
    created_at: datetime
    updated_at: datetime  # the current cluster's turn began no earlier than this
    index: int = 0  # the cluster whose turn it is
    rollout: str | None = None  # the rollout on that cluster, once started
    state: WaveState = WaveState.RUNNING
    reason: str = ""  # why it halted
    version: int = 0

    @model_validator(mode="after")
    def _each_cluster_once(self) -> Wave:
        twice = sorted({c for c in self.clusters if self.clusters.count(c) > 1})
        if twice:
            raise ValueError(f"clusters {twice} are named twice; name each cluster once")
        if not 0 <= self.index < len(self.clusters):
            raise ValueError(f"index {self.index} is not a cluster of {list(self.clusters)}")
        return self

    @property
    def cluster(self) -> str:
        return self.clusters[self.index]

    @property
    def service(self) -> str:
        return service_name(self.vs, self.namespace)

    @property
    def key(self) -> str:
        """One wave per service at a time."""
        return f"{self.namespace}/{self.vs}"

    @property
    def promoted(self) -> tuple[str, ...]:
        """The clusters where the wave's rollout was promoted."""
        done = len(self.clusters) if self.state is WaveState.DONE else self.index
        return self.clusters[:done]

    @property
    def left(self) -> tuple[str, ...]:
        """The clusters after the current one, not started."""
        return self.clusters[self.index + 1 :]

    def ref(self) -> WaveRef:
        """What the current cluster's rollout carries of the wave (into its annotation)."""
        return WaveRef(
            id=self.id, clusters=self.clusters, index=self.index, steps=self.steps, to=self.to
        )

    def waits_on(self, ref: WaveRef, rollout_id: str) -> bool:
        """Whether the wave, running, has its turn where `ref` says, on that rollout (or on
        one not yet recorded)."""
        turn = (self.state, self.clusters, self.index)
        return turn == (WaveState.RUNNING, ref.clusters, ref.index) and self.rollout in (
            None,
            rollout_id,
        )


class Next(BaseModel):
    """What the wave needs done: `start` the rollout on `cluster` (None: nothing to start),
    and a line to `say` in the channel (empty: nothing to say)."""

    model_config = ConfigDict(frozen=True)

    start: str | None = None
    say: str = ""


def rebuilt(
    ref: WaveRef, *, rollout_id: str, target: Target, channel: str | None, now: datetime
) -> Wave:
    """A wave whose record was lost, from its current cluster's rollout taken back: running at
    that cluster's turn on that rollout, the clusters before it promoted."""
    return Wave(
        id=ref.id,
        namespace=target.namespace,
        vs=target.vs,
        to=ref.to,
        clusters=ref.clusters,
        steps=ref.steps,
        started_by="canary-bot",
        channel=channel,
        created_at=now,
        updated_at=now,
        index=ref.index,
        rollout=rollout_id,
    )


def started(wave: Wave, rollout_id: str, now: datetime) -> Wave:
    """The wave with its current cluster's rollout on record."""
    return wave.model_copy(update={"rollout": rollout_id, "updated_at": now})


def observe(wave: Wave, phase: Phase | None, now: datetime) -> tuple[Wave, Next]:
    """Decide on the phase of the current cluster's rollout (None: no record of it)."""
    if wave.state is not WaveState.RUNNING:
        return wave, Next()
    if wave.rollout is None:
        return wave, Next(start=wave.cluster)
    if phase is None:
        return halt(wave, f"its rollout on {wave.cluster} is gone from Redis", now)
    if phase is Phase.PROMOTED:
        return _promoted(wave, now)
    if phase in HALTING:
        return halt(wave, f"its rollout on {wave.cluster} {HALTING[phase]}", now)
    return wave, Next()


def halt(wave: Wave, why: str, now: datetime) -> tuple[Wave, Next]:
    """Stop the wave where it is: nothing is started after the current cluster."""
    halted = wave.model_copy(update={"state": WaveState.HALTED, "reason": why, "updated_at": now})
    promoted = ", ".join(wave.promoted) or "none"
    skipped = ", ".join(wave.left) or "none"
    text = (
        f":octagonal_sign: {wave.service}: wave halted: {why}. Promoted (and left as they "
        f"are): {promoted}; not started: {skipped}"
    )
    return halted, Next(say=text)


def _promoted(wave: Wave, now: datetime) -> tuple[Wave, Next]:
    if not wave.left:
        done = wave.model_copy(update={"state": WaveState.DONE, "updated_at": now})
        text = f":white_check_mark: {wave.service}: wave done, promoted on {_all(wave)}"
        return done, Next(say=text)
    following = wave.model_copy(
        update={"index": wave.index + 1, "rollout": None, "updated_at": now}
    )
    text = f"{wave.service}: promoted on {wave.cluster}; the wave goes on to {following.cluster}"
    return following, Next(start=following.cluster, say=text)


def _all(wave: Wave) -> str:
    return ", ".join(wave.clusters)
