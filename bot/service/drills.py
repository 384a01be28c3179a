"""Fault drills from chat to the cluster and back off it.

`propose` reads the live VirtualService once and plans the drill on its catch-all routes (what
the policy decides on); `carry_out` records the drill in Redis with the time it ends, then
writes that very plan, guarded by the resourceVersion it was planned on. `expire_due`, run by
the leader on every resync, takes each drill off when its time is up or when the rollout it
went along with ended, whichever replica started it: the record is in Redis, not in a process.
Taking a drill off removes exactly the field it added, and only while it is still as added.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.mesh.errors import Moved
from bot.mesh.planner import TrafficPlan, plan_drill
from bot.mesh.request import SplitRequest
from bot.rollout.drills import DrillRecord
from bot.rollout.engine import Busy
from bot.rollout.model import Phase
from bot.rollout.ports import Store
from bot.service.changes import plan_hash, route_ops
from bot.store.errors import RolloutNotFound
from commands import Command
from commands.drill import Drill, DrillOff
from commands.names import service_name
from policies import Change, DrillSettings

log = logging.getLogger(__name__)
WRITE_ATTEMPTS = 3
MUTEX = (5_000, 6.0)  # the engine's: one writer per VirtualService at a time
ENDED = {Phase.PROMOTED: "promoted", Phase.ROLLED_BACK: "rolled back", Phase.FAILED: "rolled back"}
Tell = Callable[[str | None, str], None]  # (channel, text): a line for the channel
Limits = Callable[[str, str], DrillSettings | None]  # (namespace, vs) -> the policy's limits


class DrillRefused(ValueError):
    """A drill that cannot be had as asked; the message says why and what to type instead."""


class DrillMesh(Protocol):
    def get_virtual_service(self, namespace: str, name: str) -> dict[str, Any]: ...

    def write(self, plan: TrafficPlan) -> dict[str, Any]: ...


class DrillBook(Protocol):
    def add(self, record: DrillRecord) -> bool: ...

    def put(self, record: DrillRecord) -> None: ...

    def remove(self, record: DrillRecord) -> bool: ...

    def all(self) -> list[DrillRecord]: ...

    def for_service(self, namespace: str, vs: str) -> list[DrillRecord]: ...


@dataclass(frozen=True)
class DrillProposal:
    """A drill resolved against what is live: the record it will get and the plan it writes
    (none for `fault off`, which ends what is on record)."""

    command: Command
    namespace: str
    change: Change
    record: DrillRecord | None = None
    plan: TrafficPlan | None = None

    @property
    def vs(self) -> str:
        return str(self.command.service)

    @property
    def title(self) -> str:
        """`ratings: fault delay 7s 10% for 10m`."""
        if self.record is None:
            return service_name(self.vs, self.namespace)
        return (
            f"{self.record.service}: {self.record.drill.text} for {_span(self.record.drill.for_s)}"
        )

    @property
    def diff(self) -> str:
        return "" if self.plan is None else self.plan.diff


class Drills:
    def __init__(
        self,
        *,
        mesh: DrillMesh,
        book: DrillBook,
        rollouts: Store,
        tell: Tell,
        clock: Callable[[], datetime],
        limits: Limits,
        changed: Callable[[str, str], None] = lambda namespace, vs: None,
    ) -> None:
        self.mesh, self.book, self.rollouts = mesh, book, rollouts
        self.tell, self.clock, self.limits = tell, clock, limits
        self.changed = changed  # a service's drills changed: its rollout's card shows them

    # Starting

    def propose(
        self, command: Command, namespace: str, actor: str, channel: str | None
    ) -> DrillProposal:
        vs = str(command.service)
        change = Change(action=command.verb.value)
        if not isinstance(command.drill, Drill):
            return DrillProposal(command, namespace, change)
        drill = self._lasting(command.drill, namespace, vs)
        self._refuse_a_second(namespace, vs, drill)
        live = self.mesh.get_virtual_service(namespace, vs)
        plan = plan_drill(live, SplitRequest.build(vs=vs, namespace=namespace, drill=drill))
        # what approvers approve: the drill and the route fields it writes (not the stamp)
        change = Change(
            action=command.verb.value,
            plan_hash=plan_hash(command.verb, drill.text, drill.for_s, route_ops(plan)),
        )
        now = self.clock()
        active = self.rollouts.active_for(namespace, vs)
        record = DrillRecord(
            namespace=namespace,
            vs=vs,
            drill=drill,
            actor=actor,
            channel=channel,
            started_at=now,
            ends_at=now + timedelta(seconds=int(drill.for_s or 0)),
            rollout=active.id if active is not None and active.active else None,
        )
        return DrillProposal(command, namespace, change, record, plan)

    def carry_out(self, proposal: DrillProposal) -> str:
        """Record the drill, then write it; what to tell the asker."""
        record, plan = proposal.record, proposal.plan
        if record is None or plan is None:
            off = proposal.command.drill
            kind = off.kind if isinstance(off, DrillOff) else None
            return self.end_all(proposal.namespace, str(proposal.command.service), kind=kind)
        with self._lock(record.namespace, record.vs):
            if not self.book.add(record):
                self._refuse_a_second(record.namespace, record.vs, record.drill)
            try:
                self.mesh.write(plan)
            except Moved as e:
                self.book.remove(record)  # the guarded write never landed
                raise DrillRefused(
                    f"VirtualService '{record.vs}' changed while the bot was adding the drill; "
                    "nothing was changed; try again"
                ) from e
        self._audit(record, "fault", f"{record.drill.text} for {_span(record.drill.for_s)}")
        text = (
            f":test_tube: {record.service}: {record.drill.text} on the catch-all route until "
            f"{record.ends_at:%H:%M:%S} UTC, by <@{record.actor}>; it ends on its own"
        )
        self._say(record.channel, text)
        self._changed(record)
        return text

    def _lasting(self, drill: Drill, namespace: str, vs: str) -> Drill:
        limits = self.limits(namespace, vs)
        service = service_name(vs, namespace)
        if limits is None:
            raise DrillRefused(
                f"fault drills are off for {service}: no policy rule turns them on; ask the "
                "platform team to add `drills: {default: 10m, max: 1h}` to its rule"
            )
        asked = limits.default if drill.for_s is None else timedelta(seconds=drill.for_s)
        if asked > limits.max:
            longest = _span(int(limits.max.total_seconds()))
            raise DrillRefused(
                f"{_span(int(asked.total_seconds()))} is longer than the policy lets a drill on "
                f"{service} last; ask for at most {longest}: `/canary {service} "
                f"{drill.lasting(1).text} for {longest}`"
            )
        return drill.lasting(int(asked.total_seconds()))

    def _refuse_a_second(self, namespace: str, vs: str, drill: Drill) -> None:
        for found in self.book.for_service(namespace, vs):
            if found.drill.kind == drill.kind:
                raise DrillRefused(
                    f"{found.service} already has a {drill.kind} drill ({found.drill.text}) "
                    f"until {found.ends_at:%H:%M:%S} UTC; end it first with "
                    f"`/canary {found.service} fault off`"
                )

    # Ending

    def end_all(self, namespace: str, vs: str, *, why: str = "", kind: str | None = None) -> str:
        """End the service's drills now (those of `kind` only, if given)."""
        records = [r for r in self.book.for_service(namespace, vs) if kind in (None, r.drill.kind)]
        service = service_name(vs, namespace)
        if not records:
            return f"{service} has no {kind or 'fault'} drill going on"
        for record in records:
            self.end(record, why or "ended by hand")
        return f"{service}: {len(records)} drill(s) ended"

    def expire_due(self) -> list[DrillRecord]:
        """The leader's pass: end each drill whose time is up or whose rollout ended."""
        now, ended = self.clock(), []
        for record in self.book.all():
            why = "its time was up" if record.ends_at <= now else self._rollout_ended(record)
            if why is not None and self.end(record, why):
                ended.append(record)
        return ended

    def end(self, record: DrillRecord, why: str) -> bool:
        """Take `record`'s drill off the routes where it is still as added, then forget it;
        False when another replica finished it first."""
        with self._lock(record.namespace, record.vs):
            self._take_off(record)
            if not self.book.remove(record):
                return False
        self._audit(record, "fault-ended", f"{record.drill.text}: {why}")
        self._say(record.channel, f"{record.service}: {record.drill.text} removed ({why})")
        self._changed(record)
        return True

    def _take_off(self, record: DrillRecord) -> None:
        request = SplitRequest.build(
            vs=record.vs, namespace=record.namespace, end_drill=record.drill
        )
        for _ in range(WRITE_ATTEMPTS):
            plan = plan_drill(self.mesh.get_virtual_service(record.namespace, record.vs), request)
            if plan.noop:
                return
            try:
                self.mesh.write(plan)
                return
            except Moved:
                continue  # someone wrote in between: read again, remove what is still ours
        raise Moved(
            f"VirtualService '{record.vs}' kept changing; the drill ends on the next pass", {}
        )

    def _rollout_ended(self, record: DrillRecord) -> str | None:
        """Why the drill should end with its rollout, or None; a drill started with no
        rollout going on goes along with the next one that starts."""
        if record.rollout is None:
            active = self.rollouts.active_for(record.namespace, record.vs)
            if active is not None and active.active:
                self.book.put(record.model_copy(update={"rollout": active.id}))
            return None
        try:
            phase = self.rollouts.load(record.rollout).phase
        except RolloutNotFound:
            return "its rollout is gone"
        ended = ENDED.get(phase)
        return None if ended is None else f"the rollout was {ended}"

    def lines(self, namespace: str, vs: str) -> list[str]:
        """The service's drills, for `status`."""
        return [f"drill: {text}" for text in self.texts(namespace, vs)]

    def texts(self, namespace: str, vs: str) -> list[str]:
        """The service's drills, each with its end: `fault delay 7s 10% until 03:10:00 UTC`."""
        return [
            f"{r.drill.text} until {r.ends_at:%H:%M:%S} UTC"
            for r in self.book.for_service(namespace, vs)
        ]

    # Bookkeeping

    @contextmanager
    def _lock(self, namespace: str, vs: str) -> Iterator[None]:
        """The engine's lock on the service: one writer at a time, drills and rollouts alike."""
        with self.rollouts.mutex(f"{namespace}/{vs}", ttl_ms=MUTEX[0], wait_s=MUTEX[1]) as held:
            if not held:
                raise Busy(
                    "another change to this service is still being applied; nothing was done; "
                    "try again in a moment"
                )
            yield

    def _audit(self, record: DrillRecord, action: str, detail: str) -> None:
        self.rollouts.audit(
            namespace=record.namespace,
            vs=record.vs,
            action=action,
            actor=record.actor if action == "fault" else "canary-bot",
            at=self.clock(),
            weight_before=None,
            weight_after=None,
            channel=record.channel,
            detail=detail,
        )

    def _changed(self, record: DrillRecord) -> None:
        try:
            self.changed(record.namespace, record.vs)
        except Exception:  # the drill is done and told; a card not refreshed is cosmetic
            log.exception("card of %s not refreshed after its drills changed", record.service)

    def _say(self, channel: str | None, text: str) -> None:
        try:
            self.tell(channel, text)
        except Exception:  # a chat outage must not keep a drill on
            log.exception("could not post %r", text)


def _span(seconds: int | None) -> str:
    """600 → 10m, 3600 → 1h, 90 → 90s."""
    seconds = int(seconds or 0)
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"
