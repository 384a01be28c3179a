"""A Service and the ready pods it selects, as a host-based canary (Argo Rollouts' `-stable`
and `-canary` Services, Flagger's `-primary`) or an HTTPRoute backend needs them: the bot sends
traffic to a canary Service only when it selects a ready pod."""

from __future__ import annotations

from typing import Any


def service_with_pods(name: str, *, replicas: int = 1) -> list[dict[str, Any]]:
    """Service `name`, selecting `app: name`, and a Deployment whose pods carry that label (the
    sandbox's `seed` and the real-server fixture turn it into Running, Ready Pods)."""
    labels = {"app": name}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80}]},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": f"example/{name}:1"}]},
            },
        },
    }
    return [service, deployment]


def services_with_pods(*names: str) -> list[dict[str, Any]]:
    return [doc for name in names for doc in service_with_pods(name)]
