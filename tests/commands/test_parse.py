"""`/canary` text → Command, and the errors that say what to type instead."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from commands import (
    MAX_LENGTH,
    Command,
    CommandError,
    GrammarError,
    Verb,
    help_text,
    parse,
    parse_duration,
    parse_service,
    parse_steps,
)
from tests.support.harness import MALFORMED

SERVICES = ("weather", "reviews", "ratings")
BARE = ("status", "pause", "resume", "promote", "rollback", "abort", "history")


def weight(service: str, value: int, **fields: str) -> Command:
    return Command(verb=Verb.SET_WEIGHT, service=service, weight=value, **fields)


def start(**fields: object) -> Command:
    return Command.model_validate({"verb": Verb.START, "service": "weather", **fields})


FULL_START = start(to="v2", steps=(5, 10, 25, 50, 100), interval_s=300)

VALID = [
    ("weather 10%", weight("weather", 10)),
    ("weather 10", weight("weather", 10)),
    ("weather 0%", weight("weather", 0)),
    ("weather 100%", weight("weather", 100)),
    ("weather 007%", weight("weather", 7)),
    ("reviews 50% to v3", weight("reviews", 50, to="v3")),
    ("REVIEWS 50% TO V3", weight("reviews", 50, to="v3")),
    ("reviews.prod 50% to v3", weight("reviews", 50, namespace="prod", to="v3")),
    ("Reviews.Prod 50", weight("reviews", 50, namespace="prod")),
    ("/canary weather 10%", weight("weather", 10)),
    ("/CANARY weather 10%", weight("weather", 10)),
    ("/canary", Command(verb=Verb.HELP)),
    ("  weather   10%  ", weight("weather", 10)),
    ("weather\u00a010%", weight("weather", 10)),  # phones type no-break spaces
    ("weather 10%\n", weight("weather", 10)),  # a trailing newline is not inside the text
    ("2048-game 10%", weight("2048-game", 10)),
    ("0 10%", weight("0", 10)),  # a numeric service is fine where a service is expected
    ("10 status", Command(verb=Verb.STATUS, service="10")),
    ("weather start", start()),
    ("weather start to v2 steps 5,10,25,50,100 every 5m", FULL_START),
    ("weather start every 5m steps 5,10,25,50,100 to v2", FULL_START),
    ("weather start steps 5,10,25,50,100 to v2 every 5m", FULL_START),
    ("Weather START Every 5M To V2 Steps 5,10,25,50,100", FULL_START),
    ("weather start steps 5%,50%,100%", start(steps=(5, 50, 100))),
    ("weather start steps 100", start(steps=(100,))),
    ("weather start every 30s", start(interval_s=30)),
    ("weather start every 1h", start(interval_s=3600)),
    ("weather start every 5m analysis 10s", start(interval_s=300, analysis_s=10)),
    ("weather start analysis off", start(analysis_s=0)),
    ("weather start ANALYSIS 0", start(analysis_s=0)),
    ("weather.prod start to v2", start(namespace="prod", to="v2")),
    ("weather start clusters canary-eu,prod-eu", start(clusters=("canary-eu", "prod-eu"))),
    ("weather start clusters prod-us", start(clusters=("prod-us",))),
    (
        "weather start clusters Canary-EU,prod-eu to v2 steps 10,100 every 5m",
        start(clusters=("canary-eu", "prod-eu"), to="v2", steps=(10, 100), interval_s=300),
    ),
    ("weather plan 25%", Command(verb=Verb.PLAN, service="weather", weight=25)),
    ("weather plan 25 to v3", Command(verb=Verb.PLAN, service="weather", weight=25, to="v3")),
    ("weather mirror 10%", Command(verb=Verb.MIRROR, service="weather", mirror=10)),
    ("weather mirror 10% to v2", Command(verb=Verb.MIRROR, service="weather", mirror=10, to="v2")),
    ("weather mirror off", Command(verb=Verb.MIRROR, service="weather", mirror=0)),
    ("weather MIRROR Off", Command(verb=Verb.MIRROR, service="weather", mirror=0)),
    ("weather mirror 0%", Command(verb=Verb.MIRROR, service="weather", mirror=0)),
    ("weather.prod status", Command(verb=Verb.STATUS, service="weather", namespace="prod")),
    ("status status", Command(verb=Verb.STATUS, service="status")),  # a service may be a verb
    ("list", Command(verb=Verb.LIST)),
    ("LIST", Command(verb=Verb.LIST)),
    ("", Command(verb=Verb.HELP)),
    ("   ", Command(verb=Verb.HELP)),
    ("help", Command(verb=Verb.HELP)),
    ("help start", Command(verb=Verb.HELP, topic="start")),
    ("Help Mirror", Command(verb=Verb.HELP, topic="mirror")),
    ("help weight", Command(verb=Verb.HELP, topic="weight")),
    ("help set-weight", Command(verb=Verb.HELP, topic="set-weight")),
    ("/canary help pause", Command(verb=Verb.HELP, topic="pause")),
]


@pytest.mark.parametrize(("text", "command"), VALID)
def test_every_form_parses_to_its_command(text: str, command: Command) -> None:
    assert parse(text) == command


@pytest.mark.parametrize("verb", BARE)
@pytest.mark.parametrize("case", [str.lower, str.upper, str.title])
def test_the_bare_verbs_parse_in_any_case(verb: str, case: Callable[[str], str]) -> None:
    text = case(f"weather.prod {verb}")
    assert parse(text) == Command(verb=Verb(verb), service="weather", namespace="prod")


def test_known_services_are_never_required() -> None:
    assert parse("climate 10%", services=SERVICES) == weight("climate", 10)
    assert parse("weathr 10%", services=SERVICES) == weight("weathr", 10)


@pytest.mark.parametrize(("text", "fragment"), MALFORMED)
def test_malformed_text_says_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(CommandError) as raised:
        parse(text)
    assert fragment in str(raised.value)


@pytest.mark.parametrize(("text", "_"), MALFORMED)
def test_every_error_quotes_a_command_to_type_instead(text: str, _: str) -> None:
    with pytest.raises(CommandError, match="`/canary "):
        parse(text)


BAD_WAVES = [
    ("weather start clusters canary-eu,canary-eu", "cluster canary-eu is named twice"),
    ("weather start clusters canary-eu,,prod-eu", "'' is not a cluster name"),
    ("weather start clusters prod_eu", "'prod_eu' is not a cluster name: use lowercase"),
    ("weather start clusters", "`clusters` needs a list of clusters, like canary-eu,prod-eu"),
    ("weather start clusters a to v2 clusters b", "`clusters` is given twice"),
    ("weather start cohort user jason clusters a", "a wave does not start with a cohort"),
    ("weather 10% clusters canary-eu", "`clusters` only goes with `start`"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_WAVES)
def test_a_bad_wave_says_what_is_wrong_and_what_to_type(text: str, fragment: str) -> None:
    with pytest.raises(CommandError) as raised:
        parse(text)
    assert fragment in str(raised.value) and "`/canary weather start" in str(raised.value)


SERVICE_TYPOS = [
    ("weathr", "say what to do with 'weathr' (did you mean `weather`?)"),
    ("Weathr! 10%", "did you mean `weather`?"),
    ("reveiws_ 10%", "did you mean `reviews`?"),
    ("pause weathr", "put the service first: `/canary weather pause`"),
    ("10% ratngs", "put the service first: `/canary ratings 10%`"),
    ("weathr paws", "did you mean `pause`? Try `/canary weather pause`"),
    ("weathr.prod statsu", "Try `/canary weather.prod status`"),
]


@pytest.mark.parametrize(("text", "fragment"), SERVICE_TYPOS)
def test_known_services_sharpen_the_suggestions(text: str, fragment: str) -> None:
    with pytest.raises(CommandError) as raised:
        parse(text, services=SERVICES)
    assert fragment in str(raised.value)


def test_without_known_services_the_typed_name_is_kept() -> None:
    with pytest.raises(CommandError, match="`/canary weathr pause`"):
        parse("pause weathr")


@pytest.mark.parametrize(
    "text",
    [
        "weather\n10%",
        "weather 10%\nweather 20%",
        "weather\r\n10%",
        "weather\t10%",
        "weather\x0010%",
        "weather\x1b[31m 10%",
        "weather 10%\x07",
        "\u200bweather 10%",  # zero-width space
        "weather \u202e%01",  # right-to-left override
        "weather\u2028 10%",  # line separator
    ],
)
def test_control_characters_are_refused(text: str) -> None:
    with pytest.raises(CommandError, match="remove the control characters"):
        parse(text)


def test_the_length_is_capped_and_the_cap_is_named() -> None:
    at_limit = "weather 10%".ljust(MAX_LENGTH)
    assert parse(at_limit) == weight("weather", 10)
    with pytest.raises(CommandError) as raised:
        parse(at_limit + " ")
    assert f"that is {MAX_LENGTH + 1} characters and a command is at most {MAX_LENGTH}" in str(
        raised.value
    )


def test_command_error_is_a_grammar_error_and_a_value_error() -> None:
    assert issubclass(CommandError, GrammarError)
    assert issubclass(CommandError, ValueError)


# --- the longest names still give short, one-line messages ---------------------------------

LONGEST = f"{'a' * 63}.{'b' * 63}"
LONG_WORD = "x" * 200


@pytest.mark.parametrize(
    "rest",
    [
        "",
        f"{LONG_WORD}",
        "start every 5min",
        "start analysis soon",
        f"start analysis {LONG_WORD}",
        f"start steps {LONG_WORD}",
        f"start to {LONG_WORD}",
        "start to v2 to v3",
        f"10% {LONG_WORD}",
        f"{LONG_WORD}%",
        f"status {LONG_WORD}",
        "plan",
        "10% every 5m",
    ],
)
def test_messages_stay_short_with_the_longest_names(rest: str) -> None:
    with pytest.raises(CommandError) as raised:
        parse(f"{LONGEST} {rest}")
    assert_short_single_line(str(raised.value))


def assert_short_single_line(message: str) -> None:
    assert message and len(message) < MAX_LENGTH
    assert message.splitlines() == [message]


# --- properties ------------------------------------------------------------------------------


def parse_or_error(text: str, services: tuple[str, ...] = ()) -> Command | None:
    try:
        return parse(text, services=services)
    except CommandError as err:
        assert_short_single_line(str(err))
        return None


@given(st.text(max_size=MAX_LENGTH + 20))
def test_any_text_gives_a_command_or_a_short_command_error(text: str) -> None:
    parse_or_error(text)


VOCABULARY = [
    *BARE,
    *("start", "plan", "mirror", "off", "list", "help", "to", "steps", "every", "set-weight"),
    *("weather", "weathr", "weather.prod", LONGEST, "V3", "v2", "/canary", "%", "10%", "0"),
    *("150%", "-5", "10.5%", "5,10,100", "10,5", "5m", "25h", "١٠", "pause!", "statsu"),
]
soup = st.lists(
    st.one_of(st.sampled_from(VOCABULARY), st.text(min_size=1, max_size=8)), max_size=8
).map(" ".join)


@given(soup, st.sampled_from([(), SERVICES]))
def test_word_soup_gives_a_command_or_a_short_command_error(
    text: str, services: tuple[str, ...]
) -> None:
    parse_or_error(text, services)


labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
percent = st.integers(0, 100)


def spelled(words: list[str], upper: list[bool]) -> str:
    return " ".join(w.upper() if up else w for w, up in zip(words, upper, strict=False))


@st.composite
def start_texts(draw: st.DrawFn) -> tuple[str, Command]:
    """A `start` with any subset of its options, in any order, in any case."""
    service, subset = draw(labels), draw(labels)
    steps = (*sorted(draw(st.sets(st.integers(1, 99), max_size=4))), 100)
    minutes = draw(st.integers(1, 60))
    options = {"to": subset, "steps": ",".join(map(str, steps)), "every": f"{minutes}m"}
    chosen = draw(st.permutations(list(options)))[: draw(st.integers(0, 3))]
    words = [service, "start", *(w for name in chosen for w in (name, options[name]))]
    command = start(
        service=service,
        to=subset if "to" in chosen else None,
        steps=steps if "steps" in chosen else None,
        interval_s=minutes * 60 if "every" in chosen else None,
    )
    return spelled(words, draw(st.lists(st.booleans(), min_size=len(words)))), command


@given(start_texts())
def test_generated_starts_parse_back(case: tuple[str, Command]) -> None:
    text, command = case
    assert parse(text) == command


@given(labels, st.none() | labels, percent, st.none() | labels, st.sampled_from(["%", ""]))
def test_generated_weights_parse_back(
    service: str, namespace: str | None, value: int, subset: str | None, sign: str
) -> None:
    target = service if namespace is None else f"{service}.{namespace}"
    text = f"{target} {value}{sign}" + (f" to {subset}" if subset else "")
    expected = Command(
        verb=Verb.SET_WEIGHT, service=service, namespace=namespace, weight=value, to=subset
    )
    assert parse(text, services=SERVICES) == expected


# --- the model -------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", list(Verb))
def test_mutating_verbs_are_the_ones_that_change_traffic_or_a_rollout(verb: Verb) -> None:
    read_only = {Verb.STATUS, Verb.HISTORY, Verb.PLAN, Verb.LIST, Verb.HELP}
    command = parse(example_text(verb))
    assert command.verb == verb
    assert command.mutating is (verb not in read_only)


def example_text(verb: Verb) -> str:
    special = {
        Verb.SET_WEIGHT: "weather 10%",
        Verb.PLAN: "weather plan 10%",
        Verb.MIRROR: "weather mirror 10%",
        Verb.COHORT: "weather cohort header x-beta=1",
        Verb.FAULT: "weather fault delay 7s 10%",
        Verb.LIST: "list",
        Verb.HELP: "help",
    }
    return special.get(verb, f"weather {verb}")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"verb": "status"}, "status needs service"),
        ({"verb": "set-weight", "service": "weather"}, "set-weight needs weight"),
        ({"verb": "status", "service": "weather", "weight": 10}, "status does not take weight"),
        ({"verb": "list", "service": "weather"}, "list does not take service"),
        ({"verb": "set-weight", "service": "weather", "weight": 101}, "less than or equal to 100"),
        ({"verb": "mirror", "service": "weather", "mirror": -1}, "greater than or equal to 0"),
        ({"verb": "status", "service": "weather", "colour": "red"}, "Extra inputs"),
    ],
)
def test_the_model_keeps_fields_coherent_with_the_verb(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Command.model_validate(fields)


def test_commands_are_frozen() -> None:
    command = parse("weather 10%")
    with pytest.raises(ValidationError):
        command.weight = 20  # type: ignore[misc]


# --- help ------------------------------------------------------------------------------------


def test_the_overview_has_one_line_per_form() -> None:
    text = help_text()
    for form in ("weather 10%", "weather start", "weather mirror off", "list", "help start"):
        assert f"• `/canary {form}` — " in text
    for verb in BARE:
        assert f"`/canary weather {verb}` — " in text


@pytest.mark.parametrize("topic", sorted({*Verb, "weight"}))
def test_every_topic_has_focused_help_whose_commands_parse(topic: str) -> None:
    text = help_text(topic)
    assert text != help_text() and "`/canary " in text
    assert parse(f"help {topic}").topic == topic
    for quoted in text.split("`")[1::2]:
        if quoted.startswith("/canary "):
            parse(quoted)


def test_help_on_weight_is_help_on_set_weight_and_unknown_topics_get_the_overview() -> None:
    assert help_text("weight") == help_text("set-weight") == help_text("WEIGHT")
    assert "0%" in help_text("weight")
    assert help_text("nonsense") == help_text()


# --- the small parsers the CLI uses keep their behaviour ------------------------------------


def test_parse_service_fills_in_the_default_namespace() -> None:
    assert parse_service("weather", "default") == ("default", "weather")
    assert parse_service(" Weather.Prod ", "default") == ("prod", "weather")
    assert parse_service("weather.", "default") == ("default", "weather")
    for bad in ("Weather!", "a.b.c", "wéather", "-x"):
        with pytest.raises(GrammarError, match="is not a service name"):
            parse_service(bad, "default")


def test_parse_duration_and_parse_steps() -> None:
    assert [parse_duration(t) for t in ("30s", "5m", "1h", " 2M ")] == [30, 300, 3600, 120]
    assert parse_steps("5,10,25,50,100") == (5, 10, 25, 50, 100)
    assert parse_steps("10, 5%, 100") == (10, 5, 100)  # climbing is checked by the rollout
    with pytest.raises(GrammarError, match="is not a duration"):
        parse_duration("5 minutes")
    with pytest.raises(GrammarError, match="is not a list of steps"):
        parse_steps("5;10")
