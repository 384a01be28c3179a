"""The real-world corpus (tests/fixtures/corpus/): each VirtualService with the DestinationRules
a user would have applied beside it, and the `/canary` command a refusal suggests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from sandbox.seeding import FAST_LOADER

CORPUS = Path(__file__).parents[1] / "fixtures" / "corpus"
WEIGHTS = (10, 50, 100, 0)
SOURCE = re.compile(r"^# Source: https://github\.com/([^/]+/[^/]+)/blob/[0-9a-f]+/(\S+)$", re.M)
SUGGESTED = re.compile(r"`/canary ([a-z0-9-]+)(?:\.([a-z0-9-]+))? (\d+)%(?: to ([a-z0-9.-]+))?`")


@dataclass(frozen=True)
class Case:
    file: str  # relative to the corpus
    index: int  # of the VirtualService among the file's documents
    vs: dict[str, Any]
    drs: tuple[dict[str, Any], ...]

    @property
    def name(self) -> str:
        return str(self.vs["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.vs["metadata"].get("namespace") or "default")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(path.read_text(encoding="utf-8"), FAST_LOADER) if d]


def _source_dir(path: Path) -> tuple[str, str]:
    found = SOURCE.search(path.read_text(encoding="utf-8"))
    assert found, f"{path} does not say where it came from"
    return found[1], found[2].rsplit("/", 1)[0]


@cache
def cases() -> tuple[Case, ...]:
    files = sorted(CORPUS.glob("*/*.yaml"))
    by_dir: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in files:
        drs = [d for d in _documents(path) if d.get("kind") == "DestinationRule"]
        by_dir.setdefault(_source_dir(path), []).extend(drs)
    found = []
    for path in files:
        docs = _documents(path)
        own = [d for d in docs if d.get("kind") == "DestinationRule"]
        for i, doc in enumerate(docs):
            if doc.get("kind") == "VirtualService":
                near = _fitting(doc, own + by_dir[_source_dir(path)])
                found.append(Case(str(path.relative_to(CORPUS)), i, doc, tuple(near)))
    return tuple(found)


def _fitting(vs: dict[str, Any], drs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One DestinationRule per (namespace, host), as a user would have applied: the first
    that defines every subset the VirtualService names for its host (the file's own before its
    neighbours'), else the first."""
    named: dict[str, set[str]] = {}
    for kind in ("http", "tcp", "tls"):
        for route in (vs.get("spec") or {}).get(kind) or []:
            for dest in route.get("route") or []:
                d = dest.get("destination") or {}
                named.setdefault(str(d.get("host")).split(".")[0], set()).add(d.get("subset"))
    chosen: dict[tuple[str, str], tuple[bool, dict[str, Any]]] = {}
    for dr in drs:
        host = str((dr.get("spec") or {}).get("host"))
        key = (str(dr["metadata"].get("namespace")), host)
        subsets = {s.get("name") for s in (dr.get("spec") or {}).get("subsets") or []}
        fits = named.get(host.split(".", maxsplit=1)[0], set()) - {None} <= subsets
        if key not in chosen or (fits and not chosen[key][0]):
            chosen[key] = (fits, dr)
    return [dr for _, dr in chosen.values()]
