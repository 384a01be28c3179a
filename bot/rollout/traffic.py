"""The rollout engine's view of the mesh: a Target and a weight, through the kube adapter."""

from __future__ import annotations

from bot.mesh import httproute
from bot.mesh.cohort import COHORT_ROUTE
from bot.mesh.errors import Moved
from bot.mesh.kube import KubeMesh, wrote
from bot.mesh.models import VirtualService
from bot.mesh.planner import (
    LastApplied,
    TrafficPlan,
    destination_name,
    live_canary_weights,
    read_last_applied,
)
from bot.mesh.request import SplitRequest
from bot.rollout.model import ApplyWeight, Target
from bot.rollout.ports import Owner, Planned
from commands.cohort import CohortChange
from commands.grammar import PodLabels

FENCE_TRIES = 5


class KubeTraffic:
    def __init__(self, mesh: KubeMesh) -> None:
        self.mesh = mesh

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
    ) -> tuple[Target, Planned]:
        """The stable and canary subsets a rollout would move between, and the plan that would
        set `weight` (and `mirror`, or a `cohort`) now: the engine writes that very plan when
        it is the first thing to do. `labels`: the pods a new canary subset selects."""
        request = SplitRequest.build(
            vs=vs,
            namespace=namespace,
            weight=weight,
            to=to,
            labels=labels,
            mirror=mirror,
            cohort=cohort,
            **write.fields(),
        )
        plan = self.mesh.plan(request)
        target = Target(
            namespace=namespace,
            vs=vs,
            stable=plan.stable,
            canary=plan.canary,
            routes=plan.request.routes,
            host=plan.host.split(".")[0],
            stable_version=plan.version_of(plan.stable),
            canary_version=plan.version_of(plan.canary),
            by="host" if plan.by == "host" else "subset",
            protocol="tcp" if plan.protocol == "tcp" else "http",
            reporter="waypoint" if plan.reporter == "waypoint" else "",
        )
        return target, _planned(plan)

    def plan(self, target: Target, effect: ApplyWeight, write: Owner) -> Planned:
        request = SplitRequest.build(
            vs=target.vs,
            namespace=target.namespace,
            weight=effect.written_weight,
            to=target.canary,
            stable=target.stable,
            routes=target.routes,
            mirror=effect.mirror,
            cohort=effect.cohort,
            finalize=effect.finalize,
            **write.fields(),
        )
        return _planned(self.mesh.plan(request))

    def write(self, planned: Planned) -> None:
        """Send the plan as it is; Moved when the object changed since it was read."""
        self.mesh.write(planned.plan)

    def confirm(self, planned: Planned, write_id: str) -> None:
        """Make sure the object is still the one a plan that changes nothing was read from: a
        fence write conditional on its version (Moved when it changed). Afterwards, no write
        planned against an earlier version can land, so the weights read are live for good."""
        self.mesh.fence(planned.plan.vs.before, write_id)

    def wrote(self, live: dict[str, object], write_id: str) -> bool:
        return wrote(dict(live), write_id)

    def observe(self, target: Target) -> int | None:
        """The canary's live weight, read afresh, when the bot's annotation says where to look."""
        return _canary_weight(self.mesh.get_route(target.namespace, target.vs), target)

    def canaries(self, namespace: str) -> list[tuple[str, LastApplied]]:
        """The VirtualServices and HTTPRoutes whose annotation says the bot left canary traffic
        on them."""
        found = []
        for vs in self.mesh.virtual_services(namespace) + self.mesh.http_routes(namespace):
            last = httproute.last_applied(vs)
            if last is None or last.canary is None:
                continue
            http_route = httproute.is_http_route(vs)
            live = httproute.live_canary_weights if http_route else live_canary_weights
            if any(live(vs, last).values()):
                found.append((str(vs["metadata"]["name"]), last))
        return found

    def settle(self, target: Target, write_id: str, fence_id: str) -> tuple[bool, int | None]:
        """Whether the write `write_id` landed (if it did not, it is made sure it never can),
        and the canary's live weight as read then.

        Reads the VirtualService: its annotation names the bot's last write. When that is not
        `write_id`, a fence (an annotation-only write conditional on the version just read)
        moves the object on, so the write, which tests an earlier version, can never land.
        """
        for _ in range(FENCE_TRIES):
            live = self.mesh.get_route(target.namespace, target.vs)
            if wrote(live, write_id):
                return True, _canary_weight(live, target)
            try:
                self.mesh.fence(live, fence_id)
                return False, _canary_weight(live, target)
            except Moved:
                continue  # it moved again (perhaps that very write landed): read again
        raise Moved(
            f"VirtualService '{target.vs}' in namespace '{target.namespace}' kept changing "
            "while the bot checked its last write; try again",
            {},
        )


def _canary_weight(vs: dict[str, object], target: Target) -> int | None:
    """The canary's weight in the routes the bot last wrote (its annotation says which), or
    else in the first http route that sends traffic to the stable or the canary subset (the
    canary alone, as a promotion leaves it, has it all)."""
    if httproute.is_http_route(vs):
        return httproute.canary_weight(vs, target.stable, target.canary)
    parsed = VirtualService.parse(vs)
    last = read_last_applied(parsed)
    if last is not None and last.canary == target.canary and last.weights:
        return max(live_canary_weights(vs, last).values())
    for route in parsed.spec.routes:
        if route.name == COHORT_ROUTE:
            continue  # all of it goes to the canary, and it is only the cohort's
        names = [destination_name(d.destination, target.by) for d in route.route]
        if target.stable in names or target.canary in names:
            only = len(route.route) == 1
            return sum(
                (d.weight if d.weight is not None else 100 if only else 0)
                for d, name in zip(route.route, names, strict=True)
                if name == target.canary
            )
    return None


def _planned(plan: TrafficPlan) -> Planned:
    live = tuple(t.before[1] for t in plan.touched)
    return Planned(plan, live, str(plan.vs.resource_version or ""))
