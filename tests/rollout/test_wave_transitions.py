"""The wave's decisions, pure: the phase of the current cluster's rollout in, the wave out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from bot.rollout.model import Phase, StepPlan
from bot.rollout.waves import Next, Wave, WaveState, halt, observe, started

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)


def wave(*clusters: str, **fields: object) -> Wave:
    return Wave(
        id="w1",
        namespace="default",
        vs="weather",
        clusters=clusters or ("canary-eu", "prod-eu", "prod-us"),
        steps=StepPlan(weights=(10, 50, 100), interval_s=30),
        started_by="U1",
        channel="C1",
        created_at=T0,
        updated_at=T0,
        **fields,
    )


def test_a_new_wave_starts_its_first_cluster() -> None:
    new, then = observe(wave(), None, T0)
    assert new == wave() and then == Next(start="canary-eu")


def test_a_rollout_in_progress_leaves_the_wave_as_it_is() -> None:
    going = started(wave(), "r1", T0)
    for phase in (Phase.PROGRESSING, Phase.PAUSED, Phase.PENDING_APPROVAL):
        assert observe(going, phase, LATER) == (going, Next())


def test_a_promotion_starts_the_next_cluster_and_says_so() -> None:
    new, then = observe(started(wave(), "r1", T0), Phase.PROMOTED, LATER)
    assert (new.index, new.cluster, new.rollout, new.updated_at) == (1, "prod-eu", None, LATER)
    assert new.state is WaveState.RUNNING and new.promoted == ("canary-eu",)
    assert then.start == "prod-eu"
    assert then.say == "weather: promoted on canary-eu; the wave goes on to prod-eu"


def test_the_last_promotion_ends_the_wave() -> None:
    last = started(wave(index=2), "r3", T0)
    new, then = observe(last, Phase.PROMOTED, LATER)
    assert new.state is WaveState.DONE and then.start is None
    assert new.promoted == ("canary-eu", "prod-eu", "prod-us")
    assert "wave done, promoted on canary-eu, prod-eu, prod-us" in then.say


@pytest.mark.parametrize(
    ("phase", "why"),
    [(Phase.ROLLED_BACK, "was rolled back"), (Phase.FAILED, "failed"), (None, "is gone")],
)
def test_a_rollback_or_a_failure_halts_the_wave_and_starts_nothing(
    phase: Phase | None, why: str
) -> None:
    second = started(wave(index=1), "r2", T0)
    new, then = observe(second, phase, LATER)
    assert new.state is WaveState.HALTED and then.start is None
    assert new.index == 1 and new.promoted == ("canary-eu",) and new.left == ("prod-us",)
    assert f"its rollout on prod-eu {why}" in new.reason
    assert "Promoted (and left as they are): canary-eu; not started: prod-us" in then.say


def test_an_ended_wave_decides_nothing_more() -> None:
    halted, _ = halt(started(wave(), "r1", T0), "by hand", T0)
    done = wave(state=WaveState.DONE, rollout="r3", index=2)
    for ended in (halted, done):
        for phase in (Phase.PROMOTED, Phase.ROLLED_BACK, None):
            assert observe(ended, phase, LATER) == (ended, Next())


def test_a_halt_on_the_first_cluster_names_no_promoted_cluster() -> None:
    _, then = halt(started(wave(), "r1", T0), "its rollout on canary-eu failed", LATER)
    assert "Promoted (and left as they are): none; not started: prod-eu, prod-us" in then.say


def test_each_cluster_is_named_once_and_the_index_is_one_of_them() -> None:
    with pytest.raises(ValidationError, match="named twice"):
        wave("a", "b", "a")
    with pytest.raises(ValidationError, match="index 2"):
        wave("a", "b", index=2)
    with pytest.raises(ValidationError, match="at least 1"):
        Wave.model_validate(wave().model_dump() | {"clusters": ()})


def test_a_wave_reads_back_as_it_was_written() -> None:
    going = started(wave(index=1), "r2", LATER)
    assert Wave.model_validate_json(going.model_dump_json()) == going
