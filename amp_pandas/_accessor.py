"""The ``df.amplitude`` accessor: checks nothing itself, keeps no state, delegates."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from ._identify import Columns, identify
from ._preview import IdentifyPreview

__all__ = ["AmplitudeAccessor"]


@pd.api.extensions.register_dataframe_accessor("amplitude")
class AmplitudeAccessor:
    """Amplitude operations on a DataFrame, available as ``df.amplitude`` after
    ``import amp_pandas``.

    The accessor is stateless and never changes the DataFrame.
    """

    def __init__(self, pandas_obj: pd.DataFrame) -> None:
        self._obj = pandas_obj

    def identify(
        self,
        *,
        user_id: Any = None,
        device_id: Any = None,
        set: Columns = None,
        set_once: Columns = None,
        add: Columns = None,
        append: Columns = None,
        prepend: Columns = None,
        pre_insert: Columns = None,
        post_insert: Columns = None,
        remove: Columns = None,
        unset: Sequence[str] | str | None = None,
        groups: Mapping[str, Any] | None = None,
        fields: Mapping[str, Any] | None = None,
        nulls: str = "skip",
        dry_run: bool = False,
        api_key: str | None = None,
        region: str = "standard",
        server_url: str | None = None,
        session: Any = None,
        **options: Any,
    ) -> IdentifyPreview | pd.DataFrame:
        """Turn rows into Amplitude Identify API identifications; preview or send them.

        Each row becomes one identification. Columns (or :func:`~amp_pandas.literal`
        constants) feed the ids, user-property operations, groups and top-level fields.
        Every row is checked before anything is sent.

        Parameters
        ----------
        user_id, device_id : column label, optional
            The id columns; at least one. Integer ids are sent as strings (``12345`` ->
            ``"12345"``, also from float columns holding whole numbers).
        set, set_once, add, append, prepend, pre_insert, post_insert, remove : list or dict, optional
            Columns for ``$set``, ``$setOnce``, ``$add``, ``$append``, ``$prepend``,
            ``$preInsert``, ``$postInsert`` and ``$remove``: a list of column labels (the
            property is named after the column) or a dict ``{property: column or literal}``.
            ``$add`` takes numbers only.
        unset : list of str, optional
            Property names removed on every row (``{"$unset": {name: "-"}}``).
        groups : dict, optional
            ``{group type: column or literal}``; a cell is a group name or a list of them.
        fields : dict, optional
            Documented top-level keys (``platform``, ``country``, ``app_version`` ...) to a
            column or literal. Values are sent as strings.
        nulls : {"skip", "unset", "error"}, default "skip"
            Missing cells (None, NaN, NaT, pd.NA): ``"skip"`` leaves the property out of that
            row (Amplitude ignores nulls anyway); ``"unset"`` sends ``$unset`` for it when it
            came from ``set``/``set_once``; ``"error"`` makes the row invalid.
        dry_run : bool, default False
            Return an :class:`~amp_pandas.IdentifyPreview` instead of sending. Needs no key.
        api_key : str, optional
            The project API key; defaults to the ``AMPLITUDE_API_KEY`` environment variable.
            It travels only in request bodies and is never shown.
        region : {"standard", "eu"}, default "standard"
            ``https://api2.amplitude.com/identify`` or ``https://api.eu.amplitude.com/identify``.
        server_url : str, optional
            A full endpoint URL overriding ``region`` (e.g. a :class:`~amp_pandas.sandbox.Sandbox`'s
            ``url``). Plain ``http://`` only for loopback hosts.
        session : requests.Session, optional
            The session to send with (connection pooling, proxies, custom TLS settings).
        **options
            Sending options: ``batch_size`` (default 1000, at most 2000), ``max_workers``
            (requests in flight, default 6), ``timeout`` (seconds), ``throttle_pause``
            (default 15 s), ``throttle_budget`` (default 600 s), ``retry_ambiguous`` (default
            False), ``max_retries``, ``backoff``, ``progress`` (default True).

        Returns
        -------
        IdentifyPreview or pandas.DataFrame
            With ``dry_run=True`` the preview; otherwise the result: one row per input row
            (same index) with ``status`` (``success``, ``invalid``, ``skipped``, ``failed``,
            ``throttled``, ``unknown`` or ``not_sent``), ``http_status``, ``error`` and
            ``attempts``.

        Raises
        ------
        amp_pandas.errors.ArgumentError
            At once, for arguments that cannot work (unknown column, no id, unknown field,
            a property in two operations, a bad ``nulls``...).
        amp_pandas.errors.ConfigurationError
            Before any request: no API key, an unknown region, ``http://`` to a remote host.
        amp_pandas.errors.AuthenticationError
            Amplitude rejected the key; ``.result`` holds the partial result.

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
            **options,
        )
