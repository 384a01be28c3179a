"""The fake Slack refuses posts where the bot was not invited, as Slack does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.support.fake_slack import FakeSlack


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(member_of=("C0DEPLOYS",)) as server:
        server.set_channel("C0OTHER", "other")
        yield server


def error_of(client: WebClient, method: str, **kwargs: str) -> str:
    with pytest.raises(SlackApiError) as raised:
        getattr(client, method)(**kwargs)
    return str(raised.value.response["error"])


def test_posts_and_updates_only_where_the_bot_was_invited(fake: FakeSlack) -> None:
    client = WebClient(token=fake.token, base_url=fake.url + "/api/")
    ts = client.chat_postMessage(channel="C0DEPLOYS", text="card")["ts"]
    assert error_of(client, "chat_postMessage", channel="C0OTHER", text="x") == "not_in_channel"
    assert error_of(client, "chat_postMessage", channel="C0NOWHERE", text="x") == (
        "channel_not_found"
    )
    assert error_of(client, "chat_postMessage", channel="D0ALICE", text="x") == (
        "channel_not_found"
    )
    assert fake.messages("C0OTHER") == {}
    fake.invite("C0OTHER")
    assert client.chat_postMessage(channel="C0OTHER", text="now")["ok"]
    assert client.chat_update(channel="C0DEPLOYS", ts=ts, text="edited")["ok"]


def test_an_update_outside_the_bots_channels_is_refused(fake: FakeSlack) -> None:
    client = WebClient(token=fake.token, base_url=fake.url + "/api/")
    fake.invite("C0OTHER")
    ts = client.chat_postMessage(channel="C0OTHER", text="card")["ts"]
    assert error_of(client, "chat_update", channel="C0NOWHERE", ts=ts, text="x") == (
        "channel_not_found"
    )
