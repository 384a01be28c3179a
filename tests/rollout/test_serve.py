"""`canary-bot serve` as real processes: crashes, two replicas, Redis going away, SIGTERM."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.rollout.model import Phase
from bot.store.lease import LeaderLease
from bot.store.redis_store import RolloutStore, connect
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import write_kubeconfig
from sandbox.redis_server import RedisServer
from tests.support.harness import wait_until

from .conftest import canary_weights

CANARY_BOT = str(Path(sys.executable).with_name("canary-bot"))
pytestmark = pytest.mark.slow


class Bot:
    """One `canary-bot` process with its stderr kept in a file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        with log.open("w") as stderr:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [CANARY_BOT, *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )

    def text(self) -> str:
        return self.log.read_text()

    def leading(self) -> bool:
        return "leading now" in self.text()

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=10)


class Rig:
    def __init__(self, tmp: Path, redis_url: str, cluster: SandboxApiServer) -> None:
        self.tmp, self.cluster, self.bots = tmp, cluster, []
        kubeconfig = write_kubeconfig(tmp / "kubeconfig", cluster.url)
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "KUBECONFIG": str(kubeconfig),
            "CANARY_LEASE_TTL": "1",
            "PYTHONUNBUFFERED": "1",
            "CANARY_HTTP_PORT": "0",
        }
        self.store = RolloutStore(connect(redis_url))
        self.lease = LeaderLease(connect(redis_url), identity="the test, looking")

    def serve(self, **env: str) -> Bot:
        bot = Bot({**self.env, **env}, self.tmp / f"serve-{len(self.bots)}.log", "serve")
        self.bots.append(bot)
        return bot

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [CANARY_BOT, *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def phase(self) -> Phase | None:
        """The rollout's phase; PROMOTED only once every effect of the promotion ran."""
        active = self.store.active_for("default", "weather")
        if active is not None:
            return Phase.PROGRESSING if active.phase is Phase.PROMOTED else active.phase
        entries = self.store.history("default", "weather")
        return Phase.PROMOTED if entries and entries[-1].action == "promote" else None

    def leader(self) -> Bot | None:
        """The running replica that holds the lease (its identity names its pid), if any."""
        holder = self.lease.holder() or ""
        return next((b for b in self.bots if b.running() and f":{b.proc.pid}:" in holder), None)

    def stop_all(self) -> None:
        for bot in self.bots:
            if bot.running():
                bot.kill()


@pytest.fixture
def rig(tmp_path: Path, redis_url: str, cluster: SandboxApiServer) -> Iterator[Rig]:
    rig = Rig(tmp_path, redis_url, cluster)
    yield rig
    rig.stop_all()


STEPS = [20, 35, 50, 65, 80, 100]  # one-second steps


def assert_each_step_once_in_order(rig: Rig, steps: list[int] = STEPS) -> None:
    assert canary_weights(rig.cluster) == [*steps, None]  # None: the finalizing patch
    entries = rig.store.history("default", "weather", count=200)
    actions = [e.action for e in entries]
    assert actions == ["start"] + ["step"] * (len(steps) - 1) + ["promote"], " ".join(
        f"{e.action}:{e.weight_before}>{e.weight_after}" for e in entries
    )


def _between_steps(log: str) -> bool:
    """The replica logging `log` had carried out every effect of the last step it began."""
    lines = [line for line in log.splitlines() if "rollout " in line]
    return bool(lines) and " 0 left" in lines[-1]


def _killed_between_effects(log: str) -> int:
    done = [line for line in log.splitlines() if " done, " in line]
    return int(bool(done) and " 0 left" not in done[-1])


def start(rig: Rig, steps: list[int]) -> None:
    rig.cli("rollout", "start", "weather", "--steps", ",".join(map(str, steps)), "--every", "1s")


def test_sigkill_at_random_points_loses_nothing_and_repeats_nothing(rig: Rig) -> None:
    rng = random.Random(20261122)  # reproducible kill times
    # A standby replica takes over once the killed leader's lease expires; the delay widens the
    # gaps between the effects of a step. A kill in one of those gaps leaves the service's
    # writer mutex held for its 15 s TTL: the kills after it land on leaders waiting for it.
    settings = {"CANARY_EFFECT_DELAY": "0.1", "CANARY_LEASE_TTL": "0.5"}
    rig.serve(**settings)
    steps = [12, 25, 37, 50, 62, 75, 87, 100]
    start(rig, steps)
    kills, between_effects = 0, 0
    while rig.phase() is not Phase.PROMOTED and (kills < 15 or not between_effects):
        rig.serve(**settings)
        wait_until(lambda: rig.leader() is not None, 20, "a leader")
        leader = rig.leader()
        assert leader is not None
        time.sleep(rng.uniform(0, 0.5))  # a new leader first carries out the step that is due
        leader.kill()
        kills += 1
        between_effects += _killed_between_effects(leader.text())
    wait_until(lambda: rig.phase() is Phase.PROMOTED, 60, "promotion")
    assert kills >= 15
    assert between_effects >= 1, "no kill landed between two effects of a step"
    assert_each_step_once_in_order(rig, steps)


def test_two_replicas_one_leader_and_a_takeover(rig: Rig) -> None:
    first, second = rig.serve(), rig.serve()
    wait_until(lambda: rig.leader() is not None, 20, "a leader")
    leader, follower = (first, second) if rig.leader() is first else (second, first)
    start(rig, STEPS)
    wait_until(lambda: leader.text().count(" 0 left") >= 2 and _between_steps(leader.text()))
    assert " done, " not in follower.text()  # only the leader drives steps
    leader.kill()  # between steps: a kill within one is the test above
    wait_until(lambda: rig.leader() is follower, 10, "the takeover")  # the lease TTL is 1 s
    wait_until(lambda: rig.phase() is Phase.PROMOTED, 30, "promotion")
    assert_each_step_once_in_order(rig)


def test_sigterm_hands_the_lease_over_at_once(rig: Rig) -> None:
    rig.env["CANARY_LEASE_TTL"] = "30"  # without a release, the successor would wait 30 s
    first = rig.serve()
    wait_until(lambda: rig.leader() is first, 20, "the first leader")
    second = rig.serve()
    wait_until(lambda: "listening on" in second.text(), 20, "the second replica")
    assert rig.leader() is first and not second.leading()
    first.kill(signal.SIGTERM)
    assert first.proc.returncode == 0
    # Followers look every half second: well within 10 s, and nowhere near the 30 s TTL.
    wait_until(lambda: rig.leader() is second, 10, "the takeover")


def test_redis_going_away_mid_rollout_pauses_nothing_and_loses_nothing(
    tmp_path: Path, cluster: SandboxApiServer
) -> None:
    with RedisServer(persist_dir=tmp_path / "redis") as redis_server:
        rig = Rig(tmp_path, redis_server.url, cluster)
        try:
            bot = rig.serve()
            wait_until(bot.leading, 20, "the first leader")
            start(rig, STEPS)
            wait_until(lambda: len(canary_weights(cluster)) >= 2, 30, "a few steps")
            redis_server.stop()
            patches_while_down = len(canary_weights(cluster))
            wait_until(lambda: "not leading any more" in bot.text(), 10, "the lease to lapse")
            assert len(canary_weights(cluster)) <= patches_while_down + 1  # one in flight
            assert "cannot be reached" in bot.text()
            redis_server.start()
            wait_until(lambda: rig.phase() is Phase.PROMOTED, 60, "promotion")
            assert canary_weights(cluster) == [*STEPS, None]
        finally:
            rig.stop_all()


def run_cli(rig: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CANARY_BOT, *args], env=rig.env, capture_output=True, text=True, check=False, timeout=30
    )


def test_the_rollout_commands_drive_the_engine_without_a_server(rig: Rig) -> None:
    out = rig.cli("rollout", "start", "weather", "--steps", "20,100", "--every", "1h", "--as", "U1")
    assert "rollout" in out and "progressing" in out and "at 20%" in out
    assert "progressing" in rig.cli("rollout", "status", "weather")
    assert "paused" in rig.cli("rollout", "pause", "weather", "--as", "U2")
    assert "weather: rollout" in rig.cli("rollout", "list")
    assert "progressing" in rig.cli("rollout", "resume", "weather")
    assert "rolled-back" in rig.cli("rollout", "rollback", "weather")
    assert canary_weights(rig.cluster) == [20, 0]
    assert rig.cli("rollout", "list") == ""
    actions = [e.action for e in rig.store.history("default", "weather")]
    assert actions == ["start", "pause", "resume", "rollback"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rollout", "start", "Weather!"], "is not a service name"),
        (["rollout", "start", "weather", "--every", "5 minutes"], "is not a duration"),
        (["rollout", "start", "weather", "--steps", "10,5,100"], "must climb"),
        (["rollout", "start", "weather", "--steps", "10,50"], "last step must be 100"),
        (["rollout", "pause", "weather"], "weather has no rollout going on"),
        (["rollout", "start", "climate"], "VirtualService 'climate' was not found"),
    ],
)
def test_bad_rollout_commands_fail_clearly_and_change_nothing(
    rig: Rig, args: list[str], message: str
) -> None:
    done = run_cli(rig, *args)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert [r for r in rig.cluster.requests if r.is_write] == []
    assert rig.store.list_active() == []
