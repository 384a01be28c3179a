"""RBAC for real (issue 12): the Helm chart's ServiceAccount, Roles and bindings (and the
cluster-wide variant) rendered by the real helm, created on a real kube-apiserver, and the bot
run with nothing but a token for that ServiceAccount.

The control plane here is one of its own (same build as `real_kube`) with an audit log, so the
requests the bot made are known as the apiserver saw and authorized them, not as the client
thinks it sent them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bot import cli
from bot.app import ConsoleNotifier, Parts, Settings, build
from bot.mesh.errors import Forbidden, Moved
from bot.mesh.kube import FIELD_MANAGER
from bot.mesh.request import SplitRequest
from bot.rollout.model import Phase, Rollout, StepDue, StepPlan
from tests.support.chart_rbac import (
    AuditLog,
    Grant,
    Manifest,
    Request,
    adapter_grants,
    apply_rbac,
    audited_kube_args,
    grants,
    render_chart,
    rules_review,
)
from tests.support.harness import wait_until
from tests.support.kubeapi import RealKube, build_binaries
from tests.support.services import service_with_pods

from .conftest import GROUP, Cluster

ISTIO_KINDS = ("virtualservices", "destinationrules")
# What the chart promises (helm/canary-bot/templates/_helpers.tpl, "canary-bot.rbacRules"): the
# verbs the bot calls, by the adapter's table (bot/mesh/kube.py, RBAC_VERBS). VirtualServices
# are never watched.
CHART_GRANTS: set[Grant] = (
    {(GROUP, "virtualservices", verb) for verb in ("get", "list", "patch")}
    | {(GROUP, "destinationrules", verb) for verb in ("get", "list", "watch", "patch")}
    | {("", kind, verb) for kind in ("pods", "services") for verb in ("list", "watch")}
    | {("gateway.networking.k8s.io", "httproutes", v) for v in ("get", "list", "patch")}
)
GATEWAY = "gateway.networking.k8s.io"
ROUTE = {  # an HTTPRoute attached to a Service's waypoint, splitting two Services
    "apiVersion": f"{GATEWAY}/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "checkout"},
    "spec": {
        "parentRefs": [{"group": "", "kind": "Service", "name": "checkout", "port": 80}],
        "rules": [{"backendRefs": [{"name": "checkout-stable", "port": 80}]}],
    },
}
# What any authenticated caller may do without the chart (the apiserver's bootstrap roles bound
# to system:authenticated): ask what it may do, and read the public CA bundles.
EVERYONE: set[Grant] = {
    ("authorization.k8s.io", "selfsubjectaccessreviews", "create"),
    ("authorization.k8s.io", "selfsubjectrulesreviews", "create"),
    ("authentication.k8s.io", "selfsubjectreviews", "create"),
} | {("certificates.k8s.io", "clustertrustbundles", v) for v in ("get", "list", "watch")}
STEPS = StepPlan(weights=(20, 50, 100), interval_s=1)  # the seed has 10% live: each step writes


# --- The control plane, the chart installed, the bot ------------------------------------------


@dataclass
class Audited:
    kube: RealKube
    log: AuditLog


@pytest.fixture(scope="module")
def audited(real_kube: RealKube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    """A control plane with an audit log of every request. `real_kube` is asked for only for
    what comes with it: the binaries built before any test's timeout starts, and its skip
    rule (CANARY_SKIP_REAL_KUBE=1)."""
    args, log = audited_kube_args(tmp_path_factory.mktemp("audit"))
    kube = RealKube(binaries=build_binaries(), extra_args=args).start()
    try:
        yield Audited(kube, AuditLog(log))
    finally:
        kube.close()


@dataclass
class Install:
    """The chart's RBAC objects, created as the admin, and a token for its ServiceAccount."""

    release_namespace: str
    granted_in: tuple[str, ...]  # the Roles' namespaces; () for the cluster-wide variant
    docs: list[Manifest]
    service_account: str
    token: str
    kubeconfig: Path
    binding: str  # the RoleBinding's or ClusterRoleBinding's name

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.release_namespace}:{self.service_account}"

    def of_kind(self, kind: str) -> list[Manifest]:
        return [d for d in self.docs if d["kind"] == kind]


def install(kube: RealKube, *, cluster_wide: bool, extra: tuple[str, ...] = ()) -> Install:
    """`helm template` of the chart into a fresh release namespace, with rbac.namespaces
    = [that namespace, *extra] (or rbac.clusterWide=true); its ServiceAccount, Roles and
    bindings created; a TokenRequest token for the ServiceAccount, once RBAC lets it act."""
    release = f"r{uuid.uuid4().hex[:6]}"  # a ClusterRole's name must not clash with another's
    namespace = kube.new_namespace("bot")
    rbac: dict[str, Any] = {"clusterWide": True} if cluster_wide else {}
    if not cluster_wide:
        rbac["namespaces"] = [namespace, *extra]
    docs = render_chart(
        {"rbac": rbac, "serviceAccount": {"create": True}}, release=release, namespace=namespace
    )
    apply_rbac(kube.admin, docs, namespace=namespace)
    [account] = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
    binding_kind = "ClusterRoleBinding" if cluster_wide else "RoleBinding"
    [binding] = {d["metadata"]["name"] for d in docs if d["kind"] == binding_kind}
    token = kube.service_account_token(namespace, account)
    installed = Install(
        release_namespace=namespace,
        granted_in=() if cluster_wide else (namespace, *extra),
        docs=docs,
        service_account=account,
        token=token,
        kubeconfig=kube.kubeconfig_for(token, namespace=namespace),
        binding=binding,
    )
    rendered = chart_grants(installed)
    api = kube.api_client(token)
    try:
        for where in installed.granted_in or (kube.new_namespace("probe"),):
            wait_until(
                lambda where=where: rendered <= rules_review(api, where),
                timeout=10,
                what=f"the chart's bindings to take effect in {where}",
            )
    finally:
        api.close()
    return installed


def bot(install: Install, redis_url: str, namespace: str, *, serve: bool) -> Parts:
    """The bot, built by the composition root from settings as a deployment would give them:
    the ServiceAccount's kubeconfig, Redis, no Prometheus (every step passes). `serve`: as
    `canary-bot serve` builds it (DestinationRules and Pods watched); otherwise as the CLI."""
    settings = Settings(
        _env_file=None,
        REDIS_URL=redis_url,
        KUBECONFIG=str(install.kubeconfig),
        CANARY_KUBE_CONTEXT=None,
        CANARY_DEFAULT_NAMESPACE=namespace,
        CANARY_POLICY_FILE=None,
        PROMETHEUS_URL=None,
    )
    return build(settings, notifier=ConsoleNotifier(lambda _: None), watch=serve)


def roll_out(parts: Parts, namespace: str) -> Rollout:
    """Start a staged rollout of `weather`, then take each step as the scheduler would when it
    falls due (without waiting for it), until the rollout ends."""
    rollout = parts.engine.start(
        namespace=namespace, vs="weather", to=None, steps=STEPS, actor="U1", channel=None
    )
    for _ in range(len(STEPS.weights) + 2):
        if not rollout.active:
            return rollout
        rollout = parts.engine.handle(rollout.id, StepDue(step=rollout.step))
    raise AssertionError(f"the rollout did not end: {rollout.phase} at {rollout.weight}%")


def routes(admin: Cluster, namespace: str) -> list[tuple[str, int | None]]:
    vs = admin.get_vs(namespace, "weather")
    return [(d["destination"]["subset"], d.get("weight")) for d in vs["spec"]["http"][0]["route"]]


def seen(audited: Audited, install: Install) -> set[str]:
    """The ServiceAccount's requests so far (the test's own reviews as it), to leave out."""
    return {r.audit_id for r in audited.log.requests(install.username)}


def logged(audited: Audited, install: Install, before: set[str]) -> list[Request]:
    """The ServiceAccount's requests since `before`, once the apiserver has logged how it
    authorized each."""
    found: list[Request] = []

    def complete() -> bool:
        nonlocal found
        found = [r for r in audited.log.requests(install.username) if r.audit_id not in before]
        return bool(found) and all(r.decision is not None for r in found)

    wait_until(complete, timeout=10, what="the audit log to hold every decision")
    return found


def chart_grants(install: Install) -> set[Grant]:
    """What the rendered Roles (or ClusterRole) allow."""
    kind = "Role" if install.granted_in else "ClusterRole"
    return grants(rule for role in install.of_kind(kind) for rule in role["rules"])


# --- The tests ---------------------------------------------------------------------------------


def test_the_chart_binds_a_role_to_its_service_account_in_each_listed_namespace(
    audited: Audited,
) -> None:
    weather = audited.kube.new_namespace("weather")
    installed = install(audited.kube, cluster_wide=False, extra=(weather,))
    home = installed.release_namespace

    assert installed.of_kind("ClusterRole") == installed.of_kind("ClusterRoleBinding") == []
    rbac = client.RbacAuthorizationV1Api(audited.kube.admin)
    for namespace in (home, weather):
        [role] = rbac.list_namespaced_role(namespace).items
        [binding] = rbac.list_namespaced_role_binding(namespace).items
        assert role.metadata.name == binding.metadata.name == installed.binding
        assert (binding.role_ref.kind, binding.role_ref.name) == ("Role", role.metadata.name)
        assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [
            ("ServiceAccount", installed.service_account, home)
        ]
        assert grants(r.to_dict() for r in role.rules) == CHART_GRANTS
    [deployment] = installed.of_kind("Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == (
        installed.service_account
    )


@pytest.mark.parametrize(
    ("cluster_wide", "serve"),
    [(False, True), (False, False), (True, True)],
    ids=["namespaced-serve", "namespaced-cli", "cluster-wide-serve"],
)
def test_a_staged_rollout_with_only_the_charts_service_account_token_is_promoted(
    audited: Audited, redis_url: str, cluster_wide: bool, serve: bool
) -> None:
    """The whole rollout (20, 50, 100, promote) through the product's composition root, with
    the ServiceAccount's kubeconfig; every request it made was allowed by the chart's binding
    and is within what the chart grants."""
    kube = audited.kube
    weather = kube.new_namespace("weather")
    installed = install(kube, cluster_wide=cluster_wide, extra=() if cluster_wide else (weather,))
    admin = Cluster("real", kube.admin, kube)
    admin.seed("weather", weather)  # v1 90, v2 10, its pods Ready
    before = seen(audited, installed)
    parts = bot(installed, redis_url, weather, serve=serve)
    try:
        if serve:
            assert parts.engine.adopt_lost(weather) == []  # `serve`'s first resync: nothing lost
        final = roll_out(parts, weather)
    finally:
        parts.mesh.close()

    assert (final.phase, final.weight, final.pending) == (Phase.PROMOTED, 100, ())
    assert routes(admin, weather) == [("v2", 100)]  # the canary is the only destination left
    actions = [e.action for e in parts.store.history(weather, "weather")]
    assert actions == ["start", "step", "step", "promote"]
    managers = admin.get_vs(weather, "weather")["metadata"]["managedFields"]
    ours = [m for m in managers if m["manager"] == FIELD_MANAGER]
    assert [(m["operation"], m["apiVersion"]) for m in ours] == [("Update", f"{GROUP}/v1")], (
        managers
    )
    assert "f:http" in ours[0]["fieldsV1"]["f:spec"]  # the routes are the bot's writes now

    requests = logged(audited, installed, before)
    refused = [r for r in requests if r.decision != "allow"]
    assert refused == []
    resource_requests = [r for r in requests if r.grant is not None]
    used = {r.grant for r in resource_requests}
    assert used <= chart_grants(installed) == CHART_GRANTS
    # The log did catch the bot at work: it read and patched the VirtualService, read pods.
    expected_use = {(GROUP, "virtualservices", "get"), (GROUP, "virtualservices", "patch")}
    expected_use |= {("", "pods", "list")}
    if serve:
        expected_use |= {("", "pods", "watch"), (GROUP, "destinationrules", "watch")}
        expected_use |= {(GROUP, "virtualservices", "list")}
    assert expected_use <= used
    patches = [r for r in resource_requests if r.verb == "patch"]
    assert {r.code for r in patches} == {200}  # guarded writes, none of them refused
    assert {r.namespace for r in resource_requests} == {weather}
    binding = "ClusterRoleBinding" if cluster_wide else "RoleBinding"
    for request in resource_requests:  # allowed by the chart's binding, by nothing else
        assert request.reason is not None
        assert f'{binding} "{installed.binding}' in request.reason, request
    others = {(r.verb, r.uri.split("?")[0].rstrip("/")) for r in requests if r.grant is None}
    assert others == {("get", "/apis")}  # discovery, which every authenticated caller may do


def test_a_namespace_outside_rbac_namespaces_gets_the_403_advice_and_nothing_changes(
    audited: Audited,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kube = audited.kube
    weather, outside = kube.new_namespace("weather"), kube.new_namespace("outside")
    installed = install(kube, cluster_wide=False, extra=(weather,))
    admin = Cluster("real", kube.admin, kube)
    for namespace in (weather, outside):
        admin.seed("weather", namespace)
    objects = client.CustomObjectsApi(kube.admin)

    def versions() -> dict[str, str]:
        return {
            kind: item["metadata"]["resourceVersion"]
            for kind in ISTIO_KINDS
            for item in objects.list_namespaced_custom_object(GROUP, "v1", outside, kind)["items"]
        }

    before, earlier = versions(), seen(audited, installed)
    advice = (
        f"the bot may not get virtualservices in namespace '{outside}': "
        f'virtualservices.networking.istio.io "weather" is forbidden: '
        f'User "{installed.username}" cannot get resource "virtualservices" in API group '
        f'"{GROUP}" in the namespace "{outside}"; grant its ServiceAccount access to that '
        "namespace (Helm value rbac.namespaces)"
    )
    parts = bot(installed, redis_url, weather, serve=False)
    try:
        with pytest.raises(Forbidden) as refused:
            parts.engine.start(
                namespace=outside, vs="weather", to=None, steps=STEPS, actor="U1", channel=None
            )
    finally:
        parts.mesh.close()
    assert str(refused.value) == advice

    # The same through `canary-bot rollout start weather.<namespace>`, as an operator sees it.
    monkeypatch.setenv("KUBECONFIG", str(installed.kubeconfig))
    monkeypatch.setenv("REDIS_URL", redis_url)
    for name in ("CANARY_KUBE_CONTEXT", "CANARY_POLICY_FILE", "PROMETHEUS_URL"):
        monkeypatch.delenv(name, raising=False)
    code = cli.main(["rollout", "start", f"weather.{outside}", "--steps", "20,50,100"])
    assert code == cli.EXIT_USAGE
    assert advice in capsys.readouterr().err

    assert versions() == before  # neither object was written
    assert routes(admin, outside) == [("v1", 90), ("v2", 10)]
    assert parts.store.active_for(outside, "weather") is None
    assert parts.store.history(outside, "weather") == []
    there = [r for r in logged(audited, installed, earlier) if r.namespace == outside]
    assert {(r.verb, r.resource, r.decision, r.code) for r in there} == {
        ("get", "virtualservices", "forbid", 403)
    }  # it asked twice (engine, CLI), was refused, and tried nothing more


@pytest.mark.parametrize("cluster_wide", [False, True], ids=["namespaced", "cluster-wide"])
def test_the_service_account_may_do_exactly_what_the_chart_grants_and_no_more(
    audited: Audited, cluster_wide: bool
) -> None:
    """A SelfSubjectRulesReview as the ServiceAccount: the chart's grant where it applies, and
    elsewhere only what any authenticated caller has. The chart's rules themselves: no
    wildcard, no write verb but patch, no resource but Istio's two and pods."""
    kube = audited.kube
    weather, outside = kube.new_namespace("weather"), kube.new_namespace("outside")
    installed = install(kube, cluster_wide=cluster_wide, extra=() if cluster_wide else (weather,))
    # A ServiceAccount the chart knows nothing of: what anyone has without it.
    nobody = kube.api_client(kube.service_account_token(outside, "nobody"))
    bot_api = kube.api_client(installed.token)
    try:
        baseline = rules_review(nobody, weather)
        assert baseline <= EVERYONE
        assert not any("*" in grant for grant in baseline)
        checked = (installed.release_namespace, weather, outside)
        for namespace in checked:
            found = rules_review(bot_api, namespace)
            allowed = cluster_wide or namespace in installed.granted_in
            assert found - baseline == (CHART_GRANTS if allowed else set()), namespace
    finally:
        nobody.close()
        bot_api.close()

    kinds = ("ClusterRole",) if cluster_wide else ("Role",)
    rules = [rule for doc in installed.docs if doc["kind"] in kinds for rule in doc["rules"]]
    assert rules and grants(rules) == CHART_GRANTS
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no nonResourceURLs, no names
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key] and all("*" not in value for value in rule[key])
        assert set(rule["verbs"]) <= {"get", "list", "watch", "patch"}
        assert not {"secrets", "configmaps", "pods/exec", "serviceaccounts/token"} & set(
            rule["resources"]
        )
    roles = [d for d in installed.docs if d["kind"] in ("Role", "ClusterRole")]
    assert all(doc.get("aggregationRule") is None for doc in roles)
    expected = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    if not cluster_wide:
        expected = {"ServiceAccount", "Role", "RoleBinding"}
    found_kinds = {d["kind"] for d in installed.docs} & {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
    }
    assert found_kinds == expected


def relabel(admin: Cluster, namespace: str, pod: str, version: str) -> None:
    body = {"metadata": {"labels": {"app": "weather", "version": version}}}
    client.CoreV1Api(admin.api).patch_namespaced_pod(
        pod, namespace, body, _content_type="application/merge-patch+json"
    )


def test_every_verb_the_chart_grants_is_one_the_bot_was_seen_using(
    audited: Audited, redis_url: str
) -> None:
    """Nothing in the chart grants more than the bot uses: `serve`'s resync, a staged rollout,
    and a plan that adds the canary's subset to the DestinationRule (refused once, because
    someone edited the rule in between, then written) use every verb the chart grants, as the
    apiserver's audit log records them, and no other."""
    kube = audited.kube
    weather = kube.new_namespace("weather")
    installed = install(kube, cluster_wide=False, extra=(weather,))
    admin = Cluster("real", kube.admin, kube)
    admin.seed("weather", weather)
    before = seen(audited, installed)
    parts = bot(installed, redis_url, weather, serve=True)
    try:
        assert parts.engine.adopt_lost(weather) == []
        assert roll_out(parts, weather).phase == Phase.PROMOTED  # v2 takes all traffic
        relabel(admin, weather, "weather-v1-0", "v3")  # a ready pod of the next canary
        wait_until(lambda: parts.mesh.ready_pods(weather, {"version": "v3"}) != [])
        wanted = SplitRequest.build(vs="weather", namespace=weather, weight=10, to="v3")
        plan = parts.mesh.plan(wanted)
        assert plan.dr is not None  # it adds subset v3
        admin.objects.patch_namespaced_custom_object(
            GROUP,
            "v1",
            weather,
            "destinationrules",
            plan.dr.name,
            {"metadata": {"annotations": {"edited-by": "someone-else"}}},
        )
        with pytest.raises(Moved):
            parts.mesh.write(plan)
        parts.mesh.apply(wanted)
        # A service with no VirtualService of its name: its HTTPRoute is read and patched.
        admin.objects.create_namespaced_custom_object(GATEWAY, "v1", weather, "httproutes", ROUTE)
        admin.add_service(weather, service_with_pods("checkout-canary"))
        wait_until(lambda: parts.mesh.ready_pods(weather, {"app": "checkout-canary"}) != [])
        parts.mesh.apply(
            SplitRequest.build(vs="checkout", namespace=weather, weight=10, to="checkout-canary")
        )
    finally:
        parts.mesh.close()
    assert routes(admin, weather) == [("v2", 90), ("v3", 10)]

    requests = logged(audited, installed, before)
    assert [r for r in requests if r.decision != "allow"] == []
    used = {r.grant for r in requests if r.grant is not None}
    assert used == CHART_GRANTS == adapter_grants()


def without(kube: RealKube, install: Install, namespace: str, missing: Grant) -> None:
    """The chart's Role in `namespace` with one grant taken out, as an older chart had it."""
    group, resource, verb = missing
    rbac = client.RbacAuthorizationV1Api(kube.admin)
    role = rbac.read_namespaced_role(install.binding, namespace)
    for rule in role.rules:
        if group in rule.api_groups and resource in rule.resources:
            rule.verbs = [v for v in rule.verbs if v != verb]
    rbac.replace_namespaced_role(install.binding, namespace, role)
    api = kube.api_client(install.token)
    try:
        wait_until(
            lambda: rules_review(api, namespace) & CHART_GRANTS == CHART_GRANTS - {missing},
            timeout=10,
            what=f"the Role without {missing} to take effect",
        )
    finally:
        api.close()


@pytest.mark.parametrize(
    ("missing", "subject"),
    [
        ((GROUP, "virtualservices", "get"), f'virtualservices.{GROUP} "weather"'),
        (("", "pods", "list"), "pods"),
        ((GROUP, "virtualservices", "patch"), f'virtualservices.{GROUP} "weather"'),
    ],
    ids=["vs-get-first-call", "pods-list", "vs-patch"],
)
def test_a_role_without_a_verb_the_bot_calls_gets_the_chart_upgrade_advice_and_nothing_changes(
    audited: Audited,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    missing: Grant,
    subject: str,
) -> None:
    """The chart's Role in a listed namespace less one verb (an out-of-date chart): the bot says
    which verb on which resource is missing and that the chart needs upgrading, not that the
    namespace needs listing. `get` of the VirtualService is the bot's first call there, so only
    the apiserver's rules review can tell the namespace is granted."""
    kube = audited.kube
    weather = kube.new_namespace("weather")
    installed = install(kube, cluster_wide=False, extra=(weather,))
    admin = Cluster("real", kube.admin, kube)
    admin.seed("weather", weather)
    without(kube, installed, weather, missing)
    objects = client.CustomObjectsApi(kube.admin)

    def versions() -> dict[str, str]:
        return {
            kind: item["metadata"]["resourceVersion"]
            for kind in ISTIO_KINDS
            for item in objects.list_namespaced_custom_object(GROUP, "v1", weather, kind)["items"]
        }

    group, resource, verb = missing
    advice = (
        f"the bot may not {verb} {resource} in namespace '{weather}': {subject} is forbidden: "
        f'User "{installed.username}" cannot {verb} resource "{resource}" in API group '
        f'"{group}" in the namespace "{weather}"; the bot\'s ServiceAccount has a role in '
        f"namespace '{weather}', but it does not grant {verb} on {resource}, which the bot "
        "needs: upgrade the canary-bot chart (helm upgrade), whose Role grants every verb the "
        "bot uses"
    )
    before, earlier = versions(), seen(audited, installed)
    parts = bot(installed, redis_url, weather, serve=False)
    try:
        with pytest.raises(Forbidden) as refused:
            parts.mesh.apply(SplitRequest.build(vs="weather", namespace=weather, weight=30))
    finally:
        parts.mesh.close()
    assert str(refused.value) == advice

    # `canary-bot rollout start weather.<namespace>`, as an operator sees it.
    monkeypatch.setenv("KUBECONFIG", str(installed.kubeconfig))
    monkeypatch.setenv("REDIS_URL", redis_url)
    for name in ("CANARY_KUBE_CONTEXT", "CANARY_POLICY_FILE", "PROMETHEUS_URL"):
        monkeypatch.delenv(name, raising=False)
    cli.main(["rollout", "start", f"weather.{weather}", "--steps", "20,50,100"])
    shown = capsys.readouterr()
    assert advice in shown.out + shown.err, shown
    assert "rbac.namespaces" not in shown.out + shown.err

    assert versions() == before  # neither object was written, not even a fence
    assert routes(admin, weather) == [("v1", 90), ("v2", 10)]
    requests = logged(audited, installed, earlier)
    refusals = {(r.grant, r.namespace, r.code) for r in requests if r.decision != "allow"}
    assert refusals == {(missing, weather, 403)}
    reviews = [r for r in requests if r.resource == "selfsubjectrulesreviews"]
    # Asked only where nothing the bot did in the namespace had been allowed yet.
    assert bool(reviews) == (verb == "get"), reviews
