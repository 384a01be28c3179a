"""A Slack that takes the request and never answers: the bot's Slack calls give up at their
deadline, and a rollback's traffic change, record and audit do not wait on the post."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.chat.slack import SlackNotifier, web_client
from bot.mesh.kube import KubeMesh
from bot.rollout.engine import Engine
from bot.rollout.model import Phase, Rollback, StepPlan
from bot.rollout.traffic import KubeTraffic
from bot.store.redis_store import RolloutStore, connect
from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import api_client_for
from sandbox.seeding import load_yaml_documents, seed
from tests.support.fake_slack import FakeSlack
from tests.support.faultproxy import FaultProxy
from tests.support.harness import seed_file

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
STEPS = StepPlan(weights=(10, 100), interval_s=30)
DEADLINE_S = 1  # the bot's is 10 s (SLACK_TIMEOUT_S); shortened so the test is quick


@pytest.fixture
def cluster() -> Iterator[SandboxApiServer]:
    with SandboxApiServer() as server:
        seed(server, load_yaml_documents([seed_file("weather")]))
        yield server


def test_a_slack_that_never_answers_does_not_hold_a_rollback(
    cluster: SandboxApiServer, redis_url: str
) -> None:
    store = RolloutStore(connect(redis_url))
    with (
        FakeSlack() as slack,
        FaultProxy(slack.url) as proxy,
        api_client_for(cluster.url) as api,
    ):
        client = web_client("xoxb-test-token", proxy.url + "/api/", timeout=DEADLINE_S)
        notifier = SlackNotifier(client, store, lambda: T0)
        mesh = KubeMesh(api, sleep=lambda _: None)
        engine = Engine(store=store, traffic=KubeTraffic(mesh), notifier=notifier, clock=lambda: T0)
        started = engine.start(
            namespace="default", vs="weather", to=None, steps=STEPS, actor="U1", channel="C1"
        )
        posted = len(slack.calls_to("chat.postMessage"))
        assert posted >= 1  # the card, while Slack answered
        proxy.black_hole()
        back = engine.act("default", "weather", Rollback(actor="UONCALL"))
        swallowed = proxy.swallowed
        proxy.clear_faults()
        mesh.close()
    assert swallowed > 0  # the bot did call Slack, and got no answer
    assert (back.phase, back.weight) == (Phase.ROLLED_BACK, 0)
    vs = cluster.get_object("default", "virtualservices", "weather")
    assert vs is not None
    assert [d.get("weight", 100) for d in vs["spec"]["http"][0]["route"]] == [100, 0]
    record = store.load(started.id)
    assert (record.phase, record.weight, record.pending) == (Phase.ROLLED_BACK, 0, ())
    assert store.history("default", "weather")[-1].action == "rollback"
    assert len(slack.calls_to("chat.postMessage")) == posted  # nothing reached Slack since
