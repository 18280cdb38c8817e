"""The sandbox's HTTP handling: the server, its connections, reading bodies, routing.

A threading HTTP/1.1 server on ``127.0.0.1`` that keeps track of its open connections (so that
stopping is prompt), answers the stdlib's own refusals in the sandbox's JSON shape, and for each
request: refuses what no endpoint could read (chunked bodies, a bad ``Content-Length``, a body
over ``max_body_bytes`` → 413, an unknown path → 404, a method the endpoint does not take → 405,
a GET over 8192 bytes → 414), adds the injected latency and 503s, then hands an
:class:`~amp_pandas.sandbox._exchange.Exchange` to the endpoint of its path, one request at a time.
"""

from __future__ import annotations

import gc
import json
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from ._exchange import JSON, Exchange
from ._state import State

__all__ = ["MAX_URL_BYTES", "Route", "Server"]

#: A GET whose request target (path and query) is longer than this is answered 414.
MAX_URL_BYTES = 8192
#: An over-limit body up to this size is read and discarded so the connection stays usable;
#: a larger one gets its 413 and the connection is closed.
_DISCARD_LIMIT = 64 * 1024 * 1024


class Route(NamedTuple):
    """An endpoint: its path, the methods it takes and the function that answers it."""

    path: str
    methods: tuple[str, ...]
    handle: Callable[[Exchange, State], None]


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_disabled_here = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a request is parsed and applied.

    ``json.loads`` of 1000 identifications allocates thousands of containers; the collections
    they trigger cost about a third of the parse (measured: ~3.2 ms against ~2.2 ms per 1000).
    The pause is shared by concurrent requests (a counter), lasts milliseconds, and only ever
    re-enables a collector it disabled itself: a process that turned the collector off keeps
    it off. The parsed identifications hold no reference cycles, so nothing piles up.
    """
    global _gc_holders, _gc_disabled_here
    with _gc_lock:
        if _gc_holders == 0 and gc.isenabled():
            gc.disable()
            _gc_disabled_here = True
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_disabled_here:
                _gc_disabled_here = False
                gc.enable()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "amp-pandas-sandbox"
    sys_version = ""
    timeout = 300  # an idle keep-alive connection is closed after this many seconds
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the sandbox keeps its own records."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer the stdlib's own refusals (malformed request line or headers, an unsupported
        method) in the sandbox's JSON shape, always with a status line, then close.

        A client's mistake is a 4xx: an unsupported method is 405 (not 501) and an unsupported
        HTTP version is 400 (not 505).
        """
        self.close_connection = True
        code = {501: 405, 505: 400}.get(code, code)
        reason = self.responses.get(code, ("",))[0]
        body = json.dumps({"code": code, "error": message or reason}).encode()
        head = (
            f"HTTP/1.1 {code} {reason}\r\nServer: {self.server_version}\r\n"
            f"Content-Type: {JSON}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        try:
            self.wfile.write(head.encode("latin-1") + body)
        except OSError:
            pass

    def do_GET(self) -> None:
        self.server.serve_request(self, "GET")

    def do_POST(self) -> None:
        self.server.serve_request(self, "POST")


class Server(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 that can close its open connections on stop.

    Parameters
    ----------
    state : State
        The sandbox's state (faults, records, stores).
    routes : iterable of Route
        The endpoints served.
    port : int
        The port to bind (0: a free one).
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, state: State, routes: Iterable[Route], port: int) -> None:
        self.state = state
        self.routes = {route.path: route for route in routes}
        self.stopping = threading.Event()
        self._open: dict[socket.socket, threading.Thread] = {}
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can be slow.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.stopping.is_set():
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="amp-pandas-sandbox-connection",
            daemon=True,
        )
        with self._open_lock:
            self._open[request] = thread
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError) or self.stopping.is_set():
            return  # the client went away, or the sandbox is stopping: nothing to report
        super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> None:
        """Shut every open connection down and wait (up to ``timeout`` s) for their threads."""
        with self._open_lock:
            open_now = list(self._open.items())
        for connection, _thread in open_now:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for _connection, thread in open_now:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- one request (runs in the connection's thread) ----------------------------------------

    def serve_request(self, handler: _Handler, method: str) -> None:
        """Read, check and route one request; the endpoint answers it."""
        path, _, query = handler.path.partition("?")
        state = self.state
        exchange = Exchange(
            handler,
            method,
            path,
            query,
            handler.headers.get("Content-Type"),
            self.stopping,
            state.keep,
        )
        faults = state.faults
        if handler.headers.get("Transfer-Encoding") is not None:
            exchange.error(
                411, "send a Content-Length (chunked bodies are not supported)", close=True
            )
            return
        try:
            length = int(handler.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            exchange.error(400, "invalid Content-Length", close=True)
            return
        if length > faults.max_body_bytes:
            exchange.bytes = length
            close = length > _DISCARD_LIMIT
            if not close and not _discard(handler, length):
                handler.close_connection = True
                return
            exchange.error(
                413,
                f"the body is {length} bytes; the limit is {faults.max_body_bytes}",
                close=close,
            )
            return
        body = handler.rfile.read(length) if length else b""
        if len(body) < length:  # the client went away mid-body
            handler.close_connection = True
            return
        exchange.body = body
        exchange.bytes = len(query) if method == "GET" else length

        route = self.routes.get(path)
        if route is None:
            exchange.error(
                404, f"no such endpoint {path!r}: use {' or '.join(sorted(self.routes))}"
            )
            return
        if method not in route.methods:
            exchange.error(405, f"{path} takes {' or '.join(route.methods)} only")
            return
        if method == "GET" and len(handler.path) > MAX_URL_BYTES:
            exchange.error(
                414,
                f"the URL is {len(handler.path)} bytes; the limit is {MAX_URL_BYTES}: use POST",
            )
            return

        latency = faults.latency
        if latency > 0 and self.stopping.wait(latency):
            exchange.drop(applied=False, error="the sandbox stopped")
            return
        if faults.roll("rate_503"):
            exchange.error(503, "service unavailable (injected fault)")
            return
        # One request at a time from here on, in arrival order. Under the GIL, requests parsed
        # side by side only interleave: each finishes as late as the last, the next ones arrive
        # together again, and the added latency never overlaps the work (measured: ~30k/s at
        # 100 ms against ~45k/s one at a time). No fault sleeps past this point.
        with state.serial, _gc_paused():
            route.handle(exchange, state)


def _discard(handler: BaseHTTPRequestHandler, length: int) -> bool:
    """Read and forget ``length`` bytes of body; ``False`` if the client went away."""
    remaining = length
    while remaining > 0:
        chunk = handler.rfile.read(min(remaining, 65536))
        if not chunk:
            return False
        remaining -= len(chunk)
    return True
