"""Calls to an API server through the official client as the bot makes them, and what a refusal
says: the status object of an ApiException, or the whole response to a raw request."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest
from kubernetes import client

if TYPE_CHECKING:
    from tests.kube.conftest import Cluster


def refusal(call: Any) -> client.ApiException:
    with pytest.raises(client.ApiException) as caught:
        call()
    return caught.value


def status_of(error: client.ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    return body


def raw(cluster: Cluster, method: str, path: str, body: Any = None, **query: str) -> Any:
    """The response to a request sent with the client's credentials, headers and all."""
    config = cluster.api.configuration
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": config.get_api_key_with_prefix("BearerToken"),
    }
    url = f"{config.host}{path}?{urlencode(query)}"
    reply = cluster.api.call_api(method, url, header_params=headers, body=body)
    reply.read()
    return reply
