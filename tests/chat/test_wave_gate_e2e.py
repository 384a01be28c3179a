"""A gated step on a wave cluster's rollout, over the wire (signed HTTP into the running bot,
two sandbox API servers, real Redis, the fake Slack): the cluster's rollout waits at the gate,
its approval card names the cluster, and the approver's vote moves that cluster's rollout on."""

from __future__ import annotations

from pathlib import Path

from bot.rollout.model import Phase
from sandbox.apiserver import SandboxApiServer
from tests.support.harness import (
    Bot,
    approval_card,
    flat,
    request_id,
    vote,
    wait_until,
)
from tests.support.waves import running_wave_bot, weights

POLICY = """
rules:
  - name: gated
    namespace: "*"
    allow:
      start: [U0REQ00001]
      wave: [U0REQ00001]
      rollback: [U0REQ00001]
      approve: [U0SRE00002]
    rollout:
      steps: [20, 50, 100]
      every: 1s
      gates: [50]
"""


def gated(bot: Bot) -> bool:
    cluster = bot.server.parts.clusters["canary-eu"]
    active = cluster.store.active_for("default", "weather")
    return active is not None and active.phase is Phase.PENDING_APPROVAL


def test_a_gated_step_on_a_wave_cluster_moves_on_when_approved(
    tmp_path: Path, redis_url: str, clusters: dict[str, SandboxApiServer]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    with running_wave_bot(tmp_path, redis_url, clusters, CANARY_POLICY_FILE=str(policy)) as bot:
        text = "weather start clusters canary-eu,prod-eu"
        assert bot.post(bot.command(text, user="U0REQ00001")) == 200
        wait_until(lambda: weights(clusters["canary-eu"]) == [80, 20], what="canary-eu at 20%")
        wait_until(lambda: gated(bot), timeout=10, what="canary-eu waiting at its gate")
        _, card = approval_card(bot)
        shown = flat(card["blocks"])
        assert "20% → 50%" in shown and "cluster canary-eu" in shown
        vote(bot, request_id(card), "approve", "U0SRE00002")
        wait_until(lambda: weights(clusters["canary-eu"]) == [50, 50], what="canary-eu at 50%")
        assert weights(clusters["prod-eu"]) == [100, 0]
        assert [r for r in bot.cluster.requests if r.is_write] == []
