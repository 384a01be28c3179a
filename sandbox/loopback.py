"""What the sandbox's HTTP servers share: a threaded server on loopback whose keep-alive
connections are tracked, so stopping it does not wait for idle clients."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TrackingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    def close_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections so they exit."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # the client may have closed it already
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # clients dropping connections is routine, not a server fault
        super().handle_error(request, client_address)

    def serve_in_thread(self, name: str) -> threading.Thread:
        # stop() waits for the accept loop's next poll: keep it short for fast tests.
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.01}, name=name, daemon=True
        )
        thread.start()
        return thread

    def close(self) -> None:
        """Stop accepting, drop idle keep-alive connections, release the port."""
        self.shutdown()
        self.close_connections()
        self.server_close()
