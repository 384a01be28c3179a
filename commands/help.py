"""Usage text for `/canary help` and the examples that error messages quote. Slack mrkdwn."""

from __future__ import annotations

from dataclasses import dataclass

from commands.model import Verb

EXAMPLE_SERVICE = "weather"
COHORT_EXAMPLE = "header x-beta=1 to v2"
WAVE_FORM = 4  # `start clusters canary-eu,prod-eu`, the fourth form of start


@dataclass(frozen=True)
class _Topic:
    forms: tuple[tuple[str, str], ...]  # (what follows `/canary`, what it does); first = example
    details: tuple[str, ...] = ()  # extra lines for `/canary help <verb>`


_TOPICS: dict[Verb, _Topic] = {
    Verb.SET_WEIGHT: _Topic(
        forms=(("{service} 10%", "send 10% of the traffic to the canary now"),),
        details=(
            "The weight is a whole number from 0 to 100; the `%` is optional.",
            "`0%` sends all traffic back to stable.",
            "With several subsets, name the canary: `/canary {service} 10% to v3`.",
            "A subset the DestinationRule lacks is added, selecting pods the way its other "
            "subsets do; where they show no rule, name the pods: "
            "`/canary {service} 10% to v3 labels version=v3` (KEY=VALUE pairs, joined by commas).",
        ),
    ),
    Verb.START: _Topic(
        forms=(
            ("{service} start", "step up 5, 10, 25, 50, 100%, checking health before each step"),
            ("{service} start to v2 steps 10,50,100 every 10m", "your own subset, steps and pace"),
            (
                "{service} start cohort header x-beta=1",
                "first only that cohort goes to the canary, then the steps",
            ),
            (
                "{service} start clusters canary-eu,prod-eu",
                "a wave: the rollout on canary-eu, then on prod-eu once canary-eu is promoted",
            ),
        ),
        details=(
            "Options come in any order, each at most once: `to <subset>`, "
            "`steps <list climbing to 100>`, `every <30s|5m|1h>`, `analysis <10s|off>` (how "
            "often a held step's canary is looked at, shorter than `every`; the policy's or "
            "the bot's otherwise).",
            "`cohort header NAME=VALUE`, `cohort cookie NAME=VALUE` or `cohort user ID` right "
            "after `start` makes the first step the cohort's: its route to the canary and 0% "
            "for everyone else, checked like any step; the route stays until the rollout is "
            "promoted or rolled back.",
            "Failing health checks roll back; inconclusive ones pause and ask a human.",
            "`clusters <list>` runs the rollout as a wave over the clusters in CANARY_CLUSTERS, "
            "one after the other in the order given, each with the same `to`, `steps` and "
            "`every`; a rollback or a failure on one halts the wave, and the clusters promoted "
            "before stay promoted. The policy decides it as a `start`.",
            "While a wave runs, `pause`, `resume`, `promote`, `rollback`, `abort` and `status` "
            "act on the cluster whose turn it is; `cluster NAME` after them names the cluster: "
            "`/canary {service} rollback cluster prod-eu`.",
        ),
    ),
    Verb.STATUS: _Topic(forms=(("{service} status", "weights, phase and last health check"),)),
    Verb.PAUSE: _Topic(forms=(("{service} pause", "stop stepping; traffic stays where it is"),)),
    Verb.RESUME: _Topic(forms=(("{service} resume", "go on stepping from where it paused"),)),
    Verb.PROMOTE: _Topic(
        forms=(("{service} promote", "send all traffic to the canary and make it stable"),)
    ),
    Verb.ROLLBACK: _Topic(
        forms=(("{service} rollback", "send all traffic back to stable, at once"),),
        details=("Never waits for approvals or freeze windows, for anyone allowed to roll back.",),
    ),
    Verb.ABORT: _Topic(
        forms=(("{service} abort", "end the rollout and send all traffic back to stable"),)
    ),
    Verb.HISTORY: _Topic(forms=(("{service} history", "past rollouts: who did what, and when"),)),
    Verb.PLAN: _Topic(
        forms=(("{service} plan 25%", "show the change 25% would make, without making it"),),
        details=(
            "Takes `to <subset>` like a weight does.",
            f"`/canary {{service}} plan cohort {COHORT_EXAMPLE}` shows a cohort's route, and "
            "`/canary {service} plan fault delay 7s 10%` a drill's change.",
            "`cluster prod-eu` at the end plans a weight or a cohort on that wave cluster; while "
            "a wave runs, plan plans on the cluster whose turn it is.",
        ),
    ),
    Verb.MIRROR: _Topic(
        forms=(
            ("{service} mirror 10%", "copy 10% of requests to the canary; its replies are dropped"),
            ("{service} mirror off", "stop mirroring"),
        ),
        details=("Takes `to <subset>` like a weight does.",),
    ),
    Verb.COHORT: _Topic(
        forms=(
            (
                "{service} cohort " + COHORT_EXAMPLE,
                "send requests with header x-beta: 1 to the canary, everyone else as before",
            ),
            ("{service} cohort cookie user=jason", "the same for a cookie"),
            ("{service} cohort user jason", "the same for one user (the `end-user` header)"),
            ("{service} cohort off", "remove the cohort's route"),
        ),
        details=(
            "The cohort gets a route of its own, named canary-bot-cohort, ahead of the "
            "catch-all route; other routes stay as they are.",
            "Names are letters, digits, '-' and '_'; values letters, digits and . _ @ : + -",
            "Rollback and promotion remove the cohort's route too.",
        ),
    ),
    Verb.FAULT: _Topic(
        forms=(
            ("{service} fault delay 7s 10%", "delay 10% of requests by 7s, for a while"),
            ("{service} fault abort 500 5%", "answer 5% of requests with HTTP 500"),
            ("{service} retries 3 per-try 2s", "retry failed requests 3 times, 2s each"),
            ("{service} timeout 10s", "give up on requests after 10s"),
            ("{service} fault off", "end the service's drills now"),
        ),
        details=(
            "Drills go on the service's catch-all route and end on their own: add `for 10m`, "
            "else the policy's default; the policy sets the longest too.",
            "Off unless the policy allows them (`drills:` in the rule, and `fault` in allow).",
            "The bot removes exactly what it added when the time is up, and says so here; a "
            "rollback or a promotion ends them too.",
            "`fault delay off`, `fault abort off`, `retries off` or `timeout off` ends only "
            "that kind of drill.",
        ),
    ),
    Verb.LIST: _Topic(forms=(("list", "the rollouts going on now"),)),
    Verb.HELP: _Topic(forms=(("help", "this list"), ("help start", "more about one command"))),
}
_ALIASES = {"weight": Verb.SET_WEIGHT, "retries": Verb.FAULT, "timeout": Verb.FAULT}
HELP_TOPICS = frozenset({*(verb.value for verb in Verb), *_ALIASES})
_HEADER = (
    "*Canary rollouts* — the service is `name` or `name.namespace` "
    "(without a namespace, the channel's default):"
)


def example(verb: Verb, service: str = EXAMPLE_SERVICE, *, options: str = "", form: int = 1) -> str:
    """The first (or `form`th) form of `verb`, ready to quote: `/canary weather 10%`, plus any
    `options`."""
    form_text = _TOPICS[verb].forms[form - 1][0]
    return _command(f"{form_text} {options}".rstrip(), service)


def summary(verb: Verb) -> str:
    """What `verb` does, in a few words (the CLI's help reads it too)."""
    return _TOPICS[verb].forms[0][1]


def help_text(topic: str | None = None) -> str:
    """The overview, or the focused text for one verb (an unknown topic gets the overview)."""
    verb = _verb_for(topic)
    return _overview() if verb is None else _focused(verb)


def _verb_for(topic: str | None) -> Verb | None:
    if topic is None:
        return None
    topic = topic.lower()
    if topic in _ALIASES:
        return _ALIASES[topic]
    return Verb(topic) if topic in HELP_TOPICS else None


def _overview() -> str:
    lines = [_line(form) for topic in _TOPICS.values() for form in topic.forms]
    return "\n".join([_HEADER, *lines])


def _focused(verb: Verb) -> str:
    topic = _TOPICS[verb]
    lines = [_line(form) for form in topic.forms]
    details = [line.format(service=EXAMPLE_SERVICE) for line in topic.details]
    return "\n".join([*lines, *details])


def _line(form: tuple[str, str]) -> str:
    text, meaning = form
    return f"• {_command(text, EXAMPLE_SERVICE)} — {meaning}"


def _command(form: str, service: str) -> str:
    return f"`/canary {form.format(service=service)}`"
