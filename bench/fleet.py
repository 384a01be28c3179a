"""Many services for the benchmarks: `svc-NNNN`, each a VirtualService at v1 100% / v2 0% and
a DestinationRule with both subsets, and the sandbox API server serving them in its own
process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"


def service(i: int) -> str:
    return f"svc-{i:04d}"


def objects(count: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in map(service, range(count)):
        route = [
            {"destination": {"host": name, "subset": s}, "weight": w}
            for s, w in (("v1", 100), ("v2", 0))
        ]
        subsets = [{"name": s, "labels": {"version": s}} for s in ("v1", "v2")]
        meta = {"name": name, "namespace": NAMESPACE}
        docs.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": meta,
                "spec": {"hosts": [name], "http": [{"route": route}]},
            }
        )
        docs.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": meta,
                "spec": {"host": name, "subsets": subsets},
            }
        )
    for version in ("v1", "v2"):  # one ready pod of each version: every subset selects one
        labels = {"version": version}
        docs.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"fleet-{version}", "namespace": NAMESPACE},
                "spec": {"replicas": 1, "template": {"metadata": {"labels": labels}}},
            }
        )
    return docs


def start_sandbox(count: int, work: Path) -> tuple[subprocess.Popen[str], str]:
    """The sandbox API server in its own process, seeded with `count` services."""
    seed = work / "objects.yaml"
    seed.write_text(yaml.safe_dump_all(objects(count)))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.apiserver",
            "--seed",
            str(seed),
            "--namespace",
            NAMESPACE,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()
