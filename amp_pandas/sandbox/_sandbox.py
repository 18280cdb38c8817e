"""The public API of the sandbox: the :class:`Sandbox` object and what it lets you do.

Start and stop it, read its addresses (``url``, ``group_url``, ``http_v2_url``), set faults and
throttles, and read back what it holds: requests, apply logs, user profiles and group profiles.
The HTTP handling lives in :mod:`._server` and each endpoint in a module of its own
(:mod:`._identify`, :mod:`._group_identify`, :mod:`._http_v2`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Self

from amp_pandas.errors import SandboxError

from ._exchange import RequestRecord
from ._faults import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_GROUP_IDENTIFICATIONS,
    DEFAULT_MAX_GROUP_PROPERTIES,
    DEFAULT_MAX_IDENTIFICATIONS,
    Faults,
    GroupsArgument,
)
from ._group_identify import ROUTE as GROUP_IDENTIFY_ROUTE
from ._http_v2 import ROUTE as HTTP_V2_ROUTE
from ._identify import ROUTE as IDENTIFY_ROUTE
from ._rules import GROUP_IDENTIFY_PATH, HTTP_V2_PATH, IDENTIFY_PATH
from ._server import Route, Server
from ._state import State

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["DEFAULT_API_KEY", "ROUTES", "RequestRecord", "Sandbox"]

#: The sandbox's default API key. It is not a secret: it only opens this local sandbox.
DEFAULT_API_KEY = "sandbox-key"

#: The endpoints a sandbox serves.
ROUTES: tuple[Route, ...] = (IDENTIFY_ROUTE, GROUP_IDENTIFY_ROUTE, HTTP_V2_ROUTE)


class Sandbox:
    """A local stand-in for Amplitude's Identify and Group Identify APIs (demos, tests, notebooks).

    A real HTTP server on ``127.0.0.1`` answers ``POST``/``GET /identify``, ``POST
    /groupidentify`` and ``POST /2/httpapi`` by Amplitude's rules, applies accepted
    identifications to per-user profiles and group identifications to per-group profiles,
    records every request, and can inject faults (latency, 503, 500 after applying, dropped
    connections, 429 throttling, poison ids and groups, smaller limits).

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
    reject_groups : mapping of str to str or list of str, optional
        Poison groups, ``{group_type: group_value or [group_values]}``: a group identification
        (or ``$groupidentify`` event) updating one is answered 400, naming it.
    max_group_identifications : int, default 1024
        A ``/groupidentify`` request with more group identifications is answered 413.
    max_group_properties : int, default 1024
        A ``/groupidentify`` request touching more group properties (counted over its
        identifications, one per property named in each operation) is answered 413.
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

    ``POST /groupidentify`` takes the same form fields; each identification is
    ``{"group_type": str, "group_value": str, "group_properties": {...}}``. Refused with 400:
    a group type or value that is missing, not a string, empty or longer than 1024 characters;
    an operation not documented for groups (``$preInsert``, ``$postInsert``, ``$remove``,
    ``$clearAll``); plain properties mixed with operations; the other property rules above.
    Over ``max_group_identifications`` or ``max_group_properties``: 413 (UNCONFIRMED: Amplitude
    documents only 200 and 400 there). Group properties change as user properties do, in their
    own store: read them with :meth:`group_profiles`.

    ``POST /2/httpapi`` takes Amplitude's HTTP V2 JSON body (``api_key``, ``events``,
    ``options``); ``$identify`` events are applied like identifications, ``$groupidentify``
    events (``groups`` and ``group_properties``, as Amplitude's SDKs send a group identify,
    user and device ids optional) update the group profiles, other events are accepted and
    counted only.

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
        reject_groups: GroupsArgument | None = None,
        max_group_identifications: int = DEFAULT_MAX_GROUP_IDENTIFICATIONS,
        max_group_properties: int = DEFAULT_MAX_GROUP_PROPERTIES,
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise SandboxError("api_key must be a non-empty string")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise SandboxError(f"port must be an integer between 0 and 65535, not {port!r}")
        self._requested_port = port
        self._bound_port: int | None = None
        faults = Faults(
            seed,
            latency=latency,
            rate_503=rate_503,
            rate_500_after_apply=rate_500_after_apply,
            rate_drop_after_apply=rate_drop_after_apply,
            reject_ids=reject_ids,
            max_body_bytes=max_body_bytes,
            max_identifications=max_identifications,
            reject_groups=reject_groups,
            max_group_identifications=max_group_identifications,
            max_group_properties=max_group_properties,
        )
        self._state = State(api_key, faults, record_identifications=bool(record_identifications))
        self._faults = faults
        self._lock = self._state.lock
        self._control = threading.Lock()
        self._server: Server | None = None
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
                server = Server(self._state, ROUTES, port)
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
    def group_url(self) -> str:
        """The Group Identify endpoint, e.g. ``http://127.0.0.1:PORT/groupidentify``."""
        return self._base() + GROUP_IDENTIFY_PATH

    @property
    def api_key(self) -> str:
        """The key this sandbox accepts (not a secret)."""
        return self._state.api_key

    def __repr__(self) -> str:
        where = (
            f"{self.url}"
            if self._bound_port is not None
            else f"127.0.0.1:{self.port} (never started)"
        )
        state = "running" if self.running else "stopped"
        held = self._state
        with self._lock:
            requests_seen = len(held.records)
            applied = held.applied_total
            profiles = len(held.users.profiles)
            group_applied = held.group_applied_total
            groups = len(held.groups.profiles)
        groups_text = (
            f", {group_applied} group identifications applied, {groups} groups"
            if group_applied or groups
            else ""
        )
        return (
            f"<Sandbox {where} {state}: {requests_seen} requests, "
            f"{applied} identifications applied, {profiles} profiles{groups_text}>"
        )

    # -- faults ------------------------------------------------------------------------------

    def set_faults(self, **faults: Any) -> None:
        """Change faults while running (thread-safe).

        Parameters
        ----------
        **faults
            Any of ``latency``, ``rate_503``, ``rate_500_after_apply``,
            ``rate_drop_after_apply``, ``reject_ids``, ``reject_groups``, ``max_body_bytes``,
            ``max_identifications``, ``max_group_identifications``, ``max_group_properties``,
            and ``seed`` (reseeds the random faults).

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
        groups: GroupsArgument | None = None,
        requests: int | None = None,
        seconds: float | None = None,
        json_body: bool = True,
    ) -> None:
        """Answer 429 to any request carrying one of these ids or groups; nothing in it is applied.

        Parameters
        ----------
        user_ids, device_ids : str or iterable of str, optional
            The throttled ids.
        groups : mapping of str to str or list of str, optional
            The throttled groups, ``{group_type: group_value or [group_values]}``: a
            ``/groupidentify`` request (or an HTTP V2 request with a ``$groupidentify`` event)
            updating one of them is answered 429 (whether and how Amplitude throttles group
            identifies is UNCONFIRMED). At least one id or group is needed.
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
            plain-text body. A throttled group adds ``"throttled_groups":
            {"group_type:group_value": n}``.

        Examples
        --------
        >>> sb = Sandbox()
        >>> sb.throttle(user_ids=["user-1"], requests=2)
        >>> sb.throttle(groups={"company": ["acme", "globex"]}, seconds=30)
        >>> sb.faults["throttles"]
        2
        >>> sb.clear_throttle()
        """
        self._faults.throttle(
            user_ids,
            device_ids,
            groups=groups,
            requests=requests,
            seconds=seconds,
            json_body=json_body,
        )

    def clear_throttle(self) -> None:
        """Remove every throttle."""
        self._faults.clear_throttle()

    def reset(self) -> None:
        """Clear profiles, group profiles, links, records and faults (defaults, RNG reseeded).

        The API key, the port and ``record_identifications`` are kept.

        Examples
        --------
        >>> sb = Sandbox(rate_503=1.0)
        >>> sb.reset()
        >>> sb.faults["rate_503"]
        0.0
        """
        self._state.clear()
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
            return list(self._state.records)

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
        self._check_recording("applied_counts()")
        with self._lock:
            return list(self._state.applied)

    def profile(self, key: str) -> dict[str, Any]:
        """One profile's properties as a dict (a deep copy); ``{}`` when there is none.

        Examples
        --------
        >>> Sandbox().profile("user-1")
        {}
        """
        with self._lock:
            return self._state.users.profile(key)

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
            snapshot = self._state.users.snapshot()
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
            counts = dict(self._state.users.counts)
        keys = sorted(counts)
        return pd.Series(
            [counts[key] for key in keys],
            index=pd.Index(keys, name="id", dtype=object),
            name="applied",
            dtype="int64",
        )

    def _check_recording(self, instead: str) -> None:
        if not self._state.record_identifications:
            raise SandboxError(
                f"this sandbox was built with record_identifications=False: use {instead}"
            )

    # -- group profiles ----------------------------------------------------------------------

    @property
    def group_applied(self) -> list[dict[str, Any]]:
        """The group identifications applied, in apply order.

        From ``/groupidentify``: the identifications as sent; from HTTP V2: the
        ``$groupidentify`` events.

        Raises
        ------
        SandboxError
            When built with ``record_identifications=False``.

        Examples
        --------
        >>> import requests
        >>> with Sandbox() as sb:
        ...     _ = requests.post(sb.group_url, data={"api_key": sb.api_key, "identification":
        ...         '{"group_type": "company", "group_value": "acme"}'})
        ...     sb.group_applied
        [{'group_type': 'company', 'group_value': 'acme'}]
        """
        self._check_recording("group_applied_counts()")
        with self._lock:
            return list(self._state.group_applied)

    def group_profile(self, group_type: str, group_value: str) -> dict[str, Any]:
        """One group's properties as a dict (a deep copy); ``{}`` when there is none.

        Examples
        --------
        >>> Sandbox().group_profile("company", "acme")
        {}
        """
        with self._lock:
            return self._state.groups.profile(group_type, group_value)

    def group_profiles(self) -> pd.DataFrame:
        """Every group profile: index (``group_type``, ``group_value``), sorted; one column per
        group property (sorted).

        Absent properties are missing values; list values stay lists. A group appears from its
        first applied identification on, even one that set nothing.

        Examples
        --------
        >>> import requests
        >>> with Sandbox() as sb:
        ...     _ = requests.post(sb.group_url, data={"api_key": sb.api_key, "identification":
        ...         '[{"group_type": "company", "group_value": "acme",'
        ...         '  "group_properties": {"$set": {"plan": "pro"}, "$add": {"seats": 3}}}]'})
        ...     frame = sb.group_profiles()
        >>> list(frame.index.names), frame.to_dict("index")
        (['group_type', 'group_value'], {('company', 'acme'): {'plan': 'pro', 'seats': 3}})
        """
        import pandas as pd

        with self._lock:
            snapshot = self._state.groups.snapshot()
        keys = sorted(snapshot)
        columns = sorted({name for props in snapshot.values() for name in props})
        index = pd.MultiIndex.from_tuples(keys, names=["group_type", "group_value"])
        if not keys:
            index = pd.MultiIndex.from_arrays(
                [pd.Index([], dtype=object), pd.Index([], dtype=object)],
                names=["group_type", "group_value"],
            )
            return pd.DataFrame(index=index, columns=pd.Index(columns, dtype=object))
        return pd.DataFrame([snapshot[key] for key in keys], index=index, columns=columns)

    def group_applied_counts(self) -> pd.Series:
        """How many group identifications were applied to each group, indexed like
        :meth:`group_profiles` (sorted).

        Examples
        --------
        >>> len(Sandbox().group_applied_counts())
        0
        """
        import pandas as pd

        with self._lock:
            counts = dict(self._state.groups.counts)
        keys = sorted(counts)
        if keys:
            index = pd.MultiIndex.from_tuples(keys, names=["group_type", "group_value"])
        else:
            index = pd.MultiIndex.from_arrays(
                [pd.Index([], dtype=object), pd.Index([], dtype=object)],
                names=["group_type", "group_value"],
            )
        return pd.Series([counts[key] for key in keys], index=index, name="applied", dtype="int64")
