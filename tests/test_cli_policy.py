"""`canary-bot rollout ...` goes through the same policy as chat: nobody gets around it by
using the command line."""

from __future__ import annotations

from pathlib import Path

from sandbox.apiserver import SandboxApiServer
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed
from tests.support.processes import cli, serve_env

POLICY = """\
rules:
  - name: weather
    namespace: "*"
    vs: "*"
    allow:
      start: [U0ALICE00]
      rollback: [U0ALICE00, U0ONCALL0]
"""


def test_the_command_line_is_held_to_the_policy_and_a_refusal_changes_nothing(
    tmp_path: Path, sandbox: SandboxApiServer, redis_url: str
) -> None:
    seed(sandbox, load_yaml_documents(p for p in bundled_seed_paths() if p.name == "weather.yaml"))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    env = serve_env(
        tmp_path,
        kube_url=sandbox.url,
        redis_url=redis_url,
        user="cli",
        CANARY_POLICY_FILE=str(policy),
    )
    sandbox.clear_log()
    refused = cli(env, "rollout", "start", "weather", "--steps", "20,100", "--as", "U0MALLORY")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: ") and "U0MALLORY" in refused.stderr
    assert [r for r in sandbox.requests if r.is_write] == []
    allowed = cli(env, "rollout", "start", "weather", "--steps", "20,100", "--as", "U0ALICE00")
    assert allowed.returncode == 0, allowed.stderr
    assert "progressing" in allowed.stdout and "at 20%" in allowed.stdout
    back = cli(env, "rollout", "rollback", "weather", "--as", "U0ONCALL0")
    assert back.returncode == 0 and "rolled-back" in back.stdout
