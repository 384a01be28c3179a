"""The App Home tab lists a wave cluster's rollout too, over the wire (two sandbox API servers
as the wave's clusters, real Redis, the fake Slack): its card names the cluster, its buttons
carry it, and a Rollback pressed there rolls that cluster back."""

from __future__ import annotations

from pathlib import Path

from sandbox.apiserver import SandboxApiServer
from tests.support.harness import flat, responses_to, wait_until
from tests.support.home import buttons, open_home, press_in_home, published
from tests.support.waves import running_wave_bot, weights

START = "weather start clusters canary-eu,prod-eu steps 10,100 every 1h"
ONCALL = "U0ONCALL01"


def test_a_wave_clusters_rollout_is_in_the_home_tab_and_rolled_back_from_there(
    tmp_path: Path, redis_url: str, clusters: dict[str, SandboxApiServer]
) -> None:
    with running_wave_bot(tmp_path, redis_url, clusters) as bot:
        assert bot.post(bot.command(START)) == 200
        wait_until(lambda: weights(clusters["canary-eu"]) == [90, 10], what="canary-eu at 10%")
        wait_until(lambda: responses_to(bot, "cmd"), what="the reply to the start")
        assert open_home(bot, ONCALL) == 200
        view = published(bot, ONCALL).body["view"]
        assert "*Cluster:* canary-eu" in flat(view["blocks"])
        assert "rollback" in buttons(view)
        [value] = [
            e["value"]
            for b in view["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == "canary:rollback"
        ]
        assert value.startswith("canary-eu/")
        assert press_in_home(bot, ONCALL, "rollback", value) == 200
        wait_until(lambda: weights(clusters["canary-eu"]) == [100, 0], what="canary-eu back")
        assert weights(clusters["prod-eu"]) == [100, 0]
