"""Small pieces of the command language shared by chat and the CLI. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence

from commands.names import CLUSTER_NAME, CLUSTER_RULE, DNS1123_LABEL
from commands.steps import steps_problem

# [0-9], not \d: int() would quietly accept Arabic-Indic or Devanagari digits.
_DURATION = re.compile(r"^([0-9]{1,5})([smh])$")
_UNITS = {"s": 1, "m": 60, "h": 3600}
MAX_INTERVAL_S = 86_400
LABEL_RULE = "up to 63 lower-case letters, digits or '-' (not at either end)"
_SHOWN_CHARS = 30  # user text quoted back is cut short so a message stays one short line


class GrammarError(ValueError):
    """Text that does not parse; the message says what to type instead."""


def shown(text: str) -> str:
    """`text` quoted for a message: repr (so control characters stay escaped), cut short."""
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 1] + "…"
    return repr(text)


def is_label(text: str) -> bool:
    return DNS1123_LABEL.fullmatch(text) is not None


def split_service(text: str) -> tuple[str, str | None]:
    """`weather` → (weather, None); `weather.prod` → (weather, prod)."""
    name, _, namespace = text.strip().lower().partition(".")
    # isascii first: lower() turns the Kelvin sign into a plain 'k'.
    if not text.isascii() or not is_label(name) or (namespace and not is_label(namespace)):
        raise GrammarError(
            f"{shown(text)} is not a service name: use `name` or `name.namespace`, "
            f"each {LABEL_RULE}"
        )
    return name, namespace or None


def parse_service(text: str, default_namespace: str) -> tuple[str, str]:
    """`weather` → (default_namespace, weather); `weather.prod` → (prod, weather)."""
    name, namespace = split_service(text)
    if namespace is None and not is_label(default_namespace):
        raise GrammarError(f"{shown(default_namespace)} is not a namespace: use {LABEL_RULE}")
    return namespace or default_namespace, name


def parse_duration(text: str) -> int:
    """`30s`, `5m`, `1h` → seconds."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise GrammarError(f"{shown(text)} is not a duration: write it like 30s, 5m or 1h")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not 1 <= seconds <= MAX_INTERVAL_S:
        raise GrammarError(f"{shown(text)} is out of range: use between 1s and 24h")
    return seconds


def parse_analysis(text: str) -> int:
    """`analysis 10s`: seconds between looks at a held step; `off` (or 0): only when it falls
    due."""
    return 0 if text.strip().lower() in ("off", "0") else parse_duration(text)


def parse_steps(text: str) -> tuple[int, ...]:
    """`5,10,25,50,100` → (5, 10, 25, 50, 100); the rollout checks that they climb to 100."""
    parts = [p.strip().removesuffix("%") for p in text.split(",")]
    if not all(p.isdigit() and p.isascii() for p in parts):
        raise GrammarError(f"{shown(text)} is not a list of steps: write it like 5,10,25,50,100")
    return tuple(int(p) for p in parts)


def parse_cluster(text: str) -> str:
    """`prod-eu`: one wave cluster's name, and ` cluster prod-eu` as a command says it."""
    name = text.lower()
    if not CLUSTER_NAME.fullmatch(name):
        raise GrammarError(
            f"{shown(name)} is not a cluster name: name one cluster, with {CLUSTER_RULE}"
        )
    return name


def on_cluster(cluster: str | None) -> str:
    """What a command's text ends with when it acts on a wave cluster's rollout."""
    return f" cluster {cluster}" if cluster else ""


def parse_clusters(text: str) -> tuple[str, ...]:
    """`canary-eu,prod-eu` → ("canary-eu", "prod-eu"): a wave's clusters in order, each once."""
    names = tuple(text.split(","))
    bad = next((n for n in names if not CLUSTER_NAME.fullmatch(n)), None)
    if bad is not None:
        raise GrammarError(
            f"{shown(bad)} is not a cluster name: use {CLUSTER_RULE}, comma-separated"
        )
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise GrammarError(f"cluster {twice} is named twice: name each cluster once")
    return names


def check_steps(steps: tuple[int, ...]) -> tuple[int, ...]:
    """The rollout's rule for steps, checked early, so chat can answer before anything is queued."""
    problem = steps_problem(steps)
    if problem is not None:
        raise GrammarError(problem)
    return steps


# Pod labels as Kubernetes takes them (apimachinery's validation of label keys and values): a
# key is a name of up to 63 characters, optionally after a DNS-subdomain prefix and '/'; a value
# is a name of up to 63 characters (an empty one selects nothing useful here, so it is refused).
_LABEL_PART = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
MAX_POD_LABELS = 10
POD_LABELS_RULE = (
    "KEY=VALUE pairs joined by commas, each of up to 63 letters, digits, '-', '_' or '.', "
    "like version=v3,track=canary"
)
PodLabels = tuple[tuple[str, str], ...]


def parse_labels(text: str) -> PodLabels:
    """`version=v3,track=canary` → the pod labels a new canary subset selects, in key order."""
    pairs = [pair.partition("=") for pair in text.split(",")] if text.isascii() else []
    if not pairs or not all(sign for _, sign, _ in pairs):
        raise _not_labels(text)
    return check_labels([(key, value) for key, _, value in pairs], text)


def check_labels(pairs: Sequence[tuple[str, str]], text: str | None = None) -> PodLabels:
    """Pod labels as Kubernetes takes them, each key once, at most MAX_POD_LABELS, in key
    order; `text`: how the user wrote them, for the message."""
    said = text if text is not None else ",".join(f"{k}={v}" for k, v in pairs)
    labels: dict[str, str] = {}
    for key, value in pairs:
        if not (_is_label_key(key) and _LABEL_PART.fullmatch(value)):
            raise _not_labels(said)
        if key in labels:
            raise GrammarError(f"label {shown(key)} is given twice: keep one")
        labels[key] = value
    if not labels:
        raise _not_labels(said)
    if len(labels) > MAX_POD_LABELS:
        raise GrammarError(f"{len(labels)} labels are too many: name at most {MAX_POD_LABELS}")
    return tuple(sorted(labels.items()))


def _not_labels(text: str) -> GrammarError:
    return GrammarError(f"{shown(text)} is not a list of pod labels: write {POD_LABELS_RULE}")


def _is_label_key(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and not _LABEL_PREFIX.fullmatch(prefix):
        return False
    return _LABEL_PART.fullmatch(name) is not None
