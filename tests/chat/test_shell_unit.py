"""The shell's lines (`:click`, `:as`, `:wait`, commands, anything else) and what the shell
notifier prints, line by line, against the sandbox API server and real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.chat.cards import card_text, card_view
from bot.chat.health_text import health_table
from bot.chat.shell import ShellNotifier
from bot.health.chart import chart_png
from bot.health.verdict import Figures, Side, judge
from bot.rollout.model import Notify, Phase, Rollout, StepPlan, Target, Verdict
from policies.model import HealthThresholds
from sandbox.apiserver import SandboxApiServer
from tests.support.terminal import OTHER_SRE, REQUESTER, SRE, STRANGER, T0, Terminal, terminal

POLICY = f"""
rules:
  - namespace: "*"
    allow:
      set-weight: [{REQUESTER}]
      start: [{REQUESTER}]
      pause: [{REQUESTER}]
      rollback: [{REQUESTER}]
      approve: [{SRE}, {OTHER_SRE}]
    approvals:
      - count: 2
        from: [{SRE}, {OTHER_SRE}]
        above_weight: 25
"""
USAGE = "usage: :click pause|resume|promote|rollback SERVICE, :click approve|deny REQUEST"


@pytest.fixture
def term(sandbox: SandboxApiServer, api_client: Any, redis_url: str) -> Iterator[Terminal]:
    with terminal(sandbox, api_client, redis_url) as made:
        yield made


@pytest.fixture
def policed(
    sandbox: SandboxApiServer, api_client: Any, redis_url: str, tmp_path: Path
) -> Iterator[Terminal]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    with terminal(sandbox, api_client, redis_url, CANARY_POLICY_FILE=str(policy)) as made:
        yield made


def test_blank_lines_and_comments_do_nothing(term: Terminal) -> None:
    assert term.type("", "   ", "# the weather rollout, step by step") == []
    assert term.cluster.requests == []


@pytest.mark.parametrize("line", ["frobnicate", "weather", "/canary weather 150%"])
def test_input_that_is_not_a_command_is_a_warning_for_the_asker_alone(
    term: Terminal, line: str
) -> None:
    [said] = term.type(line)

    assert said.startswith("(only you) :warning: ")
    assert term.cluster.requests == []


def test_a_command_with_or_without_the_slash_is_run_and_its_reply_shown(term: Terminal) -> None:
    assert (
        term.type("/canary weather status", "weather status")
        == ["(only you) weather: no rollout going on; v1/v2 at 90%/10%"] * 2
    )


def test_as_changes_who_is_asking_and_keeps_the_channel(term: Terminal) -> None:
    assert term.type(":as U0ALICE00") == ["(you are U0ALICE00 now)"]
    term.type("weather 20%")

    [entry] = term.parts.store.history("default", "weather")
    assert entry.actor == "U0ALICE00" and entry.channel == "C1"


@pytest.mark.parametrize("line", [":click", ":click pause", ":click explode weather"])
def test_a_click_on_no_known_button_shows_the_usage(term: Terminal, line: str) -> None:
    assert term.type(line) == [USAGE]
    assert term.cluster.requests == []


def test_a_click_on_a_service_with_no_rollout_says_so(term: Terminal) -> None:
    assert term.type(":click pause weather") == ["(only you) weather has no rollout going on"]
    assert term.cluster.writes() == []


def test_a_click_on_a_name_that_is_no_service_is_a_warning(term: Terminal) -> None:
    [said] = term.type(":click pause We_ather")
    assert said.startswith("(only you) :warning: 'We_ather' is not a service name")


def test_a_click_presses_the_button_of_the_services_rollout(term: Terminal) -> None:
    card = term.type("weather start steps 20,100")
    assert card[0].startswith("🔄 weather in default · v1 → v2")

    assert term.type(":click pause weather") == [
        f"  ↳ weather paused at 20%: paused by {REQUESTER}   [▓▓░░░░░░░░ 20% paused]"
    ]
    assert term.type(":click rollback weather") == [
        f"  ↳ weather back on v1 (canary 20% → 0%): rolled back by {REQUESTER}"
        "   [░░░░░░░░░░ 0% rolled-back]"
    ]
    assert term.weights() == [100, 0]


def test_a_click_goes_through_the_policy_like_a_command(policed: Terminal) -> None:
    policed.type("weather 20%")
    policed.type(f":as {STRANGER}")

    [said] = policed.type(":click rollback weather")

    assert said.startswith(f"(only you) :no_entry: you (<@{STRANGER}>) may not rollback")
    assert policed.weights() == [80, 20]


def test_approvals_are_clicked_one_voter_at_a_time(policed: Terminal) -> None:
    asked = policed.type("weather 50%")
    request = asked[-1].split(":click approve ")[1].split("`")[0]
    assert asked == [
        f"(only you) :hourglass: */* changes above 25% need 2 approvals from <@{SRE}> or "
        f"<@{OTHER_SRE}>; you have 0; I posted an approval request.",
        "Approval needed: /canary weather 50% (open)",
        f"  approve with `:click approve {request}` or deny with `:click deny {request}` "
        "(as someone else: `:as U…`)",
    ]

    own = policed.type(f":click approve {request}")
    assert own[-1] == f"approval request {request}: open"
    assert "own approval does not count" in own[0]
    policed.type(f":as {SRE}")
    assert policed.type(f":click approve {request}") == [
        f"approval request {request}: open, approved by {SRE}"
    ]
    assert policed.weights() == [90, 10]
    policed.type(f":as {OTHER_SRE}")
    done = policed.type(f":click approve {request}")

    active = policed.parts.store.active_for("default", "weather")
    assert active is not None and active.weight == 50
    assert done == [  # the card of the change it ran, then where the request stands
        card_text(card_view(active, T0)),
        f"approval request {request}: approved, approved by {SRE}, {OTHER_SRE}",
    ]
    assert policed.weights() == [50, 50]


def test_a_click_on_a_request_that_is_not_there_is_a_warning(policed: Terminal) -> None:
    assert policed.type(":click deny 0badc0de") == [
        "(only you) :warning: This approval request has expired; ask again."
    ]


def test_run_reads_lines_until_quit(term: Terminal) -> None:
    term.shell.run(["weather status\n", ":quit\n", "weather 20%\n"])

    assert term.out == ["(only you) weather: no rollout going on; v1/v2 at 90%/10%"]
    assert term.cluster.writes() == []


def test_wait_without_a_service_shows_its_usage(term: Terminal) -> None:
    assert term.type(":wait") == ["usage: :wait SERVICE [SECONDS]"]


def test_wait_returns_at_once_when_nothing_is_going_on(term: Terminal) -> None:
    assert term.type(":wait weather") == []


def test_wait_gives_up_after_its_limit_and_says_so(term: Terminal) -> None:
    term.type("weather 20%")
    assert term.type(":wait weather 0") == ["(only you) still going after 0s"]


# The notifier on its own.


def verdict(step: int, success: float) -> Verdict:
    figures = Figures(
        canary=Side(requests=200.0, errors=200 * (100 - success) / 100, p99_ms=120.0),
        stable=Side(requests=1800.0, errors=0.0, p99_ms=100.0),
        window_s=60.0,
    )
    return judge(figures, HealthThresholds(), at=T0 + timedelta(seconds=30), step=step)


def rollout(phase: Phase = Phase.PROGRESSING, verdicts: tuple[Verdict, ...] = ()) -> Rollout:
    return Rollout(
        id="r1",
        target=Target(namespace="default", vs="weather", stable="v1", canary="v2"),
        steps=StepPlan(weights=(20, 100), interval_s=60),
        phase=phase,
        step=0,
        weight=20,
        started_by=REQUESTER,
        channel="C1",
        created_at=T0,
        updated_at=T0,
        next_step_at=T0 + timedelta(seconds=45),
        verdicts=verdicts,
    )


def printed(message: Notify, shown: Rollout, charts: Path | None = None) -> list[str]:
    out: list[str] = []
    ShellNotifier(out.append, lambda: T0, charts=charts).notify(shown, message)
    return out


def test_a_started_rollout_prints_its_whole_card() -> None:
    shown = rollout()
    assert printed(Notify(event="started", text="started"), shown) == [
        card_text(card_view(shown, T0))
    ]
    assert "next step in 45s" in card_text(card_view(shown, T0))


def test_a_wave_clusters_rollout_is_shown_naming_its_cluster() -> None:
    """The notice comes through the cluster's notifier, which names the cluster: the card
    says which cluster (the Slack card's own line) and the check's table is led by it."""
    shown = rollout()
    [card] = printed(Notify(event="started", text="[prod-eu] started", cluster="prod-eu"), shown)
    assert card == card_text(card_view(shown, T0, cluster="prod-eu"))
    assert "prod-eu" in card and "prod-eu" not in card_text(card_view(shown, T0))
    checked = rollout(verdicts=(verdict(0, 95.0),))
    [table] = printed(Notify(event="health", text="[prod-eu] fail", cluster="prod-eu"), checked)
    assert table.splitlines()[0].startswith("    [prod-eu] ❌ health check at step 1: fail")


def test_a_health_check_prints_its_table_indented_and_without_fences() -> None:
    checked = verdict(0, 95.0)
    [table] = printed(Notify(event="health", text="fail"), rollout(verdicts=(checked,)))

    expected = [line for line in health_table(checked).splitlines() if line != "```"]
    assert table.splitlines() == ["    " + line for line in expected]
    assert "```" not in table
    assert any("success rate" in line and "95.0%" in line for line in table.splitlines())


def test_a_health_event_with_no_verdict_is_one_line() -> None:
    assert printed(Notify(event="health", text="no data"), rollout()) == [
        "  ↳ no data   [▓▓░░░░░░░░ 20% progressing]"
    ]


def test_any_other_event_is_one_line_with_the_weight_and_phase() -> None:
    paused = rollout(Phase.PAUSED)
    assert printed(Notify(event="paused", text="weather paused at 20%"), paused) == [
        "  ↳ weather paused at 20%   [▓▓░░░░░░░░ 20% paused]"
    ]


def test_the_final_event_saves_the_chart_where_asked(tmp_path: Path) -> None:
    final = rollout(Phase.FAILED, (verdict(0, 90.0),))

    out = printed(Notify(event="auto-rollback", text="weather back on v1"), final, tmp_path)

    chart = tmp_path / "weather-r1.png"
    assert out == [
        "  ↳ weather back on v1   [▓▓░░░░░░░░ 20% failed]",
        f"  ↳ chart: {chart}",
    ]
    assert chart.read_bytes() == chart_png(final)


def test_no_chart_without_a_place_for_it_or_checks_to_draw(tmp_path: Path) -> None:
    checked = rollout(Phase.FAILED, (verdict(0, 90.0),))
    unchecked = rollout(Phase.ROLLED_BACK)

    assert len(printed(Notify(event="auto-rollback", text="back"), checked)) == 1
    assert len(printed(Notify(event="rollback", text="back"), unchecked, tmp_path)) == 1
    assert list(tmp_path.iterdir()) == []


def test_wait_with_seconds_that_are_no_number_shows_its_usage(term: Terminal) -> None:
    term.type("weather 20%")
    assert term.type(":wait weather soon") == ["usage: :wait SERVICE [SECONDS]"]
