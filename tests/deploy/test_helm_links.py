"""The chart's `links` values reach the bot as the URL templates of the card's links."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app import Settings
from bot.rollout.model import Target
from tests.deploy.conftest import Chart, Manifest

GRAFANA = (
    "https://grafana.example.com/d/LJ_uJAvmk/istio-service-dashboard"
    "?var-service={service}.{namespace}.svc.cluster.local"
)
KIALI = "https://kiali.example.com/kiali/console/namespaces/{namespace}/services/{service}"
LINK_ENV = ("CANARY_GRAFANA_URL", "CANARY_KIALI_URL", "CANARY_JAEGER_URL")


def env_of(docs: list[Manifest]) -> dict[str, Any]:
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    [bot] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in bot["env"]}


def test_no_links_by_default(chart: Chart) -> None:
    env = env_of(chart.render("defaults", {}))
    assert not set(LINK_ENV) & set(env)


def test_link_templates_reach_the_bot_and_fill_in_for_a_rollout(chart: Chart) -> None:
    env = env_of(chart.render("links", {"links": {"grafana": GRAFANA, "kiali": KIALI}}))
    assert (env["CANARY_GRAFANA_URL"], env["CANARY_KIALI_URL"]) == (GRAFANA, KIALI)
    assert "CANARY_JAEGER_URL" not in env  # left empty: no link
    settings = Settings.model_validate({k: v for k, v in env.items() if k in LINK_ENV})
    target = Target(namespace="prod", vs="weather", stable="v1", canary="v2", host="weather-svc")
    assert settings.links.for_target(target) == (
        (
            "Grafana",
            "https://grafana.example.com/d/LJ_uJAvmk/istio-service-dashboard"
            "?var-service=weather-svc.prod.svc.cluster.local",
        ),
        ("Kiali", "https://kiali.example.com/kiali/console/namespaces/prod/services/weather-svc"),
    )


@pytest.mark.parametrize(
    "template",
    ["grafana.example.com/d/x?var-service={service}", "https://x/{pod}", "https://x/{service"],
)
def test_the_schema_refuses_a_template_the_bot_would_refuse(chart: Chart, template: str) -> None:
    result = chart.run("template", {"links": {"kiali": template}})
    assert result.returncode != 0
    assert "/links/kiali" in result.stdout + result.stderr
    with pytest.raises(ValueError, match=r"not an http|may use|not a URL template"):
        Settings.model_validate({"CANARY_KIALI_URL": template})
