"""`canary-bot rollout ...` and `canary-bot serve`: the engine from the command line."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

from kubernetes.config import ConfigException
from pydantic import ValidationError
from slack_sdk.errors import SlackApiError

import policies
from bot.app import Server, Settings, build, load_policy_file, utcnow
from bot.chat.dispatch import Asker
from bot.chat.shell import Shell, ShellNotifier, interactive_lines
from bot.chat.slack import web_client
from bot.mesh.errors import MeshError
from bot.mesh.kube import KubeMesh, from_kubeconfig
from bot.ops import logs
from bot.rollout.engine import NoActiveRollout
from bot.rollout.model import Rollout
from bot.rollout.transitions import InvalidTransition
from bot.service.changes import EVENTS
from bot.store.errors import StoreError, mask_url
from bot.store.redis_store import RolloutStore, connect
from bot.store.waves import WaveStore
from commands import Command, Verb
from commands.grammar import (
    GrammarError,
    on_cluster,
    parse_analysis,
    parse_cluster,
    parse_clusters,
    parse_duration,
    parse_service,
    parse_steps,
)
from commands.help import summary
from policies import PolicyError


class CliRefusal(Exception):
    """The bot refused the command, or it did not go live; the message says why."""


USER_ERRORS = (
    GrammarError,
    CliRefusal,
    InvalidTransition,
    NoActiveRollout,
    StoreError,
    ValidationError,
    PolicyError,
)
VERBS = {verb.value: summary(verb) for verb in EVENTS}


def run_start(args: argparse.Namespace) -> int:
    """`rollout start`: the same path, and the same policy, as `/canary <service> start`."""
    service = _service(args.service)
    command = Command(
        verb=Verb.START,
        service=service.vs,
        namespace=service.namespace,
        to=args.to,
        steps=parse_steps(args.steps),
        interval_s=parse_duration(args.every),
        analysis_s=None if args.analysis is None else parse_analysis(args.analysis),
        clusters=None if args.clusters is None else parse_clusters(args.clusters),
    )
    wave = "" if args.clusters is None else f" clusters {args.clusters}"
    return _run(command, args.actor, f"{args.service} start{wave}")


def run_verb(args: argparse.Namespace) -> int:
    """`rollout pause|resume|promote|rollback|abort`: as the chat command would."""
    service = _service(args.service)
    cluster = None if args.cluster is None else parse_cluster(args.cluster)
    command = Command(
        verb=Verb(args.verb), service=service.vs, namespace=service.namespace, cluster=cluster
    )
    return _run(command, args.actor, f"{args.service} {args.verb}{on_cluster(cluster)}")


def _run(command: Command, actor: str, text: str) -> int:
    settings = Settings()
    parts = build(settings)
    try:
        replies = parts.dispatcher.run(command, Asker(actor, None), text=text)
    finally:
        parts.mesh.close()
    refused = [r.text for r in replies if r.text.startswith((":warning:", ":no_entry:"))]
    for reply in replies:
        if reply.text not in refused:
            print(reply.text)
    if refused:
        raise CliRefusal("; ".join(t.split(" ", 1)[1] for t in refused))
    latest = _latest(parts.store, str(command.namespace), str(command.service))
    if latest is not None:
        print(describe(latest))
    return 0


def _latest(store: RolloutStore, namespace: str, vs: str) -> Rollout | None:
    """The service's rollout going on, or else the one its audit trail names last."""
    active = store.active_for(namespace, vs)
    if active is not None:
        return active
    last = store.history(namespace, vs, count=1)
    if not last or not last[-1].rollout_id or not store.exists(last[-1].rollout_id):
        return None
    return store.load(last[-1].rollout_id)


class _Service(NamedTuple):
    namespace: str
    vs: str


def _service(text: str) -> _Service:
    return _Service(*parse_service(text, Settings().default_namespace))


def run_status(args: argparse.Namespace) -> int:
    settings = Settings()
    namespace, vs = parse_service(args.service, settings.default_namespace)
    rollout = build(settings).store.active_for(namespace, vs)
    print(describe(rollout) if rollout else f"{args.service}: no rollout going on")
    return 0


def run_list(args: argparse.Namespace) -> int:
    for rollout in build(Settings()).store.list_active():
        print(describe(rollout))
    return 0


def sandbox_module(name: str) -> Any:
    """A module of the sandbox, which ships with the source tree, not with the product (the
    image has none): loaded by name, so the product itself never depends on it."""
    try:
        return importlib.import_module(f"sandbox.{name}")
    except ModuleNotFoundError as e:
        raise CliRefusal(
            "the sandbox is not installed here (it comes with the source tree: "
            "`pip install -e .` in a clone of the repository)"
        ) from e


def run_serve(args: argparse.Namespace) -> int:
    logs.setup()
    settings = Settings()
    server = Server(settings)

    def shutdown(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    server.run()
    return 0


def run_shell(args: argparse.Namespace) -> int:
    if args.sandbox:
        with sandbox_module("environment").playground() as play:
            return _shell(play.settings, args)
    return _shell(Settings(), args)


def _shell(settings: Settings, args: argparse.Namespace, charts: Path | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    server = Server(
        settings.model_copy(update={"slack_bot_token": None}),
        notifier=ShellNotifier(
            _print, utcnow, charts=charts, waves=WaveStore(connect(settings.redis_url))
        ),
        serve_http=False,
    )
    shell = Shell(server.parts.dispatcher, Asker(args.user, args.channel), _print)
    server.start()
    try:
        shell.run(interactive_lines())
    finally:
        server.stop()
    return 0


def _print(line: str) -> None:
    print(line, flush=True)


def run_check_config(args: argparse.Namespace) -> int:
    """Reach everything the bot needs and say, in plain words, what is wrong."""
    try:
        settings = Settings()
    except ValidationError as e:
        for error in e.errors():
            print(f"✗ setting {'.'.join(map(str, error['loc']))}: {error['msg']}")
        return 2
    results = [check() for check in _checks(settings)]
    for ok, line in results:
        print(("✓ " if ok else "✗ ") + line)
    return 0 if all(ok for ok, _ in results) else 2


def _checks(settings: Settings) -> list[Callable[[], tuple[bool, str]]]:
    return [
        lambda: _check_redis(settings),
        lambda: _check_kubernetes(settings),
        lambda: _check_slack(settings),
        lambda: _check_prometheus(settings),
    ]


def _check_redis(settings: Settings) -> tuple[bool, str]:
    try:
        RolloutStore(connect(settings.redis_url, timeout=2)).ping()
    except StoreError as e:
        return False, str(e)
    return True, f"Redis answers at {mask_url(settings.redis_url)}"


def _check_kubernetes(settings: Settings) -> tuple[bool, str]:
    try:
        mesh = KubeMesh(from_kubeconfig(settings.kubeconfig, settings.kube_context))
        version = mesh.version
    except (MeshError, ConfigException, OSError) as e:
        return False, f"Kubernetes: {e}"
    return True, f"Kubernetes serves networking.istio.io/{version}"


def _check_slack(settings: Settings) -> tuple[bool, str]:
    if settings.slack_bot_token is None:
        return False, "SLACK_BOT_TOKEN is not set: the bot cannot post to Slack"
    if settings.slack_signing_secret is None and settings.slack_app_token is None:
        return False, (
            "set SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode): "
            "without one the bot cannot receive commands"
        )
    client = web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
    try:
        who = client.auth_test()
    except SlackApiError as e:
        return False, f"Slack refused the bot token ({e.response.get('error')}); check it"
    except OSError as e:
        return False, f"Slack cannot be reached ({type(e).__name__})"
    return True, f"Slack knows the bot as {who.get('user')} in {who.get('team')}"


def _check_prometheus(settings: Settings) -> tuple[bool, str]:
    if settings.prometheus_url is None:
        return False, "PROMETHEUS_URL is not set: every health check will be inconclusive"
    try:
        ready = f"{settings.prometheus_url.rstrip('/')}/-/ready"  # Settings allow http(s) URLs only
        with urllib.request.urlopen(ready, timeout=2):  # noqa: S310
            pass
    except OSError as e:
        return False, f"Prometheus at {settings.prometheus_url} cannot be reached ({e})"
    return True, f"Prometheus answers at {settings.prometheus_url}"


def run_policy_check(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8")
    except OSError as e:
        print(f"error: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 2
    code, message = policies.check(text, str(args.file))
    print(message, file=sys.stdout if code == 0 else sys.stderr)
    return code


def run_policy_explain(args: argparse.Namespace) -> int:
    policy = load_policy_file(str(args.file))
    assert policy is not None
    namespace, vs = parse_service(args.service, "default")
    at = datetime.fromisoformat(args.at) if args.at else utcnow()
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    print(
        policies.explain(
            policy,
            user=args.user,
            groups=args.groups,
            action=args.action,
            service=vs,
            namespace=namespace,
            at=at,
            weight_before=args.weight_before,
            weight_after=args.weight_after,
        )
    )
    return 0


def describe(r: Rollout) -> str:
    steps = len(r.steps.weights)
    line = (
        f"{r.target.service}: rollout {r.id} {r.phase.value}, {r.target.stable} → "
        f"{r.target.canary} at {r.weight}% (step {r.step + 1} of {steps})"
    )
    if r.next_step_at is not None:
        line += f", next step at {r.next_step_at:%H:%M:%S}"
    if r.last_verdict is not None:
        line += f", last check: {r.last_verdict.outcome}"
    return line + (f"; {r.reason}" if r.reason else "")
