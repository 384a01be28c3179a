"""The composition root: builds everything from settings. Nothing else does wiring."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from kubernetes.client import ApiClient
from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis import Redis
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient

from bot.chat.approvals import ApprovalBook, Gate, GateCards, GroupDirectory, group_ids
from bot.chat.cards import CARD_ONLY
from bot.chat.dispatch import Dispatcher
from bot.chat.http import SLACK_PATH, BotHttpServer, Probe
from bot.chat.links import Links, check_template
from bot.chat.slack import SlackBot, SlackNotifier, Workers, web_client
from bot.health.analysis import SequentialCheck
from bot.health.check import HealthCheck, QueryClient
from bot.health.client import PrometheusClient, PrometheusError, Vector
from bot.health.promql import label_matchers
from bot.mesh.errors import MeshError
from bot.mesh.kube import KubeMesh, from_kubeconfig
from bot.ops.metrics import Metrics
from bot.ops.watchdog import Watchdog
from bot.rollout.analysis import Analyst
from bot.rollout.engine import Busy, Engine
from bot.rollout.leader import Leadership
from bot.rollout.model import Notify, Phase, Rollout, Target, Verdict
from bot.rollout.ports import Health, Notifier, Scheduler
from bot.rollout.scheduler import ANALYSIS_JOB, StepScheduler
from bot.rollout.traffic import KubeTraffic
from bot.service.drills import Drills, Tell
from bot.service.waves import ClusterNotifier, ClusterWaves, WaveRunner
from bot.store.drills import DrillStore
from bot.store.errors import StoreError
from bot.store.lease import LeaderLease
from bot.store.redis_store import RolloutStore, connect
from bot.store.waves import WaveStore
from commands.names import CLUSTER_NAME, CLUSTER_RULE
from policies import (
    HealthThresholds,
    Policy,
    PolicyError,
    Problem,
    analysis_every,
    drill_limits,
    load_policy,
    rollout_defaults,
)
from policies import Target as PolicyTarget

log = logging.getLogger(__name__)
RESYNC_S = 1.0
ANALYSIS_TICK_S = 1.0  # how often the held steps are gone over for looks that are due
FULL_RESYNC_EVERY = 10  # resyncs: a full pass also finishes effects a crash left behind
STALE_PENDING = timedelta(seconds=5)


class ClusterSettings(BaseModel):
    """One cluster of a multi-cluster wave: its kube context, its Prometheus if it has its own
    (otherwise PROMETHEUS_URL's), and the labels that pick its series out of a Prometheus that
    clusters share (Thanos, federation): {"cluster": "prod-eu"}."""

    model_config = {"extra": "forbid"}

    kubeconfig: str | None = None
    context: str | None = None
    prometheus_url: str | None = None
    prometheus_labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("prometheus_labels")
    @classmethod
    def _safe_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        label_matchers(labels)  # refused at startup, as the queries would refuse them
        return labels


class Settings(BaseSettings):
    """Read from the environment (and a `.env` file)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", alias="REDIS_URL")
    kubeconfig: str | None = Field(default=None, alias="KUBECONFIG")
    kube_context: str | None = Field(default=None, alias="CANARY_KUBE_CONTEXT")
    default_namespace: str = Field(default="default", alias="CANARY_DEFAULT_NAMESPACE")
    lease_ttl_s: float = Field(default=5.0, gt=0, alias="CANARY_LEASE_TTL")
    # Seconds between two comparisons of the VirtualServices with the records (one list per
    # namespace), which finds a loss that kept the bot's mark in Redis (keys evicted, a
    # failover to a stale copy); a Redis without the mark is compared on the next full pass
    lost_check_s: float = Field(default=300.0, gt=0, alias="CANARY_LOST_CHECK")
    effect_delay_s: float = Field(default=0.0, ge=0, alias="CANARY_EFFECT_DELAY")
    # Refuse to move traffic to a canary subset that selects no ready pods (needs pods list and
    # watch in the namespace; the chart grants it).
    check_pods: bool = Field(default=True, alias="CANARY_CHECK_PODS")
    channel_namespaces: dict[str, str] = Field(
        default_factory=dict, alias="CANARY_CHANNEL_NAMESPACES"
    )
    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str | None = Field(default=None, alias="SLACK_API_URL")  # a fake, in tests
    prometheus_url: str | None = Field(default=None, alias="PROMETHEUS_URL")
    health_window_s: int | None = Field(default=None, ge=1, alias="CANARY_HEALTH_WINDOW")
    # `waypoint` for ambient mode, where the waypoint proxy reports the requests
    health_reporter: Literal["destination", "waypoint", "source"] = Field(
        default="destination", alias="CANARY_HEALTH_REPORTER"
    )
    thresholds: HealthThresholds = Field(
        default_factory=HealthThresholds, alias="CANARY_THRESHOLDS"
    )
    # `sequential`: anytime-valid tests over each step so far (bot/health/sequential.py);
    # `thresholds`: the fixed thresholds over a look-back window, once per step
    judge: Literal["sequential", "thresholds"] = Field(default="sequential", alias="CANARY_JUDGE")
    # Seconds between looks at a held step's canary (continuous analysis); 0: only when the
    # step falls due. A policy rule's `rollout.analysis` overrides it for its services
    analysis_s: int = Field(default=10, ge=0, le=3600, alias="CANARY_ANALYSIS")
    # Prometheus's scrape interval for the mesh's pods, in seconds: looks are timed just after
    # each scrape (bot/rollout/analysis.py). 0: looks on the interval alone
    scrape_s: int = Field(default=15, ge=0, le=3600, alias="CANARY_SCRAPE_INTERVAL")

    @property
    def health_window(self) -> timedelta | None:
        """The health query window; by default the step interval (at least a minute)."""
        return None if self.health_window_s is None else timedelta(seconds=self.health_window_s)

    policy_file: str | None = Field(default=None, alias="CANARY_POLICY_FILE")
    http_host: str = Field(default="127.0.0.1", alias="CANARY_HTTP_HOST")
    http_port: int = Field(default=3000, ge=0, le=65535, alias="CANARY_HTTP_PORT")
    workers: int = Field(default=8, ge=1, le=256, alias="CANARY_WORKERS")
    # Links on the card to the service in Istio's add-ons: URL templates with {namespace},
    # {service}, {vs}, {stable} and {canary} in them (bot/chat/links.py); unset: no link
    grafana_url: str | None = Field(default=None, alias="CANARY_GRAFANA_URL")
    kiali_url: str | None = Field(default=None, alias="CANARY_KIALI_URL")
    jaeger_url: str | None = Field(default=None, alias="CANARY_JAEGER_URL")

    @field_validator("grafana_url", "kiali_url", "jaeger_url")
    @classmethod
    def _link_template(cls, template: str | None) -> str | None:
        return None if not template else check_template(template)

    @property
    def links(self) -> Links:
        return Links(grafana=self.grafana_url, kiali=self.kiali_url, jaeger=self.jaeger_url)

    @field_validator("prometheus_url", "slack_api_url")
    @classmethod
    def _http_only(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return url

    # The clusters waves go over, by name (JSON): {"canary-eu": {"context": "eu-1"}, ...}
    clusters: dict[str, ClusterSettings] = Field(default_factory=dict, alias="CANARY_CLUSTERS")

    @field_validator("clusters")
    @classmethod
    def _cluster_names(cls, clusters: dict[str, ClusterSettings]) -> dict[str, ClusterSettings]:
        for name in clusters:
            if not CLUSTER_NAME.fullmatch(name):
                raise ValueError(f"cluster name {name!r}: use {CLUSTER_RULE} (canary-eu)")
        return clusters

    @field_validator("clusters")
    @classmethod
    def _labels_have_a_prometheus(
        cls, clusters: dict[str, ClusterSettings], info: ValidationInfo
    ) -> dict[str, ClusterSettings]:
        shared = info.data.get("prometheus_url")  # PROMETHEUS_URL is read before the clusters
        for name, cluster in clusters.items():
            if cluster.prometheus_labels and not (cluster.prometheus_url or shared):
                raise ValueError(
                    f"cluster {name} has prometheus_labels but no Prometheus to ask: set its"
                    " prometheus_url or PROMETHEUS_URL"
                )
        return clusters

    def namespace_for(self, channel: str | None) -> str:
        """The namespace a channel's commands mean when they name none."""
        return self.channel_namespaces.get(channel or "", self.default_namespace)


class ConsoleNotifier:
    """Prints each structured message as a line: the chat adapters render them richer."""

    def __init__(self, write: Callable[[str], None] = print) -> None:
        self._write = write

    def notify(self, rollout: Rollout, message: Notify) -> None:
        if message.event != CARD_ONLY:
            self._write(f"[{rollout.id} {rollout.phase.value} {rollout.weight}%] {message.text}")


@dataclass
class Parts:
    """Everything the bot is made of, built once by `build`."""

    store: RolloutStore
    mesh: KubeMesh
    engine: Engine
    metrics: Metrics
    policy: Policy | None
    dispatcher: Dispatcher
    slack: SlackBot | None
    drills: Drills | None = None
    clusters: dict[str, Cluster] = field(default_factory=dict)
    waves: WaveRunner | None = None


@dataclass
class Cluster:
    """One cluster of the waves: its own Kubernetes API, records (under its own prefix in
    Redis, with the leader's one fencing token) and engine, and the Prometheus that judges
    its canaries (None: none, every step passes)."""

    store: RolloutStore
    mesh: KubeMesh
    engine: Engine
    prometheus_url: str | None = None


class ClusterJobs:
    """The step scheduler for one cluster's rollouts: its jobs are `cluster/rollout`."""

    def __init__(self, scheduler: Scheduler, cluster: str) -> None:
        self.scheduler, self.cluster = scheduler, cluster

    def schedule(self, rollout_id: str, at: datetime, step: int) -> None:
        self.scheduler.schedule(f"{self.cluster}/{rollout_id}", at, step)

    def cancel(self, rollout_id: str) -> None:
        self.scheduler.cancel(f"{self.cluster}/{rollout_id}")


def utcnow() -> datetime:
    return datetime.now(UTC)


def build(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
    redis: Redis | None = None,
    kube_api: ApiClient | None = None,
    mesh: KubeMesh | None = None,
    slack: WebClient | None = None,
    notifier: Notifier | None = None,
    scheduler: Scheduler | None = None,
    fencing: Callable[[], int | None] = lambda: None,
    watch: bool = False,
    watchdog: Watchdog | None = None,
    tell: Tell | None = None,
    cluster_apis: Mapping[str, ApiClient] | None = None,
) -> Parts:
    """The composition root: every part built with its collaborators, in order, and nothing
    patched in afterwards. Clients not given are made from the settings (`mesh`, the
    Kubernetes adapter, from `kube_api`; each cluster's, from `cluster_apis`)."""
    policy = load_policy_file(settings.policy_file)  # first: a bad policy stops everything
    metrics = Metrics()
    client = redis if redis is not None else connect(settings.redis_url)
    store = RolloutStore(client)
    if mesh is None:
        api = kube_api or from_kubeconfig(settings.kubeconfig, settings.kube_context)
        mesh = KubeMesh(
            api,
            clock=clock,
            watch_destination_rules=watch,
            check_pods=settings.check_pods,
            observe=metrics.kube_call,
        )
    book = ApprovalBook(store)
    gate = None
    if policy is not None:
        groups = GroupDirectory(_group_members(slack), store, group_ids(policy))
        gate = Gate(policy, groups, clock)
    wave_book = WaveStore(client)
    gates = GateCards(book, store, clock) if gate is not None else None

    drills = Drills(
        mesh=mesh,
        book=DrillStore(client),
        rollouts=store,
        tell=tell or _channel_poster(slack),
        clock=clock,
        changed=lambda namespace, vs: _redraw(store, engine, namespace, vs),
        limits=lambda ns, vs: (
            None if policy is None else drill_limits(policy, PolicyTarget(ns, vs))
        ),
    )

    def cards(cluster: str | None) -> Notifier | None:
        """The notifier given, or the Slack cards of the bot's own rollouts or of a wave
        cluster's (which name the cluster and carry it on their buttons)."""
        if notifier is not None or slack is None:
            return notifier
        return SlackNotifier(
            slack,
            store,
            clock,
            gates=gates,
            policy=policy,
            links=settings.links,
            cluster=cluster,
            waves=wave_book,
            drills=drills.texts if cluster is None else None,  # drills are the bot's own
        )

    own = cards(None)
    engine = Engine(
        store=store,
        traffic=KubeTraffic(mesh),
        notifier=own or ConsoleNotifier(),
        clock=clock,
        scheduler=scheduler,
        fencing=fencing,
        effect_delay=settings.effect_delay_s,
        metrics=metrics,
        health=health_check(settings, metrics, policy),
    )
    clusters = {
        name: _cluster(
            name,
            settings,
            client,
            api=(cluster_apis or {}).get(name),
            clock=clock,
            notifier=ClusterNotifier(cards(name) or ConsoleNotifier(), name),
            scheduler=None if scheduler is None else ClusterJobs(scheduler, name),
            fencing=fencing,
            metrics=metrics,
            policy=policy,
            waves=ClusterWaves(
                book=wave_book, cluster=name, clusters=settings.clusters, clock=clock
            ),
        )
        for name in settings.clusters
    }
    waves = WaveRunner(
        engines={name: c.engine for name, c in clusters.items()},
        book=wave_book,
        tell=tell or _channel_poster(slack),
        clock=clock,
        fencing=fencing,
    )
    desks = {
        name: Dispatcher(
            engine=c.engine,
            store=c.store,
            clock=clock,
            default_namespace=settings.namespace_for,
            gate=gate,
            book=book,
            links=settings.links,
            waves=waves,
            cluster=name,
        )
        for name, c in clusters.items()
    }
    dispatcher = Dispatcher(
        engine=engine,
        store=store,
        clock=clock,
        default_namespace=settings.namespace_for,
        gate=gate,
        book=book,
        reserve=own.reserve if isinstance(own, SlackNotifier) else None,
        drills=drills,
        links=settings.links,
        waves=waves,
        clusters=desks,
    )
    bot = None
    if slack is not None:
        secret = settings.slack_signing_secret
        bot = SlackBot(
            dispatcher=dispatcher,
            store=store,
            client=slack,
            signing_secret=secret.get_secret_value() if secret else "",
            workers=Workers(settings.workers, watchdog=watchdog),
            on_command=lambda verb, outcome: metrics.commands.labels(verb, outcome).inc(),
        )
    return Parts(store, mesh, engine, metrics, policy, dispatcher, bot, drills, clusters, waves)


def _cluster(
    name: str,
    settings: Settings,
    client: Redis,
    *,
    api: ApiClient | None,
    clock: Callable[[], datetime],
    notifier: Notifier,
    scheduler: Scheduler | None,
    fencing: Callable[[], int | None],
    metrics: Metrics,
    policy: Policy | None,
    waves: ClusterWaves,
) -> Cluster:
    own = settings.clusters[name]
    mesh = KubeMesh(
        api or from_kubeconfig(own.kubeconfig, own.context),
        clock=clock,
        check_pods=settings.check_pods,
        observe=metrics.kube_call,
    )
    store = RolloutStore(client, prefix=f"canary:cluster:{name}", leader_prefix="canary")
    prometheus = own.prometheus_url or settings.prometheus_url
    engine = Engine(
        store=store,
        traffic=KubeTraffic(mesh),
        notifier=notifier,
        clock=clock,
        scheduler=scheduler,
        fencing=fencing,
        effect_delay=settings.effect_delay_s,
        metrics=metrics,
        health=health_check(
            settings.model_copy(update={"prometheus_url": prometheus}),
            metrics,
            policy,
            labels=own.prometheus_labels,
        ),
        waves=waves,
    )
    return Cluster(store, mesh, engine, prometheus)


def _redraw(store: RolloutStore, engine: Engine, namespace: str, vs: str) -> None:
    """The card of the service's rollout going on, if any, drawn again as it stands."""
    active = store.active_for(namespace, vs)
    if active is not None:
        engine.notifier.notify(active, Notify(event=CARD_ONLY, text=""))


def _channel_poster(slack: WebClient | None) -> Tell:
    """Posts a line in a channel (a drill's start and end); with no Slack, logs it."""

    def post(channel: str | None, text: str) -> None:
        if slack is None or channel is None:
            log.info("%s", text)
            return
        slack.chat_postMessage(channel=channel, text=text)

    return post


def health_check(
    settings: Settings,
    metrics: Metrics,
    policy: Policy | None,
    *,
    labels: Mapping[str, str] | None = None,
) -> Health | None:
    """Prometheus health checks when PROMETHEUS_URL is set; without it every step passes.
    `labels`: the matchers a wave cluster's series carry in a shared Prometheus."""
    if settings.prometheus_url is None:
        return None
    client = TimedQueries(PrometheusClient(settings.prometheus_url), metrics)
    if settings.judge == "sequential":
        return SequentialCheck(
            client,
            settings.thresholds if policy is None else _thresholds_of(policy),
            service=_host,
            reporter=settings.health_reporter,
            labels=labels,
        )
    if policy is not None:
        return PolicyHealth(client, policy, settings, labels=labels)
    return HealthCheck(
        client,
        settings.thresholds,
        window=settings.health_window,
        service=_host,
        reporter=settings.health_reporter,
        labels=labels,
    )


def _host(target: Target) -> str:
    return target.host or target.vs


def _thresholds_of(policy: Policy) -> Callable[[Target], HealthThresholds]:
    def thresholds(target: Target) -> HealthThresholds:
        return rollout_defaults(policy, PolicyTarget(target.namespace, target.vs))[1]

    return thresholds


def _analysis_of(policy: Policy | None) -> Callable[[Target], timedelta | None] | None:
    """Each service's interval between looks, as its policy rule sets it (None: not set)."""
    if policy is None:
        return None
    return lambda target: analysis_every(policy, PolicyTarget(target.namespace, target.vs))


def _looks(settings: Settings, policy: Policy | None) -> bool:
    """Whether any held step is looked at: by CANARY_ANALYSIS, or by a rule of the policy."""
    rules = policy.rules if policy is not None else ()
    return bool(settings.analysis_s) or any(p.rule.rollout.analysis for p in rules)


class PolicyHealth:
    """Health checks with the thresholds (and custom checks) the policy sets for each service."""

    def __init__(
        self,
        client: QueryClient,
        policy: Policy,
        settings: Settings,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.client, self.policy, self.window = client, policy, settings.health_window
        self.reporter, self.labels = settings.health_reporter, labels

    def check(self, rollout: Rollout, now: datetime) -> Verdict:
        target = PolicyTarget(rollout.target.namespace, rollout.target.vs)
        _, thresholds = rollout_defaults(self.policy, target)
        health = HealthCheck(
            self.client,
            thresholds,
            window=self.window,
            service=_host,
            reporter=self.reporter,
            labels=self.labels,
        )
        return health.check(rollout, now)


class TimedQueries:
    """A Prometheus client whose queries show up in the bot's own metrics."""

    def __init__(self, client: PrometheusClient, metrics: Metrics) -> None:
        self.client, self.metrics = client, metrics

    def query(self, promql: str, at: datetime | None = None) -> Vector:
        start = time.perf_counter()
        try:
            result = self.client.query(promql, at=at)
        except PrometheusError:
            self.metrics.prometheus_query(time.perf_counter() - start, ok=False)
            raise
        self.metrics.prometheus_query(time.perf_counter() - start, ok=True)
        return result


def load_policy_file(path: str | None) -> Policy | None:
    """The policy in `path`; a bad file raises PolicyError with every problem and its line."""
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        problem = Problem(
            0, "", f"cannot read the policy file ({e.strerror}); check CANARY_POLICY_FILE"
        )
        raise PolicyError(path, (problem,)) from e
    return load_policy(text, path)


def _group_members(client: WebClient | None) -> Callable[[str], list[str]]:
    """Who is in a Slack user group (no one, without Slack)."""

    def members(group: str) -> list[str]:
        if client is None:
            return []
        return [str(u) for u in client.usergroups_users_list(usergroup=group)["users"]]

    return members


class Server:
    """`canary-bot serve`: leader election, the step scheduler and the engine."""

    def __init__(
        self,
        settings: Settings,
        *,
        notifier: Notifier | None = None,
        serve_http: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        redis = connect(settings.redis_url)
        identity = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        lease = LeaderLease(redis, identity=identity, ttl_ms=int(settings.lease_ttl_s * 1000))
        self.watchdog = Watchdog(monotonic)
        self.scheduler = StepScheduler(self._step_due, watchdog=self.watchdog)
        token = settings.slack_bot_token
        self.parts = build(
            settings,
            clock=utcnow,
            redis=redis,
            slack=web_client(token.get_secret_value(), settings.slack_api_url) if token else None,
            notifier=notifier,
            scheduler=self.scheduler,
            fencing=lambda: lease.token,
            watch=True,
            watchdog=self.watchdog,
        )
        self.engine = self.parts.engine
        self.analysts = self._analysts()
        self.leadership = Leadership(
            lease, ttl_s=settings.lease_ttl_s, on_elected=self._elected, on_deposed=self._deposed
        )
        self._resyncs = 0
        self._namespaces = sorted(
            {settings.default_namespace, *settings.channel_namespaces.values()}
        )
        self._stopped = threading.Event()
        self.slack = self.parts.slack
        http_app = self.slack.app if self.slack and settings.slack_signing_secret else None
        self.http: BotHttpServer | None = None
        if serve_http:
            secret = settings.slack_signing_secret
            self.http = BotHttpServer(
                http_app,
                host=settings.http_host,
                port=settings.http_port,
                signing_secret=secret.get_secret_value() if secret else "",
                probes=self._probes(),
                on_slack_request=self.parts.metrics.ack_seconds.observe,
            )
        self.socket_mode: SocketModeHandler | None = None
        if self.slack is not None and settings.slack_app_token is not None:
            self.socket_mode = SocketModeHandler(
                self.slack.app, settings.slack_app_token.get_secret_value()
            )

    def _analysts(self) -> dict[str, Analyst]:
        """Who looks at held steps: one analyst for each cluster Prometheus judges, the bot's
        own ("") and each wave cluster's, through that cluster's engine and records."""
        own = Cluster(self.parts.store, self.parts.mesh, self.engine, self.settings.prometheus_url)
        every = timedelta(seconds=self.settings.analysis_s)
        scrape = timedelta(seconds=self.settings.scrape_s) or None
        return {
            name: Analyst(
                c.engine,
                c.store.due,
                every=every,
                every_for=_analysis_of(self.parts.policy),
                scrape=scrape,
            )
            for name, c in {"": own, **self.parts.clusters}.items()
            if c.prometheus_url is not None
        }

    def _analyse(self) -> None:
        """The analysis tick: every cluster's held steps, each under the leader's token (the
        engines share it); one cluster's trouble stops no other's looks."""
        for name, analyst in self.analysts.items():
            try:
                analyst.run()
            except StoreError as e:
                log.warning("analysis: %s left for the next tick: %s", name or "own cluster", e)

    def _step_due(self, job: str, step: int) -> None:
        cluster, _, rollout_id = job.rpartition("/")  # `cluster/rollout` for a wave's cluster
        engine = self.parts.clusters[cluster].engine if cluster else self.engine
        engine.step_due(rollout_id, step)

    def start(self) -> None:
        self.leadership.start()
        if self.http is not None:
            self.http.start()
            log.info(
                "listening on %s (Slack at %s, probes at /healthz /readyz /metrics)",
                self.http.url,
                SLACK_PATH if self.http.app else "nothing: no signing secret",
            )
        if self.socket_mode is not None:
            self.socket_mode.connect()  # type: ignore[no-untyped-call]
            log.info("connected to Slack in Socket Mode")

    def run(self) -> None:
        self.start()
        # Waited for in slices: an untimed wait can miss a SIGTERM that arrives right after a
        # SIGCONT, and the replica would never stop.
        while not self._stopped.wait(1.0):
            pass

    def stop(self) -> None:
        """Stop taking work, finish what is in flight, hand the lease over (once)."""
        if self._stopped.is_set():
            return
        if self.http is not None:
            self.http.stop()
        if self.socket_mode is not None:
            self.socket_mode.close()  # type: ignore[no-untyped-call]
        if self.slack is not None:
            self.slack.workers.shutdown()
        self.leadership.stop()
        self.scheduler.shutdown()
        self.parts.mesh.close()
        for cluster in self.parts.clusters.values():
            cluster.mesh.close()
        log.info("stopped; redis round trips: %d", self.parts.store.round_trips)
        self._stopped.set()

    def _probes(self) -> dict[str, Probe]:
        def alive() -> tuple[int, str, str]:
            ok, why = self.watchdog.healthy(self.watchdog.clock())
            return (200 if ok else 503), "text/plain", f"{why}\n"

        return {
            "/healthz": alive,
            "/readyz": self.ready,
            "/metrics": self.parts.metrics.exposition,
        }

    def ready(self) -> tuple[int, str, str]:
        """Ready when Redis and the Kubernetes API answer (and the policy loaded, at start)."""
        problems = []
        for name, check in (("redis", self.parts.store.ping), ("kubernetes", self.parts.mesh.ping)):
            try:
                check()
            except (StoreError, MeshError) as e:
                problems.append(f"{name}: {e}")
        body = json.dumps({"ready": not problems, "problems": problems})
        return (503 if problems else 200), "application/json", body

    def _elected(self, token: int) -> None:
        self.parts.metrics.leader.set(1)
        self._resyncs = 0  # the first resync after an election is a full one
        self._lost_looked_at: dict[str, float] = {}  # and compares each cluster's VSs
        self.scheduler.clear()
        self.scheduler.every(RESYNC_S, self.resync)
        if self.analysts and _looks(self.settings, self.parts.policy):
            self.scheduler.every(ANALYSIS_TICK_S, self._analyse, job=ANALYSIS_JOB)
        self.scheduler.resume()

    def _deposed(self) -> None:
        self.parts.metrics.leader.set(0)
        self.scheduler.pause()
        self.scheduler.clear()

    @property
    def resyncs(self) -> int:
        """Resyncs run since this replica was last elected (0: not leading, or not yet)."""
        return self._resyncs

    def resync(self) -> None:
        """Make the jobs match Redis: rebuild on election, then pick up what others changed."""
        full = self._resyncs % FULL_RESYNC_EVERY == 0
        self._resyncs += 1
        try:
            if full:
                self._rebuild()
            else:
                self._pick_up_due(self.parts.store)
        except StoreError as e:
            log.warning("resync: %s", e)
        self._end_drills()
        self._carry_waves(full)

    def _end_drills(self) -> None:
        """Drills whose time is up, or whose rollout ended, are taken off by the leader."""
        if self.parts.drills is None:
            return
        try:
            self.parts.drills.expire_due()
        except (StoreError, MeshError, Busy) as e:
            log.warning("resync: drills left for the next pass: %s", e)

    def _carry_waves(self, full: bool) -> None:
        """Each cluster's rollouts (their step jobs, and on a full pass the work a crash left
        unfinished), then the waves over them: a promotion starts the next cluster."""
        for name, cluster in self.parts.clusters.items():
            try:
                self._cluster_jobs(name, cluster, full)
            except (StoreError, MeshError, Busy) as e:
                log.warning("resync: cluster %s left for the next pass: %s", name, e)
        if self.parts.waves is not None and self.parts.clusters:
            try:
                self.parts.waves.advance()
            except StoreError as e:
                log.warning("resync: waves left for the next pass: %s", e)

    def _cluster_jobs(self, name: str, cluster: Cluster, full: bool) -> None:
        if full:
            self._settle_records(cluster.store, cluster.engine, name)
            self._look_for_lost(cluster.store, cluster.engine, name)
        else:
            self._pick_up_due(cluster.store, name)

    def _rebuild(self) -> None:
        """A full pass over the bot's own records, and the search for what Redis lost."""
        self._settle_records(self.parts.store, self.engine)
        self._look_for_lost(self.parts.store, self.engine)

    def _look_for_lost(self, store: RolloutStore, engine: Engine, cluster: str = "") -> None:
        """Compare one cluster's VirtualServices with its records: on election, every
        CANARY_LOST_CHECK seconds, and at once when its records lost their mark (Redis lost
        its data)."""
        looked = self._lost_looked_at.get(cluster)
        due = looked is None or time.monotonic() - looked >= self.settings.lost_check_s
        if (due or not store.known()) and self._adopt_lost(engine, cluster):
            self._lost_looked_at[cluster] = time.monotonic()
            store.mark_known()

    def _settle_records(self, store: RolloutStore, engine: Engine, cluster: str = "") -> None:
        """A full pass over one store's rollouts: right after an election every active one
        (its job, and its unfinished work); then only what was left unfinished for a while (an
        index kept with the records: normally empty), so a pass costs nothing with a thousand
        rollouts going on."""
        if self._resyncs == 1:  # right after an election nothing of ours is in flight
            for found in store.list_active():
                unfinished = found.pending or found.writing is not None
                self._ensure_job(self._recover(engine, found) if unfinished else found, cluster)
        else:
            for rollout_id in store.unfinished(utcnow() - STALE_PENDING):
                self._ensure_job(self._recover(engine, store.load(rollout_id)), cluster)

    def _recover(self, engine: Engine, rollout: Rollout) -> Rollout:
        """One rollout's unfinished work; if it cannot be done now (its service busy, the API
        away), the others' is done all the same and this one stays for the next full pass."""
        try:
            return engine.recover(rollout)
        except (Busy, MeshError) as e:
            log.warning("resync: rollout %s left for the next pass: %s", rollout.id, e)
            return rollout

    def _adopt_lost(self, engine: Engine, cluster: str) -> bool:
        """Take back the rollouts a cluster's VirtualServices show and Redis lost; False if
        some namespace could not be looked at (the next full resync tries again)."""
        done = True
        for namespace in self._namespaces:
            try:
                engine.adopt_lost(namespace)
            except MeshError as e:
                where = f"{namespace} on {cluster}" if cluster else namespace
                log.warning("resync: cannot look for lost rollouts in %s: %s", where, e)
                done = False
        return done

    def _pick_up_due(self, store: RolloutStore, cluster: str = "") -> None:
        horizon = utcnow() + timedelta(seconds=2 * RESYNC_S)
        for rollout_id, at in store.due(horizon):
            job = self.scheduler.scheduled(_job_name(cluster, rollout_id))
            if job is None or job[0] != at:  # only then is the record worth reading
                self._ensure_job(store.load(rollout_id), cluster)

    def _ensure_job(self, rollout: Rollout, cluster: str = "") -> None:
        """Schedule the rollout's next step, unless exactly that job is already there."""
        if rollout.phase is not Phase.PROGRESSING or rollout.next_step_at is None:
            return
        wanted = (rollout.next_step_at, rollout.step)
        job = _job_name(cluster, rollout.id)
        if self.scheduler.scheduled(job) != wanted:
            self.scheduler.schedule(job, *wanted)


def _job_name(cluster: str, rollout_id: str) -> str:
    """A rollout's step job: its id, under its cluster's name for a wave's cluster."""
    return f"{cluster}/{rollout_id}" if cluster else rollout_id
