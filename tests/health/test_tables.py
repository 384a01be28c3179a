"""Health tables in chat show the rows a verdict was judged on, and never judge again."""

from __future__ import annotations

import ast
from pathlib import Path

from bot.chat.health_text import TABLE_HEADER, health_table
from bot.health.verdict import Figures, Side, judge
from bot.rollout.model import Verdict
from policies.model import HealthThresholds
from tests.health import NOW, agrees, table_rows

CHAT = Path(__file__).parents[2] / "bot" / "chat"
JUDGING = ("bot.health.verdict", "bot.health.check", "bot.health.custom", "bot.health.judge")
SLOW = Figures(
    canary=Side(requests=1_000, errors=0, p99_ms=350),
    stable=Side(requests=9_000, errors=0, p99_ms=340),
    window_s=60,
)


def test_the_table_is_the_verdicts_rows_under_its_outcome() -> None:
    verdict = judge(SLOW, HealthThresholds(max_p99_ms=300), at=NOW, step=1)
    text = health_table(verdict)
    assert text.splitlines()[0] == (
        "❌ health check at step 2: fail — canary p99 350 ms is above 300 ms (+50 ms)"
    )
    assert text.splitlines()[2].split() == list(TABLE_HEADER)
    assert table_rows(text) == [list(row) for row in verdict.rows]
    assert ["p99 latency", "350 ms", "340 ms", "≤ 300 ms", "fail"] in table_rows(text)
    assert agrees(text) and "500 ms" not in text


def test_rows_are_shown_as_judged_even_where_the_defaults_would_judge_otherwise() -> None:
    judged = judge(SLOW, HealthThresholds(max_p99_ms=300), at=NOW, step=1)
    assert judge(SLOW, HealthThresholds(), at=NOW, step=1).outcome == "pass"
    stored = Verdict.model_validate_json(judged.model_dump_json())
    assert table_rows(health_table(stored)) == [list(row) for row in judged.rows]


def test_a_verdict_stored_without_rows_shows_its_summary_alone() -> None:
    old = Verdict.model_validate_json(
        '{"outcome": "fail", "at": "2026-11-22T03:00:00Z", "step": 0,'
        ' "summary": "canary p99 612 ms is above 500 ms (+112 ms)",'
        ' "figures": {"canary_requests": 100, "canary_p99_ms": 612}}'
    )
    assert health_table(old) == (
        "❌ health check at step 1: fail — canary p99 612 ms is above 500 ms (+112 ms)"
    )


def test_no_chat_module_imports_the_judging_code() -> None:
    for module in CHAT.glob("*.py"):
        imported = {
            name for node in ast.walk(ast.parse(module.read_text())) for name in _imported(node)
        }
        assert not imported & set(JUDGING), module.name


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return []
