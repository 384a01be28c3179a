"""The fake Slack Web API, driven by the real slack_sdk WebClient and Bolt's respond()."""

from __future__ import annotations

import functools
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from tests.support.fake_slack import FakeSlack, SlackCall

CHANNEL = "C0DEPLOYS"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"\r\n\x00tail"


def card(weight: int) -> list[dict[str, Any]]:
    text = {"type": "mrkdwn", "text": f"*weather* v1 → v2: {weight}%"}
    return [{"type": "section", "block_id": "progress", "text": text}]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return client_for(fake)


def client_for(fake: FakeSlack, token: str | None = None, **options: Any) -> WebClient:
    return WebClient(token=token or fake.token, base_url=fake.url + "/api/", **options)


def slack_error(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """The Slack error code that `call(*args, **kwargs)` fails with."""
    with pytest.raises(SlackApiError) as raised:
        call(*args, **kwargs)
    return str(raised.value.response["error"])


# --- Identity and tokens --------------------------------------------------------------------


def test_auth_test_names_the_workspace_and_the_bot(fake: FakeSlack, client: WebClient) -> None:
    response = client.auth_test()

    assert response["team_id"] == "T0TEST"
    assert response["user_id"] == "U0BOT"
    assert response["bot_id"] == "B0BOT"
    [call] = fake.calls_to("auth.test")
    assert call.token == "xoxb-test-token"
    assert call.ok


def test_a_wrong_token_is_refused_with_200_and_recorded(fake: FakeSlack) -> None:
    client = client_for(fake, token="xoxb-stolen")

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="hi")

    assert raised.value.response.status_code == 200
    assert raised.value.response["error"] == "invalid_auth"
    [call] = fake.calls
    assert (call.method, call.token, call.error) == (
        "chat.postMessage",
        "xoxb-stolen",
        "invalid_auth",
    )
    assert call.body["text"] == "hi"
    assert fake.messages(CHANNEL) == {}


def test_no_token_is_not_authed(fake: FakeSlack) -> None:
    client = WebClient(base_url=fake.url + "/api/")

    assert slack_error(client.auth_test) == "not_authed"


def test_a_token_form_field_is_accepted(fake: FakeSlack) -> None:
    client = WebClient(base_url=fake.url + "/api/")

    client.api_call("auth.test", params={"token": fake.token})

    assert fake.calls[0].token == fake.token


def test_unknown_methods_are_refused(fake: FakeSlack, client: WebClient) -> None:
    assert slack_error(client.api_call, "chat.teleport") == "unknown_method"
    assert fake.calls[0].method == "chat.teleport"


# --- Messages -------------------------------------------------------------------------------


def test_an_update_replaces_the_card_in_place(fake: FakeSlack, client: WebClient) -> None:
    posted = client.chat_postMessage(channel=CHANNEL, text="weather 10%", blocks=card(10))
    ts = posted["ts"]

    updated = client.chat_update(channel=CHANNEL, ts=ts, text="weather 50%", blocks=card(50))

    assert (updated["channel"], updated["ts"], updated["text"]) == (CHANNEL, ts, "weather 50%")
    [message] = fake.messages(CHANNEL).values()
    assert message["ts"] == ts
    assert message["blocks"] == card(50)
    assert message["text"] == "weather 50%"
    assert fake.calls_to("chat.update")[0].body["blocks"] == card(50)


def test_an_update_without_blocks_keeps_them(fake: FakeSlack, client: WebClient) -> None:
    ts = client.chat_postMessage(channel=CHANNEL, text="a", blocks=card(10))["ts"]

    client.chat_update(channel=CHANNEL, ts=ts, text="b")

    assert fake.messages(CHANNEL)[ts]["blocks"] == card(10)


def test_post_answers_with_the_message_and_increasing_ts(client: WebClient) -> None:
    first = client.chat_postMessage(channel=CHANNEL, text="one", blocks=card(0))
    second = client.chat_postMessage(channel=CHANNEL, text="two")

    assert first["ts"] == "1700000000.000100"
    assert float(second["ts"]) > float(first["ts"])
    assert first["message"]["text"] == "one"
    assert first["message"]["blocks"] == card(0)


def test_updating_a_missing_message_is_refused(client: WebClient) -> None:
    error = slack_error(client.chat_update, channel=CHANNEL, ts="1.000100", text="x")

    assert error == "message_not_found"


def test_a_post_needs_a_channel_and_content(client: WebClient) -> None:
    post = functools.partial(client.api_call, "chat.postMessage")

    assert slack_error(post, json={"text": "x"}) == "channel_not_found"
    assert slack_error(post, json={"channel": CHANNEL}) == "no_text"


def test_thread_replies_carry_thread_ts(fake: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="card")["ts"]

    reply = client.chat_postMessage(channel=CHANNEL, text="step 2 of 5", thread_ts=parent)

    assert reply["message"]["thread_ts"] == parent
    messages = fake.messages(CHANNEL)
    assert messages[reply["ts"]]["text"] == "step 2 of 5"
    assert messages[parent]["reply_count"] == 1
    assert "thread_ts" not in messages[parent]


def test_ephemeral_messages_answer_a_message_ts(fake: FakeSlack, client: WebClient) -> None:
    response = client.chat_postEphemeral(channel=CHANNEL, user="U0ALICE", text="no such service")

    assert response["message_ts"]
    assert fake.calls_to("chat.postEphemeral")[0].body["user"] == "U0ALICE"
    assert fake.messages(CHANNEL) == {}


def test_form_bodies_have_their_blocks_decoded(fake: FakeSlack, client: WebClient) -> None:
    form = {"channel": CHANNEL, "text": "[prod] weather", "blocks": json.dumps(card(20))}

    ts = client.api_call("chat.postMessage", params=form)["ts"]

    [call] = fake.calls
    assert call.content_type == "application/x-www-form-urlencoded"
    assert call.body == {"channel": CHANNEL, "text": "[prod] weather", "blocks": card(20)}
    assert b"blocks=" in call.raw
    assert fake.messages(CHANNEL)[ts]["blocks"] == card(20)


def test_malformed_json_is_recorded_and_refused(fake: FakeSlack) -> None:
    status, payload = raw_post(fake, "/api/chat.postMessage", b"{not json", "application/json")

    assert (status, payload["error"]) == (200, "invalid_json")
    assert fake.calls[0].raw == b"{not json"


# --- Injected failures ----------------------------------------------------------------------


def test_a_rate_limited_call_is_retried_after_retry_after(fake: FakeSlack) -> None:
    fake.rate_limit("chat.postMessage", times=1, retry_after=0)
    retrying = client_for(fake, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])

    response = retrying.chat_postMessage(channel=CHANNEL, text="weather 10%")

    assert response["ok"]
    calls = fake.calls_to("chat.postMessage")
    assert [(c.status, c.error) for c in calls] == [(429, "ratelimited"), (200, None)]
    assert calls[0].raw == calls[1].raw
    assert len(fake.messages(CHANNEL)) == 1


def test_rate_limiting_answers_429_with_retry_after(fake: FakeSlack, client: WebClient) -> None:
    fake.rate_limit("chat.update", times=1, retry_after=7)

    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel=CHANNEL, ts="1.000100", text="x")

    response = raised.value.response
    assert (response.status_code, response["error"]) == (429, "ratelimited")
    assert response.headers["Retry-After"] == "7"


def test_fail_answers_the_next_calls_with_an_error(fake: FakeSlack, client: WebClient) -> None:
    fake.fail("chat.postMessage", "channel_is_archived", times=2)
    post = functools.partial(client.chat_postMessage, channel=CHANNEL, text="x")

    assert [slack_error(post), slack_error(post)] == ["channel_is_archived"] * 2
    assert post()["ok"]
    assert [c.status for c in fake.calls] == [200, 200, 200]


# --- Directory ------------------------------------------------------------------------------


def test_usergroups_list_the_users_set(fake: FakeSlack, client: WebClient) -> None:
    fake.set_usergroup("S0SRE", ["U0ALICE", "U0BOB"])

    assert client.usergroups_users_list(usergroup="S0SRE")["users"] == ["U0ALICE", "U0BOB"]
    assert slack_error(client.usergroups_users_list, usergroup="S0NOPE") == "no_such_subteam"


def test_channels_and_users(fake: FakeSlack, client: WebClient) -> None:
    fake.set_channel(CHANNEL, "deploys", members=["U0BOT", "U0ALICE"])
    fake.set_user("U0ALICE", "alice", tz="Europe/Berlin")

    assert client.conversations_info(channel=CHANNEL)["channel"]["name"] == "deploys"
    assert client.conversations_members(channel=CHANNEL)["members"] == ["U0BOT", "U0ALICE"]
    user = client.users_info(user="U0ALICE")["user"]
    assert (user["id"], user["name"], user["tz"]) == ("U0ALICE", "alice", "Europe/Berlin")
    assert client.users_info(user="U0BOB")["user"]["tz"] == "UTC"


# --- Files and response_url -----------------------------------------------------------------


def test_files_upload_v2_records_the_exact_bytes(fake: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="card")["ts"]
    fake.clear()

    response = client.files_upload_v2(
        content=PNG, filename="chart.png", channel=CHANNEL, thread_ts=parent
    )

    assert [c.method for c in fake.calls] == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]
    upload = fake.calls_to("upload")[0]
    assert (upload.raw, upload.status, upload.token) == (PNG, 200, None)
    assert response["file"]["id"] == upload.body["file_id"]
    assert response["file"]["title"] == "chart.png"
    [share] = [m for m in fake.messages(CHANNEL).values() if m.get("thread_ts") == parent]
    assert share["files"][0]["size"] == len(PNG)


def test_completing_an_upload_that_never_came_is_refused(client: WebClient) -> None:
    file_id = client.files_getUploadURLExternal(filename="a.png", length=3)["file_id"]

    error = slack_error(client.files_completeUploadExternal, files=[{"id": file_id}])

    assert error == "file_not_found"


def test_response_url_posts_are_recorded_with_their_json(fake: FakeSlack) -> None:
    url = fake.response_url("slash-1")

    response = Respond(response_url=url)(text="Rolling back weather", response_type="ephemeral")

    assert response.status_code == 200
    [call] = fake.calls_to("response_url")
    assert call.body == {"text": "Rolling back weather", "response_type": "ephemeral"}
    assert call.path == urlsplit(url).path


def test_unnamed_response_urls_are_distinct(fake: FakeSlack) -> None:
    assert fake.response_url() != fake.response_url()


# --- The log and the wire -------------------------------------------------------------------


def test_wait_for_wakes_on_a_call_from_another_thread(fake: FakeSlack, client: WebClient) -> None:
    poster = threading.Thread(
        target=client.chat_postMessage, kwargs={"channel": CHANNEL, "text": "x"}
    )
    poster.start()

    call = fake.wait_for(lambda c: c.method == "chat.postMessage")
    poster.join()

    assert isinstance(call, SlackCall)
    assert call.body["text"] == "x"


def test_wait_for_times_out(fake: FakeSlack) -> None:
    with pytest.raises(TimeoutError):
        fake.wait_for(lambda c: True, timeout=0.01)


def test_connections_are_kept_alive(fake: FakeSlack) -> None:
    connection = http.client.HTTPConnection(urlsplit(fake.url).netloc, timeout=5)
    try:
        for _ in range(2):
            connection.request("POST", "/api/auth.test", headers={"Authorization": "Bearer x"})
            response = connection.getresponse()
            body = response.read()
            assert int(response.headers["Content-Length"]) == len(body)
            assert not response.will_close
    finally:
        connection.close()

    assert [c.error for c in fake.calls] == ["invalid_auth", "invalid_auth"]


def test_get_requests_take_their_arguments_from_the_query(fake: FakeSlack) -> None:
    connection = http.client.HTTPConnection(urlsplit(fake.url).netloc, timeout=5)
    try:
        headers = {"Authorization": f"Bearer {fake.token}"}
        connection.request("GET", "/api/users.info?user=U0ALICE", headers=headers)
        payload = json.loads(connection.getresponse().read())
    finally:
        connection.close()

    assert payload["user"]["id"] == "U0ALICE"
    assert fake.calls[0].body == {"user": "U0ALICE"}


def raw_post(fake: FakeSlack, path: str, body: bytes, content_type: str) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(urlsplit(fake.url).netloc, timeout=5)
    try:
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {fake.token}"}
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()
