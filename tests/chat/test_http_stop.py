"""The HTTP server stops, and lets go of its port, whatever state its loop is in: a second
stop, or a stop that finds the loop's wake-up pipe closed already (the loop on its way out),
returns instead of raising out of the bot's shutdown."""

from __future__ import annotations

import socket

import pytest

from bot.chat.http import BotHttpServer


def refused(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) != 0


def test_a_second_stop_is_harmless() -> None:
    server = BotHttpServer(None).start()
    server.stop()
    server.stop()
    assert refused(server.url)


def test_a_stop_that_finds_the_wake_up_pipe_closed_still_closes_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = BotHttpServer(None).start()
    assert not refused(server.url)
    server._server.trigger.close()  # the loop's pipe, gone before the stop
    server.stop()
    assert refused(server.url)
    assert "wake-up pipe was closed" in caplog.text
