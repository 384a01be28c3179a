"""Text after `/canary` → a typed Command, or a CommandError that says what to type instead.

Every error is one short line that names the problem and quotes a command that would work,
because it is shown ephemerally to someone who may be on a phone at 3 a.m.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, NamedTuple

from commands.cohort import OFF, CohortChange, make_cohort
from commands.drill import MAX_ATTEMPTS, MAX_DELAY_S, Drill, DrillChange, DrillOff
from commands.grammar import (
    LABEL_RULE,
    GrammarError,
    PodLabels,
    check_steps,
    is_label,
    parse_analysis,
    parse_cluster,
    parse_clusters,
    parse_duration,
    parse_labels,
    parse_steps,
    shown,
    split_service,
)
from commands.help import COHORT_EXAMPLE, EXAMPLE_SERVICE, HELP_TOPICS, WAVE_FORM, example
from commands.model import BARE, CLUSTERED, Command, Verb

MAX_LENGTH = 300
_ECHO = "/canary"  # some clients send the slash command along with its text
# Line breaks, tabs, NUL, ESC (ANSI colours), zero-width and bidi marks, lone surrogates.
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_PLAIN_WEIGHT = re.compile(r"([0-9]{1,3})%?")
_FRACTION = re.compile(r"[0-9]*[.,][0-9]+|[0-9]+[.,][0-9]*")
_SHARE = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,2})?)%?")
_OPTION_VALUES = {
    "to": "a subset, like v2",
    "steps": "a list, like 5,10,25,50,100",
    "every": "a duration, like 5m",
    "analysis": "a duration, like 10s, or off",
    "clusters": "a list of clusters, like canary-eu,prod-eu",
    "cluster": "one cluster of the wave, like prod-eu",
    "labels": "the new subset's pod labels, like version=v3",
}
# Options that go with a weight and `to`, not only with `start`.
_LABELLED = (Verb.SET_WEIGHT, Verb.PLAN)
_WITH_OPTIONS = {
    Verb.START: "to v2 steps 10,50,100 every 10m",
    Verb.COHORT: "",
    Verb.FAULT: "for 10m",
}
COHORT_KINDS = {
    "header": "a header and its value (NAME=VALUE)",
    "cookie": "a cookie and its value (NAME=VALUE)",
    "user": "the user's ID",
}


class CommandError(GrammarError):
    """A `/canary` text that does not parse; the message is one line saying what to type."""


class _Target(NamedTuple):
    service: str
    namespace: str | None

    @property
    def text(self) -> str:
        """As the user writes it, for examples they can copy."""
        return self.service if self.namespace is None else f"{self.service}.{self.namespace}"


_Parser = Callable[[_Target, list[str]], Command]


def parse(text: str, *, services: Sequence[str] = ()) -> Command:
    """Parse the text of a `/canary` command; `services` only sharpen the suggestions."""
    words = _words(text)
    if not words:
        return Command(verb=Verb.HELP)
    head = words[0].lower()
    if head == Verb.HELP:
        return _help(words[1:])
    if head == Verb.LIST:
        _nothing_after(Verb.LIST, words[1:], example(Verb.LIST))
        return Command(verb=Verb.LIST)
    return _scoped(words, [name.lower() for name in services])


# --- the text as a whole ---------------------------------------------------------------------


def _words(text: str) -> list[str]:
    if len(text) > MAX_LENGTH:
        raise CommandError(
            f"that is {len(text)} characters and a command is at most {MAX_LENGTH}: "
            f"write it like {example(Verb.SET_WEIGHT)}"
        )
    text = text.strip()  # a trailing newline is harmless; one inside the text is not
    _reject_control(text)
    words = _without_echo(text.split())
    if words and words[0].startswith("/"):
        raise CommandError(
            f"{shown(words[0])} is not needed: start with the service, "
            f"like {example(Verb.SET_WEIGHT)}"
        )
    return words


def _without_echo(words: list[str]) -> list[str]:
    return words[1:] if words and words[0].lower() == _ECHO else words


def _reject_control(text: str) -> None:
    bad = next((c for c in text if unicodedata.category(c) in _CONTROL_CATEGORIES), None)
    if bad is not None:
        raise CommandError(
            f"the text has a control character (U+{ord(bad):04X}): remove the control "
            f"characters and type it again, like {example(Verb.SET_WEIGHT)}"
        )


# --- `<service> <verb> ...` ------------------------------------------------------------------


def _scoped(words: list[str], services: list[str]) -> Command:
    first, rest = words[0], words[1:]
    if not rest:
        raise _lone(first, services)
    if swapped := _swapped(first, rest[0], services):
        raise swapped
    target = _target(first, services)
    word = rest[0].lower()
    if _looks_like_weight(word):
        return _set_weight(target, rest)
    parser = _VERBS.get(word) or _DRILL_WORDS.get(word)
    if parser is None:
        raise _unknown_verb(word, _suggested(target, services))
    return parser(target, rest[1:])


def _target(word: str, services: list[str]) -> _Target:
    try:
        return _Target(*split_service(word))
    except GrammarError as err:
        if word.endswith("%"):
            raise _no_service_for_weight() from err
        known = _nearest(word, services)
        hint = f"did you mean `{known}`?" if known else f"like {example(Verb.SET_WEIGHT)}"
        raise CommandError(f"{err}; {hint}") from err


def _no_service_for_weight() -> CommandError:
    return CommandError(f"say which service gets the weight, like {example(Verb.SET_WEIGHT)}")


def _suggested(target: _Target, services: list[str]) -> _Target:
    """The known service nearest to a typo, so examples in errors are right to copy."""
    if not services or target.service in services:
        return target
    return target._replace(service=_nearest(target.service, services) or target.service)


def _lone(word: str, services: list[str]) -> CommandError:
    """One word and nothing after it: a service without a verb, or a verb without a service."""
    lowered = word.lower()
    if _is_plain_weight(lowered):
        return _no_service_for_weight()
    if lowered in _VERBS:
        return CommandError(f"`{lowered}` needs a service before it: {example(Verb(lowered))}")
    guess = _guess_verb(lowered)
    if guess is not None and _nearest(lowered, services) is None:
        return CommandError(f"{shown(word)} is not a command; {_did_you_mean(guess)}")
    target = _target(word, services)
    name = _suggested(target, services).text
    hint = "" if name == target.text else f" (did you mean `{name}`?)"
    return CommandError(
        f"say what to do with {shown(word)}{hint}, like `/canary {name} status`; "
        f"{example(Verb.HELP)} lists the rest"
    )


def _swapped(first: str, second: str, services: list[str]) -> CommandError | None:
    """`/canary pause weather`: a verb or weight first, then something that can only be a name."""
    first, second = first.lower(), second.lower()
    if first not in _VERBS and not _is_plain_weight(first):
        return None
    if second in _VERBS or second in _OPTION_VALUES or _looks_like_weight(second):
        return None
    if not _is_service(second):
        return None
    service = _nearest(second, services) or second
    return CommandError(f"put the service first: `/canary {service} {first}`")


def _unknown_verb(word: str, target: _Target) -> CommandError:
    if word in (Verb.HELP, Verb.LIST):
        return CommandError(f"`{word}` goes right after /canary: {example(Verb(word))}")
    if word == Verb.SET_WEIGHT:
        return CommandError(f"give the weight as a number: {example(Verb.SET_WEIGHT, target.text)}")
    if word in _OPTION_VALUES:
        return CommandError(
            f"`{word}` comes after a weight or `start`: {_usage(Verb.SET_WEIGHT, target)}"
        )
    guess = _guess_verb(word)
    if guess is not None:
        return CommandError(f"{shown(word)} is not a command; {_did_you_mean(guess, target)}")
    return CommandError(
        f"{shown(word)} is not a command: try {example(Verb.STATUS, target.text)}, "
        f"or {example(Verb.HELP)} for the list"
    )


# --- the verbs -------------------------------------------------------------------------------


def _bare(verb: Verb, target: _Target, words: list[str]) -> Command:
    """`<service> <verb>`; for a verb on one rollout, optionally `cluster prod-eu` after it."""
    if verb not in CLUSTERED or not words or words[0].lower() != "cluster":
        _nothing_after(verb, words, example(verb, target.text))
        return Command(verb=verb, service=target.service, namespace=target.namespace)
    usage = f"`/canary {target.text} {verb} cluster prod-eu`"
    word = _options(words, ("cluster",), usage)["cluster"]
    name = _cluster_name(target, word, f"{verb} cluster prod-eu")
    return Command(verb=verb, service=target.service, namespace=target.namespace, cluster=name)


def _set_weight(target: _Target, words: list[str]) -> Command:
    weight, to, labels = _weighted(Verb.SET_WEIGHT, target, words)
    return Command(
        verb=Verb.SET_WEIGHT,
        service=target.service,
        namespace=target.namespace,
        weight=weight,
        to=to,
        labels=labels,
    )


def _plan(target: _Target, words: list[str]) -> Command:
    """`plan 25% [to v2]`, `plan cohort …`, `plan fault …`; a weight or a cohort may end
    with `cluster prod-eu`, planned on that wave cluster's objects."""
    cluster = None
    if len(words) >= 2 and words[-2].lower() == "cluster":
        cluster, words = _cluster_name(target, words[-1], "plan 25% cluster prod-eu"), words[:-2]
    command = _plan_what(target, words)
    if cluster is not None and command.drill is not None:
        raise CommandError("fault drills are planned and made on the bot's own cluster only")
    return command if cluster is None else command.model_copy(update={"cluster": cluster})


def _cluster_name(target: _Target, word: str, form: str) -> str:
    with _explained(f"`/canary {target.text} {form}`"):
        return parse_cluster(word)


def _plan_what(target: _Target, words: list[str]) -> Command:
    if not words:
        raise CommandError(f"`plan` needs a weight: {_usage(Verb.PLAN, target)}")
    if words[0].lower() == Verb.COHORT:
        cohort, to = _cohort_and_subset(target, words[1:], plan=True)
        return Command(
            verb=Verb.PLAN,
            service=target.service,
            namespace=target.namespace,
            cohort=cohort,
            to=to,
        )
    drilled = {Verb.FAULT.value: _fault, **_DRILL_WORDS}.get(words[0].lower())
    if drilled is not None:
        drill = drilled(target, words[1:]).drill
        if not isinstance(drill, Drill):
            said = drill.text if drill is not None else "fault off"
            raise CommandError(f"`{said}` has nothing to plan: `/canary {target.text} {said}`")
        return Command(
            verb=Verb.PLAN, service=target.service, namespace=target.namespace, drill=drill
        )
    weight, to, labels = _weighted(Verb.PLAN, target, words)
    return Command(
        verb=Verb.PLAN,
        service=target.service,
        namespace=target.namespace,
        weight=weight,
        to=to,
        labels=labels,
    )


def _cohort(target: _Target, words: list[str]) -> Command:
    cohort, to = _cohort_and_subset(target, words)
    return Command(
        verb=Verb.COHORT, service=target.service, namespace=target.namespace, cohort=cohort, to=to
    )


def _cohort_and_subset(
    target: _Target, words: list[str], *, plan: bool = False
) -> tuple[CohortChange, str | None]:
    """`header x-beta=1 to v2`, `cookie user=jason`, `user jason`, or `off`."""
    usage = _usage(Verb.COHORT, target)
    if plan:
        usage = f"`/canary {target.text} plan cohort {COHORT_EXAMPLE}`"
    if not words:
        raise CommandError(f"say who is in the cohort, like {usage}, or `cohort off`")
    kind = words[0].lower()
    if kind == OFF:
        _nothing_after("cohort off", words[1:], f"`/canary {target.text} cohort off`")
        return OFF, None
    if kind not in COHORT_KINDS:
        raise CommandError(
            f"{shown(words[0])} is not a kind of cohort: use `header NAME=VALUE`, "
            f"`cookie NAME=VALUE` or `user ID`, like {usage}"
        )
    if len(words) < 2 or words[1].lower() == "to":
        raise CommandError(f"`{kind}` needs {COHORT_KINDS[kind]}, like {usage}")
    name, value = _cohort_pair(kind, words[1], usage)
    options = _options(words[2:], ("to",), usage)
    try:
        cohort = make_cohort(kind, name, value)
    except ValueError as err:
        raise CommandError(f"{err}, like {usage}") from err
    return cohort, _subset(options.get("to"), usage)


def parse_cohort(text: str) -> CohortChange:
    """`header x-beta=1`, `cookie user=jason`, `user jason` or `off`, as the CLI takes it."""
    words = _words(text)
    if "to" in (w.lower() for w in words):
        raise CommandError("name the canary with --to, not in the cohort")
    return _cohort_and_subset(_EXAMPLE, words)[0]


def _cohort_pair(kind: str, word: str, usage: str) -> tuple[str, str]:
    if kind == "user":
        return "", word
    name, equals, value = word.partition("=")
    if not equals or not name or not value:
        raise CommandError(f"`{kind}` needs {COHORT_KINDS[kind]}, not {shown(word)}, like {usage}")
    return name, value


def _mirror(target: _Target, words: list[str]) -> Command:
    if not words:
        raise CommandError(f"`mirror` needs a weight or `off`: {_usage(Verb.MIRROR, target)}")
    if words[0].lower() == "off":
        _nothing_after("mirror off", words[1:], f"`/canary {target.text} mirror off`")
        words = ["0"]  # `off` is mirroring 0%
    mirror, to = _weight_and_subset(Verb.MIRROR, target, words)
    return Command(
        verb=Verb.MIRROR, service=target.service, namespace=target.namespace, mirror=mirror, to=to
    )


def _start(target: _Target, words: list[str]) -> Command:
    """`start [cohort header x-beta=1] [to v2] [steps 10,50,100] [every 10m]`, or a wave:
    `start clusters canary-eu,prod-eu` with the same options but the cohort."""
    usage = _usage(Verb.START, target)
    cohort = None
    if words and words[0].lower() == Verb.COHORT:
        cohort, words = _first_cohort(target, words[1:])
    options = _options(words, ("to", "steps", "every", "analysis", "clusters"), usage)
    with _explained(usage):
        steps = check_steps(parse_steps(options["steps"])) if "steps" in options else None
        interval_s = parse_duration(options["every"]) if "every" in options else None
        analysis_s = parse_analysis(options["analysis"]) if "analysis" in options else None
    return Command(
        verb=Verb.START,
        service=target.service,
        namespace=target.namespace,
        to=_subset(options.get("to"), usage),
        steps=steps,
        interval_s=interval_s,
        analysis_s=analysis_s,
        cohort=cohort,
        clusters=_clusters(target, options.get("clusters"), cohort is not None),
    )


def _clusters(target: _Target, text: str | None, cohort: bool) -> tuple[str, ...] | None:
    """The wave's clusters, in order; a wave starts without a cohort."""
    if text is None:
        return None
    usage = example(Verb.START, target.text, form=WAVE_FORM)
    if cohort:
        raise CommandError(f"a wave does not start with a cohort: drop the cohort, like {usage}")
    try:
        return parse_clusters(text.lower())
    except GrammarError as err:
        raise CommandError(f"{err}, like {usage}") from err


def _first_cohort(target: _Target, words: list[str]) -> tuple[CohortChange, list[str]]:
    """The cohort a rollout starts with (`header x-beta=1`), and the words after it."""
    usage = f"`/canary {target.text} start cohort {COHORT_EXAMPLE.split(' to ')[0]}`"
    if not words or words[0].lower() == OFF:
        raise CommandError(f"say who is in the cohort the rollout starts with, like {usage}")
    taken = 1 if words[0].lower() not in COHORT_KINDS or len(words) < 2 else 2
    cohort, _ = _cohort_and_subset(target, words[:taken])
    return cohort, words[taken:]


def _fault(target: _Target, words: list[str]) -> Command:
    """`fault delay 7s 10%`, `fault abort 500 5%`, each with `for 10m` or not; `fault off`."""
    usage = _usage(Verb.FAULT, target)
    kind = words[0].lower() if words else ""
    if kind == OFF:
        _nothing_after("fault off", words[1:], f"`/canary {target.text} fault off`")
        return _drill_command(target, DrillOff())
    if kind in ("delay", "abort") and len(words) > 1 and words[1].lower() == OFF:
        return _drill_off(target, f"fault {kind}", words[2:])
    if kind not in ("delay", "abort"):
        raise CommandError(
            f"say which fault: `fault delay 7s 10%` or `fault abort 500 5%`, like {usage}"
        )
    if len(words) < 3:
        raise CommandError(f"`fault {kind}` needs {_FAULT_VALUES[kind]}, like {usage}")
    share = _share(words[2], usage)
    if kind == "delay":
        fields = {"seconds": _drill_seconds(words[1], "delay", usage), "percent": share}
    else:
        fields = {"status": _status(words[1], usage), "percent": share}
    return _drill_command(target, _drill(kind, fields, words[3:], usage))


def _retries(target: _Target, words: list[str]) -> Command:
    """`retries 3 per-try 2s`, with `for 10m` or not."""
    usage = example(Verb.FAULT, target.text, form=3)
    if words and words[0].lower() == OFF:
        return _drill_off(target, "retries", words[1:])
    if len(words) < 3 or words[1].lower() != "per-try":
        raise CommandError(f"`retries` needs a number of attempts and a per-try timeout: {usage}")
    attempts = words[0]
    if not (attempts.isascii() and attempts.isdigit() and 1 <= int(attempts) <= MAX_ATTEMPTS):
        raise CommandError(
            f"{shown(attempts)} is not a number of attempts: use 1 to {MAX_ATTEMPTS}, like {usage}"
        )
    fields = {"attempts": int(attempts), "seconds": _drill_seconds(words[2], "per-try", usage)}
    return _drill_command(target, _drill("retries", fields, words[3:], usage))


def _timeout(target: _Target, words: list[str]) -> Command:
    """`timeout 10s`, with `for 10m` or not."""
    usage = example(Verb.FAULT, target.text, form=4)
    if words and words[0].lower() == OFF:
        return _drill_off(target, "timeout", words[1:])
    if not words:
        raise CommandError(f"`timeout` needs a duration: {usage}")
    fields = {"seconds": _drill_seconds(words[0], "timeout", usage)}
    return _drill_command(target, _drill("timeout", fields, words[1:], usage))


def _drill(kind: str, fields: dict[str, Any], rest: list[str], usage: str) -> Drill:
    if rest and rest[0].lower() != "for":
        raise CommandError(f"{shown(rest[0])} is unexpected there: write it like {usage}")
    if rest and len(rest) != 2:
        raise CommandError(f"`for` needs a duration, like 10m, and nothing after it: {usage}")
    with _explained(usage):
        for_s = parse_duration(rest[1]) if rest else None
    return Drill.model_validate({"kind": kind, **fields, "for_s": for_s})


def _drill_off(target: _Target, said: str, rest: list[str]) -> Command:
    """`fault delay off`, `fault abort off`, `retries off`, `timeout off`: that kind only."""
    _nothing_after(f"{said} off", rest, f"`/canary {target.text} {said} off`")
    kind = said.removeprefix("fault ")
    return _drill_command(target, DrillOff.model_validate({"kind": kind}))


def _drill_command(target: _Target, drill: DrillChange) -> Command:
    return Command(verb=Verb.FAULT, service=target.service, namespace=target.namespace, drill=drill)


def _drill_seconds(word: str, what: str, usage: str) -> int:
    with _explained(usage):
        seconds = parse_duration(word)
    if seconds > MAX_DELAY_S:
        raise CommandError(f"a {what} of {shown(word)} is too long: at most 5m, like {usage}")
    return seconds


def _status(word: str, usage: str) -> int:
    if not (word.isascii() and word.isdigit() and 200 <= int(word) <= 599):
        raise CommandError(f"{shown(word)} is not an HTTP status: use 200 to 599, like {usage}")
    return int(word)


def _share(word: str, usage: str) -> float:
    found = _SHARE.fullmatch(word)
    if found is None or not 0 < float(found.group(1)) <= 100:
        raise CommandError(
            f"{shown(word)} is not a share of requests: use more than 0% and up to 100%, "
            f"like {usage}"
        )
    return float(found.group(1))


_FAULT_VALUES = {
    "delay": "a delay and a share of requests",
    "abort": "a status and a share of requests",
}
_DRILL_WORDS: dict[str, _Parser] = {"retries": _retries, "timeout": _timeout}
_VERBS: dict[str, _Parser] = {
    Verb.START: _start,
    Verb.PLAN: _plan,
    Verb.MIRROR: _mirror,
    Verb.COHORT: _cohort,
    Verb.FAULT: _fault,
    **{verb.value: partial(_bare, verb) for verb in BARE},
}


def _help(words: list[str]) -> Command:
    if not words:
        return Command(verb=Verb.HELP)
    topic = words[0].lower()
    if topic not in HELP_TOPICS:
        guess = _nearest(topic, HELP_TOPICS)
        hint = (
            f"did you mean `{guess}`? Try `/canary help {guess}`"
            if guess
            else f"try {example(Verb.HELP)}"
        )
        raise CommandError(f"there is no help on {shown(words[0])}; {hint}")
    _nothing_after(f"help {topic}", words[1:], f"`/canary help {topic}`")
    return Command(verb=Verb.HELP, topic=topic)


# --- the values ------------------------------------------------------------------------------


def _usage(verb: Verb, target: _Target) -> str:
    return example(verb, target.text, options=_WITH_OPTIONS.get(verb, "to v2"))


def _weight_and_subset(verb: Verb, target: _Target, words: list[str]) -> tuple[int, str | None]:
    """`10% to v2`, the subset optional: what set-weight, plan and mirror take."""
    usage = _usage(verb, target)
    weight = _weight(words[0], usage)
    options = _options(words[1:], ("to",), usage)
    return weight, _subset(options.get("to"), usage)


def _weighted(
    verb: Verb, target: _Target, words: list[str]
) -> tuple[int, str | None, PodLabels | None]:
    """`10% to v3 labels version=v3`: a weight, the canary, and the pods a new subset selects."""
    usage = _usage(verb, target)
    weight = _weight(words[0], usage)
    options = _options(words[1:], ("to", "labels"), usage)
    to = _subset(options.get("to"), usage)
    if "labels" not in options:
        return weight, to, None
    labelled = f"`/canary {target.text} {weight}% to v3 labels version=v3`"
    if to is None:
        raise CommandError(f"`labels` name the pods of a new subset, given with `to`: {labelled}")
    with _explained(labelled):
        return weight, to, parse_labels(options["labels"])


def _weight(word: str, usage: str) -> int:
    number = word.removesuffix("%")
    if not (number.isascii() and number.isdigit()):
        raise CommandError(f"{_weight_problem(word)}, like {usage}")
    value = int(number)
    if value > 100:
        said = f"{value}%" if len(number) < 8 else shown(word)
        raise CommandError(f"{said} is over 100: weights go from 0% to 100%, like {usage}")
    return value


def _weight_problem(word: str) -> str:
    number = word.removesuffix("%")
    if any(c.isdigit() and not c.isascii() for c in number):
        return f"{shown(word)} has digits other than 0-9: write the weight with 0-9"
    if number.startswith("-") and any(c.isdigit() for c in number):
        return f"{shown(word)} is negative: weights go from 0% to 100%"
    if _FRACTION.fullmatch(number.lstrip("+")):
        return f"{shown(word)} is not a whole number: weights are whole numbers from 0 to 100"
    return f"{shown(word)} is not a weight: write a whole number from 0 to 100"


def _subset(word: str | None, usage: str) -> str | None:
    """A subset (`v2`), or a canary Service (`podinfo-canary`, also as `NAME.NAMESPACE` or
    `NAME.NAMESPACE.svc.cluster.local`: the planner says whether the route takes it)."""
    if word is None:
        return None
    parts = word.lower().split(".")
    if not (word.isascii() and len(parts) <= 5 and all(is_label(p) for p in parts)):
        raise CommandError(
            f"{shown(word)} is not a subset or Service name: use {LABEL_RULE}, like {usage}"
        )
    return word.lower()


def _options(words: list[str], allowed: tuple[str, ...], usage: str) -> dict[str, str]:
    """`to v2 steps 5,100 every 5m` in any order, each at most once, each with its value."""
    found: dict[str, str] = {}
    for index in range(0, len(words), 2):
        name = _option_name(words[index], allowed, found, usage)
        value = words[index + 1] if index + 1 < len(words) else None
        if value is None or value.lower() in _OPTION_VALUES:
            raise CommandError(f"`{name}` needs {_OPTION_VALUES[name]}: {usage}")
        found[name] = value
    return found


def _option_name(word: str, allowed: tuple[str, ...], found: dict[str, str], usage: str) -> str:
    name = word.lower()
    if name == "%":
        raise CommandError(f"put the % right after the number, like {usage}")
    if name not in _OPTION_VALUES:
        raise CommandError(f"{shown(word)} is unexpected there: write it like {usage}")
    if name not in allowed and name == "cluster":
        raise CommandError(
            "`cluster` goes after pause, resume, promote, rollback, abort or status, like "
            f"`/canary {EXAMPLE_SERVICE} rollback cluster prod-eu`; a wave starts with `clusters`"
        )
    if name not in allowed and name == "labels":
        raise CommandError(
            f"`labels` goes with a weight and `to`, like `/canary {EXAMPLE_SERVICE} 10% to v3 "
            "labels version=v3`"
        )
    if name not in allowed:
        raise CommandError(f"`{name}` only goes with `start`: {_usage(Verb.START, _EXAMPLE)}")
    if name in found:
        raise CommandError(f"`{name}` is given twice: keep one, like {usage}")
    return name


def _nothing_after(what: str, words: list[str], usage: str) -> None:
    if words:
        raise CommandError(f"`{what}` takes nothing after it; remove {shown(words[0])}: {usage}")


@contextmanager
def _explained(usage: str) -> Iterator[None]:
    """The grammar's own message, which the CLI shows too, plus an example to copy."""
    try:
        yield
    except GrammarError as err:
        raise CommandError(f"{err}, as in {usage}") from err


# --- small predicates and guesses ------------------------------------------------------------

_EXAMPLE = _Target(EXAMPLE_SERVICE, None)
_GUESSABLE = (*_VERBS, Verb.HELP, Verb.LIST)


def _looks_like_weight(word: str) -> bool:
    """Weight-shaped, right or wrong (`10%`, `-5`, `10.5%`, `ten%`), so it gets weight errors."""
    return word.endswith("%") or word[0] in "+-.," or word[0].isdigit()


def _is_plain_weight(word: str) -> bool:
    match = _PLAIN_WEIGHT.fullmatch(word)
    return match is not None and int(match.group(1)) <= 100


def _is_service(word: str) -> bool:
    try:
        split_service(word)
    except GrammarError:
        return False
    return True


def _nearest(word: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word.lower(), list(choices), n=1)
    return matches[0] if matches else None


def _guess_verb(word: str) -> Verb | None:
    guess = _nearest(word, _GUESSABLE)
    return None if guess is None else Verb(guess)


def _did_you_mean(verb: Verb, target: _Target = _EXAMPLE) -> str:
    return f"did you mean `{verb}`? Try {example(verb, target.text)}"
