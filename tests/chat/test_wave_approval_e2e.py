"""A multi-cluster wave the policy holds for an approval, over the wire (signed HTTP into the
running bot, two sandbox API servers, real Redis, the fake Slack): no cluster is touched until
an approver approves; the card says what the wave will do; then it starts on its first cluster."""

from __future__ import annotations

from pathlib import Path

from bot.store.waves import WaveStore
from sandbox.apiserver import SandboxApiServer
from tests.support.harness import (
    approval_card,
    flat,
    request_id,
    vote,
    wait_until,
)
from tests.support.waves import running_wave_bot, weights

POLICY = """
rules:
  - name: production
    namespace: "*"
    allow:
      start: [U0REQ00001]
      wave: [U0REQ00001]
      approve: [U0SRE00002]
    approvals:
      - count: 1
        from: [U0SRE00002]
        actions: [start]
"""


def test_a_wave_held_for_approval_starts_only_once_approved(
    tmp_path: Path, redis_url: str, clusters: dict[str, SandboxApiServer]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    with running_wave_bot(tmp_path, redis_url, clusters, CANARY_POLICY_FILE=str(policy)) as bot:
        text = "weather start clusters canary-eu,prod-eu steps 10,100 every 1h"
        assert bot.post(bot.command(text, user="U0REQ00001")) == 200
        _, card = approval_card(bot)
        shown = flat(card["blocks"])
        assert "+wave: canary-eu, then prod-eu" in shown and "+steps: 10%, 100%" in shown
        writes = [[r for r in server.requests if r.is_write] for server in clusters.values()]
        assert writes == [[], []]
        assert WaveStore(bot.server.parts.store.redis).running() == []

        vote(bot, request_id(card), "approve", "U0SRE00002")
        wait_until(lambda: weights(clusters["canary-eu"]) == [90, 10], what="canary-eu at 10%")
        assert weights(clusters["prod-eu"]) == [100, 0]
        [wave] = WaveStore(bot.server.parts.store.redis).running()
        assert (wave.cluster, wave.started_by) == ("canary-eu", "U0REQ00001")
