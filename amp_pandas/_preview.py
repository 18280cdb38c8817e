"""The dry-run preview: what would be sent, where, and what is wrong with which rows.

The preview holds data (the plan, the settings, the operations table) and sends itself once
(:meth:`IdentifyPreview.send`); :mod:`amp_pandas._display` renders it, and in a Jupyter kernel
with ipywidgets it shows the widget of :mod:`amp_pandas._widget`, which sends through
:meth:`IdentifyPreview.send` too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import pandas as pd

from ._amplitude import GROUP_IDENTIFY_PATH, IDENTIFY_PATH
from ._config import SendSettings
from ._convert import BadValue, json_text, object_cells
from ._encode import body_overhead
from ._plan import INVALID, SKIPPED, VALID, Plan, chunk_rows
from ._progress import ProgressCallback
from ._spec import GroupSpec, IdentifySpec, Literal
from ._syncrun import (
    RevertColumns,
    SyncOptions,
    SyncPreview,
    UserGroups,
    group_users,
    preview_sync,
)
from .errors import AlreadySentError, SendError

if TYPE_CHECKING:
    from ._result import SendResult

__all__ = ["GroupIdentifyPreview", "IdentifyPreview", "PreviewPayloads", "group_operations_table"]

_ASSUMED_KEY_LENGTH = 32  # Amplitude project API keys are 32 characters
#: Rows decoded at a time when iterating over payloads.
_ITER_CHUNK = 1000
#: At most this many identifications are written out in full by ``repr(preview.payloads)``.
_REPR_ITEMS = 10


class PreviewPayloads(Sequence[dict[str, Any]]):
    """The identifications of a preview's valid rows, in row order, built only when read.

    A read-only sequence: ``len(payloads)``, ``payloads[i]`` (negative too), ``payloads[a:b]``
    (a ``list`` of dicts), iteration and ``==`` with a list. Each access decodes only the rows it
    asks for from the exact bytes that will be sent, so ``payloads[:5]`` of a million rows takes
    no longer than of ten; ``list(payloads)`` builds them all.

    Examples
    --------
    >>> import pandas as pd
    >>> import amp_pandas
    >>> df = pd.DataFrame({"uid": ["user-1", "null", "user-3"], "plan": ["pro", "free", "team"]})
    >>> payloads = df.amplitude.identify(user_id="uid", set=["plan"], dry_run=True).payloads
    >>> len(payloads)
    2
    >>> payloads[-1]
    {'user_id': 'user-3', 'user_properties': {'$set': {'plan': 'team'}}}
    >>> [p["user_id"] for p in payloads[:5]]
    ['user-1', 'user-3']
    """

    def __init__(self, plan: Plan) -> None:
        self._payload = plan.payload
        self._rows = np.flatnonzero(plan.state == VALID)

    def __len__(self) -> int:
        return len(self._rows)

    def _decode(self, rows: np.ndarray) -> list[dict[str, Any]]:
        if not len(rows):
            return []
        return [json.loads(text) for text in self._payload.texts(rows)]

    @overload
    def __getitem__(self, key: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, key: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, key: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(key, slice):
            return self._decode(self._rows[key])
        if not isinstance(key, (int, np.integer)) or isinstance(key, bool):
            raise TypeError(
                f"payloads are read by position or slice, not {type(key).__name__}; "
                "for one row by index label use preview.payload(label)"
            )
        n = len(self._rows)
        if not -n <= key < n:
            raise IndexError(f"payload {key} is out of range: {n:,} rows are sent")
        return self._decode(self._rows[[int(key)]])[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for start in range(0, len(self._rows), _ITER_CHUNK):
            yield from self._decode(self._rows[start : start + _ITER_CHUNK])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, bytes)) or not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        n = len(self)
        if n <= _REPR_ITEMS:
            return repr(list(self))
        return (
            f"<{n:,} payloads: read them with payloads[i], payloads[:10] or list(payloads)>"
        )


class IdentifyPreview:
    """A dry run of ``df.amplitude.identify``: nothing has been sent.

    Built by ``df.amplitude.identify(..., dry_run=True)``; needs no API key and touches no
    network. In a notebook it displays as an interactive preview with a **Send** button
    (``pip install "amp_pandas[notebook]"``), elsewhere as text.

    Attributes
    ----------
    payloads : PreviewPayloads
        The identifications exactly as they would be sent, valid rows only, in row order: a
        lazy sequence of dicts (``len``, ``payloads[i]``, ``payloads[a:b]`` gives a list,
        iteration) that decodes only the rows asked for.
    problems : pandas.DataFrame
        One row per problem: ``row`` (the index label), ``column``, ``severity``
        (``"error"`` makes the row invalid; ``"warning"`` is sent anyway) and ``message``.
    summary : pandas.Series
        Counts: ``rows``, ``valid``, ``invalid``, ``skipped``, ``warnings`` (rows with a
        warning), ``requests`` and ``bytes`` (the request bodies a send would post; for a
        sync run, of the rows it sends, not of the unchanged or held ones); for a sync run
        (``sync=``) also ``unchanged`` (valid rows not sent: their user is unchanged) and
        ``removed`` (users the job would revert or let go).
    sync : SyncPreview or None
        For a sync run: the job, when it last ran, how many users it holds, and how many
        users are new, changed, unchanged, ambiguous, held and removed (``.counts``), with the
        removed users' revert identifications (``.reverts``). ``None`` without ``sync=``.
    operations : pandas.DataFrame
        One row per mapped value: ``operation``, ``property``, ``source``, ``non_null``,
        ``examples`` and ``dtype``.
    endpoint : str
        The URL the identifications would be posted to.
    result : pandas.DataFrame or None
        The per-row result once the preview has been sent (from code or the widget). A preview
        is sent once: sending again raises :class:`~amp_pandas.errors.AlreadySentError` unless
        ``send(force=True)``.

    Examples
    --------
    >>> import pandas as pd
    >>> import amp_pandas
    >>> df = pd.DataFrame({"uid": ["user-1", "user-2", "null"], "plan": ["pro", None, "free"]})
    >>> preview = df.amplitude.identify(user_id="uid", set=["plan"], dry_run=True)
    >>> preview.summary[["rows", "valid", "invalid", "skipped"]].tolist()
    [3, 1, 1, 1]
    >>> preview.payloads[0]
    {'user_id': 'user-1', 'user_properties': {'$set': {'plan': 'pro'}}}
    >>> preview.problems[["row", "column", "severity"]].values.tolist()
    [[2, 'uid', 'error']]
    """

    #: The heading of the text, HTML and widget views.
    title = "Amplitude identify preview"
    #: What one payload is called in the views.
    noun = "identification"
    #: The API's path: a ``region=`` given to :meth:`send` selects this path on its host.
    path = IDENTIFY_PATH
    #: The accessor method that builds such a preview (named in messages).
    method = "identify"

    def __init__(
        self,
        plan: Plan,
        spec: IdentifySpec | GroupSpec,
        settings: SendSettings,
        operations: pd.DataFrame,
        sync: SyncOptions | None = None,
        sync_columns: RevertColumns | None = None,
    ) -> None:
        self._plan = plan
        self._sync_options = sync
        self._sync_columns = sync_columns
        self._users: UserGroups | None = None
        self._sync: SyncPreview | None = None
        self._spec = spec
        self._settings = settings
        self._operations = operations
        self._summary: pd.Series | None = None
        self._result: pd.DataFrame | None = None
        self._sent = False

    # ------------------------------------------------------------------ data
    @property
    def plan(self) -> Plan:
        """The built plan (internal structure shared with the sender)."""
        return self._plan

    @property
    def settings(self) -> SendSettings:
        """How ``send()`` will send (endpoint, batch size, retries...); the key stays masked."""
        return self._settings

    @property
    def payloads(self) -> PreviewPayloads:
        """The identifications of the valid rows, in row order, decoded when read.

        The one way to read what will be sent: ``preview.payloads[0]``,
        ``preview.payloads[:5]`` (a list), ``len(preview.payloads)``, ``list(preview.payloads)``.
        See :class:`PreviewPayloads`.

        Examples
        --------
        >>> import pandas as pd
        >>> import amp_pandas
        >>> df = pd.DataFrame({"uid": ["user-1", "user-2"], "n": [1, 2]})
        >>> preview = df.amplitude.identify(user_id="uid", add=["n"], dry_run=True)
        >>> len(preview.payloads), preview.payloads[-1]
        (2, {'user_id': 'user-2', 'user_properties': {'$add': {'n': 2}}})
        >>> preview.payloads[:1]
        [{'user_id': 'user-1', 'user_properties': {'$add': {'n': 1}}}]
        """
        return PreviewPayloads(self._plan)

    @property
    def problems(self) -> pd.DataFrame:
        return self._plan.problems.drop(columns=["position"]).reset_index(drop=True)

    @property
    def operations(self) -> pd.DataFrame:
        return self._operations.copy()

    @property
    def endpoint(self) -> str:
        return self._settings.endpoint

    @property
    def key_status(self) -> str:
        """``"•••• 1a2b"`` for a set key (last four characters only), else ``"no key set"``."""
        key = self._settings.api_key
        return key.masked if key is not None else "no key set"

    @property
    def summary(self) -> pd.Series:
        if self._summary is None:
            self._summary = self._compute_summary()
        return self._summary.copy()

    @property
    def sync(self) -> SyncPreview | None:
        """The sync plan of a ``sync=`` run as the ledger stands now (read when first asked;
        a send plans again under the job's lock); ``None`` without ``sync=``."""
        if self._sync_options is None:
            return None
        if self._sync is None:
            self._sync = preview_sync(
                self._plan, self._user_groups(), self._settings, self._sync_options
            )
        return self._sync

    def _user_groups(self) -> UserGroups:
        if self._users is None:
            self._users = group_users(self._plan)
        return self._users

    def _compute_summary(self) -> pd.Series:
        plan = self._plan
        key = self._settings.api_key
        overhead = body_overhead(len(key.reveal()) if key is not None else _ASSUMED_KEY_LENGTH)
        sync = self.sync
        order = plan.order
        if sync is not None and sync.sent is not None:  # only the rows a send would post
            order = order[sync.sent[order]]
        chunks = chunk_rows(plan, order, batch_size=self._settings.batch_size, overhead=overhead)
        nbytes = sum(int(plan.nbytes[c].sum()) + len(c) + 1 + overhead for c in chunks)
        probs = plan.problems
        warned = probs.loc[probs["severity"] == "warning", "position"]
        warned_rows = int(np.count_nonzero(plan.state[np.unique(warned.to_numpy())] == VALID))
        extra = {} if sync is None else {
            "unchanged": sync.unchanged_rows, "removed": sync.counts["removed"]
        }  # fmt: skip
        return pd.Series(
            {
                "rows": len(plan),
                "valid": int(np.count_nonzero(plan.state == VALID)),
                "invalid": int(np.count_nonzero(plan.state == INVALID)),
                "skipped": int(np.count_nonzero(plan.state == SKIPPED)),
                "warnings": warned_rows,
                "requests": len(chunks),
                "bytes": nbytes,
                **extra,
            },
            dtype="int64",
            name="summary",
        )

    def payload(self, row: Hashable) -> dict[str, Any] | None:
        """The identification of one row (by index label), or None if the row is not sent.

        With a duplicated index label, the first row carrying it.
        """
        positions = np.flatnonzero(self._plan.index == row) if not isinstance(
            self._plan.index, pd.MultiIndex
        ) else np.flatnonzero(self._plan.index.isin([row]))
        if not len(positions):
            raise KeyError(row)
        return self.payload_at(int(positions[0]))

    def payload_at(self, position: int) -> dict[str, Any] | None:
        """The identification of the row at ``position`` (0-based), or None if it is not sent.

        Examples
        --------
        >>> import pandas as pd
        >>> df = pd.DataFrame({"uid": ["user-1", "bad"], "plan": ["pro", "free"]},
        ...                   index=["a", "a"])
        >>> preview = df.amplitude.identify(user_id="uid", set=["plan"], dry_run=True)
        >>> preview.payload_at(0), preview.payload_at(1)
        ({'user_id': 'user-1', 'user_properties': {'$set': {'plan': 'pro'}}}, None)
        """
        raw = self._plan.payload[position]
        return None if raw is None else json.loads(raw)

    # ------------------------------------------------------------------ actions
    def send(
        self,
        *,
        force: bool = False,
        progress_callback: ProgressCallback | None = None,
        api_key: str | None = None,
        region: str | None = None,
        server_url: str | None = None,
        batch_size: int | None = None,
        max_workers: int | None = None,
        timeout: float | None = None,
        throttle_pause: float | None = None,
        throttle_budget: float | None = None,
        retry_ambiguous: bool | None = None,
        max_retries: int | None = None,
        backoff: float | None = None,
        backoff_max: float | None = None,
        interrupt_grace: float | None = None,
        progress: bool | None = None,
    ) -> SendResult:
        """Send the valid rows of this preview, exactly as previewed (no rebuild), once.

        Parameters
        ----------
        force : bool, default False
            Send even though this preview was sent already. Sending again applies ``$add``,
            ``$append`` and ``$prepend`` again; without ``force`` a second send is refused.
        progress_callback : callable, optional
            ``callback(done_counts, waiting)`` called as rows resolve (see
            :mod:`amp_pandas._progress`); the notebook widget draws its bar with it.
        api_key, region, server_url, batch_size, max_workers, timeout, throttle_pause, \
throttle_budget, retry_ambiguous, max_retries, backoff, backoff_max, interrupt_grace, progress
            Overrides of the sending options given to ``identify`` (same meaning and checks);
            ``None`` keeps what the preview was built with. An unknown name is a ``TypeError``.

        Returns
        -------
        SendResult
            One row per input row: ``status``, ``http_status``, ``error``, ``attempts``.

        Raises
        ------
        amp_pandas.errors.AlreadySentError
            The preview was sent already (by ``send()`` or the widget's Send button) and
            ``force`` is not set; nothing is sent. Its ``.result`` is the earlier result.

        Examples
        --------
        >>> import pandas as pd
        >>> import amp_pandas
        >>> from amp_pandas.sandbox import Sandbox
        >>> df = pd.DataFrame({"uid": ["user-1", "user-2"], "plan": ["pro", "free"]})
        >>> with Sandbox() as sb:
        ...     preview = df.amplitude.identify(user_id="uid", set=["plan"], dry_run=True,
        ...                                     server_url=sb.url, api_key=sb.api_key)
        ...     result = preview.send(progress=False)
        ...     try:
        ...         preview.send(progress=False)
        ...     except amp_pandas.errors.AlreadySentError as exc:
        ...         print(type(exc).__name__)
        AlreadySentError
        >>> result.status.tolist()
        ['success', 'success']
        """
        if not isinstance(force, bool):
            raise TypeError(f"force must be True or False, got {force!r}")
        if self._sent and not force:
            raise AlreadySentError(
                "this preview was sent already; sending it again would apply $add, $append "
                "and $prepend a second time. Its result is in preview.result. To send it "
                "again anyway, call preview.send(force=True); to send fresh data, build a new "
                f"preview with df.amplitude.{self.method}(..., dry_run=True)",
                result=self._result,
            )
        from ._send import send_plan
        from ._syncrun import send_sync

        given = {
            "api_key": api_key, "region": region, "server_url": server_url,
            "batch_size": batch_size, "max_workers": max_workers, "timeout": timeout,
            "throttle_pause": throttle_pause, "throttle_budget": throttle_budget,
            "retry_ambiguous": retry_ambiguous, "max_retries": max_retries, "backoff": backoff,
            "backoff_max": backoff_max, "interrupt_grace": interrupt_grace, "progress": progress,
        }  # fmt: skip
        settings = self._with({k: v for k, v in given.items() if v is not None})
        try:
            if self._sync_options is not None:
                result = send_sync(
                    self._plan, self._user_groups(), settings, self._sync_options,
                    columns=self._sync_columns, progress_callback=progress_callback,
                )  # fmt: skip
            else:
                result = send_plan(self._plan, settings, progress_callback=progress_callback)
        except SendError as exc:  # stopped part way: some rows may have been applied
            self._sent = True
            self._result = exc.result
            raise
        self._sent = True
        self._result = result
        return result

    @property
    def result(self) -> pd.DataFrame | None:
        """The result of the last send of this preview (by ``send()`` or the widget's Send
        button), or None if it has not been sent."""
        return self._result

    @property
    def sent(self) -> bool:
        """Whether this preview was sent (a second ``send()`` needs ``force=True``)."""
        return self._sent

    def _with(self, options: dict[str, Any]) -> SendSettings:
        if not options:
            return self._settings
        from ._config import resolve_settings

        current = {
            f.name: getattr(self._settings, f.name)
            for f in dataclasses.fields(self._settings)
            if f.name not in ("endpoint", "api_key")
        }
        key = options.pop("api_key", None)
        if key is None and self._settings.api_key is not None:
            key = self._settings.api_key.reveal()
        server_url = options.pop("server_url", None) or self._settings.endpoint
        region = options.pop("region", None)
        if region is not None:
            server_url = None
        return resolve_settings(
            api_key=key,
            server_url=server_url,
            path=self.path,
            **({"region": region} if region is not None else {}),
            **{**current, **options},
        )

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        from ._display import preview_text

        return preview_text(self)

    def _repr_html_(self) -> str:
        from ._display import preview_html

        return preview_html(self)

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> dict[str, Any]:
        """In a Jupyter kernel with ipywidgets, the interactive preview (imported only now);
        elsewhere text and HTML (see :mod:`amp_pandas._display`)."""
        from . import _display

        if _display.widget_wanted(include, exclude):
            from ._widget import widget_for

            return widget_for(self)._repr_mimebundle_(include=include, exclude=exclude)
        return _display.static_mimebundle(self)


def _example(value: Any, width: int = 32) -> str:
    """A cell as it will be sent (its JSON text), shortened for display."""
    try:
        text = json_text(value)
    except BadValue:
        text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def operations_table(df: pd.DataFrame, spec: IdentifySpec) -> pd.DataFrame:
    """One row per mapped value, for the preview's Operations tab."""
    rows = []

    def add(operation: str, key: str, source: Any) -> None:
        if isinstance(source, Literal):
            rows.append((operation, key, repr(source), len(df), _example(source.value), "literal"))
            return
        col = df.iloc[:, df.columns.get_loc(source)]
        non_null = int(col.notna().sum())
        sample = col.iloc[:1000].dropna().head(200)  # not a copy of a million-row column
        if sample.empty and non_null:
            sample = col.dropna().head(200)
        # distinct by the text sent, not by hashing the cells: lists, dicts, arrays and Arrow
        # list/struct columns have no hash (pd.unique fails on them)
        shown: list[str] = []
        for value in object_cells(sample):
            text = _example(value)
            if text not in shown:
                shown.append(text)
                if len(shown) == 3:
                    break
        examples = ", ".join(shown)
        rows.append((operation, key, f"column {source!r}", non_null, examples, str(col.dtype)))

    for slot in (spec.user_id, spec.device_id):
        if slot is not None:
            add("id", slot.key, slot.source)
    for op, slots in spec.operations:
        for s in slots:
            add(op, s.key, s.source)
    for name in spec.unset:
        rows.append(("$unset", name, "every row", len(df), '"-"', ""))
    for s in spec.groups:
        add("group", s.key, s.source)
    for s in spec.fields:
        add("field", s.key, s.source)
    return pd.DataFrame(
        rows, columns=["operation", "property", "source", "non_null", "examples", "dtype"]
    )


class GroupIdentifyPreview(IdentifyPreview):
    """A dry run of ``df.amplitude.group_identify``: nothing has been sent.

    Everything of :class:`IdentifyPreview` holds (``payloads``, ``problems``, ``summary``,
    ``operations``, ``endpoint``, ``sync``, ``send()``, the text, HTML and widget views); the
    payloads are group identifications, posted to Amplitude's Group Identify API. For a sync
    run (``sync=``) the plan counts groups (``preview.sync.unit == "group"``) and its
    ``reverts`` name each removed group by ``group_type`` and ``group_value``.

    Examples
    --------
    >>> import pandas as pd
    >>> import amp_pandas
    >>> companies = pd.DataFrame({"company_id": [17, 42], "plan": ["pro", "free"]})
    >>> preview = companies.amplitude.group_identify(
    ...     group_type="company", group_value="company_id", set=["plan"], dry_run=True)
    >>> preview.payloads[0]
    {'group_type': 'company', 'group_value': '17', 'group_properties': {'$set': {'plan': 'pro'}}}
    >>> preview.endpoint
    'https://api2.amplitude.com/groupidentify'
    """

    title = "Amplitude group identify preview"
    noun = "group identification"
    path = GROUP_IDENTIFY_PATH
    method = "group_identify"


def group_operations_table(df: pd.DataFrame, spec: GroupSpec) -> pd.DataFrame:
    """One row per mapped value of a group identification, for the preview's Operations tab."""
    as_identify = IdentifySpec(
        user_id=None, device_id=None, operations=spec.operations, unset=spec.unset, groups=(),
        fields=(), nulls=spec.nulls,
    )
    table = operations_table(df, as_identify)
    keys = operations_table(
        df, dataclasses.replace(as_identify, operations=(), unset=(), user_id=spec.group_type,
                                device_id=spec.group_value),
    )
    keys["operation"] = "group"
    return pd.concat([keys, table], ignore_index=True)
