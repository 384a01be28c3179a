"""Multi-cluster waves: the same staged rollout on one cluster after the other.

Each cluster has its own engine (its own Kubernetes API and its own records in Redis, so the
records, locks, audit, fencing and recovery of a rollout hold per cluster as they do for one).
`start` records the wave and starts its first cluster; `advance`, run by the leader on every
resync, reads the phase of the current cluster's rollout and carries the wave on: the next
cluster after a promotion, a halt after a rollback or a failure. Its state is only in Redis,
so whichever replica leads carries it on after a restart or a failover.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from bot.mesh.errors import ApiError, Conflict, MeshError, TurnTaken
from bot.rollout.engine import Busy, Engine, new_id
from bot.rollout.model import Notify, Phase, Rollout, StepPlan, Target, WaveRef
from bot.rollout.ports import Notifier
from bot.rollout.transitions import InvalidTransition
from bot.rollout.waves import (
    Wave,
    WaveMoved,
    WaveRunning,
    WaveState,
    halt,
    observe,
    rebuilt,
    started,
)
from bot.store.errors import (
    AlreadyActive,
    RolloutNotFound,
    StoreError,
    StoreUnavailable,
    WaveNotFound,
)

log = logging.getLogger(__name__)
Tell = Callable[[str | None, str], None]  # (channel, text): a line for the channel
# The next pass tries again. TurnTaken: the cluster has a canary of the wave whose record
# Redis lost; the search for lost rollouts takes it back, and the wave waits on it.
RETRIED = (Busy, StoreUnavailable, ApiError, Conflict, TurnTaken)


class WaveRefused(ValueError):
    """A wave that cannot be had as asked; the message says why and what to type instead."""


class WaveBook(Protocol):
    def create(self, wave: Wave) -> Wave: ...

    def save(self, wave: Wave, *, token: int | None = None) -> Wave: ...

    def load(self, wave_id: str) -> Wave: ...

    def running(self) -> list[Wave]: ...

    def for_service(self, namespace: str, vs: str) -> Wave | None: ...


class ClusterNotifier:
    """Names the cluster in every message of its rollouts: `[prod-eu] step 2: 25%`."""

    def __init__(self, inner: Notifier, cluster: str) -> None:
        self.inner, self.cluster = inner, cluster

    def notify(self, rollout: Rollout, message: Notify) -> None:
        text = f"[{self.cluster}] {message.text}"
        named = message.model_copy(update={"text": text, "cluster": self.cluster})
        self.inner.notify(rollout, named)


class ClusterWaves:
    """The waves of one cluster's rollouts, as the search for lost rollouts finds them: a
    rollout taken back from its VirtualService brings back the wave its annotation names."""

    def __init__(
        self,
        *,
        book: WaveBook,
        cluster: str,
        clusters: Collection[str],
        clock: Callable[[], datetime],
    ) -> None:
        self.book, self.cluster, self.clusters, self.clock = book, cluster, clusters, clock

    def take_back(
        self, wave: WaveRef, *, rollout_id: str, target: Target, channel: str | None
    ) -> bool:
        """Rebuild the wave's record if Redis lost it (running at this cluster's turn, on the
        rollout taken back); True when the wave goes on with that rollout."""
        if not self._ours(wave):
            return False
        for _ in range(2):  # a record made between our read and our write is read again
            try:
                return self.book.load(wave.id).waits_on(wave, rollout_id)
            except WaveNotFound:
                pass
            lost = rebuilt(
                wave, rollout_id=rollout_id, target=target, channel=channel, now=self.clock()
            )
            try:
                self.book.create(lost)
                log.warning("%s: wave %s taken back at %s", lost.service, wave.id, self.cluster)
                return True
            except WaveRunning as e:
                log.warning("%s: wave %s not taken back: %s", lost.service, wave.id, e)
                return False
            except WaveMoved:
                continue
        return False

    def _ours(self, wave: WaveRef) -> bool:
        """A wave whose turn is this cluster's, over clusters this bot has."""
        unknown = [c for c in wave.clusters if c not in self.clusters]
        if wave.cluster == self.cluster and not unknown:
            return True
        log.warning(
            "wave %s named on %s is not taken back: its turn is %s's; clusters not configured: %s",
            wave.id,
            self.cluster,
            wave.cluster,
            ", ".join(unknown) or "none",
        )
        return False


class WaveRunner:
    def __init__(
        self,
        *,
        engines: Mapping[str, Engine],
        book: WaveBook,
        tell: Tell,
        clock: Callable[[], datetime],
        fencing: Callable[[], int | None] = lambda: None,
        ids: Callable[[], str] = new_id,
    ) -> None:
        self.engines, self.book, self.tell = engines, book, tell
        self.clock, self.fencing, self.ids = clock, fencing, ids

    def start(
        self,
        *,
        namespace: str,
        vs: str,
        to: str | None,
        clusters: Sequence[str],
        steps: StepPlan,
        actor: str,
        channel: str | None,
    ) -> Wave:
        """Record the wave and start its first cluster's rollout."""
        self.check_clusters(clusters)
        now = self.clock()
        wave = Wave(
            id=self.ids(),
            namespace=namespace,
            vs=vs,
            to=to,
            clusters=tuple(clusters),
            steps=steps,
            started_by=actor,
            channel=channel,
            created_at=now,
            updated_at=now,
        )
        wave = self.book.create(wave)
        self._say(wave.channel, f"{wave.service}: wave over {', '.join(wave.clusters)} started")
        try:
            return self._turn(wave, None)
        except WaveMoved:  # the leader's pass took the first step meanwhile
            return self.book.load(wave.id)

    def advance(self) -> list[Wave]:
        """The leader's pass: carry every running wave on as far as it can go now."""
        token, moved = self.fencing(), []
        for wave in self.book.running():
            try:
                moved.append(self._turn(wave, token))
            except (*RETRIED, WaveMoved, StoreError) as e:
                log.warning("wave %s on %s left for the next pass: %s", wave.id, wave.service, e)
        return moved

    def check_clusters(self, clusters: Sequence[str]) -> None:
        """Refuse clusters that are not configured, before anything is read or written."""
        if not self.engines:
            raise WaveRefused(
                "this bot has no clusters for waves: name them in CANARY_CLUSTERS first"
            )
        known = ", ".join(sorted(self.engines))
        unknown = [c for c in clusters if c not in self.engines]
        if unknown:
            raise WaveRefused(f"no cluster named {', '.join(unknown)}; the clusters are: {known}")
        if not clusters:
            raise WaveRefused(f"name the clusters of the wave, in order; the clusters are: {known}")

    def _turn(self, wave: Wave, token: int | None) -> Wave:
        new, then = observe(wave, self._phase(wave), self.clock())
        if new != wave:
            wave = self.book.save(new, token=token)
        self._say(wave.channel, then.say)
        if then.start is not None:
            wave = self._start_on(wave, token)
        return wave

    def _phase(self, wave: Wave) -> Phase | None:
        if wave.rollout is None:
            return None
        try:
            return self.engines[wave.cluster].store.load(wave.rollout).phase
        except RolloutNotFound:
            return None

    def _start_on(self, wave: Wave, token: int | None) -> Wave:
        """Start the current cluster's rollout, or take up the one a crash left unrecorded."""
        engine = self.engines[wave.cluster]
        rollout = self._ours(engine, wave)
        if rollout is None:
            try:
                rollout = engine.start(
                    namespace=wave.namespace,
                    vs=wave.vs,
                    to=wave.to,
                    steps=wave.steps,
                    actor=wave.started_by,
                    channel=wave.channel,
                    wave=wave.ref(),
                )
            except TurnTaken:  # this turn's rollout, started by a racing start, or one Redis lost
                rollout = self._ours(engine, wave)
                if rollout is None:
                    raise
            except RETRIED:
                raise
            except (AlreadyActive, InvalidTransition, MeshError, StoreError, ValueError) as e:
                # the service busy there: with ours (a start that raced this one), or another
                busy = isinstance(e, AlreadyActive | InvalidTransition)
                rollout = self._ours(engine, wave) if busy else None
                if rollout is None:
                    return self._halt(
                        wave, f"its rollout could not start on {wave.cluster}: {e}", token
                    )
        return self.book.save(started(wave, rollout.id, self.clock()), token=token)

    def _ours(self, engine: Engine, wave: Wave) -> Rollout | None:
        """The cluster's active rollout of the service if it began in the wave's current
        turn (started, and the wave not yet told so)."""
        active = engine.store.active_for(wave.namespace, wave.vs)
        if active is None or active.created_at < wave.updated_at:
            return None
        return active

    def _halt(self, wave: Wave, why: str, token: int | None) -> Wave:
        halted, then = halt(wave, why, self.clock())
        saved = self.book.save(halted, token=token)
        self._say(saved.channel, then.say)
        return saved

    def running(self, namespace: str, vs: str) -> Wave | None:
        """The service's wave, while it runs."""
        wave = self.book.for_service(namespace, vs)
        return wave if wave is not None and wave.state is WaveState.RUNNING else None

    def lines(self, namespace: str, vs: str) -> list[str]:
        """The service's running wave, for `status`."""
        wave = self.running(namespace, vs)
        if wave is None:
            return []
        turn = f"{wave.cluster} ({wave.index + 1} of {len(wave.clusters)})"
        return [f"wave {wave.state}: now on {turn}, over {', '.join(wave.clusters)}"]

    def _say(self, channel: str | None, text: str) -> None:
        if not text:
            return
        try:
            self.tell(channel, text)
        except Exception:  # a chat outage must not stop a wave
            log.exception("could not post %r", text)
