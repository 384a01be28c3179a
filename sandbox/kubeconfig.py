"""Kubeconfig files and API clients that point at a sandbox API server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

# The sandbox does not check credentials, but the client wants some kind of user entry.
SANDBOX_TOKEN = "canary-sandbox-token"  # noqa: S105 - a placeholder, not a secret
SANDBOX_USER = "canary-bot"


def kubeconfig_dict(
    server_url: str, *, namespace: str = "default", context: str = "canary-sandbox"
) -> dict[str, Any]:
    """A kubeconfig with one cluster, one token user and one context, made current."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server_url}}],
        "users": [{"name": SANDBOX_USER, "user": {"token": SANDBOX_TOKEN}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": SANDBOX_USER, "namespace": namespace},
            }
        ],
        "current-context": context,
        "preferences": {},
    }


def write_kubeconfig(
    path: str | Path,
    server_url: str,
    *,
    namespace: str = "default",
    context: str = "canary-sandbox",
) -> Path:
    """Write a kubeconfig for `server_url` to `path` (parents created) and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    config = kubeconfig_dict(server_url, namespace=namespace, context=context)
    target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return target


def api_client_for(url: str) -> client.ApiClient:
    """An ApiClient for the sandbox at `url`; the caller closes it."""
    configuration = client.Configuration(host=url)
    # The 37.x client reads HTTP(S)_PROXY from the environment; loopback never needs one.
    configuration.proxy = None
    configuration.api_key = {"BearerToken": SANDBOX_TOKEN}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(configuration)
