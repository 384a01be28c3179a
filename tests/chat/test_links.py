"""Links on the card to the service's Grafana dashboard, Kiali graph and Jaeger traces, from
URL templates in the settings; no template, no link."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from slack_sdk.models.blocks import Block

from bot.chat.cards import card_blocks, card_text, card_view
from bot.chat.links import Links, check_template
from bot.rollout.model import Phase, Rollout, StepPlan, Target
from tests.support.harness import flat, running_bot, wait_until

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
GRAFANA = "https://grafana.example.com/d/istio?var-service={service}.{namespace}.svc&var-v={canary}"
KIALI = "https://kiali.example.com/kiali/console/namespaces/{namespace}/services/{service}"
JAEGER = "https://jaeger.example.com/search?service={service}.{namespace}"


def rollout(host: str = "weather-service.prod.svc.cluster.local") -> Rollout:
    return Rollout(
        id="r1",
        target=Target(namespace="prod", vs="weather", stable="v1", canary="v2", host=host),
        steps=StepPlan(),
        phase=Phase.PROGRESSING,
        step=0,
        weight=5,
        started_by="U0ALICE01",
        created_at=NOW,
        updated_at=NOW,
    )


def test_each_template_set_is_a_link_filled_in_for_the_service() -> None:
    view = card_view(rollout(), NOW, Links(grafana=GRAFANA, kiali=KIALI, jaeger=JAEGER))
    assert view.links == (
        (
            "Grafana",
            "https://grafana.example.com/d/istio?var-service=weather-service.prod.svc&var-v=v2",
        ),
        (
            "Kiali",
            "https://kiali.example.com/kiali/console/namespaces/prod/services/weather-service",
        ),
        ("Jaeger", "https://jaeger.example.com/search?service=weather-service.prod"),
    )
    blocks = card_blocks(view)
    assert [b.to_dict() for b in Block.parse_all(blocks)] == blocks
    [links] = [b for b in blocks if b["type"] == "context" and "Grafana" in flat([b])]
    assert links["elements"][0]["text"] == (
        "<https://grafana.example.com/d/istio?var-service=weather-service.prod.svc&amp;var-v=v2"
        "|Grafana> · <https://kiali.example.com/kiali/console/namespaces/prod/services/"
        "weather-service|Kiali> · <https://jaeger.example.com/search?service=weather-service.prod"
        "|Jaeger>"
    )
    assert "kiali: https://kiali.example.com" in card_text(view)


def test_no_template_no_link() -> None:
    for links in (None, Links(), Links(kiali=KIALI)):
        blocks = card_blocks(card_view(rollout(), NOW, links))
        shown = flat(blocks)
        assert ("Kiali" in shown) is bool(links and links.kiali)
        assert "Grafana" not in shown and "Jaeger" not in shown


def test_values_are_url_encoded_so_a_name_cannot_break_the_link() -> None:
    odd = rollout(host="")  # no host recorded: the VirtualService's name stands in
    odd = odd.model_copy(update={"target": odd.target.model_copy(update={"canary": "v2|x>y"})})
    [(_, url)] = card_view(odd, NOW, Links(grafana=GRAFANA)).links
    assert url.endswith("var-service=weather.prod.svc&var-v=v2%7Cx%3Ey")


@pytest.mark.parametrize(
    ("template", "fix"),
    [
        ("https://kiali/{pod}", "a link template may use {canary}, {namespace}, {service}"),
        ("kiali.example.com/{service}", "is not an http:// or https:// URL"),
        ("https://kiali/{service", "is not a URL template"),
    ],
)
def test_a_template_the_bot_cannot_fill_is_refused_at_start(template: str, fix: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_template(template)
    assert fix in str(refused.value)


def test_the_posted_card_links_to_the_add_ons(tmp_path: Path, redis_url: str) -> None:
    with running_bot(tmp_path, redis_url, CANARY_KIALI_URL=KIALI, CANARY_JAEGER_URL=JAEGER) as bot:
        assert bot.post(bot.command("weather 20%")) == 200
        wait_until(lambda: "Kiali" in flat(next(iter(bot.cards().values()), {}).get("blocks", [])))
        [card] = bot.cards().values()
        shown = flat(card["blocks"])
        assert "/namespaces/default/services/weather-service|Kiali>" in shown
        assert "search?service=weather-service.default|Jaeger>" in shown
        assert "Grafana" not in shown
