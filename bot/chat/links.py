"""Links from a rollout's card to the service in Istio's observability add-ons.

Each link is a URL template from the settings (`CANARY_GRAFANA_URL`, `CANARY_KIALI_URL`,
`CANARY_JAEGER_URL`) with `{namespace}`, `{service}`, `{vs}`, `{stable}` and `{canary}` in
it, filled in (URL-encoded) for the rollout's target. A template that is not set gives no link.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Formatter
from urllib.parse import quote, urlsplit

from bot.rollout.model import Target

__all__ = ["FIELDS", "Links", "check_template"]

FIELDS = frozenset({"namespace", "service", "vs", "stable", "canary"})


def check_template(template: str) -> str:
    """`template` if it is an http(s) URL naming only FIELDS; ValueError naming the fix."""
    if urlsplit(template).scheme not in ("http", "https"):
        raise ValueError(f"{template!r} is not an http:// or https:// URL")
    try:
        named = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    except ValueError as e:
        raise ValueError(f"{template!r} is not a URL template ({e}); write {{{{ for a {{") from e
    unknown = sorted(named - FIELDS)
    if unknown:
        raise ValueError(
            f"{template!r} names {', '.join(f'{{{n}}}' for n in unknown)}; a link template "
            f"may use {', '.join(f'{{{n}}}' for n in sorted(FIELDS))}"
        )
    return template


@dataclass(frozen=True)
class Links:
    """The add-ons' URL templates, by the label the card shows; None: no link."""

    grafana: str | None = None
    kiali: str | None = None
    jaeger: str | None = None

    def __post_init__(self) -> None:
        for template in (self.grafana, self.kiali, self.jaeger):
            if template is not None:
                check_template(template)

    def for_target(self, target: Target) -> tuple[tuple[str, str], ...]:
        """(label, URL) for each template set, filled in for `target`."""
        values = {name: quote(value, safe="") for name, value in _values(target).items()}
        templates = (("Grafana", self.grafana), ("Kiali", self.kiali), ("Jaeger", self.jaeger))
        return tuple(
            (label, template.format(**values)) for label, template in templates if template
        )


def _values(target: Target) -> dict[str, str]:
    """The Service is the destination host's short name, as Istio's telemetry names it."""
    host = target.host.split(".")[0] if target.host else target.vs
    return {
        "namespace": target.namespace,
        "service": host,
        "vs": target.vs,
        "stable": target.stable,
        "canary": target.canary,
    }
