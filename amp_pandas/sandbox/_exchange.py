"""One request in flight: what the sandbox records about it, and how it is answered.

An :class:`Exchange` is made by the HTTP layer for each request and handed to an endpoint. The
endpoint fills in what it learnt (``count``, ``identifications``, ``applied``) and ends the
exchange exactly once: with :meth:`Exchange.finish` (any answer), :meth:`Exchange.error` (a JSON
error body ``{"code": status, "error": reason}``) or :meth:`Exchange.drop` (the connection is
closed without an answer). Each of them records one :class:`RequestRecord`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

__all__ = ["JSON", "TEXT", "Exchange", "RequestRecord"]

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


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
        Identifications (group identifications on ``/groupidentify``, events on HTTP V2) in
        the request; 0 when it could not be parsed.
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


class Exchange:
    """One request being answered.

    Parameters
    ----------
    handler : BaseHTTPRequestHandler
        The connection's handler (its ``wfile`` is written to).
    method, path, query, content_type : str
        The request as received (``query``: the query string, without ``?``).
    stopping : threading.Event
        Set when the sandbox is stopping.
    keep : callable
        Called with each finished :class:`RequestRecord` (the sandbox's record log).
    """

    __slots__ = (
        "applied",
        "body",
        "bytes",
        "content_type",
        "count",
        "handler",
        "identifications",
        "method",
        "path",
        "query",
        "stopping",
        "_keep",
    )

    def __init__(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        path: str,
        query: str,
        content_type: str | None,
        stopping: threading.Event,
        keep: Callable[[RequestRecord], None],
    ) -> None:
        self.handler = handler
        self.method = method
        self.path = path
        self.query = query
        self.content_type = content_type
        self.stopping = stopping
        self._keep = keep
        self.body = b""
        self.bytes = 0
        self.count = 0
        self.identifications: list[Any] | None = None
        self.applied = False

    def _record(self, status: int | None, *, applied: bool, error: str | None) -> None:
        self._keep(
            RequestRecord(
                method=self.method,
                path=self.path,
                content_type=self.content_type,
                bytes=self.bytes,
                count=self.count,
                status=status,
                applied=applied,
                identifications=self.identifications,
                error=error,
            )
        )

    def drop(self, *, applied: bool, error: str) -> None:
        """Record the request with status ``None`` and close the connection without answering."""
        self._record(None, applied=applied, error=error)
        self.handler.close_connection = True

    def error(
        self,
        status: int,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        close: bool = False,
    ) -> None:
        """Answer ``{"code": status, "error": message, **extra}`` as JSON."""
        answer: dict[str, Any] = {"code": status, "error": message}
        if extra:
            answer.update(extra)
        self.finish(status, json.dumps(answer).encode(), JSON, error=message, close=close)

    def finish(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        error: str | None = None,
        close: bool = False,
    ) -> None:
        """Record the request, then write the status line, the headers and ``body``."""
        self._record(status, applied=self.applied, error=error)
        handler = self.handler
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
