"""`canary-bot demo`: the embedded sandbox API server and a guarded rollout you can watch."""

from __future__ import annotations

import sys
from typing import TextIO

from bot.mesh.kube import KubeMesh
from bot.mesh.request import SplitRequest
from bot.sandbox.apiserver import SandboxApiServer
from bot.sandbox.kubeconfig import api_client_for
from bot.sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed

STEPS = (10, 50, 0)


def run_demo(out: TextIO = sys.stdout) -> int:
    with SandboxApiServer() as server:
        weather = [p for p in bundled_seed_paths() if p.stem == "weather"]
        stored = seed(server, load_yaml_documents(weather))
        say = _Say(out)
        say(f"sandbox Kubernetes API at {server.url}, seeded with the weather app:")
        for obj in stored:
            say(f"  {obj['kind']} {obj['metadata']['namespace']}/{obj['metadata']['name']}")
        mesh = KubeMesh(api_client_for(server.url))
        try:
            _preview(mesh, say)
            for weight in STEPS:
                _step(mesh, server, weight, say)
        finally:
            mesh.close()
    return 0


def _preview(mesh: KubeMesh, say: _Say) -> None:
    plan = mesh.plan(SplitRequest.build(vs="weather", weight=50))
    say("\n$ canary-bot plan weather.yaml --vs weather --weight 50 -o diff")
    say(plan.diff.rstrip())
    for route in plan.touched:
        say(f"  route {route.index}: {route.reason}; {route.before} -> {route.after}")


def _step(mesh: KubeMesh, server: SandboxApiServer, weight: int, say: _Say) -> None:
    server.clear_log()
    applied = mesh.apply(SplitRequest.build(vs="weather", weight=weight))
    calls = ", ".join(f"{r.method} {r.status}" for r in server.requests)
    stable, canary = applied.plan.touched[0].after
    say(f"\n== weather → {weight}% canary: v1 {stable}% / v2 {canary}%  (API calls: {calls})")
    say(applied.plan.diff.rstrip() or "   already there: nothing to write")


class _Say:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, line: str) -> None:
        print(line, file=self.out, flush=True)
