"""The CRDs' CEL rules (x-kubernetes-validations): the bot checks them before it writes, and
its verdict is the real API server's, case by case."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client

from bot.mesh.errors import InvalidObject
from bot.mesh.planner import plan_split
from bot.mesh.request import SplitRequest
from bot.mesh.schema import schema_errors
from tests.support.kubeapi import RealKube

GROUP = "networking.istio.io"
ROUTE = [
    {"destination": {"host": "weather", "subset": "v1"}, "weight": 90},
    {"destination": {"host": "weather", "subset": "v2"}, "weight": 10},
]


def virtual_service(**route_fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "VirtualService",
        "metadata": {"name": "weather", "namespace": "default"},
        "spec": {"hosts": ["weather"], "http": [{"route": copy.deepcopy(ROUTE), **route_fields}]},
    }


def destination_rule(**spec: Any) -> dict[str, Any]:
    subsets = [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")]
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "weather", "namespace": "default"},
        "spec": {"host": "weather", "subsets": subsets, **spec},
    }


# (object, does CEL refuse it?): each rule the bot evaluates, on both sides of its line.
CASES = [
    (virtual_service(timeout="0s"), True),
    (virtual_service(timeout="500us"), True),
    (virtual_service(timeout="1ms"), False),
    (virtual_service(timeout="10s"), False),
    (virtual_service(retries={"attempts": 3, "perTryTimeout": "0.0001s"}), True),
    (virtual_service(retries={"attempts": 3, "perTryTimeout": "2s"}), False),
    (virtual_service(fault={"delay": {"fixedDelay": "0s", "percentage": {"value": 5}}}), True),
    (virtual_service(fault={"delay": {"fixedDelay": "7s", "percentage": {"value": 5}}}), False),
    (destination_rule(workloadSelector={"matchLabels": {"app": "weath*"}}), True),
    (destination_rule(workloadSelector={"matchLabels": {"app*": "weather"}}), True),
    (destination_rule(workloadSelector={"matchLabels": {"app": "weather"}}), False),
]
IDS = [f"{o['kind']}-{i}-{'refused' if bad else 'taken'}" for i, (o, bad) in enumerate(CASES)]


@pytest.mark.parametrize(("obj", "refused"), CASES, ids=IDS)
def test_the_bot_refuses_what_the_real_api_server_refuses_for_its_cel_rules(
    real_kube: RealKube, obj: dict[str, Any], refused: bool
) -> None:
    bot_says = schema_errors(obj, obj["kind"], "v1")
    namespace = real_kube.new_namespace("cel")
    body = copy.deepcopy(obj)
    body["metadata"]["namespace"] = namespace
    plural = {"VirtualService": "virtualservices", "DestinationRule": "destinationrules"}
    api = client.CustomObjectsApi(real_kube.admin)
    try:
        api.create_namespaced_custom_object(GROUP, "v1", namespace, plural[obj["kind"]], body)
        server_says = ""
    except client.ApiException as e:
        assert e.status == 422, e.body
        server_says = str(e.body)
    assert bool(server_says) is refused
    assert bool(bot_says) is refused, bot_says
    for problem in bot_says:  # the bot's message is the CRD's, as the server gives it
        assert problem.split(": ", 1)[1] in server_says


def test_a_live_object_only_cel_refuses_is_not_planned_on_and_nothing_is_written() -> None:
    """A VirtualService left with `timeout: 0s` (kept from before the CRD had the rule): the
    plan is refused, naming the field and saying how to fix it."""
    vs = virtual_service(timeout="0s")
    request = SplitRequest.build(vs="weather", weight=20, to="v2")
    with pytest.raises(InvalidObject) as caught:
        plan_split(vs, destination_rule(), request, now=None)
    assert str(caught.value) == (
        "the live VirtualService 'weather' in namespace 'default' is not valid: "
        "/spec/http/0/timeout: must be a valid duration greater than 1ms; "
        "fix it by hand first (kubectl -n default edit virtualservice weather)"
    )
