"""From a parsed command to what happens: shared by Slack and the shell.

The dispatcher runs after the ack, off the request path. Changes to a rollout go through the
engine, whose notifications update the rollout's card; what the dispatcher returns is only what
the asker should see (ephemeral) or what the channel should be told outside a rollout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from bot.chat.approvals import (
    ApprovalBook,
    ApprovalRequest,
    Gate,
    approval_blocks,
    summary_text,
)
from bot.chat.cards import card_blocks, card_text, card_view
from bot.chat.health_text import health_blocks, health_table
from bot.chat.links import Links
from bot.chat.phone import phone_diff, slack_date
from bot.mesh.cohort import live_cohort
from bot.mesh.errors import MeshError
from bot.rollout.engine import AlwaysHealthy, Busy, Engine, NoActiveRollout, Unrecorded
from bot.rollout.model import (
    Phase,
    Rollout,
    StepPlan,
)
from bot.rollout.transitions import InvalidTransition, cohort_text
from bot.rollout.waves import Wave, WaveRunning, WaveState
from bot.service.changes import Changes, Proposal, gitops_warnings
from bot.service.drills import Drills
from bot.service.waves import WaveRunner
from bot.store.errors import StoreError
from bot.store.redis_store import AuditEntry, RolloutStore
from commands import Command, Verb, help_text
from commands.grammar import on_cluster
from commands.model import CLUSTERED
from commands.names import service_name
from policies import (
    Action,
    Change,
    Deny,
    NeedsApproval,
    is_user,
    rollout_defaults,
    staged_gates,
)
from policies import Target as PolicyTarget

NEW_ROLLOUT = frozenset({Verb.START, Verb.SET_WEIGHT, Verb.MIRROR, Verb.COHORT})
ONE_OFF = frozenset({Verb.SET_WEIGHT, Verb.MIRROR, Verb.COHORT})
USER_ERRORS = (
    MeshError,
    InvalidTransition,
    NoActiveRollout,
    Busy,
    Unrecorded,
    StoreError,
    ValueError,
    WaveRunning,
)


@dataclass(frozen=True)
class Reply:
    """A message for the asker alone (`ephemeral`) or for the whole channel."""

    text: str
    ephemeral: bool = True
    blocks: list[dict[str, Any]] | None = None
    approval: str | None = None  # the id of the approval request this card shows


@dataclass(frozen=True)
class Asker:
    user: str
    channel: str | None


class Unreachable(Exception):
    """The bot cannot post in the conversation the command came from: nothing is changed."""

    def __init__(self, channel: str, error: str) -> None:
        super().__init__(
            f"I cannot post in this conversation ({error}), so nothing was changed: "
            "the rollout's card and its news would reach nobody. Type `/invite @canary-bot` "
            "in a channel, then run the command there."
        )
        self.channel, self.error = channel, error


# A rollout's card is posted before its first traffic change (see `Dispatcher.reserve`).
Reserve = Callable[[str, str, str, str], None]  # channel, namespace, vs, text


@dataclass
class Dispatcher:
    engine: Engine
    store: RolloutStore
    clock: Callable[[], datetime]
    default_namespace: Callable[[str | None], str] = lambda _channel: "default"
    default_steps: StepPlan = field(default_factory=StepPlan)
    gate: Gate | None = None  # the policy; None lets everyone do everything
    book: ApprovalBook | None = None
    # Posts the card of a new rollout in the asker's channel before any traffic changes, and
    # raises Unreachable if it cannot: checking by posting is the one check Slack cannot
    # contradict a moment later (membership, archived channels, DMs, scopes all show in it).
    reserve: Reserve | None = None
    drills: Drills | None = None  # fault drills; None: not offered
    links: Links | None = None  # the add-ons a card links to
    waves: WaveRunner | None = None  # multi-cluster waves; None: not offered
    # Each wave cluster's own dispatcher (its engine and records), by name; commands on one
    # rollout go to the one they name, or to the running wave's current cluster.
    clusters: Mapping[str, Dispatcher] = field(default_factory=dict)
    cluster: str | None = None  # set on a wave cluster's dispatcher: its name

    def __post_init__(self) -> None:
        self.changes = Changes(
            engine=self.engine, store=self.store, clock=self.clock, steps_for=self._steps
        )
        self._reads: dict[Verb, Callable[[Command, str, Asker], list[Reply]]] = {
            Verb.STATUS: self._status_and_drills,
            Verb.HISTORY: self._history,
            Verb.PLAN: self._plan,
        }

    def run(
        self, command: Command, asker: Asker, *, text: str = "", approved: bool = False
    ) -> list[Reply]:
        """Carry the command out if the policy allows it (or hold it for approval); user
        mistakes and refusals come back as an ephemeral reply (a wave cluster's dispatcher
        puts its cluster's name before each: `[prod-eu] `)."""
        replies = self._run(command, asker, text, approved)
        if self.cluster is None:
            return replies
        named = f"[{self.cluster}] "
        return [replace(r, text=named + r.text) if r.ephemeral else r for r in replies]

    def _run(self, command: Command, asker: Asker, text: str, approved: bool) -> list[Reply]:
        try:
            return self._answer(command, asker, text, approved)
        except USER_ERRORS as e:
            return [Reply(f":warning: {e}")]
        except Unreachable as e:
            return [Reply(f":no_entry: {e}")]

    def _answer(self, command: Command, asker: Asker, text: str, approved: bool) -> list[Reply]:
        if command.verb is Verb.HELP:
            return [Reply(help_text(command.topic))]
        if command.verb is Verb.LIST:
            return [self._list()]
        namespace = command.namespace or self.default_namespace(asker.channel)
        if (on := self._cluster_for(command, namespace)) is not None:
            return self._on_cluster(command, namespace, asker, on=on, text=text, approved=approved)
        if not command.mutating:
            return self._reads[command.verb](command, namespace, asker)
        return self._change(command, namespace, asker, text, approved)

    def _cluster_for(self, command: Command, namespace: str) -> tuple[str, str] | None:
        """The wave cluster a command on one rollout acts on, and why (None: the bot's own
        cluster): the one it names, else the cluster whose turn it is in the service's
        running wave. An unknown name is refused before anything is read."""
        if self.cluster is not None or command.verb not in CLUSTERED:
            return None
        if command.cluster is not None:
            self.desk(command.cluster)
            return command.cluster, ""
        if self.waves is None or not self.clusters:
            return None
        wave = self.waves.running(namespace, str(command.service))
        if wave is None:
            return None
        return wave.cluster, " (the cluster whose turn it is in the running wave)"

    def _refuse_beside_a_wave(self, command: Command, namespace: str) -> None:
        """A weight, mirror, cohort or start typed while the service's wave runs would change
        the bot's own cluster, not the wave's: refused, saying what acts on the wave."""
        if self.cluster is not None or not self.clusters or command.verb in CLUSTERED:
            return
        assert self.waves is not None  # clusters come with their wave runner
        wave = self.waves.running(namespace, str(command.service))
        if wave is None:
            return
        service = service_name(str(command.service), namespace)
        raise ValueError(
            f"{service} has a multi-cluster wave running (now on {wave.cluster}), and "
            f"`{command.verb}` here would change the bot's own cluster, not the wave's; "
            f"nothing was changed; act on the wave's rollout with its card or "
            f"`/canary {service} pause|promote|rollback cluster {wave.cluster}`"
        )

    def desk(self, cluster: str) -> Dispatcher:
        """The dispatcher of the wave cluster named `cluster`; a name not configured is
        refused in one sentence."""
        if self.waves is None:
            raise ValueError("multi-cluster waves are not available in this bot")
        self.waves.check_clusters([cluster])
        return self.clusters[cluster]

    def _on_cluster(
        self,
        command: Command,
        namespace: str,
        asker: Asker,
        *,
        on: tuple[str, str],
        text: str,
        approved: bool,
    ) -> list[Reply]:
        """Run the command on the rollout of the cluster `on` names (and says why); an
        approval request records the cluster, so that the change approved is made there.
        The asker is told which cluster."""
        cluster, why = on
        named = command.model_copy(update={"cluster": cluster})
        if command.cluster is None:
            text += on_cluster(cluster)
        replies = self.clusters[cluster].run(named, asker, text=text, approved=approved)
        if any(r.ephemeral for r in replies):
            return replies
        service = service_name(str(command.service), namespace)
        return [*replies, Reply(f"[{cluster}] {service}: {command.verb} done on {cluster}{why}")]

    def actions_for(self, user: str, rollout: Rollout, actions: Sequence[str]) -> list[str]:
        """Which of the card's `actions` on `rollout` the policy lets `user` take now (or ask
        approval for), asked as the command each button stands for would ask it."""
        if self.gate is None:
            return list(actions)
        target = rollout.target
        kept = []
        for action in actions:
            command = Command(verb=Verb(action), service=target.vs, namespace=target.namespace)
            try:
                change = self.changes.propose(command, target.namespace, None).change
            except USER_ERRORS:
                continue  # the rollout moved on since it was read: that button is gone too
            if not isinstance(self.gate.decide(user, change, target.namespace, target.vs), Deny):
                kept.append(action)
        return kept

    def change_for(self, command: Command, namespace: str) -> tuple[Change, str]:
        """What the command would change (weights before and after, a hash of the exact
        plan) and the diff to show an approver."""
        if self.cluster is None and command.cluster is not None:
            return self.desk(command.cluster).change_for(command, namespace)
        if command.verb is Verb.FAULT and self.drills is not None:
            drill = self.drills.propose(command, namespace, "", None)
            return drill.change, drill.diff
        if command.clusters is not None:
            wave = self.changes.propose_wave(command, namespace)
            return wave.change, wave.diff
        proposal = self.changes.propose(command, namespace, None)
        return proposal.change, proposal.diff

    def _change(
        self, command: Command, namespace: str, asker: Asker, text: str, approved: bool
    ) -> list[Reply]:
        """Read once, decide on that plan, and run that very plan."""
        if command.verb is Verb.FAULT:
            return self._drill(command, namespace, asker, text, approved)
        if command.clusters is not None:
            return self._wave(command, namespace, asker, text, approved)
        self._refuse_beside_a_wave(command, namespace)
        proposal = self.changes.propose(command, namespace, asker.channel)
        if self.gate is not None and not approved:
            held = self._check(proposal, asker, text)
            if held is not None:
                return held
        self._reserve(proposal, asker)
        rollout = self.changes.carry_out(proposal, asker.user, asker.channel)
        return _outcome(proposal, rollout) + [Reply(f":warning: {w}") for w in proposal.warnings]

    def _drill(
        self, command: Command, namespace: str, asker: Asker, text: str, approved: bool
    ) -> list[Reply]:
        """A fault drill: planned once, decided on (held for an approval if the policy says
        so), then recorded with its end and written."""
        if self.drills is None:
            return [Reply(":warning: fault drills are not available in this bot")]
        proposal = self.drills.propose(command, namespace, asker.user, asker.channel)
        if self.gate is not None and not approved:
            held = self._ruled(
                proposal.change, proposal.diff, (namespace, proposal.vs), asker, text
            )
            if held is not None:
                return held
        return [Reply(self.drills.carry_out(proposal))]

    def _wave(
        self, command: Command, namespace: str, asker: Asker, text: str, approved: bool
    ) -> list[Reply]:
        """A start over several clusters: the clusters checked first, then decided as a
        `start` (held for an approval if the policy says so), then the wave recorded and its
        first cluster's rollout started."""
        if self.waves is None:
            return [Reply(":warning: multi-cluster waves are not available in this bot")]
        clusters = command.clusters or ()
        self.waves.check_clusters(clusters)
        proposal = self.changes.propose_wave(command, namespace)
        if self.gate is not None and not approved:
            # a wave is a start over several clusters: both must be allowed
            where, also = (namespace, proposal.vs), (Action.WAVE.value,)
            held = self._ruled(proposal.change, proposal.diff, where, asker, text, also=also)
            if held is not None:
                return held
        wave = self.waves.start(
            namespace=namespace,
            vs=proposal.vs,
            to=command.to,
            clusters=clusters,
            steps=proposal.steps or StepPlan(),
            actor=asker.user,
            channel=asker.channel,
        )
        return [Reply(wave_text(wave))]

    def _reserve(self, proposal: Proposal, asker: Asker) -> None:
        """A new rollout's card goes up first; an existing rollout already has its card."""
        if self.reserve is None or asker.channel is None:
            return
        if proposal.command.verb not in NEW_ROLLOUT:
            return
        if self.store.active_for(proposal.namespace, proposal.vs) is not None:
            return
        change = proposal.change
        weights = ""
        if change.weight_before is not None and change.weight_after is not None:
            weights = f" {change.weight_before}% → {change.weight_after}%"
        service = service_name(proposal.vs, proposal.namespace)
        text = f"{service}{weights}, asked by <@{asker.user}>: applying…"
        self.reserve(asker.channel, proposal.namespace, proposal.vs, text)

    def _check(self, proposal: Proposal, asker: Asker, text: str) -> list[Reply] | None:
        command, where = proposal.command, (proposal.namespace, proposal.vs)
        # a start that first routes a cohort is a cohort change too: both must be allowed
        cohort = command.verb is Verb.START and command.cohort is not None
        also = (Verb.COHORT.value,) if cohort else ()
        return self._ruled(proposal.change, proposal.diff, where, asker, text, also=also)

    def _ruled(
        self,
        change: Change,
        diff: str,
        where: tuple[str, str],
        asker: Asker,
        text: str,
        *,
        also: Sequence[str] = (),
    ) -> list[Reply] | None:
        """The policy on `change` to the service `where` (namespace, vs), as each of `also`
        too: None to go ahead; else what the asker is told, a refusal or an approval request
        opened (audited, its card posted) for the change and its `diff`."""
        assert self.gate is not None
        namespace, vs = where
        for action in also:
            refused = self.gate.decide(asker.user, replace(change, action=action), namespace, vs)
            if isinstance(refused, Deny):
                return [Reply(f":no_entry: {refused.reason}")]
        decision = self.gate.decide(asker.user, change, namespace, vs)
        if isinstance(decision, Deny):
            return [Reply(f":no_entry: {decision.reason}")]
        if not isinstance(decision, NeedsApproval):
            return None
        if self.book is None:
            return [Reply(f":no_entry: {decision.reason}; no approvals here")]
        request = self.book.open(
            ApprovalRequest(
                id="",
                requester=asker.user,
                channel=asker.channel,
                command=text,
                namespace=namespace,
                vs=vs,
                change={**asdict(change), "last_change_at": _iso(change.last_change_at)},
                diff=diff,
            )
        )
        self.store.audit(
            namespace=namespace,
            vs=vs,
            action="approval-requested",
            actor=asker.user,
            at=self.clock(),
            weight_before=change.weight_before,
            weight_after=change.weight_after,
            channel=asker.channel,
            plan_hash=change.plan_hash,
            detail=f"request {request.id}: /canary {text}",
        )
        card = Reply(
            summary_text(request),
            ephemeral=False,
            blocks=approval_blocks(request, decision),
            approval=request.id,
        )
        return [Reply(f":hourglass: {decision.reason}; I posted an approval request."), card]

    def _steps(self, namespace: str, vs: str, command: Command) -> StepPlan:
        """The step plan for this service (the policy's, or the built-in one), walking
        through the command's steps and pace if it gives them; the policy says which steps
        wait for an approval."""
        fields = self._steps_for(namespace, vs, command.steps)
        fields["interval_s"] = command.interval_s or fields["interval_s"]
        if command.analysis_s is not None:
            fields["analysis_s"] = command.analysis_s
        if command.verb is Verb.START and command.cohort is not None:
            fields["cohort"] = command.cohort  # a cohort's step comes first
        try:
            return StepPlan.model_validate(fields)
        except ValidationError as e:
            raise ValueError(str(e.errors()[0]["msg"]).removeprefix("Value error, ")) from e

    def _steps_for(
        self, namespace: str, vs: str, weights: tuple[int, ...] | None = None
    ) -> dict[str, Any]:
        if self.gate is None:
            return self.default_steps.model_dump() | ({"weights": weights} if weights else {})
        target = PolicyTarget(namespace, vs)
        fields: dict[str, Any] = dict(rollout_defaults(self.gate.policy, target)[0])
        fields["weights"] = weights or fields["weights"]
        fields["gates"] = staged_gates(self.gate.policy, target, fields["weights"])
        return fields

    def _status(self, c: Command, namespace: str, asker: Asker) -> list[Reply]:
        active = self.store.active_for(namespace, str(c.service))
        if active is not None:
            card = self.card_reply(active)
            table, blocks = self._fresh_check(active)
            return [Reply(f"{card.text}\n\n{table}", blocks=[*(card.blocks or []), *blocks])]
        plan = self.changes.preview(c.model_copy(update={"weight": 0}), namespace)
        weights = ", ".join(f"{s}%/{k}%" for s, k in (t.before for t in plan.touched))
        cohort = live_cohort(plan.vs.before)
        cohort_line = "" if cohort is None else f"; {cohort_text(cohort, plan.canary)}"
        return [
            Reply(
                f"{service_name(str(c.service), namespace)}: no rollout going on; "
                f"{plan.stable}/{plan.canary} at {weights}{cohort_line}"
            )
        ]

    def _status_and_drills(self, c: Command, namespace: str, asker: Asker) -> list[Reply]:
        """The status, the service's fault drills going on with their end, and its wave."""
        first, *rest = self._status(c, namespace, asker)
        lines = self.drills.lines(namespace, str(c.service)) if self.drills else []
        lines += self.waves.lines(namespace, str(c.service)) if self.waves else []
        if not lines:
            return [first, *rest]
        blocks = None if first.blocks is None else [*first.blocks, *map(_section, lines)]
        text = "\n".join([first.text, *lines])
        return [dataclasses.replace(first, text=text, blocks=blocks), *rest]

    def _fresh_check(self, rollout: Rollout) -> tuple[str, list[dict[str, Any]]]:
        """A health check made now, shown but not stored (it decides nothing): as a table
        for a terminal and as blocks for Slack."""
        health = self.engine.health
        if isinstance(health, AlwaysHealthy):
            text = "Now: no health checks are configured (set PROMETHEUS_URL)"
            return text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
        verdict = health.check(rollout, self.clock())
        return f"Now: {health_table(verdict)}", health_blocks(verdict, lead="Now: ")

    def _history(self, c: Command, namespace: str, asker: Asker) -> list[Reply]:
        entries = self.store.history(namespace, str(c.service), count=20)
        service = service_name(str(c.service), namespace)
        if not entries:
            return [Reply(f"{service}: nothing in the audit trail yet")]
        return [Reply(history_text(service, entries))]

    def _plan(self, c: Command, namespace: str, asker: Asker) -> list[Reply]:
        if c.drill is not None and self.drills is not None:
            drill = self.drills.propose(c, namespace, asker.user, asker.channel)
            return [Reply(f"Plan for {drill.title}, nothing applied:\n```{drill.diff}```")]
        plan = self.changes.preview(c, namespace)
        service = service_name(str(c.service), namespace)
        wanted = f"at {c.weight}%" if c.cohort is None else cohort_text(c.cohort, plan.canary)
        if plan.noop:
            return [Reply(f"{service} is already {wanted}")]
        warnings = "".join(f"\n:warning: {w}" for w in gitops_warnings(plan))
        return [
            Reply(
                f"Plan for {service} {wanted} ({plan.stable} → {plan.canary}), nothing "
                f"applied:\n```{phone_diff(plan.diff)}```{warnings}"
            )
        ]

    def _list(self) -> Reply:
        active = self.store.list_active()
        if not active:
            return Reply("No rollouts going on.")
        now = self.clock()
        return Reply("\n".join(card_text(card_view(r, now)).splitlines()[0] for r in active))

    def card_reply(self, rollout: Rollout) -> Reply:
        """The rollout's card as a reply (`status`), with its service's drills going on."""
        target = rollout.target
        drills = self.drills.texts(target.namespace, target.vs) if self.drills else ()
        wave = None
        if self.cluster is not None and self.waves is not None:
            wave = self.waves.book.for_service(target.namespace, target.vs)
        view = card_view(
            rollout, self.clock(), self.links, cluster=self.cluster, wave=wave, drills=drills
        )
        return Reply(card_text(view), blocks=card_blocks(view))


def wave_text(wave: Wave) -> str:
    """What the asker is told once a wave is started: its clusters in order, or why it halted."""
    if wave.state is WaveState.HALTED:
        return f":warning: {wave.service}: the wave halted: {wave.reason}"
    return (
        f"{wave.service}: wave over {', then '.join(wave.clusters)}: the rollout started on "
        f"{wave.cluster}; each next cluster's starts once the one before is promoted"
    )


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _outcome(proposal: Proposal, rollout: Rollout) -> list[Reply]:
    """What the asker is told beyond the card: what went wrong, as it really is, and for a
    staged start, which steps will wait for an approval."""
    c, wanted = proposal.command, proposal.change.weight_after
    one_off_failed = rollout.phase is Phase.FAILED and c.verb in ONE_OFF
    if rollout.write_failed or rollout.writing is not None or one_off_failed:
        return [Reply(f":warning: {rollout.reason or 'the change did not go live'}")]
    if c.verb is Verb.SET_WEIGHT and rollout.weight != wanted:
        return [Reply(f":warning: {c.service} is at {rollout.weight}% now: {rollout.reason}")]
    gates = proposal.steps.gates if proposal.steps and c.verb is Verb.START else ()
    if not gates:
        return []
    waits = ", ".join(f"{w}%" for w in gates)
    which = f"the steps to {waits} wait" if len(gates) > 1 else f"the step to {waits} waits"
    service = service_name(proposal.vs, proposal.namespace)
    return [
        Reply(
            f":hourglass: {service}: {which} for an approval; an approval card is posted when "
            "the rollout gets there"
        )
    ]


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def history_text(service: str, entries: Sequence[AuditEntry]) -> str:
    """The audit trail, a line per event, each time shown in the reader's own zone."""
    lines = [_history_line(e) for e in entries]
    return f"*{service}*, last {len(lines)} events:\n" + "\n".join(lines)


def _history_line(entry: AuditEntry) -> str:
    weights = ""
    if entry.weight_before is not None and entry.weight_after is not None:
        weights = f" {entry.weight_before}% → {entry.weight_after}%"
    who = f"<@{entry.actor}>" if is_user(entry.actor) else entry.actor
    detail = f" ({entry.detail})" if entry.detail else ""
    return f"{slack_date(entry.at, seconds=True)} {entry.action}{weights} by {who}{detail}"
