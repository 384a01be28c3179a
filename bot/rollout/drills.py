"""A fault drill on record: what was added to which service, by whom, and until when. Pure.

The record is kept in Redis before the drill is written to the cluster, so whichever replica
leads when its time is up (after a restart or a failover) finds it and takes the drill off.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from commands.drill import Drill
from commands.names import service_name


class DrillRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str
    vs: str
    drill: Drill  # with `for_s` set: how long it was asked to last
    actor: str
    channel: str | None = None
    started_at: datetime
    ends_at: datetime
    rollout: str | None = None  # the rollout going on with it: its end ends the drill

    @property
    def key(self) -> str:
        """One drill of a kind per service at a time."""
        return f"{self.namespace}/{self.vs}/{self.drill.kind}"

    @property
    def service(self) -> str:
        return service_name(self.vs, self.namespace)
