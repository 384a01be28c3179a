"""A 403 says what to fix, on the sandbox API server and a real kube-apiserver: a namespace the
bot has no grant in needs rbac.namespaces; a namespace it has a Role in, that lacks a verb the bot
calls (the Role of an older chart), needs the chart upgraded. Checked in the words the asker
reads in chat, and nothing changes in the cluster.

Both servers have a Role that grants the chart's rules less `patch` on VirtualServices (a
SelfSubjectRulesReview tells when it is in force); the sandbox decides by its Roles as the real
RBAC authorizer does (sandbox/rbac.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from kubernetes import client

from bot.app import ConsoleNotifier, Parts, Settings, build
from bot.chat.dispatch import Asker
from bot.mesh.errors import Forbidden
from bot.mesh.kube import RBAC_VERBS, KubeMesh
from bot.mesh.request import SplitRequest
from commands import parse
from tests.support.chart_rbac import rules_review
from tests.support.harness import wait_until
from tests.support.kubeapi import VIEWER

from .conftest import GROUP, PLURALS, Cluster

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
VS = "virtualservices"


def outside_advice(namespace: str) -> str:
    return (
        f"the bot may not get virtualservices in namespace '{namespace}': "
        f'virtualservices.networking.istio.io "weather" is forbidden: User "{VIEWER.name}" '
        f'cannot get resource "virtualservices" in API group "{GROUP}" in the namespace '
        f'"{namespace}"; grant its ServiceAccount access to that namespace (Helm value '
        "rbac.namespaces)"
    )


def refusal(verb: str, namespace: str) -> str:
    """The real RBAC authorizer's words for the viewer's `verb` of VirtualService weather."""
    return (
        f'virtualservices.networking.istio.io "weather" is forbidden: User "{VIEWER.name}" '
        f'cannot {verb} resource "virtualservices" in API group "{GROUP}" in the namespace '
        f'"{namespace}"'
    )


def upgrade_advice(namespace: str) -> str:
    return (
        f"the bot may not patch virtualservices in namespace '{namespace}': "
        f"{refusal('patch', namespace)}; the bot's ServiceAccount has a role in namespace "
        f"'{namespace}', but it does not grant patch on virtualservices, which the bot needs: "
        "upgrade the canary-bot chart (helm upgrade), whose Role grants every verb the bot uses"
    )


@pytest.fixture
def viewer(cluster: Cluster) -> Iterator[client.ApiClient]:
    """The viewer's client: on the real server it has no grant until a test gives one."""
    with cluster.client_for(VIEWER.token) as api:
        yield api


def chat_bot(api: client.ApiClient, redis_url: str, namespace: str) -> Parts:
    """The bot as `serve` builds it (no policy: anyone may act), acting as the viewer."""
    settings = Settings(
        _env_file=None,
        REDIS_URL=redis_url,
        CANARY_DEFAULT_NAMESPACE=namespace,
        CANARY_POLICY_FILE=None,
        PROMETHEUS_URL=None,
    )
    return build(
        settings, kube_api=api, notifier=ConsoleNotifier(lambda _: None), clock=lambda: NOW
    )


def say(parts: Parts, text: str) -> str:
    [reply] = parts.dispatcher.run(parse(text), Asker("U0REQ00001", "C1"), text=text)
    return reply.text


def versions(cluster: Cluster, namespace: str) -> dict[str, str]:
    return {
        f"{plural}/{item['metadata']['name']}": item["metadata"]["resourceVersion"]
        for plural in PLURALS.values()
        for item in cluster.objects.list_namespaced_custom_object(GROUP, "v1", namespace, plural)[
            "items"
        ]
    }


def grant_all_but_patch_on_virtual_services(cluster: Cluster, namespace: str) -> None:
    """A Role for the viewer with the chart's rules (the adapter's table) less `patch` on
    VirtualServices, and a RoleBinding, on either server."""
    rules = [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
        for (group, resource), verbs in RBAC_VERBS.items()
    ]
    [vs_rule] = [r for r in rules if r["resources"] == [VS]]
    vs_rule["verbs"].remove("patch")
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    role = {"metadata": {"name": "canary-bot-old"}, "rules": rules}
    rbac.create_namespaced_role(namespace, role)
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "canary-bot-old"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "canary-bot-old",
            },
            "subjects": [
                {"kind": "User", "name": VIEWER.name, "apiGroup": "rbac.authorization.k8s.io"}
            ],
        },
    )
    with cluster.client_for(VIEWER.token) as api:
        wait_until(
            lambda: (GROUP, VS, "get") in rules_review(api, namespace),
            timeout=10,
            what="the viewer's Role to take effect",
        )


def test_a_namespace_with_no_grant_gets_the_rbac_namespaces_advice(
    cluster: Cluster, viewer: client.ApiClient, redis_url: str
) -> None:
    namespace = cluster.forbidden_namespace()
    if cluster.real is not None:  # objects to leave alone (the sandbox's is closed to all)
        cluster.seed("weather", namespace)
    before = versions(cluster, namespace) if cluster.real is not None else {}
    mesh = KubeMesh(viewer, clock=lambda: NOW, sleep=lambda _: None)
    try:
        with pytest.raises(Forbidden) as refused:
            mesh.apply(SplitRequest.build(vs="weather", namespace=namespace, weight=30))
    finally:
        mesh.close()
    assert str(refused.value) == outside_advice(namespace)

    parts = chat_bot(viewer, redis_url, namespace)
    try:
        reply = say(parts, "weather 30%")
    finally:
        parts.mesh.close()
    assert outside_advice(namespace) in reply, reply
    if cluster.sandbox is not None:
        assert cluster.sandbox.writes() == []
    else:
        assert versions(cluster, namespace) == before


def test_a_role_without_a_verb_the_bot_calls_gets_the_chart_upgrade_advice(
    cluster: Cluster, viewer: client.ApiClient, redis_url: str
) -> None:
    namespace = cluster.namespace()
    cluster.seed("weather", namespace)  # v1 90, v2 10, pods Ready
    grant_all_but_patch_on_virtual_services(cluster, namespace)
    before = versions(cluster, namespace)
    mesh = KubeMesh(viewer, clock=lambda: NOW, sleep=lambda _: None)
    try:
        with pytest.raises(Forbidden) as refused:
            mesh.apply(SplitRequest.build(vs="weather", namespace=namespace, weight=30))
    finally:
        mesh.close()
    assert str(refused.value) == upgrade_advice(namespace)
    assert "rbac.namespaces" not in str(refused.value)

    parts = chat_bot(viewer, redis_url, namespace)
    try:
        reply = say(parts, "weather 30%")
    finally:
        parts.mesh.close()
    assert reply.startswith(f":warning: could not set 30%: {upgrade_advice(namespace)}"), reply
    assert "rbac.namespaces" not in reply
    assert versions(cluster, namespace) == before  # not a write landed, not even a fence
    routes = cluster.get_vs(namespace, "weather")["spec"]["http"][0]["route"]
    assert [r["weight"] for r in routes] == [90, 10]
