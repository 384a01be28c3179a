"""`canary-bot rollout start --clusters …` starts a multi-cluster wave from the command line, as
`/canary … start clusters …` does, and `rollout rollback --cluster NAME` acts on that cluster's
rollout; a cluster that is not configured is one line and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from bot.store.redis_store import connect
from bot.store.waves import WaveStore
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import write_kubeconfig
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed
from tests.support.processes import cli, serve_env
from tests.support.waves import wave_clusters, weights


def test_the_command_line_starts_a_wave_and_rolls_a_cluster_back(
    tmp_path: Path, sandbox: SandboxApiServer, redis_url: str
) -> None:
    seed(sandbox, load_yaml_documents(p for p in bundled_seed_paths() if p.name == "weather.yaml"))
    with wave_clusters() as clusters:
        configs = {
            name: {"kubeconfig": str(write_kubeconfig(tmp_path / f"{name}.yaml", server.url))}
            for name, server in clusters.items()
        }
        env = serve_env(
            tmp_path,
            kube_url=sandbox.url,
            redis_url=redis_url,
            user="cli",
            CANARY_CLUSTERS=json.dumps(configs),
        )
        sandbox.clear_log()
        start = ("rollout", "start", "weather", "--steps", "10,100", "--every", "1h")
        for bad, said in (("mars,prod-eu", "no cluster named mars"), ("Prod EU", "cluster name")):
            refused = cli(env, *start, "--clusters", bad)
            assert refused.returncode == 2, refused.stdout
            assert refused.stderr.startswith("error: ") and said in refused.stderr
        assert [[r for r in s.requests if r.is_write] for s in clusters.values()] == [[], []]

        started = cli(env, *start, "--clusters", "canary-eu,prod-eu")
        assert started.returncode == 0, started.stderr
        assert "wave over canary-eu, then prod-eu" in started.stdout
        assert weights(clusters["canary-eu"]) == [90, 10]
        assert weights(clusters["prod-eu"]) == [100, 0]
        [wave] = WaveStore(connect(redis_url)).running()
        assert (wave.clusters, wave.cluster) == (("canary-eu", "prod-eu"), "canary-eu")

        back = cli(env, "rollout", "rollback", "weather", "--cluster", "canary-eu")
        assert back.returncode == 0, back.stderr
        assert "[canary-eu]" in back.stdout
        assert weights(clusters["canary-eu"]) == [100, 0]
        assert [r for r in sandbox.requests if r.is_write] == []  # the bot's own cluster
