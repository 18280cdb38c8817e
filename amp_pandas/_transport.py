"""One POST, and the one place where ``requests``' exceptions become outcomes.

:func:`post` never raises for a network problem: it returns an :class:`Outcome` whose ``kind``
says what the sender may assume about the request:

``"response"``
    An HTTP answer arrived (``status``, ``body``).
``"not_sent"``
    The request certainly did not reach Amplitude (connection refused, connect timeout, name
    resolution, TLS handshake): nothing was applied. ``retryable`` is False when retrying cannot
    help (a TLS certificate problem, a malformed URL, a closed session).
``"ambiguous"``
    The request may have reached Amplitude and been applied, but no answer came back (read
    timeout, connection reset or closed after the body was sent, a broken answer).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions as u3

__all__ = ["Connection", "Outcome", "new_session", "outcome_from_exception", "post"]

log = logging.getLogger("amp_pandas")

RESPONSE = "response"
NOT_SENT = "not_sent"
AMBIGUOUS = "ambiguous"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one request.

    Attributes
    ----------
    kind : {"response", "not_sent", "ambiguous"}
    status : int or None
        The HTTP status, for ``"response"``.
    body : bytes
        The answer's body (``b""`` without an answer).
    detail : str
        A short human description: ``"HTTP 503"``, ``"connection refused"``, ``"read timeout
        after 30 s"``... Never holds the API key (URLs carry none).
    latency : float
        Seconds from the start of the request to the answer or the error.
    retryable : bool
        For ``"not_sent"``: whether trying again can help.
    """

    kind: str
    status: int | None = None
    body: bytes = b""
    detail: str = ""
    latency: float = 0.0
    retryable: bool = True


def new_session(pool_maxsize: int) -> requests.Session:
    """A keep-alive session whose connection pool holds ``pool_maxsize`` connections per host."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@dataclass(frozen=True)
class Connection:
    """The session one send uses, with the TLS and proxy settings every POST passes.

    Build it with :meth:`open`.
    """

    session: requests.Session
    verify: Any = True
    proxies: dict[str, str] | None = None

    @classmethod
    def open(
        cls, session: requests.Session | None, endpoint: str, pool_maxsize: int
    ) -> Connection:
        """The caller's ``session``, or a new one with a pool of ``pool_maxsize`` connections.

        TLS verification is never turned off: a key must not travel to an unverified host, so
        a session with ``verify=False`` is used with verification on. For a new session, what
        the environment says (proxy variables, ``REQUESTS_CA_BUNDLE``) is read once here:
        ``requests`` would re-read it on every POST (~0.3 ms each).

        Examples
        --------
        >>> conn = Connection.open(None, "http://127.0.0.1:9/identify", 2)
        >>> conn.verify is not False, conn.session.trust_env
        (True, False)
        >>> conn.session.close()
        """
        own = session is None
        if session is None:
            session = new_session(pool_maxsize)
        verify = getattr(session, "verify", True)
        if verify is False or verify is None:
            log.warning("The session has verify=False; amp_pandas sends with TLS verification on.")
            verify = True
        proxies = None
        if own:
            env = session.merge_environment_settings(endpoint, {}, None, verify, None)
            proxies, verify = env["proxies"], env["verify"]
            session.trust_env = False
        return cls(session, verify, proxies)


def post(
    session: requests.Session,
    url: str,
    body: bytes,
    *,
    content_type: str,
    timeout: float,
    verify: Any = True,
    proxies: dict[str, str] | None = None,
) -> Outcome:
    """POST ``body`` to ``url`` and say what happened; never raises for network problems.

    Redirects are not followed: following a 307 would re-post the body (and its key) to a
    place nobody chose. ``proxies`` as in ``requests`` (None: the session's own settings).
    """
    start = time.monotonic()
    try:
        response = session.post(
            url,
            data=body,
            headers={"Content-Type": content_type},
            timeout=timeout,
            verify=verify,
            proxies=proxies,
            allow_redirects=False,
        )
    except requests.exceptions.RequestException as exc:
        return outcome_from_exception(exc, time.monotonic() - start, timeout=timeout)
    return Outcome(
        RESPONSE,
        status=response.status_code,
        body=response.content or b"",
        detail=f"HTTP {response.status_code}",
        latency=time.monotonic() - start,
    )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (``args``, ``reason``, ``__cause__``, ``__context__``)..."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        inner = [getattr(e, "reason", None), e.__cause__, e.__context__, *e.args]
        stack.extend(x for x in inner if isinstance(x, BaseException))


def outcome_from_exception(
    exc: requests.exceptions.RequestException, latency: float = 0.0, *, timeout: float = 0.0
) -> Outcome:
    """Translate a ``requests`` exception into an :class:`Outcome` (the only such place).

    The rule: an error that happened before the request could leave (no connection, no TLS
    session) is ``not_sent``; anything after that point may have been applied and is
    ``ambiguous``; in doubt, ``ambiguous``.
    """

    def out(kind: str, detail: str, retryable: bool = True) -> Outcome:
        return Outcome(kind, detail=detail, latency=latency, retryable=retryable)

    causes = list(_causes(exc))

    def has(*types: type) -> bool:
        return any(isinstance(c, types) for c in causes)

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return out(NOT_SENT, f"connect timeout after {timeout:g} s")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return out(AMBIGUOUS, f"no answer within {timeout:g} s (read timeout)")
    if isinstance(exc, requests.exceptions.SSLError):
        # Certificate and handshake failures happen before the body leaves; retrying the same
        # certificate will not help.
        return out(NOT_SENT, f"TLS error: {_short(exc)}", retryable=False)
    if isinstance(exc, requests.exceptions.ProxyError):
        return out(NOT_SENT, "could not connect through the proxy")
    if isinstance(
        exc,
        (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            requests.exceptions.InvalidHeader,
        ),
    ):
        return out(NOT_SENT, f"invalid request: {_short(exc)}", retryable=False)
    if isinstance(exc, requests.exceptions.ConnectionError):
        if has(u3.ClosedPoolError):
            return out(NOT_SENT, "the session's connection pool is closed", retryable=False)
        if has(u3.ProtocolError):
            # urllib3 raises ProtocolError for a connection that broke while the request was
            # written or the answer awaited: the body may have arrived.
            return out(AMBIGUOUS, "connection closed before an answer arrived")
        if has(u3.NameResolutionError, socket.gaierror):
            return out(NOT_SENT, "could not resolve the server's host name")
        if has(ConnectionRefusedError):
            return out(NOT_SENT, "connection refused")
        if has(u3.NewConnectionError, u3.ConnectTimeoutError):
            return out(NOT_SENT, "could not connect")
        return out(AMBIGUOUS, f"connection error: {_short(exc)}")
    if isinstance(
        exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
    ):
        return out(AMBIGUOUS, "the answer broke off")
    return out(AMBIGUOUS, f"{type(exc).__name__}: {_short(exc)}")


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
