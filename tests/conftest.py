"""Shared fixtures: the sandbox Kubernetes API server and a client pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.sandbox.apiserver import SandboxApiServer
from bot.sandbox.kubeconfig import api_client_for


@pytest.fixture
def sandbox() -> Iterator[SandboxApiServer]:
    """A started, empty sandbox API server; stopped after the test."""
    with SandboxApiServer() as server:
        yield server


@pytest.fixture
def api_client(sandbox: SandboxApiServer) -> Iterator[Any]:
    """A `kubernetes.client.ApiClient` for `sandbox`, closed after the test."""
    client = api_client_for(sandbox.url)
    yield client
    client.close()
