"""Where and how to send: the endpoint, the API key (kept secret) and the sending options.

Everything here is checked before any request is made, so that a typo fails at once with a message
that says what to change, not half-way through a send.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import numbers
import os
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

import requests

from ._amplitude import ENDPOINTS, GROUP_IDENTIFY_PATH, IDENTIFY_PATH
from ._amplitude import MAX_IDENTIFICATIONS as MAX_BATCH_SIZE
from ._amplitude import REGIONS as HOSTS
from ._secret import Secret
from .errors import ConfigurationError, InsecureEndpointError, MissingApiKeyError

__all__ = [
    "API_KEY_ENV",
    "EU_URL",
    "OPTION_NAMES",
    "REGIONS",
    "STANDARD_URL",
    "Secret",
    "SendSettings",
    "require_key",
    "resolve_settings",
]

STANDARD_URL = ENDPOINTS["standard"]
EU_URL = ENDPOINTS["eu"]
REGIONS = ENDPOINTS
API_KEY_ENV = "AMPLITUDE_API_KEY"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# name: (integer?, lowest, highest, what it is) -- the one table the checks and messages use.
# ``timeout`` must be above 0; ``throttle_budget`` may be ``math.inf`` (never give up).
_NUMERIC_OPTIONS: dict[str, tuple[bool, float, float, str]] = {
    "batch_size": (True, 1, MAX_BATCH_SIZE, "identifications per request"),
    "max_workers": (True, 1, 64, "requests in flight at once"),
    "timeout": (False, 0, math.inf, "seconds to wait for a connection or an answer"),
    "throttle_pause": (False, 0, math.inf, "seconds a throttled id is paused"),
    "throttle_budget": (False, 0, math.inf, "seconds a row may stay throttled"),
    "max_retries": (True, 0, 100, "retries of a request that failed or had no clear answer"),
    "backoff": (False, 0, math.inf, "first retry delay in seconds"),
    "backoff_max": (False, 0, math.inf, "longest retry delay in seconds"),
    "interrupt_grace": (False, 0, math.inf, "seconds to wait for answers after Ctrl-C"),
}
_BOOL_OPTIONS = ("retry_ambiguous", "progress")


@dataclass(frozen=True)
class SendSettings:
    """How a plan is sent. Build it with :func:`resolve_settings`; every field is checked.

    Attributes
    ----------
    endpoint : str
        The Identify API URL.
    api_key : Secret or None
        The project API key; ``None`` is fine for dry runs (sending needs one).
    session : requests.Session or None
        The session to send with; one with a pool of ``max_workers`` connections is made per
        send when ``None``.
    batch_size : int, default 1000
        Identifications per request, 1 to 2000 (bodies also stay under 1 MB).
    max_workers : int, default 6
        Requests in flight at once.
    timeout : float, default 30
        Seconds to wait for a connection, and for an answer.
    throttle_pause : float, default 15
        Seconds an id that Amplitude throttled (HTTP 429) is paused before it is retried.
    throttle_budget : float, default 600
        Seconds a row may stay throttled before it ends ``throttled``.
    retry_ambiguous : bool, default False
        Retry rows holding ``$add``/``$append``/``$prepend`` after an outcome that may have
        been applied (HTTP 500/502/504, timeout, dropped connection) — they may apply twice.
    max_retries : int, default 6
        Retries of a request after a not-applied failure (503, connection refused) or an
        ambiguous one.
    backoff, backoff_max : float, default 0.5 and 30
        Exponential backoff with full jitter: the n-th retry waits up to
        ``min(backoff_max, backoff * 2**n)`` seconds.
    interrupt_grace : float, default 5
        After Ctrl-C, seconds to wait for answers to requests already in flight.
    progress : bool, default True
        Show a progress bar.
    """

    endpoint: str
    api_key: Secret | None
    session: requests.Session | None = field(default=None, compare=False)
    batch_size: int = 1000
    max_workers: int = 6
    timeout: float = 30.0
    throttle_pause: float = 15.0
    throttle_budget: float = 600.0
    retry_ambiguous: bool = False
    max_retries: int = 6
    backoff: float = 0.5
    backoff_max: float = 30.0
    interrupt_grace: float = 5.0
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.api_key, str):
            object.__setattr__(self, "api_key", _as_secret(self.api_key))
        elif self.api_key is not None and not isinstance(self.api_key, Secret):
            raise ConfigurationError(f"api_key must be a str, got {type(self.api_key).__name__}")
        object.__setattr__(self, "endpoint", check_endpoint(self.endpoint))
        if self.session is not None and not callable(getattr(self.session, "post", None)):
            raise ConfigurationError(
                f"session must be a requests.Session, got {type(self.session).__name__}"
            )
        for name, (integer, low, high, what) in _NUMERIC_OPTIONS.items():
            value = getattr(self, name)
            if integer:
                ok = _is_int(value) and low <= value <= high
                span = f"an integer from {low} to {high}"
            else:
                ok = _is_real(value) and not math.isnan(value) and value >= low
                ok = ok and (value != math.inf or name == "throttle_budget")
                ok = ok and (value > 0 or name != "timeout")
                span = "a number above 0" if name == "timeout" else "a number ≥ 0"
            if not ok:
                raise ConfigurationError(f"{name} ({what}) must be {span}; got {value!r}")
            object.__setattr__(self, name, int(value) if integer else float(value))
        for name in _BOOL_OPTIONS:
            value = getattr(self, name)
            if not isinstance(value, (bool, _np_bool())):
                raise ConfigurationError(f"{name} must be True or False; got {value!r}")
            object.__setattr__(self, name, bool(value))


def _np_bool() -> type:
    import numpy as np

    return np.bool_


#: The sending options ``resolve_settings`` accepts as keywords.
OPTION_NAMES = tuple(
    f.name for f in fields(SendSettings) if f.name not in ("endpoint", "api_key", "session")
)


def _as_secret(value: str, source: str = "api_key") -> Secret | None:
    """The key without surrounding whitespace, or None when it is empty.

    A key with whitespace or an invisible character inside is refused: it is always a paste
    gone wrong (two keys, a line break, a zero-width space), and Amplitude would reject every
    request. The message never shows the key.
    """
    value = value.strip()
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigurationError(
            f"{source} holds whitespace or an invisible character inside it; an Amplitude API "
            "key is one word. Check for a space or line break pasted with it (the key is not "
            "shown here)."
        )
    return Secret(value) if value else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: Any) -> str:
    """The URL, stripped, if it is an ``https://`` URL or ``http://`` to a loopback host.

    Examples
    --------
    >>> check_endpoint("http://127.0.0.1:8080/identify")
    'http://127.0.0.1:8080/identify'
    >>> check_endpoint("http://example.com/identify")
    Traceback (most recent call last):
    ...
    amp_pandas.errors.InsecureEndpointError: Refusing to send the API key over plain http:// \
to example.com: use https://, or http:// only to this machine (localhost, 127.0.0.1, ::1).
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"server_url must be a str, got {type(url).__name__}")
    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError as exc:
        raise ConfigurationError(f"server_url is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        raise ConfigurationError(
            "server_url must be a full http(s) URL such as "
            f"'https://api2.amplitude.com/identify'; got {url!r}"
        )
    from urllib3.util import parse_url  # the parser requests dials with

    try:
        dialled = (parse_url(url).host or "").strip("[]").lower()
    except ValueError as exc:
        raise ConfigurationError(f"server_url is not a valid URL: {exc}") from None
    if "\\" in url or "@" in parts.netloc or any(ord(c) < 33 for c in url) or (
        dialled != host.lower()
    ):
        # Parsers disagree on such URLs (urllib reads the host after "\\@", requests before
        # it). An endpoint never needs credentials, backslashes or spaces: refuse them, so the
        # host checked here is the host the key would go to.
        lead = "over plain http:// " if scheme == "http" else ""
        raise InsecureEndpointError(
            f"Refusing to send the API key {lead}to {dialled or host}: server_url holds "
            "credentials ('@'), a backslash or whitespace, so its host is ambiguous. Give the "
            "plain endpoint URL: use https://, or http:// only to this machine (localhost, "
            "127.0.0.1, ::1)."
        )
    if scheme == "http" and not _is_loopback(host.lower()):
        raise InsecureEndpointError(
            f"Refusing to send the API key over plain http:// to {host}: use https://, "
            "or http:// only to this machine (localhost, 127.0.0.1, ::1)."
        )
    return url


def resolve_settings(
    *,
    api_key: str | Secret | None = None,
    region: str = "standard",
    server_url: str | None = None,
    session: requests.Session | None = None,
    path: str = IDENTIFY_PATH,
    **options: Any,
) -> SendSettings:
    """Check and assemble the sending settings.

    Parameters
    ----------
    api_key : str, optional
        The project API key; defaults to the ``AMPLITUDE_API_KEY`` environment variable. A
        missing key is fine here (dry runs need none); :func:`require_key` checks it before
        a send.
    region : {"standard", "eu"}
        Selects ``STANDARD_URL`` or ``EU_URL``.
    server_url : str, optional
        A full endpoint URL that overrides ``region``. Plain ``http://`` only to loopback hosts.
    session : requests.Session, optional
        The session to send with.
    path : str, default "/identify"
        The API's path on the region's host (``"/groupidentify"`` for group identifications);
        ``server_url`` is taken as the full URL and ignores it.
    **options
        Any of ``batch_size``, ``max_workers``, ``timeout``, ``throttle_pause``,
        ``throttle_budget``, ``retry_ambiguous``, ``max_retries``, ``backoff``,
        ``backoff_max``, ``interrupt_grace``, ``progress`` (see :class:`SendSettings`).

    Raises
    ------
    TypeError
        An unknown option (with the closest known one).
    amp_pandas.errors.ConfigurationError
        An unknown region, a key with whitespace inside, a value of the wrong type, or an
        option out of range.
    amp_pandas.errors.InsecureEndpointError
        ``http://`` to a host that is not loopback.

    Examples
    --------
    >>> s = resolve_settings(api_key="0123456789abcdef01231a2b", region="eu", batch_size=500)
    >>> s.endpoint, s.batch_size, s.api_key
    ('https://api.eu.amplitude.com/identify', 500, Secret('•••• 1a2b'))
    """
    unknown = [name for name in options if name not in OPTION_NAMES]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(
            f"unexpected keyword argument{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
            f"the sending options are {', '.join(OPTION_NAMES)}"
        )
    regions = ", ".join(map(repr, REGIONS))
    if not isinstance(region, str):
        raise ConfigurationError(
            f"region must be a str, one of {regions}; got {type(region).__name__}. "
            "To send elsewhere (e.g. a sandbox), pass server_url=."
        )
    region_key = region.strip().lower()
    if region_key not in REGIONS:
        raise ConfigurationError(
            f"region must be one of {regions}; got {region!r}. "
            "To send elsewhere (e.g. a sandbox), pass server_url=."
        )
    if isinstance(api_key, Secret):
        key: Secret | None = api_key
    elif api_key is None:
        env = os.environ.get(API_KEY_ENV)
        key = _as_secret(env, API_KEY_ENV) if env else None
    elif isinstance(api_key, str):
        key = _as_secret(api_key)
    else:
        raise ConfigurationError(
            f"api_key must be a str (or None to read {API_KEY_ENV}), got {type(api_key).__name__}"
        )
    endpoint = HOSTS[region_key] + path if server_url is None else server_url
    if server_url is not None:
        _check_api_path(server_url, path)
    return SendSettings(endpoint=endpoint, api_key=key, session=session, **options)


_API_NAMES = {IDENTIFY_PATH: "Identify API", GROUP_IDENTIFY_PATH: "Group Identify API"}


def _check_api_path(server_url: Any, path: str) -> None:
    """Refuse a ``server_url`` that ends in another API's path (``/identify`` given to
    ``group_identify``, or the other way round): every request would be refused, row by row.

    Examples
    --------
    >>> _check_api_path("http://127.0.0.1:8080/groupidentify", "/groupidentify")
    >>> try:
    ...     _check_api_path("http://127.0.0.1:8080/identify", "/groupidentify")
    ... except ConfigurationError as exc:
    ...     print(str(exc).split(": ")[0])
    server_url http://127.0.0.1:8080/identify is the Identify API's URL, but these are sent to \
the Group Identify API
    """
    if not isinstance(server_url, str):
        return  # SendSettings says what is wrong with it
    try:
        url_path = urlsplit(server_url.strip()).path.rstrip("/")
    except ValueError:
        return
    for other, name in _API_NAMES.items():
        if other != path and url_path.endswith(other):
            hint = " (a sandbox's group_url)" if path == GROUP_IDENTIFY_PATH else ""
            raise ConfigurationError(
                f"server_url {server_url.strip()} is the {name}'s URL, but these are sent to the "
                f"{_API_NAMES.get(path, path)}: give its URL, ending in {path}{hint}"
            )


def require_key(settings: SendSettings) -> str:
    """The revealed API key, or :class:`~amp_pandas.errors.MissingApiKeyError`."""
    if settings.api_key is None:
        raise MissingApiKeyError(
            "No Amplitude API key: pass api_key=... or set the AMPLITUDE_API_KEY environment "
            "variable. (A dry run, dry_run=True, needs no key.)"
        )
    return settings.api_key.reveal()
