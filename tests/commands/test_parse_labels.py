"""`labels KEY=VALUE,…` after a weight and `to`: the pods a new canary subset selects."""

from __future__ import annotations

import pytest

from commands.model import Verb
from commands.parse import CommandError, parse


@pytest.mark.parametrize(
    ("text", "verb", "labels"),
    [
        ("weather 10% to v3 labels version=v3", Verb.SET_WEIGHT, (("version", "v3"),)),
        (
            "weather plan 10% to v3 labels version=v3,track=canary",
            Verb.PLAN,
            (("track", "canary"), ("version", "v3")),
        ),
        (
            "weather 0 labels app.kubernetes.io/version=3.1 to v3",
            Verb.SET_WEIGHT,
            (("app.kubernetes.io/version", "3.1"),),
        ),
    ],
)
def test_labels_name_the_new_subsets_pods(
    text: str, verb: Verb, labels: tuple[tuple[str, str], ...]
) -> None:
    command = parse(text)
    assert (command.verb, command.to, command.labels) == (verb, "v3", labels)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("weather 10% labels version=v3", "given with `to`: `/canary weather 10% to v3 labels"),
        ("weather 10% to v3 labels version", "'version' is not a list of pod labels: write KEY="),
        ("weather 10% to v3 labels version=", "is not a list of pod labels"),
        ("weather 10% to v3 labels =v3", "is not a list of pod labels"),
        ("weather 10% to v3 labels version=v3,version=v4", "label 'version' is given twice"),
        ("weather 10% to v3 labels a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9,j=10,k=11", "too many"),
        ("weather 10% to v3 labels versión=v3", "is not a list of pod labels"),
        ("weather 10% to v3 labels", "`labels` needs the new subset's pod labels"),
        ("weather start to v3 labels version=v3", "`labels` goes with a weight and `to`"),
        ("weather mirror 10 to v3 labels version=v3", "`labels` goes with a weight and `to`"),
        ("weather 10% to v3 labels a=b labels c=d", "`labels` is given twice"),
    ],
)
def test_bad_labels_get_one_sentence_saying_what_to_type(text: str, said: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse(text)
    assert said in str(refused.value)
    assert "\n" not in str(refused.value)
