"""The one place where ``requests`` exceptions become outcomes: every mapping, tested.

Real loopback sockets for what a socket can do (refuse, hang, close, reset, answer, redirect);
``responses`` for the exceptions a loopback socket cannot produce (connect timeout, TLS, DNS).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest
import requests
import responses
import urllib3.exceptions as u3

from amp_pandas._transport import Outcome, new_session, outcome_from_exception, post

BODY = b'--b\r\nContent-Disposition: form-data; name="identification"\r\n\r\n[]\r\n--b--\r\n'


class OneShotServer:
    """A loopback TCP server whose connections are handled by ``behaviour(conn)``."""

    def __init__(self, behaviour: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/identify"
        self.behaviour = behaviour
        self.received = b""
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                self.behaviour(conn)

    def read_request(self, conn: socket.socket) -> bytes:
        conn.settimeout(2)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        while len(rest) < length:
            rest += conn.recv(65536)
        self.received += data
        return head + b"\r\n\r\n" + rest

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[OneShotServer, socket.socket], None]], OneShotServer]]:
    servers: list[OneShotServer] = []

    def make(behaviour: Callable[[OneShotServer, socket.socket], None]) -> OneShotServer:
        holder: list[OneShotServer] = []
        server = OneShotServer(lambda conn: behaviour(holder[0], conn))
        holder.append(server)
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.close()


def _post(url: str, timeout: float = 2.0) -> Outcome:
    with requests.Session() as session:
        return post(
            session, url, BODY, content_type="multipart/form-data; boundary=b", timeout=timeout
        )


# ---------------------------------------------------------------- real sockets
def test_answer_is_a_response(serve) -> None:
    def answer(server: OneShotServer, conn: socket.socket) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")

    server = serve(answer)
    out = _post(server.url)
    assert (out.kind, out.status, out.body, out.detail) == ("response", 503, b"busy", "HTTP 503")
    assert out.latency >= 0
    # POST, with the multipart body and its content type; nothing in the URL
    assert server.received.startswith(b"POST /identify HTTP/1.1")
    assert b"multipart/form-data; boundary=b" in server.received


def test_connection_refused_is_not_sent() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there now
    out = _post(f"http://127.0.0.1:{port}/identify")
    assert (out.kind, out.retryable, out.detail) == ("not_sent", True, "connection refused")


def test_no_answer_is_ambiguous(serve) -> None:
    def hang(server: OneShotServer, conn: socket.socket) -> None:
        server.read_request(conn)
        server._stop.wait(1.0)

    out = _post(serve(hang).url, timeout=0.2)
    assert out.kind == "ambiguous"
    assert "read timeout" in out.detail


def test_close_after_body_is_ambiguous(serve) -> None:
    def close(server: OneShotServer, conn: socket.socket) -> None:
        server.read_request(conn)  # the body arrived; then no answer

    out = _post(serve(close).url)
    assert out.kind == "ambiguous"
    assert out.detail == "connection closed before an answer arrived"


def test_reset_after_body_is_ambiguous(serve) -> None:
    def reset(server: OneShotServer, conn: socket.socket) -> None:
        server.read_request(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    out = _post(serve(reset).url)
    assert out.kind == "ambiguous"


def test_redirects_are_not_followed(serve) -> None:
    def redirect(server: OneShotServer, conn: socket.socket) -> None:
        server.read_request(conn)
        conn.sendall(
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:1/x\r\n"
            b"Content-Length: 0\r\n\r\n"
        )

    out = _post(serve(redirect).url)
    assert (out.kind, out.status) == ("response", 307)


def test_new_session_pools_connections(serve) -> None:
    accepted = []

    def keep_alive(server: OneShotServer, conn: socket.socket) -> None:
        accepted.append(conn)
        for _ in range(3):
            server.read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess")

    server = serve(keep_alive)
    session = new_session(4)
    try:
        outs = [post(session, server.url, BODY, content_type="x", timeout=2) for _ in range(3)]
    finally:
        session.close()
    assert [o.status for o in outs] == [200, 200, 200]
    assert len(accepted) == 1  # one connection, kept alive
    assert session.get_adapter("https://x")._pool_maxsize == 4  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the mapping table
def _conn_error(reason: BaseException) -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(u3.MaxRetryError(None, "/identify", reason))


@pytest.mark.parametrize(
    "exc, kind, retryable, detail",
    [
        (requests.exceptions.ConnectTimeout(), "not_sent", True, "connect timeout after 3 s"),
        (requests.exceptions.ReadTimeout(), "ambiguous", True, "no answer within 3 s"),
        (requests.exceptions.SSLError("certificate verify failed"), "not_sent", False, "TLS"),
        (requests.exceptions.ProxyError("proxy"), "not_sent", True, "proxy"),
        (requests.exceptions.InvalidURL("bad"), "not_sent", False, "invalid request"),
        (
            _conn_error(u3.NewConnectionError(None, "Failed: [Errno 111] Connection refused")),
            "not_sent",
            True,
            "could not connect",
        ),
        (
            _conn_error(u3.NameResolutionError("host", None, socket.gaierror("no name"))),
            "not_sent",
            True,
            "resolve",
        ),
        (
            requests.exceptions.ConnectionError(
                u3.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
            ),
            "ambiguous",
            True,
            "connection closed",
        ),
        (
            requests.exceptions.ConnectionError(u3.ClosedPoolError(None, "closed")),
            "not_sent",
            False,
            "closed",
        ),
        (requests.exceptions.ConnectionError("something else"), "ambiguous", True, "connection"),
        (requests.exceptions.ChunkedEncodingError(), "ambiguous", True, "broke off"),
        (requests.exceptions.RequestException("?"), "ambiguous", True, "RequestException"),
    ],
)
def test_exception_mapping(exc, kind: str, retryable: bool, detail: str) -> None:
    out = outcome_from_exception(exc, 0.5, timeout=3)
    assert (out.kind, out.retryable) == (kind, retryable)
    assert detail in out.detail
    assert out.status is None and out.latency == 0.5


@responses.activate
def test_post_translates_what_requests_raises() -> None:
    url = "https://api2.amplitude.com/identify"
    responses.add(responses.POST, url, body=requests.exceptions.ConnectTimeout())
    with requests.Session() as session:
        out = post(session, url, BODY, content_type="x", timeout=1)
    assert out.kind == "not_sent"


@responses.activate
def test_post_lets_programming_errors_through() -> None:
    url = "https://api2.amplitude.com/identify"
    responses.add(responses.POST, url, body=ZeroDivisionError())
    with requests.Session() as session, pytest.raises(ZeroDivisionError):
        post(session, url, BODY, content_type="x", timeout=1)
