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
    return send(cluster.api, method, path, body, **query)


def send(api: client.ApiClient, method: str, path: str, body: Any = None, **query: str) -> Any:
    """A request sent through `api`'s connection pool with its credentials (the call below the
    generated methods, whose shape changes between client versions): the urllib3 response,
    `.status` and `.data`, error answers included."""
    config = api.configuration
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": config.get_api_key_with_prefix("BearerToken"),
    }
    url = f"{config.host}{path}?{urlencode(query)}"
    data = None if body is None else json.dumps(body)
    return api.rest_client.pool_manager.request(method, url, headers=headers, body=data)


def raise_for(reply: Any) -> Any:
    """`reply`, or the ApiException the client raises for an error answer."""
    if reply.status >= 400:
        error = client.ApiException(status=reply.status, reason=reply.reason)
        error.body, error.headers = reply.data, reply.headers
        raise error
    return reply
