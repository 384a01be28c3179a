"""A loopback TCP proxy that puts network faults between the bot and Redis, Prometheus or any
TCP service: latency, connection resets, refused connections, black holes, trickled replies.

    with FaultProxy(redis_server.url) as proxy:
        store = RolloutStore(connect(proxy.url))
        proxy.reset_all()        # every open connection gets an RST now
        proxy.black_hole()       # bytes go in, nothing comes out
        proxy.clear_faults()     # back to passing everything through

Each connection is two threads, one per direction. Faults apply to open and new connections
alike, from the next bytes on.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

_CHUNK = 65536
_ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends an RST


@dataclass(frozen=True)
class _Faults:
    latency: float = 0.0  # added before each chunk, both ways
    trickle: float | None = None  # replies go out one byte per this many seconds
    black_hole: bool = False
    refusing: bool = False


class _Link:
    """One proxied connection: the client's socket and the upstream's."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.closing = threading.Event()  # cuts short the waits of latency and trickle
        self.closed = threading.Event()
        self.swallowed = False  # a black hole ate bytes: the stream is broken for good
        self._aborted = False
        self._pumps_left = 2
        self._lock = threading.Lock()

    def abort(self) -> None:
        """Reset both ends: wake the pumps, which close the sockets with an RST."""
        with self._lock:
            self._aborted = True
        self.closing.set()
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
                sock.shutdown(socket.SHUT_RD)  # a blocked recv() returns at once

    def pump_done(self, *, broken: bool) -> None:
        if broken:
            self.abort()
        with self._lock:
            self._pumps_left -= 1
            if self._pumps_left:
                return
        for sock in (self.client, self.upstream):
            sock.close()
        self.closed.set()

    @property
    def aborted(self) -> bool:
        with self._lock:
            return self._aborted


class FaultProxy:
    """Listens on 127.0.0.1 (port 0: any free one) and forwards to `upstream_url`'s host:port."""

    def __init__(self, upstream_url: str, *, port: int = 0) -> None:
        self._upstream_url = urlsplit(upstream_url)
        host, upstream_port = self._upstream_url.hostname, self._upstream_url.port
        if host is None or upstream_port is None:
            raise ValueError(f"{upstream_url!r} does not name a host and a port")
        self._upstream = (host, upstream_port)
        self._port = port
        self._faults = _Faults()
        self._swallowed = 0
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    # Lifecycle

    def start(self) -> Self:
        self._listen()
        return self

    def stop(self) -> None:
        self._close_listener()
        self.reset_all()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the proxy is not started")
        return self._port

    @property
    def url(self) -> str:
        """The upstream's URL with the proxy's address in it: `redis://127.0.0.1:<port>/0`."""
        return self._upstream_url._replace(netloc=f"127.0.0.1:{self.port}").geturl()

    @property
    def swallowed(self) -> int:
        """How many bytes black holes have eaten so far."""
        with self._lock:
            return self._swallowed

    # Faults

    def set_latency(self, seconds: float) -> None:
        """Hold every chunk `seconds` before passing it on, both ways."""
        with self._lock:
            self._faults = replace(self._faults, latency=seconds)

    def trickle(self, interval: float) -> None:
        """Send replies to clients one byte every `interval` seconds."""
        with self._lock:
            self._faults = replace(self._faults, trickle=interval)

    def black_hole(self) -> None:
        """Read what clients and upstream send and pass nothing on."""
        with self._lock:
            self._faults = replace(self._faults, black_hole=True)

    def refuse_new(self) -> None:
        """Stop listening: new connections are refused; open ones carry on."""
        with self._lock:
            self._faults = replace(self._faults, refusing=True)
        self._close_listener()

    def reset_all(self) -> None:
        """Reset every open connection now, with an RST to both ends, as a crashing server or
        a middlebox would; returns once all are closed."""
        for link in self._take_links():
            link.abort()
            link.closed.wait()

    def clear_faults(self) -> None:
        """Pass everything through again. Connections a black hole ate bytes of are reset."""
        with self._lock:
            refusing, self._faults = self._faults.refusing, _Faults()
            broken = [link for link in self._links if link.swallowed]
            self._links.difference_update(broken)
        for link in broken:
            link.abort()
            link.closed.wait()
        if refusing:
            self._listen()

    # Connections

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._port))
        listener.listen(64)
        self._port = listener.getsockname()[1]
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), name="fault-proxy", daemon=True
        )
        self._acceptor.start()

    def _close_listener(self) -> None:
        listener, acceptor = self._listener, self._acceptor
        self._listener, self._acceptor = None, None
        if listener is None or acceptor is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        listener.close()
        acceptor.join()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: refusing or stopping
            try:
                upstream = socket.create_connection(self._upstream)
            except OSError:  # nothing upstream: the client sees a reset, as it would directly
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
                client.close()
                continue
            self._open(_Link(client, upstream))

    def _open(self, link: _Link) -> None:
        for sock in (link.client, link.upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._links.add(link)
        for source, sink in ((link.client, link.upstream), (link.upstream, link.client)):
            threading.Thread(
                target=self._pump, args=(link, source, sink), name="fault-proxy-pump", daemon=True
            ).start()

    def _take_links(self) -> list[_Link]:
        with self._lock:
            taken, self._links = list(self._links), set()
        return taken

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket) -> None:
        broken = False
        try:
            while data := source.recv(_CHUNK):
                self._forward(link, data, sink, to_client=sink is link.client)
            if not link.aborted:
                sink.shutdown(socket.SHUT_WR)  # pass the half-close on
        except OSError:
            broken = not link.aborted
        finally:
            link.pump_done(broken=broken)
            if link.closed.is_set():
                with self._lock:
                    self._links.discard(link)

    def _forward(self, link: _Link, data: bytes, sink: socket.socket, *, to_client: bool) -> None:
        with self._lock:  # clear_faults() resets exactly the connections a black hole ate from
            faults = self._faults
            if faults.black_hole:
                link.swallowed = True
                self._swallowed += len(data)
                return
        if faults.latency and link.closing.wait(faults.latency):
            return  # reset while the bytes were on their way: they are lost
        if not to_client or faults.trickle is None:
            sink.sendall(data)
            return
        for index in range(len(data)):
            sink.sendall(data[index : index + 1])
            if link.closing.wait(faults.trickle):
                return
