"""Finding things in a rendered chart: the objects of a kind, the one Deployment's pod spec, its
one container and that container's environment by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.deploy.conftest import Manifest


def of_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Manifest], kind: str) -> Manifest:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(docs: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(docs: list[Manifest]) -> dict[str, Any]:
    (only,) = pod_spec(docs)["containers"]
    return dict(only)


def env_of(docs: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(docs)["env"]}
