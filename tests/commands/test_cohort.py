"""`/canary <service> cohort …`: header, cookie and user cohorts, `off`, `plan cohort`, and one
clear sentence for each way of getting it wrong."""

from __future__ import annotations

import pytest

from commands import CommandError, Verb, help_text, parse, parse_cohort
from commands.cohort import OFF, Cohort


@pytest.mark.parametrize(
    ("text", "cohort", "to"),
    [
        (
            "weather cohort header x-beta=1 to v2",
            Cohort(by="header", name="x-beta", value="1"),
            "v2",
        ),
        ("weather cohort header X-Beta=yes", Cohort(by="header", name="x-beta", value="yes"), None),
        ("weather cohort cookie user=jason", Cohort(by="cookie", name="user", value="jason"), None),
        (
            "weather cohort user jason to v3",
            Cohort(by="user", name="end-user", value="jason"),
            "v3",
        ),
        (
            "weather cohort COOKIE Beta_Group=a.b@c",
            Cohort(by="cookie", name="Beta_Group", value="a.b@c"),
            None,
        ),
    ],
)
def test_a_cohort_is_a_header_a_cookie_or_a_user(text: str, cohort: Cohort, to: str | None) -> None:
    command = parse(text)
    assert (command.verb, command.service, command.cohort, command.to) == (
        Verb.COHORT,
        "weather",
        cohort,
        to,
    )
    assert command.mutating


def test_off_removes_the_cohort_and_takes_nothing_more() -> None:
    assert parse("weather.prod cohort off").cohort == OFF
    assert parse("weather.prod cohort off").namespace == "prod"
    with pytest.raises(CommandError, match="`cohort off` takes nothing after it"):
        parse("weather cohort off now")


def test_plan_takes_a_cohort_instead_of_a_weight() -> None:
    command = parse("weather plan cohort user jason")
    assert (command.verb, command.weight, command.cohort) == (
        Verb.PLAN,
        None,
        Cohort(by="user", name="end-user", value="jason"),
    )
    assert not command.mutating
    assert parse("weather plan cohort off").cohort == OFF


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "weather cohort",
            "say who is in the cohort, like `/canary weather cohort header x-beta=1 to v2`",
        ),
        ("weather cohort header", "`header` needs a header and its value (NAME=VALUE)"),
        ("weather cohort header x-beta", "not 'x-beta'"),
        ("weather cohort header =1", "not '=1'"),
        ("weather cohort cookie user=", "not 'user='"),
        ("weather cohort user", "`user` needs the user's ID"),
        ("weather cohort group a=b", "'group' is not a kind of cohort: use `header NAME=VALUE`"),
        ("weather cohort header x-beta=1;drop", "'1;drop' is not a header value"),
        ("weather cohort header x-beta=(.*)", "is not a header value"),
        ("weather cohort cookie us.er=jason", "'us.er' is not a cookie name"),
        ("weather cohort header x/beta=1", "'x/beta' is not a header name"),
        (
            "weather cohort header cookie=a",
            "the cookie header cannot pick a cohort: use `cookie NAME=VALUE`",
        ),
        ("weather cohort header :authority=a", "is not a header name"),
        ("weather cohort header host=a", "the host header cannot pick a cohort"),
        ("weather cohort user jason to", "`to` needs a subset"),
        ("weather cohort user jason steps 5,100", "`steps` only goes with `start`"),
        ("weather cohort user " + "j" * 129, "is not a user value"),
    ],
)
def test_bad_cohorts_get_one_sentence_that_says_what_to_type(text: str, said: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse(text)
    message = str(caught.value)
    assert said in message
    assert "\n" not in message


def test_the_command_line_reads_the_same_words() -> None:
    assert parse_cohort("header x-beta=1") == Cohort(by="header", name="x-beta", value="1")
    assert parse_cohort("off") == OFF
    with pytest.raises(CommandError, match="--to"):
        parse_cohort("user jason to v2")


def test_help_lists_the_cohort_forms() -> None:
    overview = help_text()
    assert "`/canary weather cohort header x-beta=1 to v2`" in overview
    assert "`/canary weather cohort off`" in overview
    focused = help_text("cohort")
    assert "canary-bot-cohort" in focused and "`/canary weather cohort user jason`" in focused
