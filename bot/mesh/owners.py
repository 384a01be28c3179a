"""Who else writes a VirtualService or DestinationRule, read from its metadata alone.

A controller that owns the object (a controller `ownerReference`: an Argo Rollouts Rollout, a
Flagger Canary) puts it back within seconds, so the bot refuses it. A GitOps tool that syncs it
from Git (Argo CD, Flux) puts it back at its next sync: the bot warns, and offers the change as
a patch for a pull request; a policy can make that a refusal too. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.mesh.errors import PlanError
from bot.mesh.request import SplitRequest

# Argo CD's resource tracking: the annotation (the default since Argo CD 3.0), the label most
# installations configure instead of the default one, and the default label before 3.0.
ARGO_TRACKING_ID = "argocd.argoproj.io/tracking-id"
ARGO_INSTANCE = "argocd.argoproj.io/instance"
INSTANCE = "app.kubernetes.io/instance"
HELM_RELEASE = "meta.helm.sh/release-name"  # `helm install` set it; Argo CD renders charts
# Flux: the labels its controllers put on what they apply, and the ways to make them let go.
FLUX_KUSTOMIZATION = "kustomize.toolkit.fluxcd.io"
FLUX_HELM_RELEASE = "helm.toolkit.fluxcd.io"
FLUX_RECONCILE = "kustomize.toolkit.fluxcd.io/reconcile"
FLUX_SSA = "kustomize.toolkit.fluxcd.io/ssa"
FLUX_HANDS_OFF = frozenset({"ifnotpresent", "ignore"})

# What to use instead of the bot, for the controllers known to own VirtualServices.
_INSTEAD = {
    "argoproj.io": "drive the rollout with Argo Rollouts (kubectl argo rollouts promote|abort)",
    "flagger.app": "drive the canary with Flagger (its Canary resource)",
}


@dataclass(frozen=True)
class GitOps:
    """A GitOps tool that syncs an object from Git, and how we know."""

    subject: str  # "VirtualService 'reviews' in namespace 'prod'"
    tool: str  # "Argo CD" or "Flux"
    source: str  # "Application 'shop'", "Kustomization 'flux-system/apps'"
    evidence: str  # the annotation or label that says so
    undoes: str  # when the tool puts the object back
    certain: bool = True  # False: a label other tools set too

    def warning(self, request: SplitRequest) -> str:
        """What the asker should know, and the command that makes the change last."""
        who = f"{self.tool} ({self.source}, {self.evidence})"
        managed = f"is managed by {who}" if self.certain else f"may be managed by {who}"
        hedge = "" if self.certain else "if so, "
        return (
            f"{self.subject} {managed}: {hedge}{self.undoes}. To make the change last, make it "
            f"in Git: `{plan_command(request)}` prints the change for a pull "
            "request."
        )


def refuse_controlled(raw: Mapping[str, Any], namespace: str) -> None:
    """An object a controller owns is put back by that controller within seconds: changing it
    would be reported as done and then silently undone."""
    owner = controller_of(raw)
    if owner is None:
        return
    kind, name = str(raw.get("kind", "object")), _meta(raw, "name") or "?"
    group = str(owner.get("apiVersion", "")).split("/")[0]
    instead = _INSTEAD.get(group, f"change it through its {owner.get('kind')}")
    raise PlanError(
        f"{kind} '{name}' in namespace '{namespace}' is managed by {owner.get('kind')} "
        f"'{owner.get('name')}' ({owner.get('apiVersion')}), which would undo any change "
        f"the bot made; nothing was changed; {instead}"
    )


def controller_of(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference marked `controller: true`, if any (there is at most one)."""
    owners = _meta(raw, "ownerReferences")
    for owner in owners if isinstance(owners, list) else []:
        if isinstance(owner, Mapping) and owner.get("controller") is True:
            return owner
    return None


def gitops_of(raw: Mapping[str, Any], namespace: str) -> GitOps | None:
    """The GitOps tool that syncs `raw` from Git, told by its tracking annotations or labels;
    None when none does, or when the object is marked for the tool to leave alone."""
    labels, annotations = _strings(raw, "labels"), _strings(raw, "annotations")
    subject = (
        f"{raw.get('kind', 'object')} '{_meta(raw, 'name') or '?'}' in namespace '{namespace}'"
    )
    return _flux(subject, labels, annotations) or _argo(subject, labels, annotations)


def plan_command(request: SplitRequest) -> str:
    """`canary-bot plan` for the same change, on the object's YAML as it is in Git."""
    words = ["canary-bot plan <its YAML in Git>", f"--vs {request.vs}"]
    words.append(f"--namespace {request.namespace}")
    if request.weight is not None:
        words.append(f"--weight {request.weight}")
    if request.to is not None:
        words.append(f"--to {request.to}")
    words += [f"--route {route}" for route in request.routes]
    if request.mirror is not None:
        words.append(f"--mirror {request.mirror}")
    return " ".join([*words, "-o patch"])


def _argo(subject: str, labels: dict[str, str], annotations: dict[str, str]) -> GitOps | None:
    undoes = (
        "its next sync puts back what Git says and undoes this change (at once with self-heal, "
        "unless the Application ignores these fields with ignoreDifferences)"
    )
    if tracking := annotations.get(ARGO_TRACKING_ID):
        app = tracking.split(":", 1)[0]  # <app>:<group>/<kind>:<namespace>/<name>
        return GitOps(
            subject, "Argo CD", f"Application '{app}'", f"annotation {ARGO_TRACKING_ID}", undoes
        )
    if instance := labels.get(ARGO_INSTANCE):
        source = f"Application '{instance}'"
        return GitOps(subject, "Argo CD", source, f"label {ARGO_INSTANCE}", undoes)
    if (instance := labels.get(INSTANCE)) and HELM_RELEASE not in annotations:
        evidence = f"label {INSTANCE}, Argo CD's tracking label, which Helm charts set too"
        source = f"Application '{instance}'"
        return GitOps(subject, "Argo CD", source, evidence, undoes, certain=False)
    return None


def _flux(subject: str, labels: dict[str, str], annotations: dict[str, str]) -> GitOps | None:
    hands_off = annotations.get(FLUX_SSA, "").lower() in FLUX_HANDS_OFF or "disabled" in (
        annotations.get(FLUX_RECONCILE, "").lower(),
        labels.get(FLUX_RECONCILE, "").lower(),
    )
    if (name := labels.get(f"{FLUX_KUSTOMIZATION}/name")) and not hands_off:
        where = _qualified(labels.get(f"{FLUX_KUSTOMIZATION}/namespace"), name)
        return GitOps(
            subject,
            "Flux",
            f"Kustomization '{where}'",
            f"label {FLUX_KUSTOMIZATION}/name",
            "its next reconcile (every interval) puts back what Git says and undoes this change",
        )
    if name := labels.get(f"{FLUX_HELM_RELEASE}/name"):
        where = _qualified(labels.get(f"{FLUX_HELM_RELEASE}/namespace"), name)
        return GitOps(
            subject,
            "Flux",
            f"HelmRelease '{where}'",
            f"label {FLUX_HELM_RELEASE}/name",
            "its next upgrade puts back what the chart says and undoes this change (at once "
            "with drift detection on)",
        )
    return None


def _qualified(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _meta(raw: Mapping[str, Any], key: str) -> Any:
    meta = raw.get("metadata")
    return meta.get(key) if isinstance(meta, Mapping) else None


def _strings(raw: Mapping[str, Any], key: str) -> dict[str, str]:
    found = _meta(raw, key)
    if not isinstance(found, Mapping):
        return {}
    return {str(k): str(v) for k, v in found.items() if v is not None}
