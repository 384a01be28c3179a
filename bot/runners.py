"""`canary-bot rollout ...` and `canary-bot serve`: the engine from the command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from pydantic import ValidationError

from bot.app import Server, Settings, build, dispatcher, utcnow
from bot.chat.dispatch import Asker
from bot.chat.shell import Shell, ShellNotifier, interactive_lines
from bot.ops import logs
from bot.rollout.engine import NoActiveRollout
from bot.rollout.model import Abort, Pause, Promote, Resume, Rollback, Rollout, StepPlan
from bot.rollout.transitions import InvalidTransition
from bot.sandbox.environment import playground
from bot.store.errors import StoreError
from commands.grammar import GrammarError, parse_duration, parse_service, parse_steps

USER_ERRORS = (GrammarError, InvalidTransition, NoActiveRollout, StoreError, ValidationError)
VERBS = {
    "pause": "stop stepping, keep the traffic where it is",
    "resume": "go on stepping",
    "promote": "send all traffic to the canary and make it stable",
    "rollback": "send all traffic back to stable",
    "abort": "stop the rollout and send all traffic back to stable",
}
EVENTS = {
    "pause": Pause,
    "resume": Resume,
    "promote": Promote,
    "rollback": Rollback,
    "abort": Abort,
}


def run_start(args: argparse.Namespace) -> int:
    settings = Settings()
    namespace, vs = parse_service(args.service, settings.default_namespace)
    steps = StepPlan(weights=parse_steps(args.steps), interval_s=parse_duration(args.every))
    parts = build(settings)
    rollout = parts.engine.start(
        namespace=namespace, vs=vs, to=args.to, steps=steps, actor=args.actor, channel=None
    )
    print(describe(rollout))
    return 0


def run_verb(args: argparse.Namespace) -> int:
    settings = Settings()
    namespace, vs = parse_service(args.service, settings.default_namespace)
    event = EVENTS[args.verb](actor=args.actor)
    print(describe(build(settings).engine.act(namespace, vs, event)))
    return 0


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


def run_serve(args: argparse.Namespace) -> int:
    logs.setup()
    server = Server(Settings())

    def shutdown(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    server.run()
    return 0


def run_shell(args: argparse.Namespace) -> int:
    if args.sandbox:
        with playground() as play:
            return _shell(play.settings, args)
    return _shell(Settings(), args)


def _shell(settings: Settings, args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    server = Server(settings.model_copy(update={"slack_bot_token": None}), serve_http=False)
    server.engine.notifier = ShellNotifier(_print, utcnow)
    shell = Shell(dispatcher(settings, server.parts), Asker(args.user, args.channel), _print)
    server.start()
    try:
        shell.run(interactive_lines())
    finally:
        server.stop()
    return 0


def _print(line: str) -> None:
    print(line, flush=True)


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
