"""PromQL for a canary health check over Istio's standard metrics. Pure: no I/O.

Every value that reaches a query is first validated (a Kubernetes name, or a label value for a
version) and then escaped for a double-quoted PromQL string, and for RE2 where it sits inside
`=~`. A value that fails validation raises `UnsafeLabel` before any query text exists.

Two queries cover a check, each returning canary and stable together:

- `requests_by_class`: requests in the window per version and response class (2xx, 5xx, ...),
  which gives both the request count and the 5xx share;
- `p99_latency`: the 99th percentile request duration per version, in milliseconds.

A subject may carry label matchers that every series it reads must have (`cluster="prod-eu"`,
for one wave cluster in a Prometheus that several clusters share): validated the same way
(`label_matchers`), and each value escaped by `quote`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

DEFAULT_VERSION_LABEL = "destination_version"
SERVICE_LABEL = "destination_service_name"  # host-based canaries: the versions are Services
# Which proxy's report to count: the receiving sidecar (destination), or in ambient mode the
# waypoint, which is the only one that sees requests (ztunnel reports only TCP).
REPORTERS = ("destination", "waypoint", "source")
DEFAULT_REPORTER = "destination"
REQUESTS_METRIC = "istio_requests_total"
DURATION_BUCKETS_METRIC = "istio_request_duration_milliseconds_bucket"
# TCP and TLS routes carry connections, not requests: Istio counts each closed connection with
# Envoy's response flags, "-" when nothing went wrong (UF: upstream connect failure, UH: no
# healthy upstream, ...).
CONNECTIONS_METRIC = "istio_tcp_connections_closed_total"
FAILED_CONNECTION = "5xx"  # a failed connection is TCP's 5xx: the same error count downstream
MIN_WINDOW = timedelta(minutes=1)
NEWEST_LABEL = "scrape"  # marks `newest_sample`'s series among the request counts
PLACEHOLDERS = ("namespace", "service", "canary", "stable", "window", "version_label")

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"[a-z0-9]([-a-z0-9._]*[a-z0-9])?")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_CODE_TO_CLASS = '"response_code", "([0-9])[0-9][0-9]"'  # 503 → 5xx; "0" (no response) → ""
_RE2_META = frozenset("\\.+*?()|[]{}^$")
_DURATION_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_NAME_RULE = (
    "lowercase letters, digits and '-', starting and ending with a letter or digit, "
    "at most 63 characters"
)
_VERSION_RULE = (
    "lowercase letters, digits, '-', '.' and '_', starting and ending with a letter or digit, "
    "at most 63 characters"
)
_LABEL_NAME_RULE = (
    "a Prometheus label name: letters, digits and '_', not starting with a digit or '__' (cluster)"
)
# Labels the standard queries match on or group by themselves: no cluster matcher may name one
QUERY_LABELS = frozenset(
    {
        "reporter",
        "destination_service_namespace",
        SERVICE_LABEL,
        DEFAULT_VERSION_LABEL,
        "le",
        "response_code",
        "response_flags",
        "response_class",
        NEWEST_LABEL,
    }
)
Matchers = tuple[tuple[str, str], ...]  # (label name, value): each series must have it


class UnsafeLabel(ValueError):
    """A value was refused before it could reach a PromQL query."""

    def __init__(self, what: str, value: str, rule: str) -> None:
        super().__init__(f"{what} {value!r} cannot go into a Prometheus query: {rule}")
        self.what, self.value = what, value


class TemplateError(ValueError):
    """A custom check's PromQL template uses something other than the known placeholders."""


@dataclass(frozen=True)
class Subject:
    """The two versions of one service that a check compares; validated on construction."""

    namespace: str
    service: str
    stable: str
    canary: str
    version_label: str = DEFAULT_VERSION_LABEL
    reporter: str = DEFAULT_REPORTER
    protocol: str = "http"  # "tcp": connections are counted, and there is no request latency
    labels: Matchers = ()  # every series read must carry these: cluster="prod-eu"

    def __post_init__(self) -> None:
        if self.reporter not in REPORTERS:
            raise UnsafeLabel(
                "reporter", self.reporter, f"it must be one of {', '.join(REPORTERS)}"
            )
        _require(self.namespace, "namespace", _DNS1123_LABEL, f"a DNS-1123 label: {_NAME_RULE}")
        _require(self.service, "service", _DNS1123_LABEL, f"a DNS-1123 label: {_NAME_RULE}")
        for what, version in (("stable version", self.stable), ("canary version", self.canary)):
            _require(version, what, _LABEL_VALUE, f"a label value: {_VERSION_RULE}")
        if not _LABEL_NAME.fullmatch(self.version_label) or self.version_label.startswith("__"):
            raise UnsafeLabel(
                "version label", self.version_label, "a Prometheus label name like [a-zA-Z_]\\w*"
            )
        label_matchers(dict(self.labels), taken=(self.version_label,))


def _require(value: str, what: str, pattern: re.Pattern[str], rule: str) -> None:
    if len(value) > 63 or not pattern.fullmatch(value):
        raise UnsafeLabel(what, value, f"it must be {rule}")


def label_matchers(labels: Mapping[str, str], *, taken: Iterable[str] = ()) -> Matchers:
    """`labels` as matchers that every query adds to its selector, in their order; an unsafe
    one raises `UnsafeLabel`. A name must be a label name that is not reserved (`__name__`) and
    not one the queries set themselves (`QUERY_LABELS`, and `taken`); a value must not be empty
    (`cluster=""` would select the series that have no cluster) or hold a control character."""
    reserved = QUERY_LABELS.union(taken)
    for name, value in labels.items():
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise UnsafeLabel("label name", name, f"it must be {_LABEL_NAME_RULE}")
        if name in reserved:
            raise UnsafeLabel(
                "label name",
                name,
                "the health queries set that label themselves; name the one"
                " that tells the clusters' series apart (cluster)",
            )
        if not value or not value.isprintable():
            raise UnsafeLabel(
                f"value of label {name}", value, "it must be non-empty printable text (prod-eu)"
            )
    return tuple(labels.items())


def quote(value: str) -> str:
    """`value` as a double-quoted PromQL string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def regex_literal(value: str) -> str:
    """`value` as an RE2 pattern that matches exactly `value` (`v2.1` does not match `v2x1`)."""
    return "".join(f"\\{char}" if char in _RE2_META else char for char in value)


def duration(window: timedelta) -> str:
    """`window` as a PromQL duration in whole seconds, rounded up: `5m`, `1h30m`, `1m30s`."""
    remaining = -(-window // timedelta(seconds=1))
    if remaining < 1:
        raise ValueError(f"a query window must be at least one second, not {window}")
    parts = []
    for unit, seconds in _DURATION_UNITS:
        count, remaining = divmod(remaining, seconds)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def window_for(interval: timedelta) -> timedelta:
    """The window a check looks back over: the step interval, and never less than a minute."""
    return max(interval, MIN_WINDOW)


def selector(subject: Subject) -> str:
    """Both versions of the service, as the reporter (the receiving sidecar by default) saw
    them. When the versions are
    two Services (host-based), they are told apart by their Service names instead."""
    versions = "|".join(regex_literal(v) for v in (subject.stable, subject.canary))
    service = f"{SERVICE_LABEL}={quote(subject.service)}"
    matchers = (
        f"reporter={quote(subject.reporter)}",
        f"destination_service_namespace={quote(subject.namespace)}",
        *([] if subject.version_label == SERVICE_LABEL else [service]),
        f"{subject.version_label}=~{quote(versions)}",
        *(f"{name}={quote(value)}" for name, value in subject.labels),
    )
    return "{" + ",".join(matchers) + "}"


def requests_by_class(subject: Subject, window: timedelta) -> str:
    """Requests in the window per version and response class (`2xx`, `5xx`, ...); for a TCP
    subject, closed connections, those with a response flag in class `5xx`."""
    if subject.protocol == "tcp":
        return connections_by_outcome(subject, window)
    counts = f"increase({REQUESTS_METRIC}{selector(subject)}[{duration(window)}])"
    classes = f'label_replace({counts}, "response_class", "${{1}}xx", {_CODE_TO_CLASS})'
    return f"sum by ({subject.version_label}, response_class) ({classes})"


def newest_sample(subject: Subject) -> str:
    """When Prometheus last scraped each version's counters: the newest sample's timestamp
    (Unix seconds), in a series of its own (`scrape="newest"`), so that it can ride along with
    `requests_by_class` in one query (`... or newest_sample(...)`): their label sets differ,
    so `or` keeps both."""
    metric = CONNECTIONS_METRIC if subject.protocol == "tcp" else REQUESTS_METRIC
    stamps = f"max by ({subject.version_label}) (timestamp({metric}{selector(subject)}))"
    return f'label_replace({stamps}, "{NEWEST_LABEL}", "newest", "", "")'


def requests_and_newest(subject: Subject, window: timedelta) -> str:
    """A look's first query: `requests_by_class` and, beside it, `newest_sample`."""
    return f"{requests_by_class(subject, window)} or {newest_sample(subject)}"


def connections_by_outcome(subject: Subject, window: timedelta) -> str:
    """Connections closed in the window per version, failed ones (any response flag but `-`)
    in response class `5xx`."""
    counts = f"increase({CONNECTIONS_METRIC}{selector(subject)}[{duration(window)}])"
    failed = (
        f'label_replace({counts}, "response_class", "{FAILED_CONNECTION}", '
        '"response_flags", "[^-].*|-.+")'
    )
    return f"sum by ({subject.version_label}, response_class) ({failed})"


def p99_latency(subject: Subject, window: timedelta) -> str:
    """The 99th percentile request duration per version, in milliseconds."""
    rates = f"rate({DURATION_BUCKETS_METRIC}{selector(subject)}[{duration(window)}])"
    return f"histogram_quantile(0.99, sum by (le, {subject.version_label}) ({rates}))"


def latency_buckets(subject: Subject, window: timedelta) -> str:
    """Cumulative request counts per version and `le` bucket, for `judge.samples_from_histogram`."""
    counts = f"increase({DURATION_BUCKETS_METRIC}{selector(subject)}[{duration(window)}])"
    return f"sum by (le, {subject.version_label}) ({counts})"


def render(template: str, subject: Subject, window: timedelta) -> str:
    """Fill a custom check's template: str.format syntax, so PromQL braces are doubled.

    `{namespace}`, `{service}`, `{canary}` and `{stable}` give values escaped for use inside a
    double-quoted string; `{canary:re}` and `{stable:re}` are escaped for `=~` as well.
    `{window}` is a PromQL duration and `{version_label}` a bare label name. Anything else,
    including attribute access, indexing and conversions, is a `TemplateError`.
    """
    values = _template_values(subject, window)
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as e:
        raise TemplateError(
            f"malformed PromQL template ({e}); write PromQL's braces as {{{{ }}}}"
        ) from e
    return "".join(
        literal + ("" if name is None else _fill(name, spec, conversion, values))
        for literal, name, spec, conversion in fields
    )


def _template_values(subject: Subject, window: timedelta) -> dict[tuple[str, str], str]:
    versions = {"canary": subject.canary, "stable": subject.stable}
    values = {
        ("namespace", ""): subject.namespace,
        ("service", ""): subject.service,
        ("window", ""): duration(window),
        ("version_label", ""): subject.version_label,
    }
    for name, version in versions.items():
        values[(name, "")] = version
        values[(name, "re")] = regex_literal(version)
    return {key: quote(value)[1:-1] for key, value in values.items()}


def _fill(
    name: str, spec: str | None, conversion: str | None, values: dict[tuple[str, str], str]
) -> str:
    if name not in PLACEHOLDERS:
        known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
        raise TemplateError(f"unknown placeholder {{{name}}} in PromQL template; known: {known}")
    if conversion is not None or (name, spec or "") not in values:
        raise TemplateError(
            f"placeholder {{{name}}} takes no conversion and no format spec other than"
            " `:re` (on {canary} and {stable} only)"
        )
    return values[(name, spec or "")]
