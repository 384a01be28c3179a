"""`/canary <service> fault …`, `retries …`, `timeout …`: the Bookinfo lab's drills as typed,
and one clear sentence for each way of getting them wrong."""

from __future__ import annotations

import pytest

from commands import CommandError, Verb, help_text, parse
from commands.drill import Drill, DrillOff


@pytest.mark.parametrize(
    ("text", "drill"),
    [
        ("ratings fault delay 7s 10%", Drill(kind="delay", seconds=7, percent=10)),
        (
            "ratings fault abort 500 5% for 10m",
            Drill(kind="abort", status=500, percent=5, for_s=600),
        ),
        ("ratings fault delay 2s 0.5%", Drill(kind="delay", seconds=2, percent=0.5)),
        ("ratings retries 3 per-try 2s", Drill(kind="retries", attempts=3, seconds=2)),
        ("ratings timeout 10s for 1h", Drill(kind="timeout", seconds=10, for_s=3600)),
    ],
)
def test_drills_as_the_bookinfo_lab_writes_them(text: str, drill: Drill) -> None:
    command = parse(text)
    assert (command.verb, command.service, command.drill) == (Verb.FAULT, "ratings", drill)
    assert command.mutating
    assert drill.text in text


def test_fault_off_ends_them_all() -> None:
    assert parse("ratings.prod fault off").drill == DrillOff()


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("ratings fault delay off", "delay"),
        ("ratings FAULT ABORT OFF", "abort"),
        ("ratings retries off", "retries"),
        ("ratings timeout off", "timeout"),
    ],
)
def test_one_kind_of_drill_is_ended_by_its_own_off(text: str, kind: str) -> None:
    command = parse(text)
    assert (command.verb, command.drill) == (Verb.FAULT, DrillOff(kind=kind))
    assert command.drill.text.lower() in text.lower()


@pytest.mark.parametrize("text", ["ratings retries off now", "ratings fault delay off 5m"])
def test_words_after_a_kinds_off_are_refused(text: str) -> None:
    with pytest.raises(CommandError, match="off"):
        parse(text)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("ratings fault", "say which fault: `fault delay 7s 10%` or `fault abort 500 5%`"),
        ("ratings fault delay 7s", "`fault delay` needs a delay and a share of requests"),
        ("ratings fault delay 7x 10%", "'7x' is not a duration"),
        ("ratings fault delay 10m 10%", "a delay of '10m' is too long: at most 5m"),
        ("ratings fault abort 700 5%", "'700' is not an HTTP status: use 200 to 599"),
        ("ratings fault abort 500 0%", "'0%' is not a share of requests"),
        ("ratings fault abort 500 101%", "'101%' is not a share of requests"),
        ("ratings fault delay 7s 10% for", "`for` needs a duration"),
        ("ratings fault delay 7s 10% during 5m", "'during' is unexpected there"),
        ("ratings retries 3", "`retries` needs a number of attempts and a per-try timeout"),
        ("ratings retries 30 per-try 2s", "'30' is not a number of attempts: use 1 to 10"),
        ("ratings timeout", "`timeout` needs a duration: `/canary ratings timeout 10s`"),
        ("ratings timeout 10s 10%", "'10%' is unexpected there"),
        ("ratings fault off now", "`fault off` takes nothing after it"),
    ],
)
def test_bad_drills_get_one_sentence(text: str, said: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse(text)
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_help_lists_the_drills_under_fault_retries_and_timeout() -> None:
    assert "`/canary weather fault delay 7s 10%`" in help_text()
    assert help_text("retries") == help_text("timeout") == help_text("fault")
    assert "removes exactly what it added" in help_text("fault")
