"""The rollout engine's view of the mesh: a Target and a weight, through the kube adapter."""

from __future__ import annotations

from bot.mesh.kube import KubeMesh
from bot.mesh.request import SplitRequest
from bot.rollout.model import ApplyWeight, Target


class KubeTraffic:
    def __init__(self, mesh: KubeMesh) -> None:
        self.mesh = mesh

    def resolve(self, namespace: str, vs: str, to: str | None, first: int) -> tuple[Target, int]:
        """The stable and canary subsets a rollout would move between, and the live weight."""
        plan = self.mesh.plan(SplitRequest.build(vs=vs, namespace=namespace, weight=first, to=to))
        target = Target(
            namespace=namespace,
            vs=vs,
            stable=plan.stable,
            canary=plan.canary,
            routes=plan.request.routes,
            host=plan.host.split(".")[0],
        )
        return target, max((t.before[1] for t in plan.touched), default=0)

    def apply(self, target: Target, effect: ApplyWeight) -> None:
        request = SplitRequest.build(
            vs=target.vs,
            namespace=target.namespace,
            weight=effect.weight,
            to=target.canary,
            routes=target.routes,
            finalize=effect.finalize,
        )
        self.mesh.apply(request, expect=effect.previous if effect.guard else None)
