"""The bot does not start on a bad policy file, and says what is wrong and where."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CANARY_BOT = str(Path(sys.executable).with_name("canary-bot"))
BAD = """rules:
  - namespace: "prod*"
    allow:
      start: ["@alice"]
    colour: red
"""


def test_serve_refuses_to_start_on_a_bad_policy(tmp_path: Path, redis_url: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(BAD)
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "CANARY_POLICY_FILE": str(policy),
        "KUBECONFIG": str(tmp_path / "none"),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "s",
        "CANARY_HTTP_PORT": "0",
    }
    done = subprocess.run(
        [CANARY_BOT, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert f"{policy}:4: rules[0].allow.start[0]: '@alice' looks like a name" in done.stderr
    assert f"{policy}:5: rules[0].colour: unknown key 'colour'" in done.stderr


def test_policy_check_names_the_lines(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(BAD)
    done = subprocess.run(
        [CANARY_BOT, "policy", "check", str(policy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert ":4: " in done.stderr and ":5: " in done.stderr
    ok = subprocess.run(
        [CANARY_BOT, "policy", "check", "policies/production.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0 and "OK" in ok.stdout
