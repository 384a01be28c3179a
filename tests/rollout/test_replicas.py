"""Two `serve` replicas as real processes, over the real wire: one frozen (SIGSTOP) right after
it recorded a write, the lease moving to the other, a human acting, then the frozen one let go.
The sandbox API server's log names each caller by its kubeconfig's token."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

import redis

from sandbox.apiserver import SandboxApiServer
from sandbox.seeding import bundled_seed_paths, load_yaml_documents, seed
from tests.support.fake_slack import FakeSlack
from tests.support.harness import CHANNEL, SECRET, TOKEN, signed_post, wait_until
from tests.support.processes import cli, serve, serve_env

WEATHER = [p for p in bundled_seed_paths() if p.name == "weather.yaml"]


def weights(sandbox: SandboxApiServer) -> list[int]:
    vs = sandbox.get_object("default", "virtualservices", "weather")
    assert vs is not None
    return [d.get("weight", 100) for d in vs["spec"]["http"][0]["route"]]


def test_a_replica_frozen_after_recording_a_step_cannot_write_it_after_a_takeover(
    tmp_path: Path, sandbox: SandboxApiServer, redis_url: str
) -> None:
    seed(sandbox, load_yaml_documents(WEATHER))
    settings = {"CANARY_LEASE_TTL": "1", "CANARY_EFFECT_DELAY": "1.5"}
    env_a = serve_env(tmp_path, kube_url=sandbox.url, redis_url=redis_url, user="a", **settings)
    env_b = serve_env(tmp_path, kube_url=sandbox.url, redis_url=redis_url, user="b", **settings)
    human = serve_env(tmp_path, kube_url=sandbox.url, redis_url=redis_url, user="human")
    with serve(env_a, tmp_path / "a.log") as a:
        a.wait_for_line("leading now")
        started = cli(human, "rollout", "start", "weather", "--steps", "10,20,100", "--every", "1s")
        assert started.returncode == 0, started.stderr
        recorded = a.wait_for_line(r"write \w+ recorded \(20%", timeout=30)
        a.pause()  # frozen with the 20% recorded and not yet sent
        frozen_write = re.search(r"write (\w+) recorded", recorded)
        assert frozen_write is not None
        with serve(env_b, tmp_path / "b.log") as b:
            b.wait_for_line("leading now", timeout=30)  # the lease moved; B settled A's write
            rolled_back = cli(human, "rollout", "rollback", "weather", "--as", "UONCALL")
            assert rolled_back.returncode == 0, rolled_back.stderr
            assert weights(sandbox) == [100, 0]
            mark = len(sandbox.requests)
            a.resume()
            late = sandbox.wait_for_request(
                lambda r: r.user == "a" and r.method == "PATCH" and r.status != 0, timeout=20
            )
            assert not late.succeeded  # its resourceVersion test failed: nothing changed
            assert frozen_write.group(1) in late.body.decode()
            a.wait_for_line("no longer lead|fenced|Fenced", timeout=20, since=0)
            assert b.terminate() == 0
        assert a.terminate() == 0
    assert weights(sandbox) == [100, 0]
    landed_after = [
        r for r in sandbox.requests[mark:] if r.user == "a" and r.is_write and r.succeeded
    ]
    assert landed_after == []
    status = cli(human, "rollout", "status", "weather")
    assert "no rollout going on" in status.stdout


def test_an_operators_chat_command_is_not_undone_by_a_replica_frozen_before_its_write(
    tmp_path: Path, sandbox: SandboxApiServer, redis_url: str
) -> None:
    """The first tester's finding, over the wire: on-call's `/canary weather rollback` reaches
    the other replica over signed HTTP while the leader sits frozen (SIGSTOP) with its step
    recorded; let go, the frozen replica's PATCH is refused by the API server."""
    seed(sandbox, load_yaml_documents(WEATHER))
    with FakeSlack(token=TOKEN) as slack:
        chat = {
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.url + "/api/",
            "CANARY_LEASE_TTL": "1",
        }
        env_a = serve_env(
            tmp_path,
            kube_url=sandbox.url,
            redis_url=redis_url,
            user="a",
            CANARY_EFFECT_DELAY="1.5",  # time to freeze it between recording and writing
            **chat,
        )
        env_b = serve_env(tmp_path, kube_url=sandbox.url, redis_url=redis_url, user="b", **chat)
        human = serve_env(tmp_path, kube_url=sandbox.url, redis_url=redis_url, user="human")
        with serve(env_a, tmp_path / "a.log") as a:
            a.wait_for_line("leading now")
            started = cli(
                human, "rollout", "start", "weather", "--steps", "10,20,100", "--every", "1s"
            )
            assert started.returncode == 0, started.stderr
            a.wait_for_line(r"write \w+ recorded \(20%", timeout=30)
            a.pause()  # frozen with the 20% recorded and not yet sent
            with serve(env_b, tmp_path / "b.log") as b:
                listening = b.wait_for_line(r"listening on http://\S+", timeout=30)
                b.wait_for_line("leading now", timeout=30)
                url = re.search(r"listening on (http://\S+)", listening)
                assert url is not None
                form = {
                    "team_id": "T0TEST",
                    "channel_id": CHANNEL,
                    "user_id": "UONCALL",
                    "command": "/canary",
                    "text": "weather rollback",
                    "response_url": slack.response_url("cmd"),
                    "trigger_id": "t-1",
                }
                status, _ = signed_post(url.group(1) + "/slack/events", urlencode(form))
                assert status == 200
                wait_until(lambda: weights(sandbox) == [100, 0], timeout=20)
                mark = len(sandbox.requests)
                a.resume()
                late = sandbox.wait_for_request(
                    lambda r: r.user == "a" and r.method == "PATCH" and r.status != 0, timeout=20
                )
                assert not late.succeeded  # its resourceVersion test failed: nothing changed
                a.wait_for_line("no longer lead|fenced|Fenced", timeout=20, since=0)
                assert b.terminate() == 0
            assert a.terminate() == 0
    assert weights(sandbox) == [100, 0]
    landed_after = [
        r for r in sandbox.requests[mark:] if r.user == "a" and r.is_write and r.succeeded
    ]
    assert landed_after == []


def test_a_replica_takes_back_a_rollout_whose_record_redis_lost(
    tmp_path: Path, sandbox: SandboxApiServer, redis_url: str
) -> None:
    seed(sandbox, load_yaml_documents(WEATHER))
    env = serve_env(tmp_path, kube_url=sandbox.url, redis_url=redis_url, user="a")
    human = serve_env(tmp_path, kube_url=sandbox.url, redis_url=redis_url, user="human")
    with serve(env, tmp_path / "a.log") as a:
        a.wait_for_line("leading now")
        started = cli(human, "rollout", "start", "weather", "--steps", "30,100", "--every", "1h")
        assert started.returncode == 0, started.stderr
        assert weights(sandbox) == [70, 30]
        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()  # Redis restarted with nothing
        a.wait_for_line("lost its record", timeout=40)  # the next full resync notices
        status = cli(human, "rollout", "status", "weather")
        assert "paused" in status.stdout and "30%" in status.stdout, status.stdout
        back = cli(human, "rollout", "rollback", "weather", "--as", "UONCALL")
        assert back.returncode == 0, back.stderr
        assert weights(sandbox) == [100, 0]
        assert a.terminate() == 0


def test_a_rollout_lost_while_redis_kept_the_bots_mark_is_found_by_the_periodic_look(
    tmp_path: Path, sandbox: SandboxApiServer, redis_url: str
) -> None:
    """Keys evicted (or a failover to a stale copy) that left the bot's mark in place: the
    check on a missing mark cannot see it; the periodic comparison of the VirtualServices
    with the records does, and the canary comes back as a paused rollout with a Rollback."""
    seed(sandbox, load_yaml_documents(WEATHER))
    env = serve_env(
        tmp_path, kube_url=sandbox.url, redis_url=redis_url, user="a", CANARY_LOST_CHECK="1"
    )
    human = serve_env(tmp_path, kube_url=sandbox.url, redis_url=redis_url, user="human")
    with serve(env, tmp_path / "a.log") as a:
        a.wait_for_line("leading now")
        started = cli(human, "rollout", "start", "weather", "--steps", "30,100", "--every", "1h")
        assert started.returncode == 0, started.stderr
        with redis.Redis.from_url(redis_url) as client:
            assert client.exists("canary:epoch")
            lost = [k for k in client.scan_iter("canary:*") if k != b"canary:epoch"]
            client.delete(*lost)  # everything but the mark
            assert client.exists("canary:epoch")
        a.wait_for_line("lost its record", timeout=40)
        status = cli(human, "rollout", "status", "weather")
        assert "paused" in status.stdout and "30%" in status.stdout, status.stdout
        back = cli(human, "rollout", "rollback", "weather", "--as", "UONCALL")
        assert back.returncode == 0, back.stderr
        assert weights(sandbox) == [100, 0]
        assert a.terminate() == 0
