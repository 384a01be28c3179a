"""A Kubernetes API server for Istio's networking kinds, served over real HTTP on loopback.

No API server binary can be had here, so the demo and the tests talk to this one with the
official `kubernetes` client exactly as they would to a cluster. It behaves like the real
server wherever the bot could tell the difference: `Status` error bodies, resourceVersion
preconditions, JSON and merge patches, CRD schema validation, RBAC refusals, watch streams.
Tests can also add latency, inject faults (error answers, conflict storms, black holes,
late answers, dropped connections), play a concurrent foreign writer, and read the log of
every request, each with the fault done to it and the bearer token that sent it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import re
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from bot.mesh.schema import served_versions
from sandbox import rbac
from sandbox.fields import (
    managed_fields_after,
    manager_from_user_agent,
    prune_nulls,
    prune_unknown,
    strict_decoding_error,
    unknown_field_warnings,
)
from sandbox.jsonpatch import (
    JsonPatchError,
    apply_json_patch,
    apply_merge_patch,
    json_equal,
)
from sandbox.kubeconfig import write_kubeconfig
from sandbox.loopback import TrackingHTTPServer
from sandbox.paging import decode_continue, page_of, parse_limit
from sandbox.rbac import Attributes, Rbac
from sandbox.seeding import load_yaml_documents, seed
from sandbox.validation import Cause, schema_causes, with_not_checked

_log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
Mutation = Callable[[JsonObject], None]

GROUP = "networking.istio.io"
SERVICE_ACCOUNT = "system:serviceaccount:canary-bot:canary-bot"
DEFAULT_VERSIONS = ("v1", "v1beta1", "v1alpha3")
HISTORY_LIMIT = 10_000
# How often an open watch that asked for bookmarks gets one (the real server's: a minute).
BOOKMARK_INTERVAL = 60.0
# A watch with a timeout gets a bookmark this long before it ends, as from the real server.
_BOOKMARK_BEFORE_END = 2.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
# How long stop() lets open watches write their last chunk before it shuts their connections.
_STOP_GRACE_S = 2.0
# How often an idle watch checks whether its client went away or the server is stopping.
_WATCH_POLL_SECONDS = 0.2
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON_PATCH = "application/json-patch+json"
_MERGE_PATCH = "application/merge-patch+json"
# The logged status of a request the server never handled.
NOT_HANDLED = 0


@dataclass(frozen=True)
class Resource:
    """One served kind, with the names discovery advertises for it."""

    plural: str
    kind: str
    short_names: tuple[str, ...]
    group: str = GROUP  # "" for the core API (/api/v1)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def has_schema(self) -> bool:
        return self.kind in ("VirtualService", "DestinationRule", "HTTPRoute")

    @property
    def has_status_subresource(self) -> bool:
        """Written only through `.../status`, as Istio's CRDs declare (`subresources.status`);
        the sandbox's Pods take a status with the object still (tests/kube/DIVERGENCES.md)."""
        return self.has_schema


RESOURCES = {
    r.plural: r
    for r in (
        Resource("virtualservices", "VirtualService", ("vs",)),
        Resource("destinationrules", "DestinationRule", ("dr",)),
        Resource("gateways", "Gateway", ("gw",)),
    )
}
# The core kinds the bot reads: Pods, to tell whether a canary selects any that are ready, and
# Services, whose selector says which pods a host-based canary is.
CORE_RESOURCES = {
    "pods": Resource("pods", "Pod", ("po",), group=""),
    "services": Resource("services", "Service", ("svc",), group=""),
}
# RBAC's own kinds, and the review that tells a caller what it may do.
RBAC_RESOURCES = {
    plural: Resource(plural, kind, (), group=rbac.GROUP) for plural, kind in rbac.KINDS.items()
}
REVIEW_GROUP = "authorization.k8s.io"
RULES_REVIEW = Resource("selfsubjectrulesreviews", "SelfSubjectRulesReview", (), REVIEW_GROUP)
# The Gateway API's HTTPRoutes (gateway.networking.k8s.io/v1), the other kind the bot splits.
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_RESOURCES = {"httproutes": Resource("httproutes", "HTTPRoute", (), group=GATEWAY_GROUP)}
_SERVED = (RESOURCES, CORE_RESOURCES, GATEWAY_RESOURCES)
RESOURCES_BY_KIND = {r.kind: r for served in _SERVED for r in served.values()}
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


class Fault(StrEnum):
    """What an injected fault did to a request, as the request log tells."""

    ERROR = "error"  # answered an injected error status; not handled
    BLACK_HOLE = "black-hole"  # never handled, never answered; the connection closed when cleared
    HANG = "hang"  # handled at once, answered late
    DROP = "drop"  # the connection closed without an answer


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the server saw it.

    `status` is what the server made of it (NOT_HANDLED if it never handled it); `fault` says
    what was done to it instead of answering normally; `user` is the bearer token it carried
    (the sandbox takes any token as the caller's name, so processes can be told apart).
    """

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: bytes
    status: int
    at: float
    fault: Fault | None = None
    user: str = ""

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_write(self) -> bool:
        """A request that may change what is stored (a rules review, though a POST, cannot)."""
        return self.method in _WRITE_METHODS and f"/{REVIEW_GROUP}/" not in self.path

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"

    @property
    def is_watch(self) -> bool:
        return _is_watch(self)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


# --- Status errors, worded like the real API server's -------------------------------------

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An error answer; it becomes a `Status` body with the same code."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: JsonObject | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = details
        self.headers = headers

    def status(self) -> JsonObject:
        body: JsonObject = {"kind": "Status", "apiVersion": "v1", "metadata": {}}
        body |= {"status": "Failure", "message": self.message, "reason": self.reason}
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(resource: Resource, name: str | None, **extra: Any) -> JsonObject:
    details: JsonObject = {"group": resource.group, "kind": resource.plural}
    return details | ({"name": name} if name else {}) | extra


def _not_found(resource: Resource, name: str) -> ApiError:
    message = f'{resource.qualified} "{name}" not found'
    return ApiError(404, message, details=_details(resource, name))


def _already_exists(resource: Resource, name: str) -> ApiError:
    message = f'{resource.qualified} "{name}" already exists'
    return ApiError(409, message, reason="AlreadyExists", details=_details(resource, name))


def _conflict(resource: Resource, name: str) -> ApiError:
    message = (
        f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    return ApiError(409, message, details=_details(resource, name))


def _forbidden(
    resource: Resource,
    name: str | None,
    verb: str,
    namespace: str | None,
    user: str = SERVICE_ACCOUNT,
    *,
    subresource: str | None = None,
) -> ApiError:
    """The RBAC authorizer's 403, in its words."""
    subject = f'{resource.qualified} "{name}"' if name else resource.qualified
    plural = f"{resource.plural}/{subresource}" if subresource else resource.plural
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    message = (
        f'{subject} is forbidden: User "{user}" cannot {verb} resource '
        f'"{plural}" in API group "{resource.group}" {scope}'
    )
    return ApiError(403, message, details=_details(resource, name))


def _unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized")


def _namespace_not_found(namespace: str) -> ApiError:
    details = {"name": namespace, "kind": "namespaces"}
    return ApiError(404, f'namespaces "{namespace}" not found', details=details)


def _too_large_resource_version(asked: int, current: int) -> ApiError:
    cause = {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
    message = f"Timeout: Too large resource version: {asked}, current: {current}"
    return ApiError(504, message, details={"causes": [cause], "retryAfterSeconds": 1})


def _invalid(resource: Resource, name: str, causes: list[Cause]) -> ApiError:
    """422 for `causes`, each a field path (or none, `<nil>`) and what is wrong there."""
    lines = [f"{c.field}: {c.message}" for c in causes]
    summary = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    message = f'{resource.kind}.{resource.group} "{name}" is invalid: {summary}'
    details = {"name": name} if name else {}
    details |= {"group": resource.group, "kind": resource.kind}
    return ApiError(422, message, details=details | {"causes": [c.as_json() for c in causes]})


def _update_without_resource_version(resource: Resource, name: str) -> ApiError:
    """The real server's 422 for a PUT without metadata.resourceVersion: unlike a schema's 422,
    it names the resource by its plural."""
    cause = Cause("metadata.resourceVersion", "Invalid value: 0: must be specified for an update")
    message = f'{resource.qualified} "{name}" is invalid: {cause.field}: {cause.message}'
    details = {"name": name, "group": resource.group, "kind": resource.plural}
    return ApiError(422, message, details=details | {"causes": [cause.as_json()]})


def _patch_rejected(error: JsonPatchError) -> ApiError:
    # The real server says only the first sentence; the rest helps whoever reads the log.
    message = f"the server rejected our request due to an error in our request: {error}"
    cause = {"reason": "FieldValueInvalid", "message": str(error), "field": "patch"}
    return ApiError(422, message, details={"causes": [cause]})


_DNS_SUBDOMAIN_PATTERN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS_SUBDOMAIN = re.compile(_DNS_SUBDOMAIN_PATTERN)


def _bad_name(name: str) -> str:
    """The real server's words for a name that is not a DNS subdomain."""
    return (
        f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'example.com', regex used for validation is "
        f"'{_DNS_SUBDOMAIN_PATTERN}')"
    )


def _bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def _unsupported_media_type(content_type: str) -> ApiError:
    message = (
        f"the body of the request was in an unknown format ({content_type or 'none'}) - "
        f"accepted media types include: {_JSON_PATCH}, {_MERGE_PATCH}"
    )
    return ApiError(415, message)


def _continue_expired() -> ApiError:
    message = (
        "The provided continue parameter is too old to display a consistent list result. You "
        "can start a new list without the continue parameter."
    )
    return ApiError(410, message)


def _expired(since: int, oldest: int) -> ApiError:
    return ApiError(410, f"too old resource version: {since} ({oldest})")


def _no_such_path() -> ApiError:
    return ApiError(404, "the server could not find the requested resource", details={})


def _method_not_allowed(method: str) -> ApiError:
    message = f"the server does not allow this method on the requested resource: {method}"
    return ApiError(405, message)


# --- Requests, routes and the store ---------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: bytes
    user: str = ""
    user_agent: str = ""

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"

    @property
    def field_manager(self) -> str:
        """Who `managedFields` names for this write: `fieldManager`, else the User-Agent's."""
        return self.query.get("fieldManager") or manager_from_user_agent(self.user_agent)

    @property
    def field_validation(self) -> str:
        """What to do with unknown fields: Strict refuses, Warn (the default) and Ignore drop."""
        return self.query.get("fieldValidation") or "Warn"

    def json(self) -> Any:
        try:
            return json.loads(self.body, parse_float=_number) if self.body else None
        except ValueError as error:
            raise _bad_request(f"the request body is not valid JSON: {error}") from error

    def json_object(self) -> JsonObject:
        body = self.json()
        if not isinstance(body, dict):
            raise _bad_request("the request body must be a JSON object")
        return body


def _number(text: str) -> float | int:
    """A JSON number with a fraction or an exponent, as the real server keeps it: a float64,
    which it writes back without the `.0` when it is whole (`100.0` is `100`)."""
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 1e21 else value


@dataclass(frozen=True)
class _Reply:
    status: int
    payload: JsonObject
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Route:
    version: str
    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None = None  # "status"

    @property
    def key(self) -> tuple[str, str, str]:
        assert self.namespace is not None and self.name is not None
        return (self.resource.plural, self.namespace, self.name)


@dataclass(frozen=True)
class _WatchPlan:
    route: _Route
    since: int | None
    deadline: float | None
    selector: _Selector
    bookmarks: bool = False

    def remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()


@dataclass(frozen=True)
class _Event:
    revision: int
    type: str
    obj: JsonObject
    previous: JsonObject | None = None  # the object before, for a watch with a selector


@dataclass(frozen=True)
class _Hangup:
    """Close the connection without answering."""


@dataclass
class _Injection:
    """One injected fault, for the next `remaining` matching requests (None: until cleared)."""

    fault: Fault
    remaining: int | None
    methods: frozenset[str] | None
    path_contains: str | None
    error: Callable[[_Request], ApiError] | None = None
    seconds: float = 0.0
    applied: bool = False
    watch: bool | None = None  # watches only (True), or all but watches (False)

    def matches(self, request: _Request) -> bool:
        if self.remaining == 0 or (self.methods and request.method not in self.methods):
            return False
        if self.watch is not None and _is_watch(request) != self.watch:
            return False
        return not self.path_contains or self.path_contains in request.path

    def take(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


def _methods(method: str | None) -> frozenset[str] | None:
    return frozenset({method.upper()}) if method else None


Key = tuple[str, str, str]
_Operation = Callable[[_Route, _Request], _Reply | _WatchPlan]
_Outcome = _Reply | _WatchPlan | _Hangup


@dataclass
class _Store:
    """Objects by (plural, namespace, name), the revision counter and the event history.

    Stored dicts are never mutated in place, so events can share them; callers hold the lock.
    """

    history_limit: int
    objects: dict[Key, JsonObject] = field(default_factory=dict)
    revision: int = 0
    history: deque[tuple[Key, _Event]] = field(default_factory=deque)
    # The revision of the newest event dropped from the history: older watches get 410.
    forgotten_through: int = 0

    def write(self, key: Key, obj: JsonObject, event_type: str) -> JsonObject:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        previous = self.objects.get(key)
        self.objects[key] = obj
        self._record(key, _Event(self.revision, event_type, obj, previous))
        return obj

    def delete(self, key: Key) -> JsonObject:
        self.revision += 1
        removed = self.objects.pop(key)
        previous = removed
        removed = _with_metadata(removed, resourceVersion=str(self.revision))
        self._record(key, _Event(self.revision, "DELETED", removed, previous))
        return removed

    def _record(self, key: Key, event: _Event) -> None:
        if len(self.history) >= self.history_limit:
            self.forgotten_through = self.history.popleft()[1].revision
        self.history.append((key, event))

    def select(self, plural: str, namespace: str | None) -> list[JsonObject]:
        return [
            obj
            for (kind, ns, _), obj in sorted(self.objects.items())
            if kind == plural and namespace in (None, ns)
        ]

    def select_at(
        self, revision: int, plural: str, namespace: str | None
    ) -> list[tuple[Key, JsonObject]] | None:
        """The objects as they were at `revision`, in key order; None if that is older than
        the history remembers."""
        if revision < self.forgotten_through:
            return None
        state = {
            key: obj
            for key, obj in self.objects.items()
            if key[0] == plural and namespace in (None, key[1])
        }
        for key, event in reversed(self.history):
            if event.revision <= revision:
                break
            if key[0] != plural or namespace not in (None, key[1]):
                continue
            if event.previous is None:
                state.pop(key, None)
            else:
                state[key] = event.previous
        return sorted(state.items())

    def events_after(self, revision: int, plural: str, namespace: str | None) -> list[_Event]:
        events: list[_Event] = []
        for (kind, ns, _), event in reversed(self.history):
            if event.revision <= revision:
                break
            if kind == plural and namespace in (None, ns):
                events.append(event)
        return events[::-1]


def _with_metadata(obj: JsonObject, **changes: Any) -> JsonObject:
    return {**obj, "metadata": {**obj.get("metadata", {}), **changes}}


def _present(obj: JsonObject, route: _Route) -> JsonObject:
    """A copy of a stored object as seen through the route's API version."""
    rest = {k: v for k, v in copy.deepcopy(obj).items() if k != "apiVersion"}
    return {"apiVersion": route.resource.api_version(route.version), **rest}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _segments(path: str) -> list[str]:
    return [unquote(part) for part in path.strip("/").split("/") if part]


_SET_TERM = re.compile(r"^([^\s!=(),]+)\s+(in|notin)\s*\(([^()]*)\)$")
_EQUALITY_TERM = re.compile(r"^([^\s!=(),]+)\s*(==|!=|=)\s*([^\s!=(),]*)$")
_EXISTS_TERM = re.compile(r"^(!?)\s*([^\s!=(),]+)$")
# The fields a custom resource can be selected by (and Pods, here).
_SELECTABLE_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class _Requirement:
    """One term of a label selector: `key=v`, `key!=v`, `key in (a,b)`, `key notin (a)`,
    `key`, `!key`."""

    key: str
    operator: str  # "in", "notin", "exists" or "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, Any]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!":
            return self.key not in labels
        if self.operator == "in":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values


@dataclass(frozen=True)
class _Selector:
    """A list's or a watch's labelSelector and fieldSelector."""

    labels: tuple[_Requirement, ...] = ()
    fields: tuple[tuple[str, str, bool], ...] = ()  # (field, value, must equal)

    @property
    def empty(self) -> bool:
        return not self.labels and not self.fields

    def matches(self, obj: JsonObject) -> bool:
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        if not all(requirement.matches(labels) for requirement in self.labels):
            return False
        return all(
            (str(metadata.get(name.removeprefix("metadata."), "")) == value) is equal
            for name, value, equal in self.fields
        )


def _terms(text: str) -> list[str]:
    """`text` split at the commas outside parentheses."""
    terms, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return [term.strip() for term in terms if term.strip()]


def _parse_label_term(term: str) -> _Requirement:
    if found := _SET_TERM.match(term):
        values = frozenset(v.strip() for v in found.group(3).split(",") if v.strip())
        return _Requirement(found.group(1), found.group(2), values)
    if found := _EQUALITY_TERM.match(term):
        operator = "notin" if found.group(2) == "!=" else "in"
        return _Requirement(found.group(1), operator, frozenset({found.group(3)}))
    if found := _EXISTS_TERM.match(term):
        return _Requirement(found.group(2), "!" if found.group(1) else "exists")
    raise _bad_request(f"unable to parse requirement: label selector {term!r}")


def _parse_field_term(term: str) -> tuple[str, str, bool]:
    found = _EQUALITY_TERM.match(term)
    if found is None:
        raise _bad_request(f"invalid selector: {term!r}; can't understand {term!r}")
    name, operator, value = found.groups()
    if name not in _SELECTABLE_FIELDS:
        raise _bad_request(f"field label not supported: {name}")
    return name, value, operator != "!="


def _parse_selector(query: Mapping[str, str]) -> _Selector:
    labels = tuple(_parse_label_term(t) for t in _terms(query.get("labelSelector", "")))
    fields = tuple(_parse_field_term(t) for t in _terms(query.get("fieldSelector", "")))
    return _Selector(labels, fields)


def _parse_revision(text: str) -> int | None:
    """The revision a watch starts after; None means "send the current objects first"."""
    if text in ("", "0"):
        return None
    if not text.isdigit():
        raise _bad_request(f"resourceVersion {text!r} is not a valid resource version")
    return int(text)


def _next_generation(current: JsonObject, updated: JsonObject) -> int:
    generation = int(current.get("metadata", {}).get("generation", 1))
    spec_changed = not json_equal(current.get("spec"), updated.get("spec"))
    return generation + 1 if spec_changed else generation


# --- The server -----------------------------------------------------------------------------


class SandboxApiServer:
    """Serves VirtualServices, DestinationRules and Gateways on http://127.0.0.1:<port>.

    `history_limit` is the watch cache's window: a watch from a resourceVersion older than its
    events, or from before the server's last start, is answered 410 Expired. `tokens` (bearer
    token -> user name) turns on authentication: any other token is answered 401, and a 403
    names the token's user. `namespaces` makes only those namespaces exist (a create elsewhere
    is 404, as the NamespaceLifecycle admission answers); by default every namespace does.
    """

    def __init__(
        self,
        *,
        forbidden_namespaces: Iterable[str] = (),
        versions: Iterable[str] = DEFAULT_VERSIONS,
        port: int = 0,
        history_limit: int = HISTORY_LIMIT,
        tokens: Mapping[str, str] | None = None,
        namespaces: Iterable[str] | None = None,
        bookmark_interval: float = BOOKMARK_INTERVAL,
        admins: Iterable[str] | None = None,
    ) -> None:
        self._versions = tuple(versions)
        unknown = set(self._versions) - set(served_versions("VirtualService"))
        if not self._versions or unknown:
            raise ValueError(f"cannot serve versions {sorted(unknown) or 'none'} of {GROUP}")
        self._forbidden = frozenset(forbidden_namespaces)
        self._tokens = dict(tokens) if tokens is not None else None
        self._namespaces = frozenset(namespaces) if namespaces is not None else None
        self._rbac = Rbac.with_admins(admins) if admins is not None else None
        self._bookmark_interval = bookmark_interval
        self._port = port
        # One lock guards the store, the log and the injections; waiting on it wakes watchers.
        self._changed = threading.Condition(threading.RLock())
        self._store = _Store(history_limit)
        self._log: list[LoggedRequest] = []
        # The request this thread handles: a write is logged as it lands in the store, under
        # the lock, so whoever sees the change sees the write in the log too
        self._handling = threading.local()
        self._injections: list[_Injection] = []
        # Set to let go of held requests (black-holed or hanging); replaced once set.
        self._release = threading.Event()
        self._get_hooks: dict[Key, Mutation] = {}
        self._latency = 0.0
        self._stopping = False
        self._streams = 0  # watches streaming now
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._operations = self._operation_table()

    # Lifecycle

    def start(self) -> Self:
        self._stopping = False
        self._release = threading.Event()
        with self._changed:  # the watch cache starts empty: what came before is expired
            self._store.forgotten_through = self._store.revision
        self._http = _HttpServer(("127.0.0.1", self._port), self)
        self._thread = self._http.serve_in_thread("sandbox-apiserver")
        return self

    def stop(self) -> None:
        if self._http is None or self._thread is None:
            return
        with self._changed:
            self._stopping = True
            self._release.set()
            self._changed.notify_all()
            # Each open watch ends with its last chunk before the connections are shut: a
            # client sees the stream end, not break.
            self._changed.wait_for(lambda: self._streams == 0, timeout=_STOP_GRACE_S)
        self._http.close()
        self._thread.join()
        self._http, self._thread = None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._http is None:
            raise RuntimeError("the sandbox API server is not started")
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def versions(self) -> tuple[str, ...]:
        return self._versions

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(RESOURCES_BY_KIND)

    # Direct access for tests and seeding (no HTTP, no validation, no log entry)

    def get_object(self, namespace: str, plural: str, name: str) -> JsonObject | None:
        with self._changed:
            obj = self._store.objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list_objects(self, plural: str, namespace: str | None = None) -> list[JsonObject]:
        with self._changed:
            return copy.deepcopy(self._store.select(plural, namespace))

    def add_namespace(self, name: str) -> None:
        """Make namespace `name` exist, where only the namespaces given exist."""
        with self._changed:
            if self._namespaces is not None:
                self._namespaces |= {name}

    def put_object(self, obj: Mapping[str, Any]) -> JsonObject:
        """Create or replace `obj` (namespace "default" unless it names one), bumping the RV."""
        resource = RESOURCES_BY_KIND.get(str(obj.get("kind")))
        if resource is None:
            raise ValueError(f"the sandbox does not serve kind {obj.get('kind')!r}")
        candidate = _with_metadata(copy.deepcopy(dict(obj)))
        metadata = candidate["metadata"]
        metadata.setdefault("namespace", "default")
        if not metadata.get("name"):
            raise ValueError(f"{resource.kind} has no metadata.name")
        key = (resource.plural, metadata["namespace"], metadata["name"])
        with self._changed:
            return copy.deepcopy(self._store_system_write(key, candidate))

    def mutate(self, namespace: str, plural: str, name: str, mutate: Mutation) -> JsonObject:
        """Edit an object as another writer would: `mutate` changes a copy in place."""
        with self._changed:
            return copy.deepcopy(self._foreign_write((plural, namespace, name), mutate))

    def after_next_get(self, namespace: str, plural: str, name: str, mutate: Mutation) -> None:
        """Once: right after the next GET of the object is read, a foreign writer edits it.

        The GET still answers the object as it was, so the caller's next write is stale.
        """
        with self._changed:
            self._get_hooks[(plural, namespace, name)] = mutate

    def _foreign_write(self, key: Key, mutate: Mutation) -> JsonObject:
        current = self._store.objects.get(key)
        if current is None:
            raise KeyError(f"no {key[0]} {key[2]!r} in namespace {key[1]!r}")
        candidate = copy.deepcopy(current)
        mutate(candidate)
        return self._store_system_write(key, candidate)

    def _store_system_write(self, key: Key, candidate: JsonObject) -> JsonObject:
        current = self._store.objects.get(key)
        metadata = candidate["metadata"]
        candidate["apiVersion"] = self._stored_as(key[0])
        if current is None:
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("creationTimestamp", _now())
            metadata.setdefault("generation", 1)
        else:
            for system_field in ("uid", "creationTimestamp"):
                metadata[system_field] = current["metadata"][system_field]
            metadata["generation"] = _next_generation(current, candidate)
        stored = self._store.write(key, candidate, "ADDED" if current is None else "MODIFIED")
        self._changed.notify_all()
        return stored

    def _stored_as(self, plural: str) -> str:
        """The API version a kind is kept in: core kinds in v1, Istio's in the first served."""
        if plural in GATEWAY_RESOURCES:
            return f"{GATEWAY_GROUP}/v1"
        return "v1" if plural in CORE_RESOURCES else f"{GROUP}/{self._versions[0]}"

    # Injection: latency and faults. Each fault takes the next `n` requests that match `method`
    # (any, if None) and whose path contains `path_contains`; a request takes the first match.

    def set_latency(self, seconds: float) -> None:
        """Delay every request by `seconds` before it is handled."""
        self._latency = seconds

    def fail_next(
        self,
        n: int,
        status: int,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        reason: str | None = None,
        message: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next `n` matching requests with a `status` error instead of handling them."""
        headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
        text = message or f"injected fault: the sandbox answers {status}"
        error = ApiError(status, text, reason=reason, headers=headers)
        self._inject(_Injection(Fault.ERROR, n, _methods(method), path_contains, lambda _: error))

    def conflict_next(
        self, n: int, *, method: str | None = None, path_contains: str | None = None
    ) -> None:
        """A conflict storm: the next `n` matching writes get the 409 of a stale write."""
        methods = _methods(method) or _WRITE_METHODS
        self._inject(_Injection(Fault.ERROR, n, methods, path_contains, self._conflict_for))

    def black_hole(
        self,
        n: int | None = None,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        watch: bool | None = None,
    ) -> None:
        """Read the next `n` matching requests (all, if None; with `watch`, only watches or
        only the rest) and neither handle nor answer them: a watch taken so hears nothing.

        Each is logged at once; `clear_faults()` or `stop()` lets go of them, closing their
        connections unanswered.
        """
        methods = _methods(method)
        self._inject(_Injection(Fault.BLACK_HOLE, n, methods, path_contains, watch=watch))

    def hang_next(
        self, n: int, seconds: float, *, method: str | None = None, path_contains: str | None = None
    ) -> None:
        """Handle the next `n` matching requests at once but answer them `seconds` later (or at
        `clear_faults()`): a client that gives up first cannot tell that its write landed."""
        injection = _Injection(Fault.HANG, n, _methods(method), path_contains, seconds=seconds)
        self._inject(injection)

    def drop_next(
        self,
        n: int,
        *,
        applied: bool = False,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Close the connection of the next `n` matching requests without answering; with
        `applied`, each request takes effect first."""
        injection = _Injection(Fault.DROP, n, _methods(method), path_contains, applied=applied)
        self._inject(injection)

    def clear_faults(self) -> None:
        """Every injection off, latency included; requests held by a fault are let go."""
        with self._changed:
            self._latency = 0.0
            self._injections.clear()
            self._release.set()
            self._release = threading.Event()

    def _inject(self, injection: _Injection) -> None:
        with self._changed:
            self._injections.append(injection)

    def _take_injection(self, request: _Request) -> tuple[_Injection | None, threading.Event]:
        """The injection that takes `request`, if any, and the event that lets it go."""
        with self._changed:
            taken = next((i for i in self._injections if i.matches(request)), None)
            if taken is not None:
                taken.take()
                self._injections = [i for i in self._injections if i.remaining != 0]
            return taken, self._release

    def _conflict_for(self, request: _Request) -> ApiError:
        try:
            route = self._route(_segments(request.path))
        except ApiError:
            return ApiError(409, "injected fault: the object has been modified")
        return _conflict(route.resource, route.name or "")

    def _faulty_answer(
        self, request: _Request, injection: _Injection, release: threading.Event
    ) -> _Outcome:
        fault = injection.fault
        if injection.error is not None:
            error = injection.error(request)
            self._record(request, error.code, fault)
            return _Reply(error.code, error.status(), error.headers)
        if fault is Fault.HANG:
            outcome = self._handle(request, fault)
            release.wait(injection.seconds)
            return outcome
        if injection.applied:
            self._handle(request, fault)
        else:
            self._record(request, NOT_HANDLED, fault)
        if fault is Fault.BLACK_HOLE:
            release.wait()
        return _Hangup()

    # The request log

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request so far, oldest first."""
        with self._changed:
            return list(self._log)

    def writes(self) -> list[LoggedRequest]:
        """Write requests that succeeded, dry runs left out: what reached the store."""
        return [r for r in self.requests if r.is_write and r.succeeded and not r.dry_run]

    def clear_log(self) -> None:
        with self._changed:
            self._log.clear()

    def wait_for_request(
        self, predicate: Callable[[LoggedRequest], bool], timeout: float = 5.0
    ) -> LoggedRequest:
        """The first logged request matching `predicate`, waiting for it up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (found := next(filter(predicate, self._log), None)) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching request within {timeout} s")
                self._changed.wait(remaining)
            return found

    def _record(self, request: _Request, status: int, fault: Fault | None = None) -> None:
        entry = LoggedRequest(
            request.method,
            request.path,
            request.query,
            request.content_type,
            request.body,
            status,
            time.time(),
            fault,
            request.user,
        )
        with self._changed:
            self._log.append(entry)
            self._changed.notify_all()

    # Request handling

    def _answer(self, request: _Request) -> _Outcome:
        """The answer to one request, or a fault instead; logged before it is sent."""
        if self._latency:
            time.sleep(self._latency)
        injection, release = self._take_injection(request)
        if injection is not None:
            return self._faulty_answer(request, injection, release)
        return self._handle(request)

    def _handle(self, request: _Request, fault: Fault | None = None) -> _Reply | _WatchPlan:
        self._handling.fault, self._handling.logged = fault, False
        try:
            outcome = self._dispatch(request)
        except ApiError as error:
            outcome = _Reply(error.code, error.status(), error.headers)
        except Exception as error:  # a sandbox bug: answer like the real server, keep serving
            _log.exception("sandbox API server failed on %s %s", request.method, request.path)
            outcome = _Reply(500, ApiError(500, f"Internal error occurred: {error}").status())
        if not self._handling.logged:  # a write that landed was logged as it did
            self._record(request, outcome.status if isinstance(outcome, _Reply) else 200, fault)
        return outcome

    def _landed(self, request: _Request, status: int) -> None:
        """Log a write as it lands in the store (the caller holds the lock)."""
        self._record(request, status, getattr(self._handling, "fault", None))
        self._handling.logged = True

    def _dispatch(self, request: _Request) -> _Reply | _WatchPlan:
        parts = _segments(request.path)
        if (
            self._tokens is not None
            and request.user not in self._tokens
            and parts[:1] != ["sandbox"]
        ):
            raise _unauthorized()
        if parts[:2] == ["apis", rbac.GROUP] or parts[:2] == ["apis", REVIEW_GROUP]:
            return self._access_control(parts, request)
        discovery = self._discovery(parts)
        if discovery is not None:
            if request.method != "GET":
                raise _method_not_allowed(request.method)
            return _Reply(200, discovery)
        route = self._route(parts)
        operation = self._operation(route, request)
        return operation(route, request)

    def _route(self, parts: list[str]) -> _Route:
        if len(parts) >= 3 and parts[:2] == ["api", "v1"]:
            version, rest, served = "v1", parts[2:], CORE_RESOURCES
        elif len(parts) >= 4 and parts[:2] == ["apis", GROUP] and parts[2] in self._versions:
            version, rest, served = parts[2], parts[3:], RESOURCES
        elif len(parts) >= 4 and parts[1:3] == [GATEWAY_GROUP, "v1"]:
            version, rest, served = "v1", parts[3:], GATEWAY_RESOURCES
        else:
            raise _no_such_path()
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        resource = served.get(rest[0])
        subresource = None
        if len(rest) == 3 and rest[2] == "status":
            rest, subresource = rest[:2], "status"
        # Istio's kinds are namespaced: a name only makes sense inside a namespace.
        if resource is None or len(rest) > 2 or (len(rest) == 2 and namespace is None):
            raise _no_such_path()
        name = rest[1] if len(rest) == 2 else None
        return _Route(version, resource, namespace, name, subresource)

    def _operation(self, route: _Route, request: _Request) -> _Operation:
        """The method that serves `request`, once RBAC allows its verb."""
        verb, operation = self._operations.get((route.name is not None, request.method), ("", None))
        if operation is None or (verb == "create" and route.namespace is None):
            raise _method_not_allowed(request.method)
        if route.subresource is not None and verb not in ("get", "update", "patch"):
            raise _method_not_allowed(request.method)
        verb = "watch" if _is_watch(request) else verb
        if route.namespace in self._forbidden:
            user = self._user(request) or SERVICE_ACCOUNT
            raise _forbidden(route.resource, route.name, verb, route.namespace, user)
        self._authorize(
            request,
            verb,
            route.resource,
            route.namespace,
            route.name,
            subresource=route.subresource,
        )
        return operation

    def _user(self, request: _Request) -> str:
        """Who sent `request`: its token's user; without tokens, the bot's ServiceAccount."""
        return self._tokens.get(request.user, "") if self._tokens is not None else SERVICE_ACCOUNT

    def _authorize(
        self,
        request: _Request,
        verb: str,
        resource: Resource,
        namespace: str | None,
        name: str | None,
        *,
        subresource: str | None = None,
    ) -> None:
        """403 unless RBAC (if on) lets the request's user do `verb`."""
        if self._rbac is None:
            return
        user = self._user(request)
        plural = f"{resource.plural}/{subresource}" if subresource else resource.plural
        with self._changed:
            allowed = self._rbac.allows(
                Attributes(user, verb, resource.group, plural, namespace, name)
            )
        if not allowed:
            raise _forbidden(resource, name, verb, namespace, user, subresource=subresource)

    def _operation_table(self) -> dict[tuple[bool, str], tuple[str, _Operation]]:
        """(names an object?, HTTP method) -> (Kubernetes verb, the method serving it)."""
        return {
            (False, "GET"): ("list", self._list_or_watch),
            (False, "POST"): ("create", self._create),
            (True, "GET"): ("get", self._get),
            (True, "PUT"): ("update", self._replace),
            (True, "PATCH"): ("patch", self._patch),
            (True, "DELETE"): ("delete", self._delete),
        }

    # Access control: Roles, RoleBindings and the rules review (sandbox/rbac.py)

    def _access_control(self, parts: list[str], request: _Request) -> _Reply:
        if parts[2:] == ["v1", RULES_REVIEW.plural] and parts[1] == REVIEW_GROUP:
            if request.method != "POST":
                raise _method_not_allowed(request.method)
            return self._rules_review(request)
        rest = parts[3:] if parts[2:3] == ["v1"] and parts[1] == rbac.GROUP else []
        if len(rest) not in (3, 4) or rest[0] != "namespaces" or rest[2] not in RBAC_RESOURCES:
            raise _no_such_path()
        namespace, resource = rest[1], RBAC_RESOURCES[rest[2]]
        name = rest[3] if len(rest) == 4 else None
        verbs = {(False, "GET"): "list", (False, "POST"): "create"}
        verbs |= {(True, "GET"): "get", (True, "DELETE"): "delete"}
        verb = verbs.get((name is not None, request.method))
        if verb is None:
            raise _method_not_allowed(request.method)
        self._authorize(request, verb, resource, namespace, name)
        with self._changed:
            return self._rbac_operation(verb, resource, namespace, name, request)

    def _rbac_operation(
        self, verb: str, resource: Resource, namespace: str, name: str | None, request: _Request
    ) -> _Reply:
        if self._rbac is None:
            raise _no_such_path()
        plural, api_version = resource.plural, f"{rbac.GROUP}/v1"
        if verb == "list":
            items = self._rbac.list(plural, namespace)
            listing = {"apiVersion": api_version, "kind": f"{resource.kind}List"}
            metadata = {"resourceVersion": str(self._store.revision)}
            return _Reply(200, listing | {"items": items, "metadata": metadata})
        if verb == "create":
            obj = request.json_object()
            metadata = _checked_metadata(
                _Route("v1", resource, namespace, None), obj.get("metadata") or {}
            )
            name = str(metadata.get("name") or "")
            if not name:
                required = "Required value: name or generateName is required"
                raise _invalid(
                    resource, "", [Cause("metadata.name", required, "FieldValueRequired")]
                )
            if self._rbac.get(plural, namespace, name) is not None:
                raise _already_exists(resource, name)
            metadata |= {"uid": str(uuid.uuid4()), "creationTimestamp": _now()}
            metadata["resourceVersion"] = str(self._store.revision)
            created = obj | {"apiVersion": api_version, "kind": resource.kind, "metadata": metadata}
            if not request.dry_run:
                self._rbac.put(plural, namespace, created)
            return _Reply(201, created)
        found = self._rbac.get(plural, namespace, name or "")
        if found is None:
            raise _not_found(resource, name or "")
        if verb == "delete" and not request.dry_run:
            self._rbac.delete(plural, namespace, name or "")
            status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
            return _Reply(
                200, status | {"details": _details(resource, name, uid=found["metadata"]["uid"])}
            )
        return _Reply(200, found)

    def _rules_review(self, request: _Request) -> _Reply:
        """What the caller may do in the namespace it names: every rule bound to it there (all
        of them with RBAC off)."""
        body = request.json_object()
        namespace = str((body.get("spec") or {}).get("namespace") or "")
        if self._rbac is not None:
            with self._changed:
                status = self._rbac.review(self._user(request), namespace)
        else:
            status = Rbac.with_admins([""]).review("", namespace)
        review: JsonObject = {"apiVersion": f"{REVIEW_GROUP}/v1", "kind": RULES_REVIEW.kind}
        review |= {"metadata": {}, "spec": {"namespace": namespace}, "status": status}
        return _Reply(201, review)

    # Discovery

    def _discovery(self, parts: list[str]) -> JsonObject | None:
        """Read-only documents: discovery, and the sandbox's own request counts."""
        fixed: dict[tuple[str, ...], Callable[[], JsonObject]] = {
            ("sandbox", "requests"): self._request_summary,
            ("api",): lambda: {
                "kind": "APIVersions",
                "versions": ["v1"],
                **self._server_addresses(),
            },
            ("version",): _version_info,
            ("apis",): lambda: {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._group()],
            },
            ("apis", GROUP): self._group,
        }
        document = fixed.get(tuple(parts))
        if document is not None:
            return document()
        if len(parts) == 3 and parts[:2] == ["apis", GROUP] and parts[2] in self._versions:
            return self._resource_list(parts[2])
        return None

    def _request_summary(self) -> JsonObject:
        """The Kubernetes API requests so far, for a benchmark in another process: counts by
        method, and the successful writes with their wall-clock times and paths."""
        counts: dict[str, int] = {}
        writes = []
        for logged in self.requests:
            if logged.path.startswith("/sandbox/"):
                continue
            counts[logged.method] = counts.get(logged.method, 0) + 1
            if logged.is_write and logged.succeeded:
                writes.append(
                    {
                        "method": logged.method,
                        "path": logged.path,
                        "at": logged.at,
                        "body": logged.body.decode("utf-8", "replace"),
                    }
                )
        return {"kind": "SandboxRequests", "byMethod": counts, "writes": writes}

    def _server_addresses(self) -> JsonObject:
        address = {"clientCIDR": "0.0.0.0/0", "serverAddress": self.url.removeprefix("http://")}
        return {"serverAddressByClientCIDRs": [address]}

    def _group(self) -> JsonObject:
        versions = [{"groupVersion": f"{GROUP}/{v}", "version": v} for v in self._versions]
        group: JsonObject = {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP}
        return group | {"versions": versions, "preferredVersion": versions[0]}

    def _resource_list(self, version: str) -> JsonObject:
        resources = [
            {
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": True,
                "kind": r.kind,
                "verbs": _VERBS,
                "shortNames": list(r.short_names),
                "categories": ["istio-io", "networking-istio-io"],
            }
            for r in RESOURCES.values()
        ]
        listing: JsonObject = {"kind": "APIResourceList", "apiVersion": "v1"}
        return listing | {"groupVersion": f"{GROUP}/{version}", "resources": resources}

    # Reads

    def _get(self, route: _Route, request: _Request) -> _Reply:
        with self._changed:
            answer = _present(self._require(route), route)
            hook = self._get_hooks.pop(route.key, None)
            if hook is not None:
                self._foreign_write(route.key, hook)
        return _Reply(200, answer)

    def _require(self, route: _Route) -> JsonObject:
        obj = self._store.objects.get(route.key)
        if obj is None:
            raise _not_found(route.resource, route.name or "")
        return obj

    def _list_or_watch(self, route: _Route, request: _Request) -> _Reply | _WatchPlan:
        selector = _parse_selector(request.query)
        if _is_watch(request):
            return self._watch_plan(route, request, selector)
        return self._list(route, request, selector)

    def _list(self, route: _Route, request: _Request, selector: _Selector) -> _Reply:
        """The objects `selector` chooses, in pages if asked (sandbox/paging.py)."""
        asked = _parse_revision(request.query.get("resourceVersion", ""))
        try:
            limit = parse_limit(request.query.get("limit", ""))
            token = request.query.get("continue", "")
            going_on = decode_continue(token) if token else None
        except ValueError as error:
            raise _bad_request(str(error)) from error
        if request.query.get("resourceVersion") == "0":
            limit = 0  # served from the watch cache, whole
        with self._changed:
            if asked is not None and asked > self._store.revision:
                raise _too_large_resource_version(asked, self._store.revision)
            revision = going_on.revision if going_on else self._store.revision
            stored = self._store.select_at(revision, route.resource.plural, route.namespace)
            if stored is None:
                raise _continue_expired()
        keyed = [
            (f"/{ns}/{name}" if route.namespace is None else f"/{name}", obj)
            for (_, ns, name), obj in stored
        ]
        start = going_on.start if going_on else ""
        page = page_of(keyed, selector.matches, limit=limit, start=start, revision=revision)
        metadata: JsonObject = {"resourceVersion": str(revision)}
        if page.next is not None:
            metadata["continue"] = page.next.encode()
            if selector.empty:
                metadata["remainingItemCount"] = page.remaining
        elif route.resource.group:  # a custom resource's list always says it (as "")
            metadata["continue"] = ""
        listing: JsonObject = {"apiVersion": route.resource.api_version(route.version)}
        items = [_present(obj, route) for obj in page.items]
        listing |= {"kind": f"{route.resource.kind}List", "items": items}
        return _Reply(200, listing | {"metadata": metadata})

    # Writes

    def _create(self, route: _Route, request: _Request) -> _Reply:
        candidate = self._check_identity(route, request.json_object())
        metadata = candidate["metadata"]
        name = metadata.get("name")
        if not name:
            required = "Required value: name or generateName is required"
            causes = [Cause("metadata.name", required, "FieldValueRequired")]
            raise _invalid(route.resource, "", with_not_checked(causes))
        if not _DNS_SUBDOMAIN.fullmatch(name) or len(name) > 253:
            raise _invalid(route.resource, name, [Cause("metadata.name", _bad_name(name))])
        if metadata.get("resourceVersion"):
            raise _bad_request("resourceVersion should not be set on objects to be created")
        if self._namespaces is not None and route.namespace not in self._namespaces:
            raise _namespace_not_found(route.namespace or "")
        warnings = self._prune(route, request, candidate)
        if route.resource.has_status_subresource:
            candidate.pop("status", None)  # a create cannot set the status
        metadata.pop("managedFields", None)
        key = (route.resource.plural, route.namespace or "", name)
        with self._changed:
            if key in self._store.objects:
                raise _already_exists(route.resource, name)
            self._validate(route, candidate, name)
            metadata |= {"uid": str(uuid.uuid4()), "creationTimestamp": _now(), "generation": 1}
            self._manage_fields(route, request, None, candidate)
            return _Reply(201, self._commit(route, request, key, candidate, "ADDED"), warnings)

    def _replace(self, route: _Route, request: _Request) -> _Reply:
        body = self._check_identity(route, request.json_object())
        if not body["metadata"].get("resourceVersion"):
            raise _update_without_resource_version(route.resource, route.name or "")
        return self._update(route, request, lambda _current: body)

    def _patch(self, route: _Route, request: _Request) -> _Reply:
        patch = request.json()
        if request.content_type == _JSON_PATCH:
            if not isinstance(patch, list):
                raise _bad_request("a JSON patch must be a list of operations")
            return self._update(route, request, lambda current: _json_patched(current, patch))
        if request.content_type == _MERGE_PATCH:
            if not isinstance(patch, dict):
                raise _bad_request(
                    "a merge patch must be a JSON object; send a list of JSON Patch "
                    f"operations with Content-Type {_JSON_PATCH}"
                )
            return self._update(route, request, lambda current: apply_merge_patch(current, patch))
        raise _unsupported_media_type(request.content_type)

    def _update(
        self, route: _Route, request: _Request, change: Callable[[JsonObject], Any]
    ) -> _Reply:
        with self._changed:
            current = self._require(route)
            updated = change(_present(current, route))
            if not isinstance(updated, dict):
                raise _bad_request("the result of the patch is not a JSON object")
            updated = self._check_identity(route, updated)
            warnings = self._prune(route, request, updated)
            updated = self._prepared_update(
                route, current, self._written_part(route, current, updated)
            )
            if json_equal(updated, current):
                return _Reply(200, _present(current, route), warnings)
            self._manage_fields(route, request, current, updated)
            reply = self._commit(route, request, route.key, updated, "MODIFIED")
            return _Reply(200, reply, warnings)

    def _written_part(self, route: _Route, current: JsonObject, updated: JsonObject) -> JsonObject:
        """What of `updated` a write through `route` may change: through `.../status` the
        status only, through the object all else (where status is a subresource); the
        managedFields are the server's."""
        if route.subresource == "status":
            merged = _present(current, route)
            resource_version = updated["metadata"].get("resourceVersion")
            if resource_version:
                merged["metadata"]["resourceVersion"] = resource_version
            updated, status = merged, updated.get("status")
        elif route.resource.has_status_subresource:
            status = current.get("status")
        else:
            return _with_managed_fields(updated, current)
        updated.pop("status", None)
        if status is not None:
            updated["status"] = copy.deepcopy(status)
        return _with_managed_fields(updated, current)

    def _prune(
        self, route: _Route, request: _Request, obj: JsonObject
    ) -> tuple[tuple[str, str], ...]:
        """Drop, in place, the fields the CRD does not describe (and the nulls it does not
        allow): the Warning headers that name them, or 400 if the request asked for Strict field
        validation."""
        if not route.resource.has_schema:
            return ()
        prune_nulls(obj, route.resource.kind, route.version)
        dropped = prune_unknown(obj, route.resource.kind, route.version)
        if not dropped or request.field_validation == "Ignore":
            return ()
        if request.field_validation == "Strict":
            kind = route.resource.kind
            raise _bad_request(strict_decoding_error(kind, route.version, dropped))
        return unknown_field_warnings(dropped)

    def _manage_fields(
        self, route: _Route, request: _Request, current: JsonObject | None, updated: JsonObject
    ) -> None:
        """Set `updated`'s managedFields: the request's field manager owns what it wrote."""
        managed = managed_fields_after(
            current,
            updated,
            manager=request.field_manager,
            api_version=route.resource.api_version(route.version),
            now=_now(),
            subresource=route.subresource or "",
            with_status=route.subresource == "status" or not route.resource.has_status_subresource,
        )
        if managed:
            updated["metadata"]["managedFields"] = managed
        else:
            updated["metadata"].pop("managedFields", None)

    def _prepared_update(
        self, route: _Route, current: JsonObject, updated: JsonObject
    ) -> JsonObject:
        metadata, live = updated["metadata"], current["metadata"]
        if metadata.get("resourceVersion", live["resourceVersion"]) != live["resourceVersion"]:
            raise _conflict(route.resource, route.name or "")
        self._validate(route, updated, route.name or "")
        for system_field in ("uid", "creationTimestamp", "resourceVersion"):
            metadata[system_field] = live[system_field]
        metadata["generation"] = _next_generation(current, updated)
        updated["apiVersion"] = self._stored_as(route.resource.plural)
        return updated

    def _delete(self, route: _Route, request: _Request) -> _Reply:
        options = request.json() or {}
        wanted = (options.get("preconditions") or {}) if isinstance(options, dict) else {}
        with self._changed:
            live = self._require(route)["metadata"]
            if any(live.get(k) != v for k, v in wanted.items() if k in ("uid", "resourceVersion")):
                raise _conflict(route.resource, route.name or "")
            if not request.dry_run:
                self._store.delete(route.key)
                self._landed(request, 200)
                self._changed.notify_all()
        details = _details(route.resource, route.name, uid=live["uid"])
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        return _Reply(200, status | {"details": details})

    def _check_identity(self, route: _Route, obj: JsonObject) -> JsonObject:
        """`obj` with apiVersion, kind, namespace and name filled in, if it agrees with the URL."""
        api_version, kind = route.resource.api_version(route.version), route.resource.kind
        if obj.get("apiVersion", api_version) != api_version:
            raise _bad_request(
                f"the API version in the data ({obj['apiVersion']}) does not match the "
                f"expected API version ({api_version})"
            )
        if obj.get("kind", kind) != kind:
            raise _bad_request(f"the kind in the data ({obj['kind']}) is not {kind}")
        metadata = _checked_metadata(route, obj.get("metadata") or {})
        return obj | {"apiVersion": api_version, "kind": kind, "metadata": metadata}

    def _validate(self, route: _Route, obj: JsonObject, name: str) -> None:
        if not route.resource.has_schema:
            return
        causes = schema_causes(obj, route.resource.kind, route.version)
        if causes:
            raise _invalid(route.resource, name, causes)

    def _commit(
        self, route: _Route, request: _Request, key: Key, obj: JsonObject, event_type: str
    ) -> JsonObject:
        obj["apiVersion"] = self._stored_as(route.resource.plural)
        if request.dry_run:
            return _present(obj, route)
        stored = self._store.write(key, obj, event_type)
        self._landed(request, 201 if event_type == "ADDED" else 200)
        self._changed.notify_all()
        return _present(stored, route)

    # Watch

    def _watch_plan(self, route: _Route, request: _Request, selector: _Selector) -> _WatchPlan:
        since = _parse_revision(request.query.get("resourceVersion", ""))
        timeout = request.query.get("timeoutSeconds", "")
        try:
            deadline = time.monotonic() + float(timeout) if timeout not in ("", "0") else None
        except ValueError as error:
            raise _bad_request(f"timeoutSeconds {timeout!r} is not a number") from error
        bookmarks = request.query.get("allowWatchBookmarks", "").lower() in ("true", "1")
        return _WatchPlan(route, since, deadline, selector, bookmarks)

    @contextlib.contextmanager
    def _streaming(self) -> Iterator[None]:
        """Counts a watch's stream, from its headers to its last chunk, for `stop`."""
        with self._changed:
            self._streams += 1
        try:
            yield
        finally:
            with self._changed:
                self._streams -= 1
                self._changed.notify_all()

    def _watch_events(
        self, plan: _WatchPlan, client_gone: Callable[[], bool]
    ) -> Iterator[JsonObject]:
        """The events of a watch, until its timeout, its client leaving, or the server stopping."""
        state = _WatchState(self._next_bookmark(plan, time.monotonic()))
        yield from self._watch_start(plan, state)
        while state.cursor is not None:
            yield from self._watch_wait(plan, state, client_gone)

    def _watch_start(self, plan: _WatchPlan, state: _WatchState) -> list[JsonObject]:
        route = plan.route
        with self._changed:
            if plan.since is not None:
                return self._watch_resume(plan.since, state)
            current = self._store.select(route.resource.plural, route.namespace)
            events = [
                {"type": "ADDED", "object": _present(o, route)}
                for o in current
                if plan.selector.matches(o)
            ]
            state.cursor = state.told = self._store.revision
            if plan.bookmarks:  # the initial ADDED events are over
                events.append(_bookmark(route, state.cursor, initial_events_end=True))
            return events

    def _watch_resume(self, since: int, state: _WatchState) -> list[JsonObject]:
        if since < self._store.forgotten_through:
            state.cursor = None
            return [_error_event(_expired(since, self._store.forgotten_through))]
        state.cursor = state.told = since
        return []

    def _watch_wait(
        self, plan: _WatchPlan, state: _WatchState, client_gone: Callable[[], bool]
    ) -> list[JsonObject]:
        """The next events (or bookmark) of an open watch; none, with the cursor None, once it
        ends."""
        with self._changed:
            while not self._stopping and state.cursor is not None:
                if state.cursor < self._store.forgotten_through:  # it fell too far behind
                    return self._watch_resume(state.cursor, state)
                if self._store.revision > state.cursor:
                    events = self._matching_events(plan, state.cursor)
                    state.cursor = self._store.revision
                    if events:
                        state.told = int(events[-1]["object"]["metadata"]["resourceVersion"])
                        return events
                now = time.monotonic()
                if state.next_bookmark is not None and now >= state.next_bookmark:
                    state.next_bookmark = self._next_bookmark(plan, now)
                    if state.cursor > state.told:  # writes it did not see: say how far it is
                        state.told = state.cursor
                        return [_bookmark(plan.route, state.cursor)]
                remaining = plan.remaining()
                if remaining <= 0 or client_gone():
                    break
                wait = min(remaining, _WATCH_POLL_SECONDS)
                if state.next_bookmark is not None:
                    wait = max(0.0, min(wait, state.next_bookmark - now))
                self._changed.wait(wait)
        state.cursor = None
        return []

    def _next_bookmark(self, plan: _WatchPlan, now: float) -> float | None:
        """When a watch that asked for bookmarks gets its next: every bookmark_interval, and
        2 s before its timeout ends; none once that is past."""
        if not plan.bookmarks:
            return None
        periodic = now + self._bookmark_interval
        if plan.deadline is None:
            return periodic
        before_end = plan.deadline - _BOOKMARK_BEFORE_END
        return None if before_end <= now else min(periodic, before_end)

    def _matching_events(self, plan: _WatchPlan, cursor: int) -> list[JsonObject]:
        """The events after `cursor` as the watch's selector sees them: an object that comes
        into it is ADDED, one that leaves it DELETED (as it was, at the event's version)."""
        route = plan.route
        seen = []
        for event in self._store.events_after(cursor, route.resource.plural, route.namespace):
            now = event.type != "DELETED" and plan.selector.matches(event.obj)
            before = event.previous is not None and plan.selector.matches(event.previous)
            if now:
                kind = "MODIFIED" if before and event.type != "ADDED" else "ADDED"
                seen.append({"type": kind, "object": _present(event.obj, route)})
            elif before and event.previous is not None:
                gone = _with_metadata(event.previous, resourceVersion=str(event.revision))
                seen.append({"type": "DELETED", "object": _present(gone, route)})
        return seen


@dataclass
class _WatchState:
    """Where an open watch is: the revision it has seen up to (None once it ended), the newest
    resourceVersion its client was told of, and when its next bookmark is due."""

    next_bookmark: float | None
    cursor: int | None = None
    told: int = 0


def _bookmark(route: _Route, revision: int, *, initial_events_end: bool = False) -> JsonObject:
    metadata: JsonObject = {"resourceVersion": str(revision)}
    if initial_events_end:
        metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
    obj = {"apiVersion": route.resource.api_version(route.version), "kind": route.resource.kind}
    return {"type": "BOOKMARK", "object": obj | {"metadata": metadata}}


def _with_managed_fields(obj: JsonObject, source: JsonObject) -> JsonObject:
    """`obj` with `source`'s managedFields (none if it has none): a client does not set them."""
    managed = source.get("metadata", {}).get("managedFields")
    obj["metadata"].pop("managedFields", None)
    if managed is not None:
        obj["metadata"]["managedFields"] = copy.deepcopy(managed)
    return obj


def _checked_metadata(route: _Route, metadata: Any) -> JsonObject:
    if not isinstance(metadata, dict):
        raise _bad_request("metadata must be a JSON object")
    if metadata.get("namespace", route.namespace) != route.namespace:
        raise _bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    if route.name is not None and metadata.get("name", route.name) != route.name:
        raise _bad_request(
            f"the name of the object ({metadata['name']}) does not match the name on the URL "
            f"({route.name})"
        )
    named = {"name": route.name} if route.name else {}
    return {**metadata, **named, "namespace": route.namespace}


def _json_patched(current: JsonObject, operations: list[Any]) -> Any:
    try:
        return apply_json_patch(current, operations)
    except JsonPatchError as error:
        raise _patch_rejected(error) from error


def _is_watch(request: _Request | LoggedRequest) -> bool:
    """A watch (`watch=true`; clients spell the value `true`, `True` or `1`)."""
    return request.query.get("watch", "").lower() in ("true", "1")


def _error_event(error: ApiError) -> JsonObject:
    return {"type": "ERROR", "object": error.status()}


def _version_info() -> JsonObject:
    return {
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-canary-sandbox",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": sys.version.split()[0],
        "compiler": "cpython",
        "platform": sys.platform,
    }


# --- HTTP ----------------------------------------------------------------------------------


class _HttpServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], sandbox: SandboxApiServer) -> None:
        super().__init__(address, _Handler)
        self.sandbox = sandbox


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so urllib3 can pool connections
    disable_nagle_algorithm = True  # headers and body are separate writes
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.track(self.connection, open_=False)
        super().finish()

    def do_GET(self) -> None:
        outcome = self.server.sandbox._answer(self._read_request())
        if isinstance(outcome, _WatchPlan):
            self._stream(outcome)
        elif isinstance(outcome, _Reply):
            self._reply(outcome)
        else:
            self.close_connection = True

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the sandbox keeps its own request log."""

    def _read_request(self) -> _Request:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        user = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        agent = self.headers.get("User-Agent") or ""
        return _Request(self.command, url.path, query, content_type, body, user, agent)

    def _reply(self, reply: _Reply) -> None:
        data = json.dumps(reply.payload).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, plan: _WatchPlan) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sandbox = self.server.sandbox
        try:
            with sandbox._streaming():
                for event in sandbox._watch_events(plan, self._client_gone):
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def _client_gone(self) -> bool:
        # While a watch streams, the client sends nothing, so a readable socket means EOF.
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


# --- Command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox API server in the foreground until interrupted."""
    args = _parser().parse_args(argv)
    server = SandboxApiServer(port=args.port, forbidden_namespaces=args.forbid_namespace)
    with server:
        seed(server, load_yaml_documents(args.seed), namespace=args.namespace)
        if args.kubeconfig:
            write_kubeconfig(args.kubeconfig, server.url, namespace=args.namespace)
        print(server.url, flush=True)
        _wait_for_termination()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.apiserver",
        description="Serve the sandbox Kubernetes API (Istio networking kinds) on loopback.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free)")
    parser.add_argument("--seed", type=Path, nargs="*", default=[], help="YAML files to load")
    parser.add_argument("--namespace", default="default", help="namespace for seeded objects")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig pointing here")
    parser.add_argument(
        "--forbid-namespace", action="append", default=[], help="answer 403 in this namespace"
    )
    return parser


def _wait_for_termination() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()


if __name__ == "__main__":
    raise SystemExit(main())
