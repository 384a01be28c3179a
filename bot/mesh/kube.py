"""The only module that talks to Kubernetes: reads Istio objects, writes TrafficPlans safely.

Every write is a JSON Patch led by a `test` of the resourceVersion the plan was made against,
and `write` never re-plans: when someone else wrote in between (409, or 422 from the failed
test) it raises `Moved` with what is live now, and the caller decides again. Every call has a
deadline (connect and read timeouts); a 5xx or a dropped connection is tried again with the same
precondition, so a retry can never land on top of someone else's write.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from bot.mesh import httproute
from bot.mesh.errors import (
    ApiError,
    Conflict,
    Drift,
    Forbidden,
    InvalidObject,
    Moved,
    NoReadyPods,
    NotFound,
)
from bot.mesh.httproute import is_http_route, last_applied, plan_http_route
from bot.mesh.planner import ObjectChange, TrafficPlan, plan_traffic
from bot.mesh.request import SplitRequest
from commands.cohort import Cohort

GROUP = "networking.istio.io"
PREFERRED_VERSIONS = ("v1", "v1beta1", "v1alpha3")
VS, DR, PODS, SERVICES = "virtualservices", "destinationrules", "pods", "services"
ROUTES = httproute.PLURAL  # the Gateway API's HTTPRoutes, read when no VirtualService is named so
Json = dict[str, Any]
FENCE_ANNOTATION = "canary-bot/fence"
TIMEOUT = (3.05, 10.0)  # seconds to connect, and to wait for each answer
WATCH_S = 60  # a watch's server-side timeout; the client gives it 10 s more
FIELD_MANAGER = "canary-bot"  # the name the API server keeps in managedFields for our writes
TRANSIENT_TRIES = 3  # a 5xx or a dropped connection, tried again with the same precondition
_TRANSIENT = (ApiException, HTTPError, ValueError, ApiError, NotFound, Forbidden)
# Every call this adapter makes, by (API group, resource): each verb with the code path that
# needs it. The chart's Role grants exactly these and nothing more (helm/canary-bot/templates/
# _helpers.tpl, "canary-bot.rbacRules"); the tests hold the chart to this table, and the table to
# what a real kube-apiserver logged the bot asking for.
RBAC_VERBS: Mapping[tuple[str, str], Mapping[str, str]] = {
    (GROUP, VS): {
        "get": "plan, step checks and settle read the VirtualService (get_virtual_service)",
        "list": "the resync finds canaries a lost rollout left (virtual_services)",
        "patch": "every guarded write and fence (_patch)",
    },
    (GROUP, DR): {
        "get": "a DestinationRule patch answered 409/422 reads it again (_patch)",
        "list": "each plan reads the subsets; the watch lists first (destination_rules)",
        "watch": "`serve` keeps DestinationRules current (_Informer)",
        "patch": "a plan that adds the canary's subset (_patch)",
    },
    ("", PODS): {
        "list": "a canary subset must select ready pods (ready_pods)",
        "watch": "`serve` keeps Pods current (_Informer)",
    },
    ("", SERVICES): {
        "list": "a canary Service (host-based, HTTPRoute) must select ready pods (selector_of)",
        "watch": "`serve` keeps Services current (_Informer)",
    },
    (httproute.GROUP, ROUTES): {
        "get": "a service with no VirtualService of its name is its HTTPRoute (get_route)",
        "list": "the resync finds canaries a lost rollout left on HTTPRoutes (http_routes)",
        "patch": "every guarded write and fence of an HTTPRoute (_patch)",
    },
}
_KINDS = {"VirtualService": VS, "DestinationRule": DR, httproute.KIND: ROUTES}
# The Kubernetes RBAC authorizer's refusal: who may not do what, where.
_REFUSAL = re.compile(
    r'cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)" in API group "(?P<group>[^"]*)"'
    r'(?: in the namespace "(?P<namespace>[^"]+)")?'
)


@dataclass(frozen=True)
class Applied:
    """A plan that is now live, with how many tries it took."""

    plan: TrafficPlan
    attempts: int
    virtual_service: Json


def from_kubeconfig(path: str | None = None, context: str | None = None) -> client.ApiClient:
    """An ApiClient from a kubeconfig file, or from the pod's ServiceAccount when in a cluster."""
    if path is None and context is None:
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            pass
    try:
        return cast(
            client.ApiClient, config.new_client_from_config(config_file=path, context=context)
        )
    except (config.ConfigException, OSError) as e:
        raise ApiError(
            f"no usable Kubernetes configuration ({e}); set KUBECONFIG (and "
            "CANARY_KUBE_CONTEXT), or run the bot in a cluster with its ServiceAccount"
        ) from e


class KubeMesh:
    """Reads and writes VirtualServices and DestinationRules through the official client."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        attempts: int = 5,
        backoff: float = 0.02,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        watch_destination_rules: bool = False,
        check_pods: bool = True,
        observe: Callable[[str, float, int | None], None] = lambda verb, seconds, status: None,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._apis = client.ApisApi(api_client)
        self._authz = client.AuthorizationV1Api(api_client)
        self._attempts, self._backoff = attempts, backoff
        self._clock, self._sleep = clock, sleep
        self._version: str | None = None
        self._watch = watch_destination_rules  # and Pods: kept current by watches, not read
        self._check_pods = check_pods
        self._caches: dict[tuple[str, str], _Informer] = {}
        self._allowed_in: set[str] = set()  # namespaces where a call of ours was allowed
        self._lock = threading.Lock()
        self._observe = observe  # (verb, seconds, HTTP status or None): the bot's metrics
        self._timeout = timeout  # (connect, read) seconds for every call

    @property
    def version(self) -> str:
        """The networking.istio.io version to use: what the server offers, v1 first."""
        if self._version is None:
            self._version = self._discover_version()
        return self._version

    def ping(self) -> None:
        """Reach the API server now (for readiness), whatever is cached."""
        self._discover_version()

    def close(self) -> None:
        for cache in self._caches.values():
            cache.stop()

    def get_virtual_service(self, namespace: str, name: str) -> Json:
        return self._get(VS, namespace, name)

    def get_route(self, namespace: str, name: str) -> Json:
        """The VirtualService `name`, or else the Gateway API HTTPRoute of that name (when
        neither is there, the VirtualService's NotFound)."""
        try:
            return self._get(VS, namespace, name)
        except NotFound as missing:
            try:
                return self._get(ROUTES, namespace, name)
            except NotFound:
                raise missing from None

    def http_routes(self, namespace: str) -> list[Json]:
        """The namespace's HTTPRoutes; none where the cluster serves no Gateway API."""
        try:
            with self._translated("list", ROUTES, namespace, None), self._timed("list"):
                found = self._api.list_namespaced_custom_object(
                    *self._where(ROUTES), namespace, ROUTES, _request_timeout=self._timeout
                )
        except NotFound:
            return []
        return cast(list[Json], cast(Json, found)["items"])

    def virtual_services(self, namespace: str) -> list[Json]:
        with self._translated("list", VS, namespace, None), self._timed("list"):
            found = self._api.list_namespaced_custom_object(
                GROUP, self.version, namespace, VS, _request_timeout=self._timeout
            )
        return cast(list[Json], cast(Json, found)["items"])

    def destination_rules(self, namespace: str) -> list[Json]:
        if self._watch:
            return self._cache(DR, namespace).items()
        return cast(list[Json], self._list_destination_rules(namespace)["items"])

    def ready_pods(self, namespace: str, labels: Mapping[str, str]) -> list[str]:
        """The names of the ready pods in `namespace` that carry all of `labels`."""
        pods = self._read_through(
            PODS,
            namespace,
            lambda pod: _has_labels(pod, labels) and _is_ready(pod),
            lambda: self._list_pods(namespace, _selector(labels)),
        )
        return sorted(pod["metadata"]["name"] for pod in pods)

    def plan(self, request: SplitRequest) -> TrafficPlan:
        """The plan against the live objects, read now, without writing anything."""
        vs = self.get_route(request.namespace, request.vs)
        if is_http_route(vs):
            plan = plan_http_route(vs, request, now=self._clock())
        else:
            drs = self.destination_rules(request.namespace)
            plan = plan_traffic(vs, drs, request, now=self._clock(), version=self.version)
        if self._check_pods and _raises_canary(plan):
            self._require_ready_pods(plan)
        return plan

    def selector_of(self, namespace: str, service: str) -> dict[str, str] | None:
        """The labels Service `service` selects its pods by; None for a Service without a
        selector (an ExternalName, or endpoints kept by hand), whose pods cannot be told."""
        found = self._read_through(
            SERVICES,
            namespace,
            lambda s: _named(s, service),
            lambda: self._list_services(namespace, f"metadata.name={service}"),
        )
        if not found:
            raise NoReadyPods(
                f"Service '{service}' does not exist in namespace '{namespace}': traffic sent "
                "there would fail; nothing was changed; create the canary's Service (selecting "
                "its pods), or name the one that serves it with `to SERVICE`, and try again"
            )
        selector = (found[0].get("spec") or {}).get("selector")
        return {str(k): str(v) for k, v in selector.items()} if selector else None

    def _read_through(
        self,
        plural: str,
        namespace: str,
        wanted: Callable[[Json], bool],
        listed: Callable[[], Json],
    ) -> list[Json]:
        """The objects of `plural` in `namespace` that are `wanted`: in `serve`, from its watch,
        where a miss is read again (`listed`) before it is believed. A watch can trail a change
        made a moment ago, and a refusal must not say that a Service or a ready pod is missing
        when it is there; a hit needs no call, and a miss is the rare, refused case."""
        if self._watch:
            found = [obj for obj in self._cache(plural, namespace).items() if wanted(obj)]
            if found:
                return found
        return [obj for obj in listed()["items"] if wanted(obj)]

    def _require_ready_pods(self, plan: TrafficPlan) -> None:
        """Refuse to send more traffic to a canary (a subset, or a Service) that selects no
        ready pod."""
        namespace = _host_namespace(plan.host, plan.request.namespace)
        labels: Mapping[str, str] | None
        if plan.by == "host":
            labels = self.selector_of(namespace, plan.canary)
            what = f"Service '{plan.canary}'"
        else:
            labels = plan.subset_labels.get(plan.canary)
            what = f"subset '{plan.canary}'"
        if labels is None:
            return
        if not self.ready_pods(namespace, labels):
            shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            raise NoReadyPods(
                f"{what} selects no ready pods (labels {shown}) in namespace "
                f"'{namespace}'; nothing was changed; deploy the canary with those labels, wait "
                "until its pods are ready, and try again"
            )

    def write(self, plan: TrafficPlan) -> Json:
        """Patch every object the plan changes, exactly as planned; the VirtualService as written.

        Raises Moved when an object is no longer the one the plan was made against: nothing of
        the plan is re-planned here.
        """
        written = plan.vs.before
        for change in plan.changes:
            result = self._patch(change)
            if change.kind == "DestinationRule" and self._watch:
                self._cache(DR, change.namespace).put(result)
            written = result if change.kind != "DestinationRule" else written
        return written

    def fence(self, vs: Json, fence_id: str) -> Json:
        """Write only a fence annotation, conditional on `vs`'s resourceVersion: once it is in,
        no write planned against an earlier version of the object can ever land."""
        meta = vs["metadata"]
        annotations = meta.get("annotations")
        if annotations is None:
            op = {
                "op": "add",
                "path": "/metadata/annotations",
                "value": {FENCE_ANNOTATION: fence_id},
            }
        else:
            op = {"op": "add", "path": "/metadata/annotations/canary-bot~1fence", "value": fence_id}
        kind = str(vs.get("kind") or "VirtualService")
        change = ObjectChange(kind, str(meta["name"]), str(meta["namespace"]), vs, vs, (op,))
        return self._patch(change)

    def apply(self, request: SplitRequest, *, expect: int | None = None) -> Applied:
        """Plan and write, planning again when someone else wrote in between but left the
        weights alone; for the CLI and tests. The engine records each write before it is sent
        and uses `plan`, `write` and `fence` itself.

        With `expect` (the canary weight the bot set last), live weights that are neither that
        nor the requested weight are drift: raise Drift instead of overwriting them.
        """
        first: TrafficPlan | None = None
        for attempt in range(1, self._attempts + 1):
            plan = self.plan(request)
            if first is None and expect is not None:
                _refuse_drift(plan, expect)
            first = first or plan
            _refuse_moved_weights(first, plan)
            try:
                return Applied(plan, attempt, self.write(plan))
            except Moved:
                self._sleep(random.uniform(0, self._backoff * 2**attempt))  # noqa: S311 jitter
        raise Conflict(
            f"VirtualService '{request.vs}' in namespace '{request.namespace}' kept changing "
            f"while the bot tried to apply it ({self._attempts} tries); nothing was overwritten; "
            "try again in a moment"
        )

    def _patch(self, change: ObjectChange) -> Json:
        plural = _KINDS[change.kind]
        for attempt in range(1, TRANSIENT_TRIES + 1):
            try:
                with self._timed("patch"):
                    result = self._api.patch_namespaced_custom_object(
                        *self._where(plural),
                        change.namespace,
                        plural,
                        change.name,
                        change.guarded_ops(),
                        _content_type="application/json-patch+json",
                        field_manager=FIELD_MANAGER,
                        _request_timeout=self._timeout,
                    )
                self._allowed_in.add(change.namespace)
                return cast(Json, result)
            except ApiException as e:
                if e.status in (409, 422):
                    live = self._get(plural, change.namespace, change.name)
                    if _version(live) != change.resource_version:
                        raise Moved(_moved_message(change), live) from e
                transient = e.status >= 500 or e.status == 409  # a 409 with nothing moved
                if not transient or attempt == TRANSIENT_TRIES:
                    raise self._error(e, "patch", plural, change.namespace, change.name) from e
            except HTTPError as e:
                if attempt == TRANSIENT_TRIES:
                    raise _unreachable(e) from e
            self._sleep(random.uniform(0, self._backoff * 2**attempt))  # noqa: S311 jitter only
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(self, plural: str, namespace: str, name: str) -> Json:
        with self._translated("get", plural, namespace, name), self._timed("get"):
            found = self._api.get_namespaced_custom_object(
                *self._where(plural), namespace, plural, name, _request_timeout=self._timeout
            )
        return cast(Json, found)

    def _where(self, plural: str) -> tuple[str, str]:
        """The API group and version `plural` is read and written at."""
        if plural == ROUTES:
            return httproute.GROUP, httproute.VERSION
        return GROUP, self.version

    def _list_destination_rules(self, namespace: str) -> Json:
        with self._translated("list", DR, namespace, None), self._timed("list"):
            found = self._api.list_namespaced_custom_object(
                GROUP, self.version, namespace, DR, _request_timeout=self._timeout
            )
        return cast(Json, found)

    def _list_services(self, namespace: str, fields: str | None = None) -> Json:
        with self._translated("list", SERVICES, namespace, None), self._timed("list"):
            reply = self._core.list_namespaced_service(
                namespace,
                field_selector=fields,
                _preload_content=False,
                _request_timeout=self._timeout,
            )
        return cast(Json, json.loads(cast(Any, reply).data))

    def _list_pods(self, namespace: str, selector: str | None = None) -> Json:
        with self._translated("list", PODS, namespace, None), self._timed("list"):
            reply = self._core.list_namespaced_pod(
                namespace,
                label_selector=selector,
                _preload_content=False,
                _request_timeout=self._timeout,
            )
        return cast(Json, json.loads(cast(Any, reply).data))  # raw: dicts, like the others

    def _cache(self, plural: str, namespace: str) -> _Informer:
        with self._lock:
            if (plural, namespace) not in self._caches:
                if plural == PODS:
                    cache = _Informer(
                        f"{PODS}-{namespace}",
                        lambda: self._list_pods(namespace),
                        self._core.list_namespaced_pod,
                        (namespace,),
                    )
                elif plural == SERVICES:
                    cache = _Informer(
                        f"{SERVICES}-{namespace}",
                        lambda: self._list_services(namespace),
                        self._core.list_namespaced_service,
                        (namespace,),
                    )
                else:
                    cache = _Informer(
                        f"{DR}-{namespace}",
                        lambda: self._list_destination_rules(namespace),
                        self._api.list_namespaced_custom_object,
                        (GROUP, self.version, namespace, DR),
                    )
                cache.start()
                self._caches[(plural, namespace)] = cache
            return self._caches[(plural, namespace)]

    @contextmanager
    def _timed(self, verb: str) -> Iterator[None]:
        start = time.perf_counter()
        status: int | None = 200
        try:
            yield
        except ApiException as e:
            status = e.status
            raise
        except HTTPError:
            status = None
            raise
        finally:
            self._observe(verb, time.perf_counter() - start, status)

    @contextmanager
    def _translated(
        self, verb: str, plural: str, namespace: str, name: str | None
    ) -> Iterator[None]:
        """Turn the client's exceptions into the bot's, with messages that say what to do."""
        try:
            yield
        except ApiException as e:
            raise self._error(e, verb, plural, namespace, name) from e
        except HTTPError as e:
            raise _unreachable(e) from e
        if namespace:
            self._allowed_in.add(namespace)

    def _error(
        self, e: ApiException, verb: str, plural: str, namespace: str, name: str | None
    ) -> Exception:
        if e.status == 403:
            return _forbidden(e, verb, plural, namespace, self._granted)
        return _translate(e, verb, plural, namespace, name)

    def _granted(self, namespace: str) -> bool:
        """Whether the bot's ServiceAccount holds a grant of the chart's in `namespace`: a call
        there was allowed before, or the API server's rules review lists one."""
        if namespace in self._allowed_in:
            return True
        try:
            review = self._authz.create_self_subject_rules_review(
                client.V1SelfSubjectRulesReview(
                    spec=client.V1SelfSubjectRulesReviewSpec(namespace=namespace)
                ),
                _request_timeout=self._timeout,
            )
        except (ApiException, HTTPError):
            return False  # a server that cannot say, and nothing of ours was allowed there
        rules = review.status.resource_rules if review.status is not None else None
        return any(_grants_ours(rule) for rule in rules or [])

    def _discover_version(self) -> str:
        with self._translated("discover", "apis", "", None):
            groups = self._apis.get_api_versions(_request_timeout=self._timeout).groups
        offered = [v.version for g in groups if g.name == GROUP for v in g.versions]
        for version in PREFERRED_VERSIONS:
            if version in offered:
                return version
        raise ApiError(
            f"the cluster does not serve Istio's {GROUP} API (offered: {offered or 'nothing'}); "
            "install Istio, or point the bot at the right cluster"
        )


class _Informer:
    """The objects of one kind in one namespace, listed once and kept current by a watch."""

    def __init__(
        self,
        name: str,
        lister: Callable[[], Json],
        list_call: Callable[..., Any],
        args: tuple[str, ...],
    ) -> None:
        self._name, self._lister = name, lister
        self._list_call, self._args = list_call, args
        self._items: dict[str, Json] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        # Events as plain dicts (no models), and an ERROR event (410 Expired) raised by the
        # client as ApiException(code); with `deserialize=False` the client fails on an ERROR
        # event with a KeyError instead, which would end this watch for good.
        self._watch = watch.Watch(return_type="object")

    def start(self) -> None:
        revision = self._relist()
        threading.Thread(
            target=self._run, args=(revision,), daemon=True, name=f"watch-{self._name}"
        ).start()

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()

    def items(self) -> list[Json]:
        with self._lock:
            return list(self._items.values())

    def put(self, obj: Json) -> None:
        """Take our own write at once, unless the watch already brought something newer."""
        with self._lock:
            name = obj["metadata"]["name"]
            known = self._items.get(name)
            if known is None or _revision(known) < _revision(obj):
                self._items[name] = obj

    def _relist(self) -> str:
        listed = self._lister()
        with self._lock:
            self._items = {o["metadata"]["name"]: o for o in listed["items"]}
        return str(listed["metadata"]["resourceVersion"])

    def _run(self, revision: str) -> None:
        while not self._stopped.is_set():
            try:
                revision = self._follow(revision)
            except _TRANSIENT as e:
                if isinstance(e, ApiException) and e.status == 410:
                    try:  # the revision left the server's window: list again now, go on
                        revision = self._relist()
                        continue
                    except _TRANSIENT:
                        pass  # the list failed too: pause like any other error
                if self._stopped.wait(0.5):
                    return
                revision = self._relist_quietly(revision)

    def _follow(self, revision: str) -> str:
        stream = self._watch.stream(
            self._list_call,
            *self._args,
            resource_version=revision,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_S,
            _request_timeout=(TIMEOUT[0], WATCH_S + 10),
        )
        for event in stream:
            obj = event["object"]
            if event["type"] != "BOOKMARK":  # a bookmark only moves the revision on
                self._apply_event(event["type"], obj)
            revision = str(obj["metadata"]["resourceVersion"])
        return revision

    def _apply_event(self, kind: str, obj: Json) -> None:
        with self._lock:
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                self._items.pop(name, None)
            else:
                self._items[name] = obj

    def _relist_quietly(self, revision: str) -> str:
        try:
            return self._relist()
        except _TRANSIENT:
            return revision


def _raises_canary(plan: TrafficPlan) -> bool:
    """Whether the plan sends the canary requests it did not get before: a higher weight, or a
    cohort's route to it."""
    if isinstance(plan.request.cohort, Cohort):
        return True
    return any(t.after[1] > max(t.before[1], 0) for t in plan.touched)


def _host_namespace(host: str, default: str) -> str:
    """`reviews.prod.svc.cluster.local` → prod: where the Service and its pods are."""
    parts = host.split(".")
    return parts[1] if len(parts) > 2 else default


def _selector(labels: Mapping[str, str]) -> str | None:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None


def _named(obj: Mapping[str, Any], name: str) -> bool:
    return bool((obj.get("metadata") or {}).get("name") == name)


def _has_labels(pod: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    have = (pod.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


def _is_ready(pod: Mapping[str, Any]) -> bool:
    """Running, Ready, and not on its way out (what an EndpointSlice would count as ready)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return status.get("phase") == "Running" and ready


def _revision(obj: Mapping[str, Any]) -> int:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, ValueError, TypeError):
        return -1


def wrote(vs: Json, write_id: str) -> bool:
    """Whether `vs` carries the bot's record of the write `write_id`: it landed."""
    last = last_applied(vs)
    return last is not None and last.write == write_id


def _version(obj: Mapping[str, Any]) -> str | None:
    rv = obj.get("metadata", {}).get("resourceVersion")
    return None if rv is None else str(rv)


def _moved_message(change: ObjectChange) -> str:
    return (
        f"{change.kind} '{change.name}' in namespace '{change.namespace}' changed after the bot "
        f"read it (resourceVersion {change.resource_version}); nothing was written"
    )


def _refuse_drift(plan: TrafficPlan, expect: int) -> None:
    allowed = {expect, plan.request.weight}
    for route in plan.touched:
        if route.before[1] not in allowed:
            raise Drift(
                f"the canary of VirtualService '{plan.request.vs}' in namespace "
                f"'{plan.request.namespace}' has {route.before[1]}% where the bot set {expect}%",
                found=route.before[1],
                expected=expect,
            )


def _refuse_moved_weights(first: TrafficPlan, now: TrafficPlan) -> None:
    """On a retry, go on only if what changed meanwhile left our weights alone."""
    before = [t.before for t in first.touched]
    found = [t.before for t in now.touched]
    if before != found or (first.stable, first.canary) != (now.stable, now.canary):
        raise Conflict(
            f"someone else changed the weights of VirtualService '{first.request.vs}' in "
            f"namespace '{first.request.namespace}' while the bot was applying them "
            f"(stable/canary {_shares(before)} became {_shares(found)}); nothing was "
            "overwritten; check the change and ask again"
        )


def _shares(splits: list[tuple[int, int]]) -> str:
    return ", ".join(f"{s}/{c}" for s, c in splits)


def _grants_ours(rule: client.V1ResourceRule) -> bool:
    """Whether an RBAC rule (of a rules review) allows some verb on a resource the bot uses."""
    groups, resources = set(rule.api_groups or [""]), set(rule.resources or [])
    return any(
        {group, "*"} & groups and {resource, "*"} & resources for group, resource in RBAC_VERBS
    )


def _translate(
    e: ApiException, verb: str, plural: str, namespace: str, name: str | None
) -> Exception:
    kind = {plural: kind for kind, plural in _KINDS.items()}.get(plural, plural)
    what = f"{kind} '{name}'" if name else f"{plural}"
    message = _status_message(e)
    if e.status == 404:
        return NotFound(
            f"{what} was not found in namespace '{namespace}'; check the name and the namespace "
            f"(kubectl -n {namespace} get {plural})"
        )
    if e.status == 422:
        return InvalidObject(
            f"the API server refused {what} in namespace '{namespace}': "
            f"{message}; nothing was changed",
            [message],
        )
    return ApiError(
        f"the Kubernetes API answered {e.status} to {verb} {what} in namespace "
        f"'{namespace}': {message}"
    )


def _forbidden(
    e: ApiException, verb: str, plural: str, namespace: str, granted: Callable[[str], bool]
) -> Forbidden:
    """A 403, with the fix that fits: a namespace the bot's ServiceAccount has no grant in needs
    adding to rbac.namespaces; one it has a grant in lacks a verb (a Role of an older chart)."""
    refused = _refusal(e)
    if refused is None:  # not the RBAC authorizer's words (an admission webhook's, say)
        return Forbidden(
            f"the bot may not {verb} {plural} in namespace '{namespace}': {_status_message(e)}; "
            "the refusal names no missing RBAC grant: see the message for who refused and why"
        )
    verb, plural = refused["verb"], refused["resource"]  # as the authorizer saw the request
    namespace = refused["namespace"] or namespace
    head = f"the bot may not {verb} {plural} in namespace '{namespace}': {_status_message(e)}"
    if namespace and granted(namespace):
        return Forbidden(
            f"{head}; the bot's ServiceAccount has a role in namespace '{namespace}', but it does "
            f"not grant {verb} on {plural}, which the bot needs: upgrade the canary-bot chart "
            "(helm upgrade), whose Role grants every verb the bot uses"
        )
    return Forbidden(
        f"{head}; grant its ServiceAccount access to that namespace (Helm value rbac.namespaces)"
    )


def _refusal(e: ApiException) -> re.Match[str] | None:
    """What the RBAC authorizer's 403 says was refused: verb, resource, group, namespace."""
    try:
        body = json.loads(e.body or "{}")
    except ValueError:
        return None
    return _REFUSAL.search(str(body.get("message") or "")) if isinstance(body, dict) else None


def _status_message(e: ApiException) -> str:
    try:
        body = json.loads(e.body or "{}")
    except ValueError:
        return str(e.reason)
    return str(body.get("message") or e.reason)[:500]


def _unreachable(e: HTTPError) -> ApiError:
    return ApiError(
        f"the Kubernetes API cannot be reached ({type(e).__name__}); check the "
        "kubeconfig or the network and try again"
    )
