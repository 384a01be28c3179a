"""Role-based access control as the real API server decides it, for the namespaced kinds.

Roles and RoleBindings (`rbac.authorization.k8s.io/v1`) are kept per namespace; a request is
allowed when a RoleBinding in its namespace binds the caller (a User by name, or a
ServiceAccount as `system:serviceaccount:<namespace>:<name>`) to a Role there with a rule that
names the API group, the resource (`virtualservices/status` for a subresource) and the verb, each
or `*`, and, if it lists resourceNames, the object. There are no ClusterRoles: nothing is
granted at the cluster scope. Admins (the real server's `system:masters`) may do anything.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GROUP = "rbac.authorization.k8s.io"
KINDS = {"roles": "Role", "rolebindings": "RoleBinding"}
# What every authenticated user may do (the real server's system:basic-user).
BASIC_USER_RULES: list[Mapping[str, Any]] = [
    {
        "verbs": ["create"],
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
    }
]
_EVERYTHING: list[Mapping[str, Any]] = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do, as an authorizer sees it."""

    user: str
    verb: str
    group: str
    resource: str  # with "/status" for the subresource
    namespace: str | None  # None at the cluster scope
    name: str | None = None


@dataclass
class Rbac:
    """The Roles and RoleBindings, by (resource, namespace, name); callers hold a lock."""

    admins: frozenset[str]
    objects: dict[tuple[str, str, str], JsonObject] = field(default_factory=dict)

    @classmethod
    def with_admins(cls, admins: Iterable[str]) -> Rbac:
        return cls(frozenset(admins))

    def allows(self, asked: Attributes) -> bool:
        if asked.user in self.admins:
            return True
        return any(
            _rule_allows(rule, asked) for rule in self.rules_for(asked.user, asked.namespace)
        )

    def rules_for(self, user: str, namespace: str | None) -> list[Mapping[str, Any]]:
        """The rules that apply to `user` in `namespace` (none at the cluster scope)."""
        if user in self.admins:
            return _EVERYTHING
        if namespace is None:
            return []
        rules: list[Mapping[str, Any]] = []
        for (resource, ns, _), binding in sorted(self.objects.items()):
            if resource != "rolebindings" or ns != namespace or not _binds(binding, user, ns):
                continue
            ref = binding.get("roleRef") or {}
            role = self.objects.get(("roles", ns, str(ref.get("name"))))
            if ref.get("kind") == "Role" and role is not None:
                rules += [r for r in role.get("rules") or [] if isinstance(r, Mapping)]
        return rules

    def review(self, user: str, namespace: str) -> JsonObject:
        """The `status` of a SelfSubjectRulesReview by `user` in `namespace`."""
        rules = [*self.rules_for(user, namespace), *BASIC_USER_RULES]
        return {
            "resourceRules": [_as_review_rule(rule) for rule in rules],
            "nonResourceRules": [],
            "incomplete": False,
        }

    def get(self, resource: str, namespace: str, name: str) -> JsonObject | None:
        found = self.objects.get((resource, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(self, resource: str, namespace: str) -> list[JsonObject]:
        return [
            copy.deepcopy(obj)
            for (kind, ns, _), obj in sorted(self.objects.items())
            if kind == resource and ns == namespace
        ]

    def put(self, resource: str, namespace: str, obj: JsonObject) -> None:
        self.objects[(resource, namespace, obj["metadata"]["name"])] = copy.deepcopy(obj)

    def delete(self, resource: str, namespace: str, name: str) -> JsonObject | None:
        return self.objects.pop((resource, namespace, name), None)


def _binds(binding: Mapping[str, Any], user: str, namespace: str) -> bool:
    for subject in binding.get("subjects") or []:
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "User" and name == user:
            return True
        if kind == "ServiceAccount":
            account = f"system:serviceaccount:{subject.get('namespace') or namespace}:{name}"
            if account == user:
                return True
    return False


def _rule_allows(rule: Mapping[str, Any], asked: Attributes) -> bool:
    def names(key: str, wanted: str) -> bool:
        listed = rule.get(key) or []
        return "*" in listed or wanted in listed

    if not (names("apiGroups", asked.group) and names("verbs", asked.verb)):
        return False
    if not names("resources", asked.resource):
        return False
    resource_names = rule.get("resourceNames") or []
    return not resource_names or asked.name in resource_names


def _as_review_rule(rule: Mapping[str, Any]) -> JsonObject:
    shown = {key: list(rule.get(key) or []) for key in ("verbs", "apiGroups", "resources")}
    if rule.get("resourceNames"):
        shown["resourceNames"] = list(rule["resourceNames"])
    return shown
