"""`canary-bot shell`: the chat pipeline from piped stdin."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import write_kubeconfig
from sandbox.seeding import load_yaml_documents, seed
from tests.support.harness import seed_file

CANARY_BOT = str(Path(sys.executable).with_name("canary-bot"))


def shell(stdin: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CANARY_BOT, "shell", *args],
        input=stdin,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_whole_staged_rollout_from_piped_stdin(tmp_path: Path, redis_url: str) -> None:
    with SandboxApiServer() as cluster:
        seed(cluster, load_yaml_documents([seed_file("weather")]))
        env = {
            "REDIS_URL": redis_url,
            "CANARY_LEASE_TTL": "1",
            "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", cluster.url)),
        }
        script = "\n".join(
            [
                "/canary weather status",
                "/canary weather start steps 20,60,100 every 1s",
                ":wait weather 60",
                "/canary weather history",
                "/canary weather 150%",
            ]
        )
        done = shell(script, env, "--user", "U1", "--channel", "C1")
        vs = cluster.get_object("default", "virtualservices", "weather")
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "no rollout going on" in out
    for weight in ("20%", "60%", "100%"):
        assert f"{weight} to v2" in out
    assert "promoted" in out
    assert out.count("step 1 of 3") >= 1
    # times in UTC, from the date tokens Slack shows in each reader's zone
    history = re.findall(r"^[0-9-]+ [0-9:]+ UTC (\w+ \d+% → \d+%)", out, re.MULTILINE)
    assert history == [
        "start 10% → 20%",
        "step 20% → 60%",
        "step 60% → 100%",
        "promote 100% → 100%",
    ]
    assert "150% is over 100" in out
    assert vs is not None and [
        d["destination"]["subset"] for d in vs["spec"]["http"][0]["route"]
    ] == ["v2"]


def test_the_sandbox_shell_needs_no_cluster_and_no_redis() -> None:
    done = shell(
        "weather status\nreviews 10%\nreviews 10% to v3\n:click rollback reviews\n",
        {"REDIS_URL": "redis://127.0.0.1:1/0", "KUBECONFIG": "/nonexistent"},
        "--sandbox",
    )
    assert done.returncode == 0, done.stderr
    assert "weather: no rollout going on" in done.stdout
    assert "say which is the canary" in done.stdout  # v2 or v3?
    assert "10% to v3" in done.stdout
    assert "back on v1" in done.stdout


POLICY = """
rules:
  - namespace: "*"
    allow:
      set-weight: [U0REQ00001]
      rollback: [U0REQ00001]
      approve: [U0SRE00002, U0SRE00003]
    approvals:
      - count: 2
        from: [U0SRE00002, U0SRE00003]
        above_weight: 25
"""


def test_approvals_in_the_shell(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    env = {**os.environ, "CANARY_POLICY_FILE": str(policy)}
    proc = subprocess.Popen(
        [CANARY_BOT, "shell", "--sandbox", "--user", "U0REQ00001"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def say(line: str, until: str) -> str:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        seen = ""
        while until not in seen:
            out = proc.stdout.readline()
            assert out, f"the shell ended before {until!r}; it said {seen!r}"
            seen += out
        return seen

    try:
        held = say("weather 50%", "approve with")
        assert "need 2 approvals" in held and "/canary weather 50%" in held
        request = held.split(":click approve ")[1].split("`")[0]
        assert "own approval does not count" in say(f":click approve {request}", "open")
        say(":as U0SRE00002", "you are")
        assert "approved by U0SRE00002" in say(f":click approve {request}", "open")
        say(":as U0SRE00003", "you are")
        done = say(f":click approve {request}", "approved")
        say("weather status", "50%")
        assert "approved by U0SRE00002, U0SRE00003" in done
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
