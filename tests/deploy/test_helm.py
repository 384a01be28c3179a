"""The Helm chart, through the real helm binary: lint, render, Kubernetes 1.30 schemas, and the
promises the chart makes (least-privilege RBAC, hardened pods, no secret in a manifest)."""

from __future__ import annotations

import base64
import json
import posixpath
import re
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest

from bot.app import Settings
from policies import load_policy
from tests.deploy.conftest import KUBE_VERSION, NAMESPACE, RELEASE, ROOT, Chart, Manifest
from tests.support.chart_rbac import adapter_grants, grants
from tests.support.helm import container, env_of, of_kind, one, pod_spec

FULLNAME = f"{RELEASE}-canary-bot"
BOT_TOKEN, SIGNING_SECRET, APP_TOKEN = "xoxb-1-not-real", "signing-not-real", "xapp-1-not-real"
CUSTOM_POLICY = (ROOT / "policies" / "dev.yaml").read_text(encoding="utf-8")

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cluster-wide": {
        "rbac": {"clusterWide": True},
        "bot": {"defaultNamespace": "anywhere", "channelNamespaces": {"C0OPS": "ops"}},
        "slack": {
            "mode": "socket",
            "createSecret": True,
            "botToken": BOT_TOKEN,
            "appToken": APP_TOKEN,
        },
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    },
    "namespaces": {
        "replicaCount": 3,
        "rbac": {"namespaces": ["weather", "payments", NAMESPACE]},
        "bot": {"defaultNamespace": "weather", "channelNamespaces": {"C0PAYMENTS": "payments"}},
        "slack": {"createSecret": True, "botToken": BOT_TOKEN, "signingSecret": SIGNING_SECRET},
        "redis": {
            "url": "rediss://redis.redis.svc:6380/1",
            "username": "bot",
            "existingSecret": "redis-auth",
            "passwordKey": "password",
            "tls": {"caSecret": "redis-ca"},
        },
        "networkPolicy": {
            "enabled": True,
            "ingress": {"from": [{"namespaceSelector": {"matchLabels": {"name": "ingress"}}}]},
            "egress": {"apiServer": {"cidrs": ["10.96.0.1/32"]}},
        },
        "ingress": {"enabled": True, "className": "nginx", "tlsSecret": "bot-tls"},
        "podAntiAffinity": "hard",
        "policy": CUSTOM_POLICY,
    },
    "single": {
        "replicaCount": 1,
        "podAntiAffinity": "none",
        "zoneSpread": False,
        "redis": {"existingSecret": "redis", "urlKey": "url"},
        "slack": {"existingSecret": "team-slack", "mode": "socket"},
        "serviceAccount": {"create": False, "name": "preexisting"},
    },
}
ALL_SETS = pytest.mark.parametrize("name", VALUE_SETS)

# Each resource with the verbs the bot calls (bot/mesh/kube.py, RBAC_VERBS): VirtualServices
# are never watched.
EXPECTED_RULES = [
    {
        "apiGroups": ["networking.istio.io"],
        "resources": ["virtualservices"],
        "verbs": ["get", "list", "patch"],
    },
    {
        "apiGroups": ["networking.istio.io"],
        "resources": ["destinationrules"],
        "verbs": ["get", "list", "patch", "watch"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["httproutes"],
        "verbs": ["get", "list", "patch"],
    },
]


def render(chart: Chart, name: str) -> list[Manifest]:
    return chart.render(name, VALUE_SETS[name])


def normalized(rule: dict[str, Any]) -> dict[str, Any]:
    return {key: sorted(value) for key, value in rule.items()}


# --- helm lint and the Kubernetes schemas ---------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@ALL_SETS
def test_helm_lint_passes(chart: Chart, name: str, strict: bool) -> None:
    result = chart.run("lint", VALUE_SETS[name], *(["--strict"] if strict else []))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@ALL_SETS
def test_every_manifest_is_valid_for_kubernetes_1_30(chart: Chart, name: str) -> None:
    """Strict: unknown fields fail too. kubernetes-validate ships schemas for built-in kinds
    only, so the ServiceMonitor (a Prometheus Operator CRD) is the one kind skipped here; its
    shape is checked in test_service_monitor_scrapes_the_metrics_path."""
    for doc in render(chart, name):
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            assert doc["kind"] == "ServiceMonitor"
            continue
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


@ALL_SETS
def test_every_object_carries_the_standard_labels(chart: Chart, name: str) -> None:
    for doc in render(chart, name):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "canary-bot"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert {"app.kubernetes.io/version", "helm.sh/chart"} <= labels.keys()


def test_default_render_has_exactly_the_core_objects(chart: Chart) -> None:
    kinds = sorted(d["kind"] for d in render(chart, "defaults"))
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]


# --- RBAC: the verbs the bot calls on VirtualServices, DestinationRules and Pods, nothing else ---


@pytest.mark.parametrize("name", ["namespaces", "cluster-wide"])
def test_the_chart_grants_exactly_the_verbs_the_kubernetes_adapter_calls(
    chart: Chart, name: str
) -> None:
    """The chart against the table kept beside the calls (bot/mesh/kube.py, RBAC_VERBS): a verb
    granted that no code path calls, or one called that is not granted, fails here."""
    docs = render(chart, name)
    roles = of_kind(docs, "Role") + of_kind(docs, "ClusterRole")
    assert roles
    for role in roles:
        assert grants(role["rules"]) == adapter_grants()


def test_a_role_per_namespace_grants_exactly_the_istio_rule(chart: Chart) -> None:
    docs = render(chart, "namespaces")
    roles = of_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == [NAMESPACE, "payments", "weather"]
    for role in roles:
        assert [normalized(rule) for rule in role["rules"]] == EXPECTED_RULES
    assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")


def test_each_role_binding_binds_its_role_to_the_bots_service_account(chart: Chart) -> None:
    docs = render(chart, "namespaces")
    bindings = of_kind(docs, "RoleBinding")
    assert len(bindings) == len(of_kind(docs, "Role")) == 3
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": FULLNAME,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
        ]


def test_default_role_is_in_the_release_namespace(chart: Chart) -> None:
    (role,) = of_kind(render(chart, "defaults"), "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert [normalized(rule) for rule in role["rules"]] == EXPECTED_RULES


def test_cluster_wide_mode_is_one_cluster_role_with_exactly_the_istio_rule(chart: Chart) -> None:
    docs = render(chart, "cluster-wide")
    role = one(docs, "ClusterRole")
    assert [normalized(rule) for rule in role["rules"]] == EXPECTED_RULES
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["kind"] == "ClusterRole"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")


@ALL_SETS
def test_no_rule_anywhere_has_a_wildcard_or_extra_fields(chart: Chart, name: str) -> None:
    for doc in render(chart, name):
        for rule in doc.get("rules", []):
            assert set(rule) == {"apiGroups", "resources", "verbs"}
            assert "*" not in {item for values in rule.values() for item in values}


def test_existing_service_account_is_bound_and_not_created(chart: Chart) -> None:
    docs = render(chart, "single")
    assert not of_kind(docs, "ServiceAccount")
    assert pod_spec(docs)["serviceAccountName"] == "preexisting"
    assert one(docs, "RoleBinding")["subjects"][0]["name"] == "preexisting"


# --- the pod: hardened, probed, configured only through Secrets for anything secret -----------


@ALL_SETS
def test_pod_runs_as_a_fixed_non_root_user_with_nothing_extra(chart: Chart, name: str) -> None:
    docs = render(chart, name)
    pod = pod_spec(docs)["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"]) == (10001, 10001)
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    box = container(docs)["securityContext"]
    assert box["runAsNonRoot"] is True
    assert (box["runAsUser"], box["runAsGroup"]) == (10001, 10001)
    assert box["readOnlyRootFilesystem"] is True
    assert box["allowPrivilegeEscalation"] is False
    assert box["capabilities"] == {"drop": ["ALL"]}
    assert box["seccompProfile"] == {"type": "RuntimeDefault"}


def test_tmp_is_a_writable_empty_dir_and_matplotlib_uses_it(chart: Chart) -> None:
    docs = render(chart, "defaults")
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    mounts = {m["mountPath"]: m for m in container(docs)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert not mounts["/tmp"].get("readOnly", False)
    assert env_of(docs)["MPLCONFIGDIR"]["value"] == "/tmp"


@ALL_SETS
def test_probes_hit_healthz_and_readyz_on_the_bots_http_port(chart: Chart, name: str) -> None:
    docs = render(chart, name)
    box = container(docs)
    assert box["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert box["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    (port,) = box["ports"]
    assert (port["name"], port["containerPort"]) == ("http", 3000)
    env = env_of(docs)
    assert env["CANARY_HTTP_PORT"]["value"] == "3000"
    assert env["CANARY_HTTP_HOST"]["value"] == "0.0.0.0"


def test_service_reaches_the_http_port(chart: Chart) -> None:
    docs = render(chart, "defaults")
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]


def test_bot_runs_serve_with_its_settings(chart: Chart) -> None:
    docs = render(chart, "namespaces")
    assert container(docs)["args"] == ["serve"]
    env = env_of(docs)
    assert env["CANARY_DEFAULT_NAMESPACE"]["value"] == "weather"
    assert json.loads(env["CANARY_CHANNEL_NAMESPACES"]["value"]) == {"C0PAYMENTS": "payments"}
    assert env["CANARY_LEASE_TTL"]["value"] == "5"
    assert env["PROMETHEUS_URL"]["value"].startswith("http")
    assert env["CANARY_SCRAPE_INTERVAL"]["value"] == "15"


@ALL_SETS
def test_every_variable_the_chart_sets_is_one_the_bot_reads(chart: Chart, name: str) -> None:
    read = {field.alias for field in Settings.model_fields.values()}
    helpers = {"REDIS_PASSWORD", "MPLCONFIGDIR"}  # expanded into REDIS_URL; for matplotlib
    assert set(env_of(render(chart, name))) - helpers <= read


def test_default_namespace_is_the_release_namespace(chart: Chart) -> None:
    assert env_of(render(chart, "defaults"))["CANARY_DEFAULT_NAMESPACE"]["value"] == NAMESPACE


@ALL_SETS
def test_secrets_reach_the_pod_only_through_secret_key_refs(chart: Chart, name: str) -> None:
    for var in container(render(chart, name))["env"]:
        if re.search(r"TOKEN|SECRET|PASSWORD", var["name"]):
            assert "value" not in var, var
            assert set(var["valueFrom"]) == {"secretKeyRef"}, var


@ALL_SETS
def test_no_secret_value_appears_outside_the_chart_made_secret(chart: Chart, name: str) -> None:
    secrets = {BOT_TOKEN, SIGNING_SECRET, APP_TOKEN}
    encoded = {base64.b64encode(s.encode()).decode() for s in secrets}
    for doc in render(chart, name):
        text = json.dumps(doc)
        assert not any(s in text for s in secrets), doc["kind"]
        if doc["kind"] != "Secret":
            assert not any(s in text for s in encoded), doc["kind"]


def test_slack_env_follows_the_mode(chart: Chart) -> None:
    http = env_of(render(chart, "namespaces"))
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"} <= http.keys()
    assert "SLACK_APP_TOKEN" not in http
    socket = env_of(render(chart, "cluster-wide"))
    assert {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"} <= socket.keys()
    assert "SLACK_SIGNING_SECRET" not in socket


def test_chart_made_slack_secret_holds_the_tokens_the_pod_refers_to(chart: Chart) -> None:
    docs = render(chart, "namespaces")
    secret = one(docs, "Secret")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET}
    for var in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        ref = env_of(docs)[var]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": secret["metadata"]["name"], "key": var}


def test_existing_slack_secret_is_referred_to_and_not_created(chart: Chart) -> None:
    docs = render(chart, "single")
    assert not of_kind(docs, "Secret")
    ref = env_of(docs)["SLACK_APP_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "team-slack", "key": "SLACK_APP_TOKEN"}


# --- Redis ------------------------------------------------------------------------------------


def test_redis_password_comes_from_a_secret_and_is_expanded_into_the_url(chart: Chart) -> None:
    docs = render(chart, "namespaces")
    names = [e["name"] for e in container(docs)["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")  # $(VAR) expands only then
    env = env_of(docs)
    ref = env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "redis-auth", "key": "password"}
    ca = "/etc/canary-bot/redis-tls/ca.crt"
    assert env["REDIS_URL"]["value"] == (
        f"rediss://bot:$(REDIS_PASSWORD)@redis.redis.svc:6380/1?ssl_ca_certs={ca}"
    )
    mounts = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}
    assert mounts["redis-tls"] == posixpath.dirname(ca)


def test_redis_url_without_a_secret_is_used_as_given(chart: Chart) -> None:
    env = env_of(render(chart, "defaults"))
    assert env["REDIS_URL"]["value"] == "redis://redis-master:6379/0"
    assert "REDIS_PASSWORD" not in env


def test_whole_redis_url_can_come_from_a_secret(chart: Chart) -> None:
    env = env_of(render(chart, "single"))
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "redis", "key": "url"}
    assert "REDIS_PASSWORD" not in env


# --- the policy file --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["defaults", "namespaces"])
def test_policy_config_map_is_mounted_where_canary_policy_file_points(
    chart: Chart, name: str
) -> None:
    docs = render(chart, name)
    policy_file = env_of(docs)["CANARY_POLICY_FILE"]["value"]
    directory, filename = posixpath.split(policy_file)
    mount = next(m for m in container(docs)["volumeMounts"] if m["mountPath"] == directory)
    assert mount["readOnly"] is True
    volume = next(v for v in pod_spec(docs)["volumes"] if v["name"] == mount["name"])
    config_map = one(docs, "ConfigMap")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    expected = VALUE_SETS[name].get("policy")
    assert filename in config_map["data"]
    if expected is not None:
        assert config_map["data"][filename] == expected


@pytest.mark.parametrize("name", ["defaults", "namespaces"])
def test_the_mounted_policy_is_one_the_bot_accepts(chart: Chart, name: str) -> None:
    (text,) = one(render(chart, name), "ConfigMap")["data"].values()
    policy = load_policy(text, source="chart policy")
    assert policy.rules


def test_a_changed_policy_rolls_the_pods(chart: Chart) -> None:
    def checksum(name: str) -> str:
        template = one(render(chart, name), "Deployment")["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/policy"])

    assert checksum("defaults") != checksum("namespaces")


# --- availability: PDB, spreading -------------------------------------------------------------


@pytest.mark.parametrize("name", ["defaults", "namespaces"])
def test_pdb_keeps_one_bot_up_when_there_are_several(chart: Chart, name: str) -> None:
    docs = render(chart, name)
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]
    assert one(docs, "Deployment")["spec"]["replicas"] == VALUE_SETS[name].get("replicaCount", 2)


def test_no_pdb_for_a_single_replica(chart: Chart) -> None:
    docs = render(chart, "single")
    assert one(docs, "Deployment")["spec"]["replicas"] == 1
    assert not of_kind(docs, "PodDisruptionBudget")


def test_replicas_prefer_different_nodes_and_zones_by_default(chart: Chart) -> None:
    spec = pod_spec(render(chart, "defaults"))
    (term,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"


def test_hard_anti_affinity_requires_different_nodes(chart: Chart) -> None:
    anti = pod_spec(render(chart, "namespaces"))["affinity"]["podAntiAffinity"]
    (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE


def test_spreading_can_be_turned_off(chart: Chart) -> None:
    spec = pod_spec(render(chart, "single"))
    assert "affinity" not in spec and "topologySpreadConstraints" not in spec


# --- optional objects -------------------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_path(chart: Chart) -> None:
    docs = render(chart, "cluster-wide")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    service_labels = one(docs, "Service")["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def egress_ports(policy: Manifest) -> Iterator[tuple[str, int]]:
    for rule in policy["spec"]["egress"]:
        for port in rule["ports"]:
            yield port["protocol"], port["port"]


def test_network_policy_lets_in_the_http_port_and_out_only_what_the_bot_needs(
    chart: Chart,
) -> None:
    policy = one(render(chart, "namespaces"), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress["from"] == [{"namespaceSelector": {"matchLabels": {"name": "ingress"}}}]
    ports = set(egress_ports(policy))
    assert {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6379), ("TCP", 9090)} <= ports
    assert ports <= {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443)} | {
        ("TCP", p) for p in (6379, 26379, 9090, 80)
    }
    api_server = policy["spec"]["egress"][1]
    assert api_server["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}}]


def test_ingress_exposes_only_the_slack_events_path(chart: Chart) -> None:
    ingress = one(render(chart, "namespaces"), "Ingress")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/slack/events", "Exact")
    assert path["backend"]["service"] == {"name": FULLNAME, "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["secretName"] == "bot-tls"


def test_notes_say_how_to_create_the_slack_secret(chart: Chart) -> None:
    result = chart.run("install", {}, "--dry-run=client")
    assert result.returncode == 0, result.stderr
    assert "create secret generic" in result.stdout
    assert "/slack/events" in result.stdout
    assert "placeholder Slack IDs" in result.stdout


# --- bad values fail at install, naming the value ---------------------------------------------

BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "wrong-type": ({"replicaCount": "two"}, "/replicaCount"),
    "unknown-top-level-key": ({"replicas": 2}, "'replicas' not allowed"),
    "bad-enum": ({"slack": {"mode": "websocket"}}, "/slack/mode"),
    "bad-anti-affinity": ({"podAntiAffinity": "sometimes"}, "/podAntiAffinity"),
    "unknown-nested-key": ({"redis": {"uri": "redis://x"}}, "'uri' not allowed"),
    "not-a-redis-url": ({"redis": {"url": "http://redis:6379"}}, "/redis/url"),
    "bad-namespace": ({"rbac": {"namespaces": ["Not_A_Namespace"]}}, "/rbac/namespaces/0"),
    "negative-scrape-interval": (
        {"prometheus": {"scrapeInterval": -1}},
        "/prometheus/scrapeInterval",
    ),
}


@pytest.mark.parametrize("command", ["template", "lint"])
@pytest.mark.parametrize("name", BAD_VALUES)
def test_schema_rejects_bad_values(chart: Chart, command: str, name: str) -> None:
    values, message = BAD_VALUES[name]
    result = chart.run(command, values)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "namespace-not-granted": (
        {"bot": {"channelNamespaces": {"C0X": "payments"}}},
        'namespace "payments" is used by bot.defaultNamespace or bot.channelNamespaces',
    ),
    "password-in-redis-url": (
        {"redis": {"url": "redis://:hunter2@redis:6379/0"}},
        "redis.url must not carry a password",
    ),
    "create-secret-without-token": ({"slack": {"createSecret": True}}, "needs slack.botToken"),
    "both-secret-modes": (
        {"slack": {"createSecret": True, "existingSecret": "x", "botToken": "t"}},
        "not both",
    ),
    "ingress-in-socket-mode": (
        {"slack": {"mode": "socket"}, "ingress": {"enabled": True}},
        "ingress.enabled is for slack.mode=http",
    ),
}


@pytest.mark.parametrize("name", REFUSED)
def test_chart_refuses_values_that_would_fail_later(chart: Chart, name: str) -> None:
    values, message = REFUSED[name]
    result = chart.run("template", values)
    assert result.returncode != 0
    assert message in result.stderr
    assert "hunter2" not in result.stderr
