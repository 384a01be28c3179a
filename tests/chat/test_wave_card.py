"""The card of a wave cluster's rollout, as the notifier posts it to the fake Slack (which checks
the blocks) with the wave read from real Redis: it names its cluster and the wave, reads at
phone width as its snapshot, and its buttons carry the cluster."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.chat.cards import parse_action
from bot.chat.slack import SlackNotifier, web_client
from bot.rollout.model import Notify, Phase, StepPlan
from bot.rollout.waves import Wave
from bot.store.redis_store import RolloutStore, connect
from bot.store.waves import WaveStore
from tests.chat.phone import render_message, too_wide
from tests.support.fake_slack import FakeSlack
from tests.support.harness import button_value, flat
from tests.support.sample_rollout import ALICE, T0, rollout

SNAPSHOT = Path(__file__).parent / "snapshots" / "card-wave-cluster.txt"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"


def posted_card(redis_url: str, wave_clusters: tuple[str, ...] | None) -> dict[str, Any]:
    """The card of a rollout on prod-eu, the second cluster of a wave over `wave_clusters`
    (None: no wave on record), as the fake Slack holds it."""
    client = connect(redis_url)
    fresh = f"r-{uuid.uuid4().hex[:8]}"
    if wave_clusters is not None:
        WaveStore(client).create(
            Wave(
                id=f"w-{fresh}",
                namespace="prod",
                vs="weather",
                clusters=wave_clusters,
                steps=StepPlan(weights=(5, 10, 25, 50, 100), interval_s=300),
                started_by=ALICE,
                created_at=T0,
                updated_at=T0,
                index=1,
                rollout=fresh,
            )
        )
    with FakeSlack() as slack:
        notifier = SlackNotifier(
            web_client(slack.token, slack.url + "/api/"),
            RolloutStore(client),
            lambda: T0 + timedelta(minutes=15),
            cluster="prod-eu",
            waves=WaveStore(client),
        )
        notifier.notify(rollout(Phase.PROGRESSING, id=fresh), Notify(event="started", text=""))
        [card] = list(slack.messages("C0CANARY").values())
        return card


def test_the_card_names_its_cluster_and_the_wave_at_phone_width(redis_url: str) -> None:
    card = posted_card(redis_url, ("canary-eu", "prod-eu", "prod-us"))
    assert [b.to_dict() for b in Block.parse_all(card["blocks"])] == card["blocks"]
    line = "*Cluster:* prod-eu (wave: canary-eu ✓ → prod-eu → prod-us)"
    assert line in flat(card["blocks"])
    shown = render_message(card)
    assert too_wide(shown) == []
    if UPDATE:
        SNAPSHOT.write_text(shown)
    assert SNAPSHOT.read_text() == shown, "the wave card looks different: see the README"
    assert "weather in prod on prod-eu: 25% to v2" in card["text"]


def test_the_buttons_of_a_clusters_card_carry_the_cluster(redis_url: str) -> None:
    card = posted_card(redis_url, None)
    value = button_value(card, "rollback")
    action, ref, _ = parse_action("canary:rollback", value)
    assert (action, ref.split("/")[0]) == ("rollback", "prod-eu")
    assert '"*Cluster:* prod-eu"' in flat(card["blocks"])  # no wave on record: the cluster


@pytest.mark.parametrize("value", ["Prod_EU/1a2b:7", "a/b/c:7", "/1a2b:7", "-eu/1a2b:7"])
def test_a_button_value_with_a_bad_cluster_is_not_ours(value: str) -> None:
    with pytest.raises(ValueError, match="not a canary button value"):
        parse_action("canary:rollback", value)
