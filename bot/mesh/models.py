"""Typed views of the Istio objects the bot reads.

Only what the planner needs is modelled; every other field is kept as an extra and dumped back
unchanged (`to_dict`), so reading and writing an object never loses what we do not understand.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.mesh.errors import InvalidObject

CLUSTER_DOMAIN = "cluster.local"


class _Open(BaseModel):
    """A view that keeps unknown fields (`extra="allow"`) and dumps only what it was given."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, strict=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def model_extra_keys(self) -> set[str]:
        """The fields this view does not model but keeps."""
        return set(self.model_extra or {})


class PortSelector(_Open):
    number: int | None = None


class Destination(_Open):
    host: str
    subset: str | None = None
    port: PortSelector | None = None


class RouteDestination(_Open):
    destination: Destination
    weight: int | None = None


class Percent(_Open):
    value: float | None = None


class HTTPRoute(_Open):
    name: str | None = None
    route: list[RouteDestination] = Field(default_factory=list)
    mirror: Destination | None = None
    mirror_percentage: Percent | None = Field(default=None, alias="mirrorPercentage")

    def label(self, index: int) -> str:
        return f"'{self.name}'" if self.name else f"#{index}"


class ObjectMeta(_Open):
    name: str
    namespace: str | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    annotations: dict[str, str] | None = None


class VirtualServiceSpec(_Open):
    hosts: list[str] = Field(default_factory=list)
    http: list[HTTPRoute] = Field(default_factory=list)
    # TCP and TLS routes have no name, mirror or retries; what they share with http routes
    # (match, route, weights) reads the same, and the rest is kept as extras.
    tcp: list[HTTPRoute] = Field(default_factory=list)
    tls: list[HTTPRoute] = Field(default_factory=list)

    @property
    def kind(self) -> str:
        """Which routes carry the traffic the bot splits: http, else tcp, else tls."""
        return "http" if self.http or not (self.tcp or self.tls) else "tcp" if self.tcp else "tls"

    @property
    def routes(self) -> list[HTTPRoute]:
        return list(getattr(self, self.kind))


class Subset(_Open):
    name: str
    labels: dict[str, str] | None = None


class DestinationRuleSpec(_Open):
    host: str
    subsets: list[Subset] = Field(default_factory=list)


class _Resource(_Open):
    api_version: str = Field(default="networking.istio.io/v1", alias="apiVersion")
    kind: str
    metadata: ObjectMeta

    @classmethod
    def parse(cls, raw: Any) -> Self:
        """Read a raw object, turning pydantic's complaints into an InvalidObject."""
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise InvalidObject(_describe(cls.__name__, raw, e), _problems(e)) from e

    @property
    def name(self) -> str:
        return self.metadata.name

    def namespace_or(self, default: str) -> str:
        return self.metadata.namespace or default

    def annotation(self, key: str) -> str | None:
        return (self.metadata.annotations or {}).get(key)


class VirtualService(_Resource):
    kind: str = "VirtualService"
    spec: VirtualServiceSpec


class DestinationRule(_Resource):
    kind: str = "DestinationRule"
    spec: DestinationRuleSpec

    def subset_names(self) -> list[str]:
        return [s.name for s in self.spec.subsets]


def fqdn(host: str, namespace: str, domain: str = CLUSTER_DOMAIN) -> str:
    """Istio's reading of a host: a short name is relative to the object's namespace."""
    return host if "." in host else f"{host}.{namespace}.svc.{domain}"


def _describe(kind: str, raw: Any, error: ValidationError) -> str:
    name = "?"
    if isinstance(raw, dict) and isinstance(raw.get("metadata"), dict):
        name = str(raw["metadata"].get("name", "?"))
    first = _problems(error)[0]
    return f"{kind} '{name}' cannot be read: {first}; fix the object and try again"


def _problems(error: ValidationError) -> list[str]:
    return [f"/{'/'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in error.errors()]
