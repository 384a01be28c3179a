"""`canary-bot rollout start --analysis 10s`: the command line sets how often a held step is
looked at, as `/canary … start analysis 10s` does; a bad value is one line and changes nothing."""

from __future__ import annotations

from pathlib import Path

from bot.store.redis_store import RolloutStore, connect
from sandbox.apiserver import SandboxApiServer
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed
from tests.support.processes import cli, serve_env


def test_the_command_line_starts_a_rollout_with_its_own_analysis_interval(
    tmp_path: Path, sandbox: SandboxApiServer, redis_url: str
) -> None:
    seed(sandbox, load_yaml_documents(p for p in bundled_seed_paths() if p.name == "weather.yaml"))
    env = serve_env(tmp_path, kube_url=sandbox.url, redis_url=redis_url, user="cli")
    sandbox.clear_log()
    start = ("rollout", "start", "weather", "--steps", "20,100", "--every", "5m")
    for bad, said in (("soon", "is not a duration"), ("5m", "is not shorter than every")):
        refused = cli(env, *start, "--analysis", bad)
        assert refused.returncode == 2, refused.stdout
        assert refused.stderr.startswith("error: ") and said in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    assert [r for r in sandbox.requests if r.is_write] == []
    allowed = cli(env, *start, "--analysis", "15s")
    assert allowed.returncode == 0, allowed.stderr
    active = RolloutStore(connect(redis_url)).active_for("default", "weather")
    assert active is not None and active.steps.analysis_s == 15
