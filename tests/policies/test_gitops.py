"""`gitops: refuse`: a change a GitOps sync would undo is refused where the policy says so."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policies import (
    Action,
    Actor,
    Allow,
    Change,
    Decision,
    Deny,
    PolicyError,
    Target,
    decide,
    load_policy,
)

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
SYNCED = (
    "VirtualService 'reviews' in namespace 'prod' is managed by Argo CD (Application 'shop', "
    "annotation argocd.argoproj.io/tracking-id): its next sync puts back what Git says, "
    "undoing this change. To make it last, change it in Git: `canary-bot plan <its YAML in "
    "Git> --vs reviews --namespace prod --weight 10 -o patch` prints the change for a pull "
    "request."
)
POLICY = """\
rules:
  - name: production
    namespace: prod
    gitops: refuse
    allow:
      all: [U0DEV00001]
  - name: staging
    namespace: staging
    allow:
      all: [U0DEV00001]
"""
DEV = Actor("U0DEV00001")


def ask(namespace: str, action: Action, gitops: str = SYNCED) -> Decision:
    change = Change(action, weight_before=0, weight_after=10, gitops=gitops)
    return decide(load_policy(POLICY), DEV, change, Target(namespace, "reviews"), NOW)


def test_refuse_turns_the_warning_into_a_refusal_that_points_at_git() -> None:
    decision = ask("prod", Action.SET_WEIGHT)
    assert isinstance(decision, Deny)
    assert decision.reason == (
        f"{SYNCED} In prod/*, changes that a GitOps sync would undo are refused "
        "(rule 'production' at policy.yaml:2); nothing was changed."
    )


@pytest.mark.parametrize("action", [Action.START, Action.MIRROR, Action.PROMOTE])
def test_refuse_holds_for_every_change_that_is_not_a_retreat(action: Action) -> None:
    assert isinstance(ask("prod", action), Deny)


@pytest.mark.parametrize("action", [Action.ROLLBACK, Action.PAUSE, Action.ABORT])
def test_a_retreat_is_never_refused_for_gitops(action: Action) -> None:
    assert isinstance(ask("prod", action), Allow)


def test_warn_is_the_default_and_lets_the_change_go_ahead() -> None:
    assert isinstance(ask("staging", Action.SET_WEIGHT), Allow)


def test_an_object_no_gitops_tool_syncs_is_not_refused() -> None:
    assert isinstance(ask("prod", Action.SET_WEIGHT, gitops=""), Allow)


def test_an_unknown_gitops_setting_is_a_policy_problem() -> None:
    with pytest.raises(PolicyError) as bad:
        load_policy(POLICY.replace("gitops: refuse", "gitops: block"))
    assert "gitops" in str(bad.value) and "'warn' or 'refuse'" in str(bad.value)
