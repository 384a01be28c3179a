"""Who else writes the objects: a controller that owns them is refused (tests/mesh/
test_touched_routes.py), a GitOps tool that syncs them from Git is named with what to do."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.mesh.errors import PlanError
from bot.mesh.owners import gitops_of, plan_command
from bot.mesh.planner import plan_split
from bot.mesh.request import SplitRequest
from bot.service.changes import gitops_warnings

VS: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "reviews", "namespace": "prod"},
    "spec": {
        "hosts": ["reviews"],
        "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}],
    },
}
DR: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "reviews", "namespace": "prod"},
    "spec": {
        "host": "reviews",
        "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}},
        ],
    },
}
TEN = SplitRequest.build(vs="reviews", namespace="prod", weight=10, to="v2")


def marked(
    obj: dict[str, Any], labels: dict[str, str] | None = None, **annotations: str
) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["labels"] = dict(labels or {})
    out["metadata"]["annotations"] = dict(annotations)
    return out


ARGO_ID = {"argocd.argoproj.io/tracking-id": "shop:networking.istio.io/VirtualService:prod/reviews"}


@pytest.mark.parametrize(
    ("labels", "annotations", "tool", "source", "certain"),
    [
        ({}, ARGO_ID, "Argo CD", "Application 'shop'", True),
        ({"argocd.argoproj.io/instance": "shop"}, {}, "Argo CD", "Application 'shop'", True),
        ({"app.kubernetes.io/instance": "shop"}, {}, "Argo CD", "Application 'shop'", False),
        (
            {
                "kustomize.toolkit.fluxcd.io/name": "apps",
                "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
            },
            {},
            "Flux",
            "Kustomization 'flux-system/apps'",
            True,
        ),
        (
            {"helm.toolkit.fluxcd.io/name": "reviews", "helm.toolkit.fluxcd.io/namespace": "prod"},
            {"meta.helm.sh/release-name": "reviews"},
            "Flux",
            "HelmRelease 'prod/reviews'",
            True,
        ),
    ],
)
def test_the_gitops_tool_is_told_by_its_tracking_marks(
    labels: dict[str, str], annotations: dict[str, str], tool: str, source: str, certain: bool
) -> None:
    found = gitops_of(marked(VS, labels, **annotations), "prod")
    assert found is not None
    assert (found.tool, found.source, found.certain) == (tool, source, certain)
    assert found.subject == "VirtualService 'reviews' in namespace 'prod'"


@pytest.mark.parametrize(
    ("labels", "annotations"),
    [
        ({}, {}),
        # `helm install`, not Argo CD, set the instance label: Helm does not put objects back.
        ({"app.kubernetes.io/instance": "reviews"}, {"meta.helm.sh/release-name": "reviews"}),
        # Flux told to leave the object alone once created, or not to reconcile it at all.
        (
            {"kustomize.toolkit.fluxcd.io/name": "apps"},
            {"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent"},
        ),
        (
            {"kustomize.toolkit.fluxcd.io/name": "apps"},
            {"kustomize.toolkit.fluxcd.io/ssa": "Ignore"},
        ),
        (
            {"kustomize.toolkit.fluxcd.io/name": "apps"},
            {"kustomize.toolkit.fluxcd.io/reconcile": "disabled"},
        ),
    ],
)
def test_no_gitops_tool_is_named_where_none_would_put_the_object_back(
    labels: dict[str, str], annotations: dict[str, str]
) -> None:
    assert gitops_of(marked(VS, labels, **annotations), "prod") is None


def test_a_plan_on_an_argo_cd_object_names_the_application_and_the_command_for_git() -> None:
    plan = plan_split(marked(VS, **ARGO_ID), DR, TEN, now=None)
    assert plan.touched and plan.vs.ops  # the change is planned as usual
    [warning] = gitops_warnings(plan)
    assert warning.startswith(
        "VirtualService 'reviews' in namespace 'prod' is managed by Argo CD (Application "
        "'shop', annotation argocd.argoproj.io/tracking-id): its next sync puts back what Git "
        "says"
    )
    assert (
        "`canary-bot plan <its YAML in Git> --vs reviews --namespace prod --weight 10 --to v2 "
        "-o patch` prints the change for a pull request." in warning
    )


def test_a_destination_rule_flux_syncs_is_named_when_the_plan_changes_it() -> None:
    dr = marked(DR, {"kustomize.toolkit.fluxcd.io/name": "mesh"})
    dr["spec"]["subsets"] = dr["spec"]["subsets"][:1]  # the bot adds v2
    plan = plan_split(copy.deepcopy(VS), dr, TEN, now=None)
    assert [g.subject for g in plan.gitops] == ["DestinationRule 'reviews' in namespace 'prod'"]


def test_an_object_that_does_not_change_is_not_warned_about() -> None:
    dr = marked(DR, {"kustomize.toolkit.fluxcd.io/name": "mesh"})  # has v2 already
    plan = plan_split(copy.deepcopy(VS), dr, TEN, now=None)
    assert plan.dr is None and plan.gitops == ()


def test_only_a_certain_tool_counts_for_a_policy_refusal() -> None:
    plan = plan_split(marked(VS, {"app.kubernetes.io/instance": "shop"}), DR, TEN, now=None)
    [maybe] = gitops_warnings(plan)
    assert "may be managed by Argo CD" in maybe and "if so, its next sync" in maybe
    assert gitops_warnings(plan, certain=True) == ()


def test_the_command_for_git_carries_everything_asked() -> None:
    request = SplitRequest.build(
        vs="reviews", namespace="prod", weight=50, to="v3", routes=("primary",), mirror=5
    )
    assert plan_command(request) == (
        "canary-bot plan <its YAML in Git> --vs reviews --namespace prod --weight 50 --to v3 "
        "--route primary --mirror 5 -o patch"
    )


@pytest.mark.parametrize("obj", [VS, DR])
def test_a_controller_owner_refuses_either_object_naming_it(obj: dict[str, Any]) -> None:
    owned = copy.deepcopy(obj)
    owned["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "name": "reviews",
            "uid": "u1",
            "controller": True,
        }
    ]
    vs, dr = (owned, DR) if obj is VS else (VS, owned)
    with pytest.raises(PlanError) as refused:
        plan_split(copy.deepcopy(vs), copy.deepcopy(dr), TEN, now=None)
    assert str(refused.value) == (
        f"{obj['kind']} 'reviews' in namespace 'prod' is managed by Canary 'reviews' "
        "(flagger.app/v1beta1), which would undo any change the bot made; nothing was changed; "
        "drive the canary with Flagger (its Canary resource)"
    )
