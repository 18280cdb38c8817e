"""The ``df.amplitude`` accessor: checks nothing itself, keeps no state, delegates."""

from __future__ import annotations

import os
import typing
from collections.abc import Hashable, Mapping, Sequence
from typing import overload

import pandas as pd
import requests

from ._group_identify import group_identify
from ._identify import Columns, IdColumn, RemovedMode, identify
from ._preview import GroupIdentifyPreview, IdentifyPreview
from ._result import SendResult
from ._spec import NullPolicy

__all__ = ["AmplitudeAccessor"]


@pd.api.extensions.register_dataframe_accessor("amplitude")
class AmplitudeAccessor:
    """Amplitude operations on a DataFrame, available as ``df.amplitude`` after
    ``import amp_pandas``.

    The accessor is stateless and never changes the DataFrame.
    """

    def __init__(self, pandas_obj: pd.DataFrame) -> None:
        self._obj = pandas_obj

    @overload
    def identify(
        self,
        *,
        user_id: IdColumn = ...,
        device_id: IdColumn = ...,
        set: Columns = ...,
        set_once: Columns = ...,
        add: Columns = ...,
        append: Columns = ...,
        prepend: Columns = ...,
        pre_insert: Columns = ...,
        post_insert: Columns = ...,
        remove: Columns = ...,
        unset: str | Sequence[str] | None = ...,
        groups: Mapping[str, Hashable] | None = ...,
        fields: Mapping[str, Hashable] | None = ...,
        nulls: NullPolicy = ...,
        dry_run: typing.Literal[True],
        api_key: str | None = ...,
        region: str = ...,
        server_url: str | None = ...,
        session: requests.Session | None = ...,
        batch_size: int = ...,
        max_workers: int = ...,
        timeout: float = ...,
        throttle_pause: float = ...,
        throttle_budget: float = ...,
        retry_ambiguous: bool = ...,
        max_retries: int = ...,
        backoff: float = ...,
        backoff_max: float = ...,
        interrupt_grace: float = ...,
        progress: bool = ...,
        sync: str | None = ...,
        ledger: str | os.PathLike[str] | None = ...,
        removed: RemovedMode = ...,
    ) -> IdentifyPreview: ...

    @overload
    def identify(
        self,
        *,
        user_id: IdColumn = ...,
        device_id: IdColumn = ...,
        set: Columns = ...,
        set_once: Columns = ...,
        add: Columns = ...,
        append: Columns = ...,
        prepend: Columns = ...,
        pre_insert: Columns = ...,
        post_insert: Columns = ...,
        remove: Columns = ...,
        unset: str | Sequence[str] | None = ...,
        groups: Mapping[str, Hashable] | None = ...,
        fields: Mapping[str, Hashable] | None = ...,
        nulls: NullPolicy = ...,
        dry_run: typing.Literal[False] = ...,
        api_key: str | None = ...,
        region: str = ...,
        server_url: str | None = ...,
        session: requests.Session | None = ...,
        batch_size: int = ...,
        max_workers: int = ...,
        timeout: float = ...,
        throttle_pause: float = ...,
        throttle_budget: float = ...,
        retry_ambiguous: bool = ...,
        max_retries: int = ...,
        backoff: float = ...,
        backoff_max: float = ...,
        interrupt_grace: float = ...,
        progress: bool = ...,
        sync: str | None = ...,
        ledger: str | os.PathLike[str] | None = ...,
        removed: RemovedMode = ...,
    ) -> SendResult: ...

    @overload
    def identify(
        self,
        *,
        user_id: IdColumn = ...,
        device_id: IdColumn = ...,
        set: Columns = ...,
        set_once: Columns = ...,
        add: Columns = ...,
        append: Columns = ...,
        prepend: Columns = ...,
        pre_insert: Columns = ...,
        post_insert: Columns = ...,
        remove: Columns = ...,
        unset: str | Sequence[str] | None = ...,
        groups: Mapping[str, Hashable] | None = ...,
        fields: Mapping[str, Hashable] | None = ...,
        nulls: NullPolicy = ...,
        dry_run: bool = ...,
        api_key: str | None = ...,
        region: str = ...,
        server_url: str | None = ...,
        session: requests.Session | None = ...,
        batch_size: int = ...,
        max_workers: int = ...,
        timeout: float = ...,
        throttle_pause: float = ...,
        throttle_budget: float = ...,
        retry_ambiguous: bool = ...,
        max_retries: int = ...,
        backoff: float = ...,
        backoff_max: float = ...,
        interrupt_grace: float = ...,
        progress: bool = ...,
        sync: str | None = ...,
        ledger: str | os.PathLike[str] | None = ...,
        removed: RemovedMode = ...,
    ) -> IdentifyPreview | SendResult: ...

    def identify(
        self,
        *,
        user_id: IdColumn = None,
        device_id: IdColumn = None,
        set: Columns = None,
        set_once: Columns = None,
        add: Columns = None,
        append: Columns = None,
        prepend: Columns = None,
        pre_insert: Columns = None,
        post_insert: Columns = None,
        remove: Columns = None,
        unset: str | Sequence[str] | None = None,
        groups: Mapping[str, Hashable] | None = None,
        fields: Mapping[str, Hashable] | None = None,
        nulls: NullPolicy = "skip",
        dry_run: bool = False,
        api_key: str | None = None,
        region: str = "standard",
        server_url: str | None = None,
        session: requests.Session | None = None,
        batch_size: int = 1000,
        max_workers: int = 6,
        timeout: float = 30.0,
        throttle_pause: float = 15.0,
        throttle_budget: float = 600.0,
        retry_ambiguous: bool = False,
        max_retries: int = 6,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        interrupt_grace: float = 5.0,
        progress: bool = True,
        sync: str | None = None,
        ledger: str | os.PathLike[str] | None = None,
        removed: RemovedMode = "keep",
    ) -> IdentifyPreview | SendResult:
        """Turn rows into Amplitude Identify API identifications; preview or send them.

        Each row becomes one identification. Columns (or :func:`~amp_pandas.literal`
        constants) feed the ids, user-property operations, groups and top-level fields.
        Every row is checked before anything is sent.

        Parameters
        ----------
        user_id, device_id : column label or literal, optional
            The id columns; at least one. Integer ids are sent as strings (``12345`` ->
            ``"12345"``, also from float columns holding whole numbers). With ``MultiIndex``
            columns, name a column by its full tuple: ``user_id=("ids", "uid")``.
        set, set_once, add, append, prepend, pre_insert, post_insert, remove : list or dict
            Columns for ``$set``, ``$setOnce``, ``$add``, ``$append``, ``$prepend``,
            ``$preInsert``, ``$postInsert`` and ``$remove``: a list of column labels (the
            property is named after the column), one column label, or a dict
            ``{property: column label or literal}``. ``$add`` takes numbers only. A tuple is a
            column label when the frame's columns hold it; such a column needs the dict form
            (``set={"plan": ("profile", "plan")}``), since a tuple names no property.
        unset : str or list of str, optional
            Property names removed on every row (``{"$unset": {name: "-"}}``).
        groups : dict, optional
            ``{group type: column label or literal}``; a cell is a group name or a list of them.
        fields : dict, optional
            Documented top-level keys (``platform``, ``country``, ``app_version`` ...) to a
            column label or literal. Values are sent as strings.
        nulls : {"skip", "unset", "error"}, default "skip"
            Missing cells (None, NaN, NaT, pd.NA): ``"skip"`` leaves the property out of that
            row (Amplitude ignores nulls anyway); ``"unset"`` sends ``$unset`` for it when it
            came from ``set``/``set_once``; ``"error"`` makes the row invalid.
        dry_run : bool, default False
            ``True`` returns an :class:`~amp_pandas.IdentifyPreview` instead of sending; it
            needs no key. ``True`` or ``False`` only (a numpy bool too).
        api_key : str, optional
            The project API key; defaults to the ``AMPLITUDE_API_KEY`` environment variable.
            Surrounding whitespace is dropped; whitespace inside is refused. It travels only in
            request bodies and is never shown.
        region : {"standard", "eu"}, default "standard"
            ``https://api2.amplitude.com/identify`` or ``https://api.eu.amplitude.com/identify``.
        server_url : str, optional
            A full endpoint URL overriding ``region`` (e.g. a :class:`~amp_pandas.sandbox.Sandbox`'s
            ``url``). Plain ``http://`` only for loopback hosts.
        session : requests.Session, optional
            The session to send with (connection pooling, proxies, custom TLS settings).
        batch_size : int, default 1000
            Identifications per request, 1 to 2000 (request bodies also stay under 1 MB).
        max_workers : int, default 6
            Requests in flight at once, 1 to 64.
        timeout : float, default 30
            Seconds to wait for a connection, and for an answer (above 0).
        throttle_pause : float, default 15
            Seconds an id that Amplitude throttled (HTTP 429) waits before it is retried.
        throttle_budget : float, default 600
            Seconds a row may stay throttled before it ends ``throttled`` (``math.inf``: never).
        retry_ambiguous : bool, default False
            Also retry rows holding ``$add``/``$append``/``$prepend`` after an answer that may
            have been applied (HTTP 500/502/504, timeout, dropped connection): they may apply
            twice.
        max_retries : int, default 6
            Retries of a request after 503, a refused connection or an ambiguous answer (0-100).
        backoff, backoff_max : float, default 0.5 and 30
            Retry delays in seconds: the n-th retry waits up to
            ``min(backoff_max, backoff * 2**n)`` (full jitter).
        interrupt_grace : float, default 5
            After Ctrl-C, seconds to wait for answers to the requests in flight.
        progress : bool, default True
            Show a progress bar.
        sync : str, optional
            A job name: turns the sync ledger on. Per user (its ``user_id``, else its
            ``device_id``) the ledger remembers what this job last sent and how it ended; a
            user whose identifications are byte for byte those last acknowledged is not sent
            (its rows end ``unchanged``), and a user whose last send may have been applied is
            sent again only if every row is idempotent (else ``unknown``; ``retry_ambiguous``
            sends it anyway). A job is its name, the endpoint and the API key. See the
            README's "Sync".
        ledger : str or os.PathLike, optional
            The ledger file (SQLite) of a sync run; default ``$AMP_PANDAS_LEDGER``, else
            ``amp_pandas/ledger.sqlite3`` in the user's data directory.
        removed : {"keep", "revert"}, default "keep"
            What a sync run does with users its job sent before that are absent now: leave
            them (``"keep"``), or send each one identification that undoes the job's effect
            (``"revert"``: ``$unset`` of what it set, ``$remove`` of the list values it added;
            ``$add`` cannot be undone). They are listed in ``result.removed``.

        Returns
        -------
        IdentifyPreview or SendResult
            With ``dry_run=True`` the preview; otherwise the result, a
            :class:`~amp_pandas.SendResult` (a ``pandas.DataFrame``): one row per input row
            (same index) with ``status`` (``success``, ``invalid``, ``skipped``, ``failed``,
            ``throttled``, ``unknown``, ``not_sent`` or, for a sync run, ``unchanged``),
            ``http_status``, ``error`` and ``attempts``; for a sync run ``result.removed``
            lists the removed users.

        Raises
        ------
        TypeError
            An unknown keyword argument (a misspelt option), as for any Python function.
        amp_pandas.errors.ArgumentError
            At once, for arguments that cannot work (unknown column, no id, unknown field,
            a property in two operations, a bad ``nulls`` or ``dry_run``, a value of the wrong
            type); the message names the argument.
        amp_pandas.errors.ConfigurationError
            Before any request: no API key, an unknown region, ``http://`` to a remote host,
            a sending option out of range or of the wrong type.
        amp_pandas.errors.AuthenticationError
            Amplitude rejected the key; ``.result`` holds the partial result.
        amp_pandas.errors.LedgerError
            A sync run's ledger is damaged, newer, cannot be written, or another run of the job
            is sending (:class:`~amp_pandas.errors.LedgerLockedError`): before anything is
            sent.

        ``ArgumentError`` and ``ConfigurationError`` are both ``ValueError`` subclasses.

        Examples
        --------
        >>> import pandas as pd
        >>> import amp_pandas
        >>> from amp_pandas import literal
        >>> df = pd.DataFrame({
        ...     "uid": ["user-1", "user-2"],
        ...     "plan": ["pro", "free"],
        ...     "logins": [3, 1],
        ...     "signup": pd.to_datetime(["2024-01-05 00:00", "2024-02-11 08:30"]),
        ... })
        >>> preview = df.amplitude.identify(
        ...     user_id="uid", set=["plan"], set_once={"first_seen": "signup"},
        ...     add={"login_count": "logins"}, post_insert={"tags": literal("spring-promo")},
        ...     dry_run=True)
        >>> preview.payloads[1]["user_properties"]
        {'$set': {'plan': 'free'}, '$setOnce': {'first_seen': '2024-02-11T08:30:00'}, \
'$add': {'login_count': 1}, '$postInsert': {'tags': 'spring-promo'}}

        Sending to the bundled sandbox:

        >>> from amp_pandas.sandbox import Sandbox
        >>> with Sandbox() as sb:
        ...     result = df.amplitude.identify(user_id="uid", set=["plan"], server_url=sb.url,
        ...                                    api_key=sb.api_key, progress=False)
        ...     profiles = sb.profiles()
        >>> result.status.tolist(), profiles.loc["user-1", "plan"]
        (['success', 'success'], 'pro')

        A sync job remembers what it sent: run again, it sends only what changed:

        >>> import os, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> job = dict(user_id="uid", set=["plan"], sync="plans", progress=False,
        ...            ledger=os.path.join(tmp.name, "ledger.sqlite3"))
        >>> with Sandbox() as sb:
        ...     first = df.amplitude.identify(**job, server_url=sb.url, api_key=sb.api_key)
        ...     again = df.amplitude.identify(**job, server_url=sb.url, api_key=sb.api_key)
        ...     sent_again = len(sb.requests) - 1
        >>> first.status.tolist(), again.status.tolist(), sent_again
        (['success', 'success'], ['unchanged', 'unchanged'], 0)
        >>> tmp.cleanup()
        """
        return identify(
            self._obj,
            user_id=user_id,
            device_id=device_id,
            set=set,
            set_once=set_once,
            add=add,
            append=append,
            prepend=prepend,
            pre_insert=pre_insert,
            post_insert=post_insert,
            remove=remove,
            unset=unset,
            groups=groups,
            fields=fields,
            nulls=nulls,
            dry_run=dry_run,
            api_key=api_key,
            region=region,
            server_url=server_url,
            session=session,
            batch_size=batch_size,
            max_workers=max_workers,
            timeout=timeout,
            throttle_pause=throttle_pause,
            throttle_budget=throttle_budget,
            retry_ambiguous=retry_ambiguous,
            max_retries=max_retries,
            backoff=backoff,
            backoff_max=backoff_max,
            interrupt_grace=interrupt_grace,
            progress=progress,
            sync=sync,
            ledger=ledger,
            removed=removed,
        )

    def group_identify(
        self,
        *,
        group_type: Hashable = None,
        group_value: Hashable = None,
        set: Columns = None,
        set_once: Columns = None,
        add: Columns = None,
        append: Columns = None,
        prepend: Columns = None,
        unset: str | Sequence[str] | None = None,
        nulls: NullPolicy = "skip",
        dry_run: bool = False,
        sync: str | None = None,
        api_key: str | None = None,
        region: str = "standard",
        server_url: str | None = None,
        session: requests.Session | None = None,
        batch_size: int = 1000,
        max_workers: int = 6,
        timeout: float = 30.0,
        throttle_pause: float = 15.0,
        throttle_budget: float = 600.0,
        retry_ambiguous: bool = False,
        max_retries: int = 6,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        interrupt_grace: float = 5.0,
        progress: bool = True,
        pre_insert: Columns = None,
        post_insert: Columns = None,
        remove: Columns = None,
        ledger: str | os.PathLike[str] | None = None,
        removed: RemovedMode = "keep",
    ) -> GroupIdentifyPreview | SendResult:
        """Set group properties (accounts, companies, workspaces) with Amplitude's Group
        Identify API; preview or send them.

        Each row becomes one group identification ``{"group_type", "group_value",
        "group_properties"}``, posted to ``/groupidentify``. The operations, type rules,
        literals, null policy, checks, preview and sending are those of :meth:`identify`; a
        group's rows are sent in row order, one request at a time. Amplitude applies group
        properties only with its Accounts add-on, and to future events only.

        Parameters
        ----------
        group_type : str, column label or literal
            The group type: a column of the frame when it has one of that name, else (a
            ``str``) the type of every row; ``literal("company")`` is always a constant.
        group_value : column label or literal
            The group value (name or id) of each row. Integers are sent as strings; floats
            only when whole and exact (below 2**53). Type and value must be present, not
            blank, and at most 1024 characters.
        set, set_once, add, append, prepend : list or dict
            Columns for ``$set``, ``$setOnce``, ``$add``, ``$append`` and ``$prepend``, as in
            :meth:`identify`. A row may touch at most 1024 group properties (one per name in
            each operation): Amplitude's limit per request, which the sender also keeps.
        unset : str or list of str, optional
            Group property names removed on every row.
        nulls : {"skip", "unset", "error"}, default "skip"
            As in :meth:`identify`.
        dry_run : bool, default False
            ``True`` returns a :class:`~amp_pandas.GroupIdentifyPreview` instead of sending.
        sync : str, optional
            A job name: turns the sync ledger on, as in :meth:`identify`, keyed by group (its
            type and value): a group whose identifications are byte for byte those last
            acknowledged is not sent (its rows end ``unchanged``); one whose last send may
            have been applied is sent again only if every row is idempotent. A group job is
            separate from a user job of the same name (another endpoint). See the README's
            "Sync".
        ledger : str or os.PathLike, optional
            The ledger file of a sync run, as in :meth:`identify`.
        removed : {"keep", "revert"}, default "keep"
            What a sync run does with groups its job sent before that are absent now: leave
            them (``"keep"``), or send each one group identification that ``$unset`` s the
            properties the job set (``"revert"``). Values added by ``$append`` and
            ``$prepend`` stay (groups have no ``$remove``), as do ``$add`` amounts: both are
            listed in ``not_undone``. They are listed in ``result.removed`` (columns
            ``group_type``, ``group_value``, ``identification``, ``status``, ``error``,
            ``not_undone``).
        api_key, session, max_workers, timeout : optional
            As in :meth:`identify`.
        throttle_pause, throttle_budget : float, default 15 and 600
            As in :meth:`identify`; a 429 naming throttled groups pauses those groups only.
        retry_ambiguous, max_retries, backoff, backoff_max, interrupt_grace, progress : optional
            As in :meth:`identify`.
        region : {"standard", "eu"}, default "standard"
            ``https://api2.amplitude.com/groupidentify`` or
            ``https://api.eu.amplitude.com/groupidentify``.
        server_url : str, optional
            The full Group Identify URL, overriding ``region`` (e.g. a sandbox's
            ``group_url``, which ends in ``/groupidentify``).
        batch_size : int, default 1000
            Group identifications per request, 1 to 1024 (Amplitude's limit); requests also
            stay under 1024 group properties and 1 MB.
        pre_insert, post_insert, remove
            Refused with an :class:`~amp_pandas.errors.ArgumentError`: Amplitude does not
            document ``$preInsert``, ``$postInsert`` and ``$remove`` for group properties.

        Returns
        -------
        GroupIdentifyPreview or SendResult
            The preview with ``dry_run=True``; otherwise the result, one row per input row
            (same index): ``status``, ``http_status``, ``error``, ``attempts``; for a sync
            run ``result.removed`` lists the removed groups.

        Raises
        ------
        amp_pandas.errors.ArgumentError
            Arguments that cannot work (unknown column, no group type or value, a refused
            operation, a bad ``sync=``...), at once.
        amp_pandas.errors.ConfigurationError
            Before any request: no API key, an unknown region, ``batch_size`` above 1024...
        amp_pandas.errors.AuthenticationError
            Amplitude rejected the key; ``.result`` holds the partial result.
        amp_pandas.errors.LedgerError
            As in :meth:`identify`: before anything is sent.

        Examples
        --------
        >>> import pandas as pd
        >>> import amp_pandas
        >>> from amp_pandas.sandbox import Sandbox
        >>> companies = pd.DataFrame({"company_id": [17, 42], "plan": ["pro", "free"],
        ...                           "seats": [40, 3]})
        >>> preview = companies.amplitude.group_identify(
        ...     group_type="company", group_value="company_id", set=["plan", "seats"],
        ...     dry_run=True)
        >>> preview.payloads[1]
        {'group_type': 'company', 'group_value': '42', 'group_properties': \
{'$set': {'plan': 'free', 'seats': 3}}}
        >>> with Sandbox() as sb:
        ...     result = companies.amplitude.group_identify(
        ...         group_type="company", group_value="company_id", set=["plan", "seats"],
        ...         server_url=sb.group_url, api_key=sb.api_key, progress=False)
        ...     seats = sb.group_profile("company", "17")["seats"]
        >>> result.status.tolist(), seats
        (['success', 'success'], 40)
        """
        return group_identify(
            self._obj,
            group_type=group_type,
            group_value=group_value,
            set=set,
            set_once=set_once,
            add=add,
            append=append,
            prepend=prepend,
            unset=unset,
            nulls=nulls,
            dry_run=dry_run,
            sync=sync,
            api_key=api_key,
            region=region,
            server_url=server_url,
            session=session,
            batch_size=batch_size,
            max_workers=max_workers,
            timeout=timeout,
            throttle_pause=throttle_pause,
            throttle_budget=throttle_budget,
            retry_ambiguous=retry_ambiguous,
            max_retries=max_retries,
            backoff=backoff,
            backoff_max=backoff_max,
            interrupt_grace=interrupt_grace,
            progress=progress,
            pre_insert=pre_insert,
            post_insert=post_insert,
            remove=remove,
            ledger=ledger,
            removed=removed,
        )
