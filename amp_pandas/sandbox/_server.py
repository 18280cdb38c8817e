"""The sandbox: a local HTTP server that answers like Amplitude's Identify and HTTP V2 APIs."""

from __future__ import annotations

import gc
import hmac
import json
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self

from amp_pandas.errors import SandboxError

from ._faults import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IDENTIFICATIONS, Faults, ThrottleHit
from ._parse import (
    content_type_of,
    parse_identification,
    parse_json,
    parse_multipart,
    parse_urlencoded,
)
from ._profiles import ProfileStore
from ._rules import MIN_ID_LENGTH, check_identification, first_invalid

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["DEFAULT_API_KEY", "RequestRecord", "Sandbox"]

#: The sandbox's default API key. It is not a secret: it only opens this local sandbox.
DEFAULT_API_KEY = "sandbox-key"
IDENTIFY_PATH = "/identify"
HTTP_V2_PATH = "/2/httpapi"
#: A GET whose request target (path and query) is longer than this is answered 414.
MAX_URL_BYTES = 8192
#: An over-limit body up to this size is read and discarded so the connection stays usable;
#: a larger one gets its 413 and the connection is closed.
_DISCARD_LIMIT = 64 * 1024 * 1024
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


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


@dataclass(frozen=True)
class RequestRecord:
    """One request the sandbox answered (or dropped).

    Attributes
    ----------
    method : str
        ``"GET"`` or ``"POST"``.
    path : str
        The path, without the query string.
    content_type : str or None
        The ``Content-Type`` header as sent.
    bytes : int
        Size of the body (for a GET: of the query string).
    count : int
        Identifications (or HTTP V2 events) in the request; 0 when it could not be parsed.
    status : int or None
        The HTTP status answered; ``None`` when the connection was dropped without an answer.
    applied : bool
        Whether the request's identifications were applied to the profiles.
    identifications : list of dict or None
        The parsed identifications (HTTP V2: the events), or ``None`` when not parsed or when
        the sandbox was built with ``record_identifications=False``.
    error : str or None
        The reason given with a 4xx/5xx answer.
    """

    method: str
    path: str
    content_type: str | None
    bytes: int
    count: int
    status: int | None
    applied: bool
    identifications: list[Any] | None = field(default=None, repr=False)
    error: str | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "amp-pandas-sandbox"
    sys_version = ""
    timeout = 300  # an idle keep-alive connection is closed after this many seconds
    server: _Server

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
            f"Content-Type: {_JSON}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            self.wfile.write(head.encode("latin-1") + body)
        except OSError:
            pass

    def do_GET(self) -> None:
        self.server.sandbox._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.sandbox._handle(self, "POST")


class _Server(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 that can close its open connections on stop."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, sandbox: Sandbox, port: int) -> None:
        self.sandbox = sandbox
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


class Sandbox:
    """A local stand-in for Amplitude's Identify API, for demos, tests and notebooks.

    A real HTTP server on ``127.0.0.1`` answers ``POST``/``GET /identify`` and ``POST /2/httpapi``
    by Amplitude's rules, applies accepted identifications to per-user profiles, records every
    request, and can inject faults (latency, 503, 500 after applying, dropped connections, 429
    throttling, poison ids, smaller limits).

    Parameters
    ----------
    api_key : str, default "sandbox-key"
        The key requests must carry. It is not a secret and is never printed in a ``repr``.
    port : int, default 0
        The port to listen on; 0 picks a free one. A restarted sandbox keeps its port.
    seed : int, default 0
        Seed of the random faults, so that a test sees the same faults every run.
    latency : float, default 0.0
        Seconds added to every request before it is applied.
    rate_503 : float, default 0.0
        Probability of answering 503 without applying anything.
    rate_500_after_apply : float, default 0.0
        Probability of applying, then answering 500 (the ambiguous case).
    rate_drop_after_apply : float, default 0.0
        Probability of applying, then closing the connection without any answer.
    reject_ids : iterable of str, default ()
        Poison ids: a request with an identification carrying one as ``user_id`` or
        ``device_id`` is answered 400, naming it, and nothing in it is applied.
    max_body_bytes : int, default 1_000_000
        A larger body is answered 413.
    max_identifications : int, default 2000
        A request with more identifications is answered 413.
    record_identifications : bool, default True
        Keep the parsed identifications in :attr:`requests` and :attr:`applied`. Turn it off
        for benchmarks and soak runs to save memory (:meth:`applied_counts` still works).

    Notes
    -----
    Rules (each answered 400 with ``{"code": 400, "error": "<reason>"}``; nothing in that
    request is applied): a wrong or missing ``api_key`` (``"Invalid API key"``); a missing or
    malformed ``identification`` (the reason starts with ``missing_event``); an identification
    without a ``user_id``/``device_id``; an id that is not a string, shorter than 5 or longer
    than 1024 characters, or one of ``anonymous nil none null n/a na undefined unknown``, empty,
    ``00000000-0000-0000-0000-000000000000``, ``{}``, ``lmy47d``, ``0``, ``-1`` (any case);
    ``user_properties`` that mixes operations with plain keys, uses an unknown operation, gives
    ``$add`` a non-number or nests deeper than 40 levels; ``groups`` with more than 5 types or
    10 groups. Over ``max_body_bytes`` or ``max_identifications``: 413. A GET whose request
    target is over 8192 bytes: 414. A POST body must be urlencoded or multipart form data
    (its query string is not read).

    On success every identification is applied in request order under one lock and the answer
    is 200 ``success``. The profile key is the ``user_id``, else the user the ``device_id`` was
    linked to, else the ``device_id``. A flat ``user_properties`` is a ``$set``; ``groups`` and
    the documented top-level fields (``platform``, ``country`` …) are stored as profile columns
    too. See :mod:`amp_pandas.sandbox._profiles` for each operation's semantics.

    ``POST /2/httpapi`` takes Amplitude's HTTP V2 JSON body (``api_key``, ``events``,
    ``options``); ``$identify`` events are applied like identifications, other events are
    accepted and counted only.

    Examples
    --------
    >>> import requests
    >>> with Sandbox() as sb:
    ...     response = requests.post(sb.url, data={
    ...         "api_key": sb.api_key,
    ...         "identification": '{"user_id": "user-1", "user_properties": {"plan": "pro"}}',
    ...     })
    ...     print(response.status_code, response.text)
    ...     print(sb.profile("user-1"))
    200 success
    {'plan': 'pro'}
    """

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        port: int = 0,
        seed: int = 0,
        latency: float = 0.0,
        rate_503: float = 0.0,
        rate_500_after_apply: float = 0.0,
        rate_drop_after_apply: float = 0.0,
        reject_ids: Iterable[str] = (),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_identifications: int = DEFAULT_MAX_IDENTIFICATIONS,
        record_identifications: bool = True,
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise SandboxError("api_key must be a non-empty string")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise SandboxError(f"port must be an integer between 0 and 65535, not {port!r}")
        self._api_key = api_key
        self._api_key_bytes = api_key.encode("utf-8")
        self._requested_port = port
        self._bound_port: int | None = None
        self._record_identifications = bool(record_identifications)
        self._faults = Faults(
            seed,
            latency=latency,
            rate_503=rate_503,
            rate_500_after_apply=rate_500_after_apply,
            rate_drop_after_apply=rate_drop_after_apply,
            reject_ids=reject_ids,
            max_body_bytes=max_body_bytes,
            max_identifications=max_identifications,
        )
        self._lock = threading.Lock()
        self._serial = threading.Lock()  # parsing and applying: one request at a time
        self._control = threading.Lock()
        self._store = ProfileStore()
        self._records: list[RequestRecord] = []
        self._applied: list[dict[str, Any]] = []
        self._applied_total = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving in a background thread (a no-op when already running); return self.

        Raises
        ------
        SandboxError
            When the port cannot be bound.

        Examples
        --------
        >>> sb = Sandbox().start()
        >>> sb.running, sb.url.startswith("http://127.0.0.1:")
        (True, True)
        >>> sb.stop()
        >>> sb.running
        False
        """
        with self._control:
            if self._server is not None:
                return self
            port = self._bound_port if self._bound_port is not None else self._requested_port
            try:
                server = _Server(self, port)
            except OSError as exc:
                raise SandboxError(
                    f"the sandbox could not listen on 127.0.0.1:{port}: {exc.strerror or exc}"
                ) from exc
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="amp-pandas-sandbox",
                daemon=True,
            )
            self._server = server
            self._thread = thread
            self._bound_port = server.server_port
            thread.start()
            return self

    def stop(self) -> None:
        """Stop serving: close the port and every open connection, promptly.

        Safe to call while a client is sending: requests in flight that have not been applied
        are dropped without an answer. Profiles and records are kept; :meth:`start` serves them
        again on the same port.
        """
        with self._control:
            server, thread = self._server, self._thread
            if server is None or thread is None:
                return
            server.stopping.set()
            server.shutdown()
            server.server_close()
            thread.join()
            server.close_connections(timeout=2.0)
            self._server = None
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the sandbox is serving."""
        return self._server is not None

    # -- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port served (or, before the first start, the port asked for)."""
        return self._bound_port if self._bound_port is not None else self._requested_port

    def _base(self) -> str:
        if self._bound_port is None:
            raise SandboxError("the sandbox has not been started: call start() or use `with`")
        return f"http://127.0.0.1:{self._bound_port}"

    @property
    def url(self) -> str:
        """The Identify endpoint, e.g. ``http://127.0.0.1:PORT/identify``."""
        return self._base() + IDENTIFY_PATH

    @property
    def http_v2_url(self) -> str:
        """The HTTP V2 endpoint, e.g. ``http://127.0.0.1:PORT/2/httpapi``."""
        return self._base() + HTTP_V2_PATH

    @property
    def api_key(self) -> str:
        """The key this sandbox accepts (not a secret)."""
        return self._api_key

    def __repr__(self) -> str:
        where = (
            f"{self.url}"
            if self._bound_port is not None
            else f"127.0.0.1:{self.port} (never started)"
        )
        state = "running" if self.running else "stopped"
        with self._lock:
            requests_seen = len(self._records)
            applied = self._applied_total
            profiles = len(self._store.profiles)
        return (
            f"<Sandbox {where} {state}: {requests_seen} requests, "
            f"{applied} identifications applied, {profiles} profiles>"
        )

    # -- faults ------------------------------------------------------------------------------

    def set_faults(self, **faults: Any) -> None:
        """Change faults while running (thread-safe).

        Parameters
        ----------
        **faults
            Any of ``latency``, ``rate_503``, ``rate_500_after_apply``,
            ``rate_drop_after_apply``, ``reject_ids``, ``max_body_bytes``,
            ``max_identifications``, and ``seed`` (reseeds the random faults).

        Raises
        ------
        SandboxError
            For an unknown name or an impossible value.

        Examples
        --------
        >>> sb = Sandbox()
        >>> sb.set_faults(rate_503=0.5, reject_ids={"poison-id"})
        >>> sb.faults["rate_503"]
        0.5
        """
        self._faults.set(**faults)

    @property
    def faults(self) -> dict[str, Any]:
        """The current fault settings (a copy)."""
        return self._faults.snapshot()

    def throttle(
        self,
        user_ids: str | Iterable[str] | None = None,
        device_ids: str | Iterable[str] | None = None,
        *,
        requests: int | None = None,
        seconds: float | None = None,
        json_body: bool = True,
    ) -> None:
        """Answer 429 to any request carrying one of these ids; nothing in it is applied.

        Parameters
        ----------
        user_ids, device_ids : str or iterable of str, optional
            The throttled ids (at least one).
        requests : int, optional
            The throttle ends after this many 429 answers.
        seconds : float, optional
            The throttle ends this many seconds after this call. With neither, it lasts until
            :meth:`clear_throttle` (with both, until the first runs out).
        json_body : bool, default True
            Answer with HTTP V2's JSON body ``{"code": 429, "error": "Too many requests for some
            devices and users", "eps_threshold": 30, "throttled_devices": {id: n},
            "throttled_users": {id: n}, "throttled_events": [indexes]}``, naming only the
            throttled ids present in the request (``n``: how many of the request's
            identifications carry that id; Amplitude reports a measured rate instead); else a
            plain-text body.

        Examples
        --------
        >>> sb = Sandbox()
        >>> sb.throttle(user_ids=["user-1"], requests=2)
        >>> sb.clear_throttle()
        """
        self._faults.throttle(
            user_ids, device_ids, requests=requests, seconds=seconds, json_body=json_body
        )

    def clear_throttle(self) -> None:
        """Remove every throttle."""
        self._faults.clear_throttle()

    def reset(self) -> None:
        """Clear profiles, links, records and faults (back to the defaults, RNG reseeded).

        The API key, the port and ``record_identifications`` are kept.

        Examples
        --------
        >>> sb = Sandbox(rate_503=1.0)
        >>> sb.reset()
        >>> sb.faults["rate_503"]
        0.0
        """
        with self._lock:
            self._store.clear()
            self._records = []
            self._applied = []
            self._applied_total = 0
        self._faults.reset()

    # -- inspection --------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered (or dropped), oldest first (a copy).

        Requests the HTTP layer refuses before they reach the sandbox (a malformed request line
        or headers, an unsupported method) are answered but not recorded.

        Examples
        --------
        >>> import requests
        >>> with Sandbox() as sb:
        ...     _ = requests.get(sb.url, params={"api_key": "wrong", "identification": "{}"})
        ...     [(r.method, r.status, r.applied, r.error) for r in sb.requests]
        [('GET', 400, False, 'Invalid API key')]
        """
        with self._lock:
            return list(self._records)

    @property
    def applied(self) -> list[dict[str, Any]]:
        """The identifications applied, in apply order (HTTP V2: the ``$identify`` events).

        Raises
        ------
        SandboxError
            When built with ``record_identifications=False``.

        Examples
        --------
        >>> import requests
        >>> with Sandbox() as sb:
        ...     _ = requests.post(sb.url, data={"api_key": sb.api_key,
        ...                                     "identification": '{"user_id": "user-1"}'})
        ...     sb.applied
        [{'user_id': 'user-1'}]
        """
        if not self._record_identifications:
            raise SandboxError(
                "this sandbox was built with record_identifications=False: use applied_counts()"
            )
        with self._lock:
            return list(self._applied)

    def profile(self, key: str) -> dict[str, Any]:
        """One profile's properties as a dict (a deep copy); ``{}`` when there is none.

        Examples
        --------
        >>> Sandbox().profile("user-1")
        {}
        """
        with self._lock:
            return self._store.profile(key)

    def profiles(self) -> pd.DataFrame:
        """Every profile: index ``id`` (profile key, sorted), one column per property (sorted).

        Absent properties are missing values; list values stay lists.

        Examples
        --------
        >>> Sandbox().profiles().shape
        (0, 0)
        """
        import pandas as pd

        with self._lock:
            snapshot = self._store.snapshot()
        keys = sorted(snapshot)
        columns = sorted({name for props in snapshot.values() for name in props})
        index = pd.Index(keys, name="id", dtype=object)
        if not keys:
            return pd.DataFrame(index=index, columns=pd.Index(columns, dtype=object))
        return pd.DataFrame([snapshot[key] for key in keys], index=index, columns=columns)

    def applied_counts(self) -> pd.Series:
        """How many identifications were applied to each profile key (index ``id``, sorted).

        Examples
        --------
        >>> len(Sandbox().applied_counts())
        0
        """
        import pandas as pd

        with self._lock:
            counts = dict(self._store.counts)
        keys = sorted(counts)
        return pd.Series(
            [counts[key] for key in keys],
            index=pd.Index(keys, name="id", dtype=object),
            name="applied",
            dtype="int64",
        )

    # -- request handling (runs in the server's connection threads) --------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        path, _, query = handler.path.partition("?")
        content_type = handler.headers.get("Content-Type")
        record = {"method": method, "path": path, "content_type": content_type, "bytes": 0}
        self._dispatch(handler, method, path, query, content_type, record)

    def _dispatch(
        self,
        handler: _Handler,
        method: str,
        path: str,
        query: str,
        content_type: str | None,
        record: dict[str, Any],
    ) -> None:
        faults = self._faults
        if handler.headers.get("Transfer-Encoding") is not None:
            self._error(
                handler,
                record,
                411,
                "send a Content-Length (chunked bodies are not supported)",
                close=True,
            )
            return
        try:
            length = int(handler.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self._error(handler, record, 400, "invalid Content-Length", close=True)
            return
        if length > faults.max_body_bytes:
            record["bytes"] = length
            close = length > _DISCARD_LIMIT
            if not close and not self._discard(handler, length):
                handler.close_connection = True
                return
            self._error(
                handler,
                record,
                413,
                f"the body is {length} bytes; the limit is {faults.max_body_bytes}",
                close=close,
            )
            return
        body = handler.rfile.read(length) if length else b""
        if len(body) < length:  # the client went away mid-body
            handler.close_connection = True
            return
        record["bytes"] = len(query) if method == "GET" else length

        if path not in (IDENTIFY_PATH, HTTP_V2_PATH):
            self._error(
                handler,
                record,
                404,
                f"no such endpoint {path!r}: use {IDENTIFY_PATH} or {HTTP_V2_PATH}",
            )
            return
        if method == "GET" and path == HTTP_V2_PATH:
            self._error(handler, record, 405, f"{HTTP_V2_PATH} takes POST only")
            return
        if method == "GET" and len(handler.path) > MAX_URL_BYTES:
            self._error(
                handler,
                record,
                414,
                f"the URL is {len(handler.path)} bytes; the limit is {MAX_URL_BYTES}: use POST",
            )
            return

        latency = faults.latency
        if latency > 0 and handler.server.stopping.wait(latency):
            self._drop(handler, record, applied=False, error="the sandbox stopped")
            return
        if faults.roll("rate_503"):
            self._error(handler, record, 503, "service unavailable (injected fault)")
            return
        # One request at a time from here on, in arrival order. Under the GIL, requests parsed
        # side by side only interleave: each finishes as late as the last, the next ones arrive
        # together again, and the added latency never overlaps the work (measured: ~30k/s at
        # 100 ms against ~45k/s one at a time). No fault sleeps past this point.
        with self._serial, _gc_paused():
            if path == IDENTIFY_PATH:
                self._identify(handler, method, query, body, content_type, record)
            else:
                self._http_v2(handler, body, record)

    def _key_ok(self, key: Any) -> bool:
        return isinstance(key, str) and hmac.compare_digest(
            key.encode("utf-8", "surrogatepass"), self._api_key_bytes
        )

    def _identify(
        self,
        handler: _Handler,
        method: str,
        query: str,
        body: bytes,
        content_type: str | None,
        record: dict[str, Any],
    ) -> None:
        media = content_type_of(content_type)
        params: dict[str, str] | None
        if method == "GET":
            params, problem = parse_urlencoded(query)
        elif media == "multipart/form-data":
            params, problem = parse_multipart(body, content_type or "")
        elif media == "application/x-www-form-urlencoded":
            params, problem = parse_urlencoded(body)
        else:
            # A POST carries its parameters in the body; the query string is not read.
            params, problem = (
                None,
                (
                    "the body must be application/x-www-form-urlencoded or multipart/form-data, "
                    f"not {media or 'missing'}"
                ),
            )
        if params is None:
            self._error(handler, record, 400, problem or "malformed parameters")
            return
        if not self._key_ok(params.get("api_key")):
            self._error(handler, record, 400, "Invalid API key")
            return
        identifications, problem = parse_identification(params.get("identification"))
        if identifications is None:
            self._error(handler, record, 400, problem or "missing_event")
            return
        record["count"] = len(identifications)
        self._keep(record, identifications)
        limit = self._faults.max_identifications
        if len(identifications) > limit:
            self._error(
                handler,
                record,
                413,
                f"{len(identifications)} identifications in one request; the limit is {limit}",
            )
            return
        invalid = first_invalid(identifications, reject_ids=self._faults.reject_ids)
        if invalid is not None:
            self._error(handler, record, 400, self._invalid_message(identifications, invalid))
            return
        if self._throttled(handler, record, identifications):
            return
        if self._apply(handler, record, identifications):
            self._finish(handler, record, 200, b"success", _TEXT)

    def _invalid_message(self, identifications: list[Any], first: int) -> str:
        reject_ids = self._faults.reject_ids
        problem = check_identification(identifications[first], reject_ids=reject_ids)
        assert problem is not None
        others = sum(
            1
            for identification in identifications[first + 1 :]
            if check_identification(identification, reject_ids=reject_ids) is not None
        )
        message = f"identification {first}: {problem[1]}"
        if others:
            message += f" (and {others} more invalid identification{'s' if others > 1 else ''})"
        return message

    def _http_v2(self, handler: _Handler, body: bytes, record: dict[str, Any]) -> None:
        payload, problem = parse_json(body)
        if problem is not None or type(payload) is not dict:
            self._error(
                handler, record, 400, f"Invalid JSON request body: {problem or 'not an object'}"
            )
            return
        if not self._key_ok(payload.get("api_key")):
            # HTTP V2 says "Invalid API key: …"; Amplitude's SDK looks for that prefix to stop.
            self._error(handler, record, 400, "Invalid API key: not this sandbox's key")
            return
        events = payload.get("events")
        if type(events) is not list or not events:
            self._error(
                handler,
                record,
                400,
                "Request missing required field",
                extra={"missing_field": "events"},
            )
            return
        record["count"] = len(events)
        self._keep(record, events)
        limit = self._faults.max_identifications
        if len(events) > limit:
            self._error(
                handler,
                record,
                413,
                f"Payload too large: {len(events)} events; the limit is {limit}",
            )
            return
        options = payload.get("options")
        min_id_length = MIN_ID_LENGTH
        if type(options) is dict:
            asked = options.get("min_id_length")
            if type(asked) is int and asked > 0:
                min_id_length = asked
        reject_ids = self._faults.reject_ids
        invalid: dict[str, list[int]] = {}
        missing: dict[str, list[int]] = {}
        first: str | None = None
        identifies: list[dict[str, Any]] = []
        for index, event in enumerate(events):
            if type(event) is not dict:
                problem2: tuple[str, str] | None = ("event", "is not a JSON object")
            elif type(event.get("event_type")) is not str or not event["event_type"]:
                problem2 = ("event_type", "needs an event_type")
            else:
                is_identify = event["event_type"] == "$identify"
                problem2 = check_identification(
                    event,
                    reject_ids=reject_ids,
                    min_id_length=min_id_length,
                    check_properties=is_identify,
                )
                if problem2 is None and is_identify:
                    identifies.append(event)
            if problem2 is not None:
                field_name, reason = problem2
                if reason.startswith("needs "):
                    missing.setdefault(field_name, []).append(index)
                else:
                    invalid.setdefault(field_name, []).append(index)
                if first is None:
                    first = f"event {index}: {reason}"
        if first is not None:
            extra: dict[str, Any] = {}
            if invalid:
                extra["events_with_invalid_fields"] = invalid
            if missing:
                extra["events_with_missing_fields"] = missing
            self._error(handler, record, 400, f"Invalid events: {first}", extra=extra)
            return
        if self._throttled(handler, record, events):
            return
        if not self._apply(handler, record, identifies):
            return
        answer = {
            "code": 200,
            "events_ingested": len(events),
            "payload_size_bytes": record["bytes"],
            "server_upload_time": int(time.time() * 1000),
        }
        self._finish(handler, record, 200, json.dumps(answer).encode(), _JSON)

    def _keep(self, record: dict[str, Any], identifications: list[Any]) -> None:
        if self._record_identifications:
            record["identifications"] = identifications

    def _throttled(self, handler: _Handler, record: dict[str, Any], items: list[Any]) -> bool:
        hit: ThrottleHit | None = self._faults.throttled(items)
        if hit is None:
            return False
        message = "Too many requests for some devices and users"
        if hit.json_body:
            body = json.dumps(
                {
                    "code": 429,
                    "error": message,
                    "eps_threshold": 30,
                    "throttled_devices": hit.devices,
                    "throttled_users": hit.users,
                    "throttled_events": hit.events,
                }
            ).encode()
            self._finish(handler, record, 429, body, _JSON, error=message)
        else:
            self._finish(handler, record, 429, message.encode(), _TEXT, error=message)
        return True

    def _apply(
        self, handler: _Handler, record: dict[str, Any], identifications: list[dict[str, Any]]
    ) -> bool:
        """Apply under the lock; return whether the caller should still answer 200.

        ``False`` means the request was already dealt with: the sandbox was stopping (nothing
        applied, no answer), or an injected fault answered 500 or dropped the connection after
        applying.
        """
        with self._lock:
            stopping = handler.server.stopping.is_set()
            if not stopping:
                self._store.apply_many(identifications)
                if self._record_identifications:
                    self._applied.extend(identifications)
                self._applied_total += len(identifications)
        if stopping:
            # Stopped before applying: like a server that went down, nothing applied.
            self._drop(handler, record, applied=False, error="the sandbox stopped")
            return False
        record["applied"] = True
        if self._faults.roll("rate_500_after_apply"):
            self._error(handler, record, 500, "internal error after applying (injected fault)")
            return False
        if self._faults.roll("rate_drop_after_apply"):
            self._drop(
                handler,
                record,
                applied=True,
                error="connection dropped after applying (injected fault)",
            )
            return False
        return True

    def _drop(
        self, handler: _Handler, record: dict[str, Any], *, applied: bool, error: str
    ) -> None:
        """Record the request with status ``None`` and close the connection without answering."""
        with self._lock:
            self._records.append(self._make_record(record, None, applied=applied, error=error))
        handler.close_connection = True

    # -- answering ---------------------------------------------------------------------------

    def _make_record(
        self, record: dict[str, Any], status: int | None, *, applied: bool, error: str | None
    ) -> RequestRecord:
        return RequestRecord(
            method=record["method"],
            path=record["path"],
            content_type=record["content_type"],
            bytes=record["bytes"],
            count=record.get("count", 0),
            status=status,
            applied=applied,
            identifications=record.get("identifications"),
            error=error,
        )

    def _error(
        self,
        handler: _Handler,
        record: dict[str, Any],
        status: int,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        close: bool = False,
    ) -> None:
        answer: dict[str, Any] = {"code": status, "error": message}
        if extra:
            answer.update(extra)
        self._finish(
            handler, record, status, json.dumps(answer).encode(), _JSON, error=message, close=close
        )

    def _finish(
        self,
        handler: _Handler,
        record: dict[str, Any],
        status: int,
        body: bytes,
        content_type: str,
        *,
        error: str | None = None,
        close: bool = False,
    ) -> None:
        entry = self._make_record(record, status, applied=record.get("applied", False), error=error)
        with self._lock:
            self._records.append(entry)
        reason = handler.responses.get(status, ("",))[0]
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Server: {handler.server_version}\r\n"
            f"Date: {handler.date_time_string()}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
        )
        if close or handler.close_connection:
            head += "Connection: close\r\n"
            handler.close_connection = True
        handler.wfile.write(head.encode("latin-1") + b"\r\n" + body)

    @staticmethod
    def _discard(handler: _Handler, length: int) -> bool:
        """Read and forget ``length`` bytes of body; ``False`` if the client went away."""
        remaining = length
        while remaining > 0:
            chunk = handler.rfile.read(min(remaining, 65536))
            if not chunk:
                return False
            remaining -= len(chunk)
        return True
