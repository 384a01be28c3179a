"""Load Istio objects from YAML seed files into a sandbox API server."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import yaml

# libyaml's parser, where PyYAML has it (its wheels do): the same documents, about ten times
# faster than the pure-Python one.
FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SeedTarget(Protocol):
    """What seeding needs of a server (`SandboxApiServer` is one)."""

    @property
    def kinds(self) -> frozenset[str]: ...

    def put_object(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...


def bundled_seed_paths() -> list[Path]:
    """The seed files shipped in `sandbox/seeds`, sorted by name."""
    seeds = resources.files("sandbox").joinpath("seeds")
    return sorted(Path(str(entry)) for entry in seeds.iterdir() if entry.name.endswith(".yaml"))


def load_yaml_documents(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every mapping document of every file, in order; empty and comment-only ones skipped."""
    documents: list[dict[str, Any]] = []
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        documents.extend(d for d in yaml.load_all(text, FAST_LOADER) if isinstance(d, dict) and d)
    return documents


def seed(
    server: SeedTarget, documents: Iterable[Mapping[str, Any]], *, namespace: str = "default"
) -> list[dict[str, Any]]:
    """Store the kinds `server` serves among `documents` and return them as stored.

    Objects without a namespace go to `namespace`; a Deployment becomes its ready Pods (there
    is no kubelet: they are Running and Ready at once); kinds it does not serve are skipped. A
    later document with the same name replaces an earlier one.
    """
    stored = []
    for document in documents:
        if document.get("kind") == "Deployment" and "Pod" in server.kinds:
            stored += [server.put_object(pod) for pod in ready_pods_of(document, namespace)]
            continue
        if document.get("kind") not in server.kinds:
            continue
        obj = copy.deepcopy(dict(document))
        obj["metadata"] = {"namespace": namespace, **(obj.get("metadata") or {})}
        stored.append(server.put_object(obj))
    return stored


def ready_pods_of(
    deployment: Mapping[str, Any], namespace: str = "default"
) -> list[dict[str, Any]]:
    """The Pods a Deployment would run once they are up: its template's labels, Running, Ready."""
    metadata = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    template = spec.get("template") or {}
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    name = str(metadata.get("name", "app"))
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-{index}",
                "namespace": metadata.get("namespace", namespace),
                "labels": labels,
            },
            "spec": copy.deepcopy(template.get("spec") or {"containers": []}),
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
        for index in range(int(spec.get("replicas", 1)))
    ]
