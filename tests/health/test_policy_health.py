"""A policy's `health:` section is what the checks judge with, as loaded: no conversion."""

from __future__ import annotations

from bot.app import ConsoleNotifier, PolicyHealth, Settings
from bot.chat.dispatch import Asker, Dispatcher
from bot.rollout.engine import Engine
from bot.store.redis_store import RolloutStore, connect
from commands import parse
from policies import check, load_policy
from tests.health import NOW, RecordingClient, agrees, labels, make_rollout, table_rows

POLICY = """\
rules:
  - namespace: prod
    rollout:
      health:
        max_p99_ms: 300
        min_requests: 0
"""
FEW_AND_SLOW = (  # 5 canary requests at 350 ms, stable as fast
    {
        labels(destination_version="v1", response_class="2xx"): 5_000.0,
        labels(destination_version="v2", response_class="2xx"): 5.0,
    },
    {labels(destination_version="v1"): 340.0, labels(destination_version="v2"): 350.0},
)


def policy_health(*answers: dict[tuple[tuple[str, str], ...], float]) -> PolicyHealth:
    return PolicyHealth(RecordingClient(*answers), load_policy(POLICY), Settings())


def test_min_requests_zero_passes_policy_check_and_works_in_a_check() -> None:
    code, said = check(POLICY, "policy.yaml")
    assert code == 0, said
    fast = {labels(destination_version="v1"): 90.0, labels(destination_version="v2"): 95.0}
    verdict = policy_health(FEW_AND_SLOW[0], fast).check(make_rollout(), NOW)
    assert verdict.outcome == "pass", verdict.summary
    assert verdict.rows[0] == ("requests", "5 (0 5xx)", "5,000 (0 5xx)", "≥ 1", "pass")


def test_a_check_judges_with_the_policys_thresholds() -> None:
    verdict = policy_health(*FEW_AND_SLOW).check(make_rollout(), NOW)
    assert verdict.outcome == "fail"
    assert verdict.summary == "canary p99 350 ms is above 300 ms (+50 ms)"
    assert ("p99 latency", "350 ms", "340 ms", "≤ 300 ms", "fail") in verdict.rows


def test_status_shows_the_rows_judged_with_the_policys_thresholds(redis_url: str) -> None:
    store = RolloutStore(connect(redis_url))
    store.create(make_rollout())
    engine = Engine(
        store=store,
        traffic=None,  # type: ignore[arg-type]  # status reads; it moves no traffic
        notifier=ConsoleNotifier(),
        clock=lambda: NOW,
        health=policy_health(*FEW_AND_SLOW),
    )
    dispatcher = Dispatcher(engine=engine, store=store, clock=lambda: NOW)  # type: ignore[arg-type]
    [reply] = dispatcher.run(parse("weather.prod status"), Asker("U1", "C1"))
    table = reply.text.split("Now: ", 1)[1]
    assert table.startswith("❌ health check at step 2: fail — canary p99 350 ms is above 300 ms")
    assert ["p99 latency", "350 ms", "340 ms", "≤ 300 ms", "fail"] in table_rows(table)
    assert agrees(table) and "500 ms" not in table
