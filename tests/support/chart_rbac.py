"""The Helm chart's ServiceAccount and RBAC objects on a real kube-apiserver, and that server's
audit log: what the bot asked for, as the apiserver authorized it.

    docs = render_chart({"rbac": {"namespaces": [bot, "weather"]}}, release="rel", namespace=bot)
    apply_rbac(kube.admin, docs, namespace=bot)      # the ServiceAccount, Roles, bindings
    requests = AuditLog(path).requests(username)     # one `Request` per auditID
    adapter_grants()                                 # what the bot's code calls: the chart's due

`render_chart` runs the real helm (scripts/helm.sh, fetched once into .cache/helm);
`audited_kube_args` are the kube-apiserver flags that write every request, at Metadata level,
to a JSON-lines file in blocking mode (an event is on disk before the request goes on).
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from bot.mesh.kube import RBAC_VERBS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "canary-bot"
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
DECISION = "authorization.k8s.io/decision"
REASON = "authorization.k8s.io/reason"

Manifest = dict[str, Any]
# One thing RBAC can allow: (apiGroup, resource, verb); the core group is "".
Grant = tuple[str, str, str]


# --- helm --------------------------------------------------------------------------------------


@functools.cache
def helm_binary() -> Path:
    """The real helm; the first call on a machine downloads it (scripts/helm.sh)."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "helm.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/helm.sh failed:\n{done.stderr}")
    return Path(done.stdout.split()[-1])


def helm_template(
    *args: str, values: Mapping[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    """`helm template ARGS...`, with `values` (if any) as a values file on stdin."""
    argv = [str(helm_binary()), "template", *args]
    if values is not None:
        argv += ["--values", "-"]
    return subprocess.run(
        argv,
        input=yaml.safe_dump(dict(values)) if values is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def render_chart(values: Mapping[str, Any], *, release: str, namespace: str) -> list[Manifest]:
    """Every manifest `helm template` renders for `values`, released into `namespace`."""
    done = helm_template(release, str(CHART), "--namespace", namespace, values=values)
    if done.returncode != 0:
        raise AssertionError(f"helm template failed: {done.stderr.strip()}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def rbac_documents(docs: Iterable[Manifest]) -> list[Manifest]:
    return [d for d in docs if d.get("kind") in RBAC_KINDS]


def apply_rbac(api: client.ApiClient, docs: Iterable[Manifest], *, namespace: str) -> None:
    """Create the ServiceAccount, Roles, ClusterRoles and their bindings among `docs` as the
    caller of `api` (the admin), in `namespace` when a namespaced object names none: what
    `helm install -n NAMESPACE` would send for them."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    for doc in rbac_documents(docs):
        where = doc["metadata"].get("namespace", namespace)
        kind = doc["kind"]
        if kind == "ServiceAccount":
            core.create_namespaced_service_account(where, doc)
        elif kind == "Role":
            rbac.create_namespaced_role(where, doc)
        elif kind == "RoleBinding":
            rbac.create_namespaced_role_binding(where, doc)
        elif kind == "ClusterRole":
            rbac.create_cluster_role(doc)
        else:
            rbac.create_cluster_role_binding(doc)


def grants(rules: Iterable[Mapping[str, Any]]) -> set[Grant]:
    """Every (apiGroup, resource, verb) that RBAC rules (a Role's, or a rules review's
    resourceRules, in either spelling) allow; wildcards are kept as "*"."""
    found = set()
    for rule in rules:
        groups = rule.get("apiGroups") or rule.get("api_groups") or [""]
        for group in groups:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    found.add((group, resource, verb))
    return found


def adapter_grants() -> set[Grant]:
    """Every (apiGroup, resource, verb) the Kubernetes adapter calls, by its own table (each
    verb there names the code path that calls it): what the chart must grant, and no more."""
    return {
        (group, resource, verb) for (group, resource), verbs in RBAC_VERBS.items() for verb in verbs
    }


def rules_review(api: client.ApiClient, namespace: str) -> set[Grant]:
    """What the caller of `api` may do in `namespace`, by a SelfSubjectRulesReview."""
    review = client.AuthorizationV1Api(api).create_self_subject_rules_review(
        {"spec": {"namespace": namespace}}
    )
    assert not review.status.incomplete, review.status.evaluation_error
    rules = [r.to_dict() for r in review.status.resource_rules or []]
    return grants(rules)


# --- the audit log -----------------------------------------------------------------------------

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "rules": [{"level": "Metadata"}],
}


def audited_kube_args(folder: Path) -> tuple[list[str], Path]:
    """kube-apiserver flags that log every request to a file in `folder`, and that file."""
    policy, log = folder / "audit-policy.yaml", folder / "audit.log"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    args = [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={log}",
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
    ]
    return args, log


@dataclass(frozen=True)
class Request:
    """One request as the apiserver's audit log tells it (all its stages merged)."""

    audit_id: str
    username: str
    verb: str
    uri: str
    group: str | None  # None: a non-resource URL (/apis, /version, ...)
    resource: str | None  # with "/subresource" when there is one
    namespace: str | None
    decision: str | None  # "allow" or "forbid"; None until the apiserver logged it
    reason: str | None
    code: int | None

    @property
    def grant(self) -> Grant | None:
        if self.resource is None:
            return None
        return (self.group or "", self.resource, self.verb)


class AuditLog:
    """The apiserver's audit log file, read again on each call."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def requests(self, username: str) -> list[Request]:
        """Every request `username` made, in the order the apiserver received them."""
        merged: dict[str, dict[str, Any]] = {}
        text = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line being written right now
            if event.get("user", {}).get("username") != username:
                continue
            known = merged.setdefault(event["auditID"], {})
            annotations = {**known.get("annotations", {}), **(event.get("annotations") or {})}
            known.update(event)
            known["annotations"] = annotations
        return [_request(e) for e in merged.values()]


def _request(event: Mapping[str, Any]) -> Request:
    ref = event.get("objectRef")
    annotations = event.get("annotations") or {}
    resource = None
    if ref is not None:
        resource = ref.get("resource")
        if ref.get("subresource"):
            resource = f"{resource}/{ref['subresource']}"
    return Request(
        audit_id=str(event["auditID"]),
        username=str(event["user"]["username"]),
        verb=str(event["verb"]),
        uri=str(event["requestURI"]),
        group=None if ref is None else str(ref.get("apiGroup") or ""),
        resource=resource,
        namespace=None if ref is None else ref.get("namespace"),
        decision=annotations.get(DECISION),
        reason=annotations.get(REASON),
        code=(event.get("responseStatus") or {}).get("code"),
    )
