"""`canary-bot shell`: the same pipeline as Slack, in a terminal.

Type `/canary weather 10%` (the `/canary` is optional) and see the replies and the rollout card
as text. Buttons are pressed with `:click pause weather`; `:wait weather` waits until the
service's rollout is finished (for scripts). When stdin is not a terminal, one command is read
per line and the shell exits at EOF.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TextIO

from bot.chat.cards import CARD_ONLY, FINAL_EVENTS, card_text, card_view
from bot.chat.dispatch import Asker, Dispatcher, Reply
from bot.chat.health_text import health_table
from bot.chat.phone import plain_dates
from bot.chat.voting import Approvals
from bot.health.chart import chart_png
from bot.rollout.model import Notify, Rollout
from bot.rollout.waves import Wave
from bot.service.waves import WaveBook
from commands import Command, CommandError, Verb, parse
from commands.grammar import GrammarError, parse_service
from commands.model import BUTTONS

PROMPT = "canary> "
WAIT_LIMIT_S = 600.0

_CLICKS = tuple(verb.value for verb in BUTTONS)  # the rollout card's buttons


class ShellNotifier:
    """Prints what the engine tells the channel: the card when it starts, a line per event."""

    def __init__(
        self,
        write: Callable[[str], None],
        clock: Callable[[], datetime],
        *,
        charts: Path | None = None,
        waves: WaveBook | None = None,
    ) -> None:
        self.write, self.clock = write, clock
        self.charts = charts  # where to save the end-of-rollout charts, if anywhere
        self.waves = waves  # the waves a wave cluster's card shows, if any

    def notify(self, rollout: Rollout, message: Notify) -> None:
        if message.event == CARD_ONLY:
            return  # the shell prints a card when a rollout starts, not when it is redrawn
        cluster = message.cluster  # a wave cluster's rollout: its card names the cluster
        view = card_view(rollout, self.clock(), cluster=cluster, wave=self._wave(rollout, cluster))
        if message.event == "started":
            self.write(card_text(view))
            return
        if message.event == "health" and rollout.last_verdict is not None:
            table = health_table(rollout.last_verdict)
            lead = f"[{cluster}] " if cluster else ""  # as the cluster's thread reads it
            self.write(_indent(lead + table.replace("```\n", "").replace("\n```", "")))
            return
        self.write(f"  ↳ {message.text}   [{view.bar} {view.weight}% {view.phase}]")
        if message.event in FINAL_EVENTS and rollout.verdicts and self.charts is not None:
            path = self.charts / f"{rollout.target.vs}-{rollout.id}.png"
            path.write_bytes(chart_png(rollout))
            self.write(f"  ↳ chart: {path}")

    def _wave(self, rollout: Rollout, cluster: str | None) -> Wave | None:
        if cluster is None or self.waves is None:
            return None
        return self.waves.for_service(rollout.target.namespace, rollout.target.vs)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


class Shell:
    def __init__(self, dispatcher: Dispatcher, asker: Asker, write: Callable[[str], None]):
        self.dispatcher, self.asker, self.write = dispatcher, asker, write

    def run(self, lines: Iterable[str]) -> None:
        for line in lines:
            if line.strip() in (":quit", ":q", "exit"):
                return
            self.handle(line)

    def handle(self, line: str) -> None:
        text = line.strip()
        if not text or text.startswith("#"):
            return
        if text.startswith(":as "):
            self.asker = Asker(text.split()[1], self.asker.channel)
            self.write(f"(you are {self.asker.user} now)")
        elif text.startswith(":click"):
            self._click(text.split()[1:])
        elif text.startswith(":wait"):
            self._wait(text.split()[1:])
        else:
            self._command(text)

    def _command(self, text: str) -> None:
        try:
            command = parse(text)
        except CommandError as e:
            self.write(f"(only you) :warning: {e}")
            return
        for reply in self.dispatcher.run(
            command, self.asker, text=text.removeprefix("/canary").strip()
        ):
            self._show(reply)

    def _show(self, reply: Reply) -> None:
        text = plain_dates(reply.text)
        self.write(f"(only you) {text}" if reply.ephemeral else text)
        if reply.approval is not None:
            self.write(
                f"  approve with `:click approve {reply.approval}` or deny with "
                f"`:click deny {reply.approval}` (as someone else: `:as U…`)"
            )

    def _click(self, args: list[str]) -> None:
        """A button: the command it stands for, through the policy like any other."""
        if len(args) == 2 and args[0] in ("approve", "deny"):
            self._vote(args[1], deny=args[0] == "deny")
            return
        if len(args) != 2 or args[0] not in _CLICKS:
            self.write(f"usage: :click {'|'.join(_CLICKS)} SERVICE, :click approve|deny REQUEST")
            return
        rollout = self._active(args[1])
        if rollout is not None:
            target = rollout.target
            command = Command(verb=Verb(args[0]), service=target.vs, namespace=target.namespace)
            for reply in self.dispatcher.run(
                command, self.asker, text=f"{target.service} {args[0]}"
            ):
                self._show(reply)

    def _vote(self, request_id: str, *, deny: bool) -> None:
        try:
            outcome = Approvals(self.dispatcher).vote(request_id, self.asker.user, deny=deny)
        except Exception as e:  # shown to the one who clicked, as Slack would
            self.write(f"(only you) :warning: {e}")
            return
        if outcome.message:
            self.write(f"(only you) {outcome.message}")
        approvers = [a["user"] for a in outcome.request.approvals if not a["deny"]]
        self.write(
            f"approval request {request_id}: {outcome.request.status}"
            + (f", approved by {', '.join(approvers)}" if approvers else "")
        )
        for reply in outcome.replies:
            self._show(reply)

    def _wait(self, args: list[str]) -> None:
        limit = _seconds(args[1]) if len(args) > 1 else WAIT_LIMIT_S
        if not args or limit is None:
            self.write("usage: :wait SERVICE [SECONDS]")
            return
        deadline = time.monotonic() + limit
        while self._active(args[0], quiet=True) is not None:
            if time.monotonic() > deadline:
                self.write(f"(only you) still going after {limit:.0f}s")
                return
            time.sleep(0.1)

    def _active(self, service: str, *, quiet: bool = False) -> Rollout | None:
        try:
            namespace, vs = parse_service(service, self.dispatcher.default_namespace(None))
        except GrammarError as e:
            self.write(f"(only you) :warning: {e}")
            return None
        rollout = self.dispatcher.store.active_for(namespace, vs)
        if rollout is None and not quiet:
            self.write(f"(only you) {service} has no rollout going on")
        return rollout


def interactive_lines(stdin: TextIO = sys.stdin) -> Iterable[str]:
    """Lines from a terminal with a prompt, or from a pipe as they come."""
    if not stdin.isatty():
        yield from stdin
        return
    while True:
        try:
            yield input(PROMPT)
        except EOFError:
            return


def _seconds(text: str) -> float | None:
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
