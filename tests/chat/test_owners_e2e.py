"""Objects someone else writes, end to end: the bot built as `serve` builds it, the sandbox API
server holding the weather app, real Redis. A controller-owned VirtualService and, under
`gitops: refuse`, one Argo CD syncs are refused with nothing written; under the default
`gitops: warn` the change goes live and the asker is told the sync will undo it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.apiserver import SandboxApiServer
from tests.support.dispatch import REQUESTER, Bot, make_bot, seeded

TRACKING = "argocd.argoproj.io/tracking-id"
POLICY = f"""
rules:
  - name: synced
    namespace: default
    gitops: {{mode}}
    allow:
      all: [{REQUESTER}]
"""


def argo_cd_syncs(vs: dict[str, Any]) -> None:
    vs["metadata"].setdefault("annotations", {})[TRACKING] = (
        "weather:networking.istio.io/VirtualService:default/weather"
    )


def flagger_owns(vs: dict[str, Any]) -> None:
    vs["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "name": "weather",
            "uid": "0b9c1c1e-0000-4000-8000-000000000001",
            "controller": True,
        }
    ]


def bot_with(
    sandbox: SandboxApiServer, api_client: Any, redis_url: str, tmp_path: Path, mode: str
) -> Iterator[Bot]:
    seeded(sandbox)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("{mode}", mode), encoding="utf-8")
    with make_bot(sandbox, api_client, redis_url, CANARY_POLICY_FILE=str(policy)) as made:
        yield made


@pytest.fixture
def refusing(
    sandbox: SandboxApiServer, api_client: Any, redis_url: str, tmp_path: Path
) -> Iterator[Bot]:
    yield from bot_with(sandbox, api_client, redis_url, tmp_path, "refuse")


@pytest.fixture
def warning(
    sandbox: SandboxApiServer, api_client: Any, redis_url: str, tmp_path: Path
) -> Iterator[Bot]:
    yield from bot_with(sandbox, api_client, redis_url, tmp_path, "warn")


def live(bot: Bot) -> dict[str, Any]:
    vs = bot.cluster.get_object("default", "virtualservices", "weather")
    assert vs is not None
    return vs


def prepare(bot: Bot, mutation: Any) -> dict[str, Any]:
    bot.cluster.mutate("default", "virtualservices", "weather", mutation)
    bot.cluster.clear_log()
    return live(bot)


def test_a_vs_a_controller_owns_is_refused_and_left_as_it_was(warning: Bot) -> None:
    before = prepare(warning, flagger_owns)

    [reply] = warning.say("weather 20%")

    assert reply.text.startswith(
        ":warning: VirtualService 'weather' in namespace 'default' is managed by Canary "
        "'weather' (flagger.app/v1beta1)"
    )
    assert reply.text.endswith("drive the canary with Flagger (its Canary resource)")
    assert warning.cluster.writes() == []
    assert live(warning) == before
    assert warning.trail() == []


def test_gitops_refuse_changes_nothing_and_points_at_git(refusing: Bot) -> None:
    before = prepare(refusing, argo_cd_syncs)

    [reply] = refusing.say("weather 20% to v2")

    assert reply.text.startswith(
        ":no_entry: VirtualService 'weather' in namespace 'default' is managed by Argo CD "
        "(Application 'weather', annotation argocd.argoproj.io/tracking-id)"
    )
    assert (
        "`canary-bot plan <its YAML in Git> --vs weather --namespace default --weight 20 --to v2 "
        "-o patch`" in reply.text
    )
    assert reply.text.endswith("policy.yaml:3); nothing was changed.")
    assert refusing.cluster.writes() == []
    assert live(refusing) == before
    assert refusing.trail() == []
    assert refusing.parts.store.active_for("default", "weather") is None


def test_gitops_refuse_still_lets_a_rollback_through(refusing: Bot) -> None:
    # A rollout begun before Argo CD took the object over can still be rolled back.
    assert refusing.say("weather 20%") == []
    prepare(refusing, argo_cd_syncs)
    assert refusing.say("weather rollback") == []
    assert refusing.weights()[1] == 0


def test_gitops_warn_goes_live_and_tells_the_asker_the_sync_will_undo_it(warning: Bot) -> None:
    prepare(warning, argo_cd_syncs)

    [reply] = warning.say("weather 20%")

    assert warning.weights() == [80, 20]
    assert reply.ephemeral
    assert reply.text.startswith(
        ":warning: VirtualService 'weather' in namespace 'default' is managed by Argo CD "
        "(Application 'weather', annotation argocd.argoproj.io/tracking-id): its next sync "
        "puts back what Git says"
    )
    assert "prints the change for a pull request." in reply.text


def test_plan_shows_the_warning_under_the_diff(warning: Bot) -> None:
    prepare(warning, argo_cd_syncs)

    [reply] = warning.say("weather plan 30%")

    assert "```\n:warning: VirtualService 'weather'" in reply.text
    assert warning.cluster.writes() == []
