"""The Dask accessor ``ddf.amplitude``: dry runs and sends over a Dask DataFrame's partitions.

Imported only once Dask is (see :mod:`amp_pandas._extensions`); importing it registers the
accessor with :func:`dask.dataframe.extensions.register_dataframe_accessor`.

Each partition is handled by the pandas accessor of the same name (``identify``,
``group_identify``), so the rules, the builder and the sender are the pandas ones.

Dry run
    Every partition is checked in parallel where it lives; each returns only its counts and
    its first problems of each kind (:mod:`amp_pandas._aggregate`), never its rows.
Send
    Eager and once. Rows get their input position (partition, row), are shuffled on their
    order key (the user id, else the device id; the group for ``group_identify``) so that all
    rows of one user are in one partition, and each shuffled partition is put back in input
    order and sent by the pandas sender. Each send task returns its rows' results with their
    input positions; the caller gets one pandas result in input order. The send runs inside
    one computation: nothing that is returned holds a graph that could send again.

The API key travels to the partitions inside a :class:`_Job`, whose ``repr`` masks it and
whose Dask token is random, so it appears in no task key, graph ``repr`` or log.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dask
import dask.local
import numpy as np
import pandas as pd
from dask.dataframe.extensions import register_dataframe_accessor

from ._aggregate import DEFAULT_KEEP, AggregatePreview, Tally, check_part, warn_if_not_succeeded
from ._config import API_KEY_ENV, Secret, require_key
from ._result import SendResult, build_result
from ._spec import Literal
from .errors import ArgumentError, AuthenticationError, SendError

__all__ = ["DaskAmplitudeAccessor", "ORDER_KEYS", "order_key"]

#: Per method, the arguments whose values keep one entity's rows in order, by preference:
#: a row goes by the first alternative whose values are all present.
ORDER_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "identify": (("user_id",), ("device_id",)),
    "group_identify": (("group_type", "group_value"),),
}
#: Partitions sent at once unless the caller says otherwise.
DEFAULT_PARTITIONS_IN_FLIGHT = 4
_SEP = "\x1f"


class _Job:
    """One call's method, mapping and options, as shipped to the partitions.

    The API key is held as a :class:`~amp_pandas._config.Secret`; ``repr`` shows only a
    token, and Dask tokenizes the job by that random token, never by its content.
    """

    __slots__ = ("method", "arguments", "key", "token")

    def __init__(self, method: str, arguments: Mapping[str, Any], key: Secret | None) -> None:
        self.method = method
        self.arguments = dict(arguments)
        self.key = key
        self.token = uuid.uuid4().hex

    def kwargs(self, *, with_key: bool, **extra: Any) -> dict[str, Any]:
        out = {**self.arguments, **extra}
        if with_key and self.key is not None:
            out["api_key"] = self.key.reveal()
        return out

    def without_key(self) -> _Job:
        return _Job(self.method, self.arguments, None)

    def with_options(self, options: Mapping[str, Any]) -> _Job:
        options = dict(options)
        key = self.key
        if options.get("api_key") is not None:
            key = Secret(options.pop("api_key"))
        options.pop("api_key", None)
        return _Job(self.method, {**self.arguments, **options}, key)

    def __repr__(self) -> str:
        return f"<amp_pandas job {self.method} {self.token[:8]}>"

    def __dask_tokenize__(self) -> str:
        return self.token


def order_key(frame: pd.DataFrame, alternatives: Sequence[Sequence[Any]]) -> np.ndarray:
    """The order key of each row: the text of its first alternative whose values are present.

    A source is a column label of ``frame``, a :func:`~amp_pandas.literal`, or (when it is
    not a column) a constant. Rows with no complete alternative get ``""``.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"uid": ["a", None, None], "dev": ["d1", "d2", None]})
    >>> order_key(df, [["uid"], ["dev"]]).tolist()
    ['a', 'd2', '']
    >>> order_key(df, [["kind", "dev"]]).tolist()
    ['kind\\x1fd1', 'kind\\x1fd2', '']
    """
    n = len(frame)
    key = np.full(n, "", dtype=object)
    done = np.zeros(n, dtype=bool)
    for alternative in alternatives:
        texts = []
        present = np.ones(n, dtype=bool)
        for source in alternative:
            if isinstance(source, Literal):
                texts.append(np.full(n, str(source.value), dtype=object))
            elif _is_column(frame, source):
                col = frame[source]
                present &= col.notna().to_numpy(dtype=bool)
                texts.append(col.astype(object).map(str, na_action="ignore").to_numpy(object))
            else:
                texts.append(np.full(n, str(source), dtype=object))
        take = present & ~done
        if take.any():
            joined = texts[0][take]
            for more in texts[1:]:
                joined = joined + _SEP + more[take]
            key[take] = joined
        done |= take
    return key


def _is_column(frame: pd.DataFrame, source: Any) -> bool:
    try:
        return source in frame.columns
    except TypeError:  # unhashable
        return False


def _alternatives(method: str, arguments: Mapping[str, Any]) -> list[list[Any]]:
    alternatives = []
    for names in ORDER_KEYS.get(method, ()):
        sources = [arguments.get(name) for name in names]
        if all(s is not None for s in sources):
            alternatives.append(sources)
    return alternatives


def _fresh(columns: Sequence[Any], stem: str) -> str:
    name, i = stem, 0
    while name in set(columns):
        i += 1
        name = f"{stem}{i}"
    return name


# ---------------------------------------------------------------------- partition tasks
def _check_partition(part: pd.DataFrame, job: _Job, keep: int) -> Any:
    preview = getattr(part.amplitude, job.method)(**job.kwargs(with_key=False, dry_run=True))
    return check_part(preview.summary, preview.problems, keep)


def _tag_partition(
    part: pd.DataFrame,
    alternatives: list[list[Any]],
    names: tuple[str, str, str],
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    number = partition_info["number"] if partition_info is not None else 0
    p, q, k = names
    return part.assign(
        **{
            p: np.full(len(part), number, dtype=np.int64),
            q: np.arange(len(part), dtype=np.int64),
            k: order_key(part, alternatives),
        }
    )


def _empty_result(index: pd.Index) -> pd.DataFrame:
    n = len(index)
    return pd.DataFrame(
        build_result(
            index,
            np.zeros(n, dtype=np.int64),
            np.zeros(n, dtype=np.int64),
            np.full(n, None, dtype=object),
            np.zeros(n, dtype=np.int64),
        )
    )


def _send_partition(
    part: pd.DataFrame, job: _Job, names: tuple[str, str, str]
) -> tuple[pd.DataFrame, tuple[str, str, int | None] | None]:
    """Send one shuffled partition in input order; return its results and any stop error."""
    p, q, k = names
    part = part.sort_values([p, q], kind="stable")
    data = part.drop(columns=[p, q, k])
    error = None
    if len(data):
        try:
            result = getattr(data.amplitude, job.method)(
                **job.kwargs(with_key=True, progress=False)
            )
        except SendError as exc:  # key rejected: the partial result, and why
            if exc.result is None:
                raise
            result = exc.result
            error = (type(exc).__name__, str(exc), getattr(exc, "status_code", None))
        frame = pd.DataFrame(result)
    else:
        frame = _empty_result(data.index)
    frame[p] = part[p].to_numpy()
    frame[q] = part[q].to_numpy()
    return frame, error


# ---------------------------------------------------------------------- the accessor
@register_dataframe_accessor("amplitude")
class DaskAmplitudeAccessor:
    """Amplitude operations on a Dask DataFrame, available as ``ddf.amplitude`` once both
    amp_pandas and ``dask.dataframe`` are imported (in either order).

    Every method takes the arguments of the pandas method of the same name
    (:meth:`amp_pandas.AmplitudeAccessor.identify`) and these:

    Parameters
    ----------
    max_partitions_in_flight : int, default 4
        Partitions sent at once. Each partition is sent by the pandas sender with up to
        ``max_workers`` requests in flight (default 6), so at most
        ``max_partitions_in_flight * max_workers`` requests are in flight in all.
    problem_rows : int, default 5
        With ``dry_run=True``: problems kept per kind (a kind is a column and a severity).

    ``sync=`` is refused; ``progress`` is ignored (use Dask's diagnostics or dashboard).
    """

    def __init__(self, dask_obj: Any) -> None:
        self._obj = dask_obj

    def identify(self, **arguments: Any) -> Any:
        """Preview or send one identification per row of a Dask DataFrame.

        Takes the arguments of :meth:`amp_pandas.AmplitudeAccessor.identify` plus
        ``max_partitions_in_flight`` and ``problem_rows`` (see the class).

        Returns
        -------
        AggregatePreview or pandas.DataFrame
            With ``dry_run=True`` a preview whose counts and problems cover every partition
            (computed where the partitions live; no row is collected). Otherwise the result:
            a pandas DataFrame with one row per input row, in input order and with the input's
            index, holding ``status``, ``http_status``, ``error`` and ``attempts``.

        Notes
        -----
        The send shuffles the rows on the user id (the device id for rows without one), so
        all rows of one user are sent from one partition, in input order. The result is
        computed once and returned as pandas: nothing returned can send again. A worker lost
        while sending makes dask.distributed run that partition again (up to its
        ``allowed-failures``), which may send its rows twice.

        Rows that did not succeed give one ``RowsNotSucceededWarning`` for the whole frame;
        with a local scheduler each partition's sender may also warn for its own rows.

        Examples
        --------
        >>> import dask.dataframe as dd
        >>> import pandas as pd
        >>> import amp_pandas
        >>> from amp_pandas.sandbox import Sandbox
        >>> df = pd.DataFrame({"uid": [f"user-{i % 3}" for i in range(6)], "visits": range(6)})
        >>> ddf = dd.from_pandas(df, npartitions=2)
        >>> preview = ddf.amplitude.identify(user_id="uid", add=["visits"], dry_run=True)
        >>> preview.summary[["rows", "valid"]].tolist()
        [6, 6]
        >>> with Sandbox() as sb:
        ...     result = ddf.amplitude.identify(user_id="uid", add=["visits"],
        ...                                     server_url=sb.url, api_key=sb.api_key)
        ...     visits = sb.profiles()["visits"].to_dict()
        >>> result.status.tolist() == ["success"] * 6, visits
        (True, {'user-0': 3, 'user-1': 5, 'user-2': 7})
        """
        return run(self._obj, "identify", arguments)

    def group_identify(self, **arguments: Any) -> Any:
        """Preview or send group identifications per row of a Dask DataFrame.

        Takes the arguments of the pandas ``df.amplitude.group_identify`` plus those of the
        class; rows of one group (type and value) are sent from one partition, in order.
        """
        return run(self._obj, "group_identify", arguments)


def run(ddf: Any, method: str, arguments: Mapping[str, Any]) -> Any:
    """Dry-run or send ``method`` of the pandas accessor over the partitions of ``ddf``."""
    arguments = dict(arguments)
    if arguments.get("sync") is not None:
        raise ArgumentError(
            "sync= is not supported on a Dask DataFrame: compute it to pandas "
            f"(ddf.compute().amplitude.{method}(..., sync=...)), or send without sync="
        )
    arguments.pop("sync", None)
    arguments.pop("progress", None)
    in_flight = arguments.pop("max_partitions_in_flight", DEFAULT_PARTITIONS_IN_FLIGHT)
    if isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 1:
        raise ArgumentError(
            f"max_partitions_in_flight must be a positive integer, not {in_flight!r}"
        )
    keep = arguments.pop("problem_rows", DEFAULT_KEEP)
    dry_run = bool(arguments.pop("dry_run", False))
    raw_key = arguments.pop("api_key", None)
    if raw_key is None:
        raw_key = os.environ.get(API_KEY_ENV) or None
    key = Secret(raw_key) if raw_key is not None else None

    # The arguments are checked at once against the frame's empty meta: no partition is read.
    meta_call = getattr(ddf._meta.amplitude, method)
    meta_preview = meta_call(**arguments, dry_run=True, api_key=raw_key)
    job = _Job(method, arguments, key)

    def send(**options: Any) -> pd.DataFrame:
        sending = job.with_options(options)
        # the options and the key are checked before any partition is read
        require_key(meta_call(**sending.kwargs(with_key=True, dry_run=True)).settings)
        return _send(ddf, sending, in_flight)

    if not dry_run:
        return send()
    tally = Tally(keep)
    for part in dask.compute(*_check_tasks(ddf, job.without_key(), keep)):
        tally.add(part)
    return AggregatePreview(
        tally,
        what="partitions",
        endpoint=meta_preview.endpoint,
        key_status=meta_preview.key_status,
        sender=send,
    )


def _check_tasks(ddf: Any, job: _Job, keep: int) -> list[Any]:
    check = dask.delayed(_check_partition, pure=False)
    return [
        check(part, job, keep, dask_key_name=f"amp-pandas-check-{job.token}-{i}")
        for i, part in enumerate(ddf.to_delayed())
    ]


def _prepared(ddf: Any, job: _Job) -> tuple[Any, tuple[str, str, str]]:
    """``ddf`` with input positions and order keys, shuffled on the key."""
    columns = list(ddf.columns)
    names = (
        _fresh(columns, "__amp_pandas_partition"),
        _fresh(columns, "__amp_pandas_position"),
        _fresh(columns, "__amp_pandas_key"),
    )
    p, q, k = names
    meta = ddf._meta.assign(
        **{
            p: pd.Series([], dtype="int64"),
            q: pd.Series([], dtype="int64"),
            k: pd.Series([], dtype=object),
        }
    )
    tagged = ddf.map_partitions(
        _tag_partition,
        _alternatives(job.method, job.arguments),
        names,
        partition_info=True,
        meta=meta,
    )
    return tagged.shuffle(on=k, npartitions=ddf.npartitions), names


def send_tasks(ddf: Any, job: _Job, names: tuple[str, str, str]) -> list[Any]:
    """One delayed send per partition of the prepared ``ddf``, with keys naming no secret."""
    send = dask.delayed(_send_partition, pure=False)
    return [
        send(part, job, names, dask_key_name=f"amp-pandas-send-{job.token}-{i}")
        for i, part in enumerate(ddf.to_delayed())
    ]


def _distributed_client(collection: Any) -> Any:
    """The dask.distributed client that would compute ``collection``, or None."""
    scheduler: Callable[..., Any] | None = dask.base.get_scheduler(collections=[collection])
    owner = getattr(scheduler, "__self__", None)
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed not installed
        return None
    return owner if isinstance(owner, Client) else None


def _send(ddf: Any, job: _Job, in_flight: int) -> pd.DataFrame:
    prepared, names = _prepared(ddf, job)
    client = _distributed_client(prepared)
    if client is not None:
        outcomes = _send_distributed(client, prepared, job, names, in_flight)
    else:
        tasks = send_tasks(prepared, job, names)
        scheduler = dask.base.get_scheduler(collections=[prepared])
        sync = scheduler is dask.local.get_sync
        outcomes = list(dask.compute(*tasks, **({} if sync else {"num_workers": in_flight})))
    return _combine(ddf, outcomes, names)


def _send_distributed(
    client: Any, prepared: Any, job: _Job, names: tuple[str, str, str], in_flight: int
) -> list[Any]:
    """Shuffle once on the cluster, then keep ``in_flight`` partition sends running."""
    from distributed import as_completed

    persisted = client.persist(prepared)
    tasks = send_tasks(persisted, job, names)
    outcomes: list[Any] = [None] * len(tasks)
    futures = {}
    pending = iter(enumerate(tasks))
    running = as_completed()
    for i, task in pending:
        future = client.compute(task)
        futures[future.key] = i
        running.add(future)
        if running.count() >= in_flight:
            break
    for future in running:
        outcomes[futures[future.key]] = future.result()
        nxt = next(pending, None)
        if nxt is not None:
            i, task = nxt
            new = client.compute(task)
            futures[new.key] = i
            running.add(new)
    del persisted
    return outcomes


def _combine(ddf: Any, outcomes: list[Any], names: tuple[str, str, str]) -> pd.DataFrame:
    p, q, _ = names
    frames = [frame for frame, _ in outcomes]
    errors = [error for _, error in outcomes if error is not None]
    if frames:
        joined = pd.concat(frames)
    else:
        joined = _empty_result(ddf._meta.index).assign(**{p: 0, q: 0})
    order = np.lexsort((joined[q].to_numpy(), joined[p].to_numpy()))
    joined = joined.iloc[order].drop(columns=[p, q])
    joined.index.name = ddf._meta.index.name
    result = SendResult(joined)
    if errors:
        kind, message, status = next(
            (e for e in errors if e[0] == AuthenticationError.__name__), errors[0]
        )
        if kind == AuthenticationError.__name__ and status is not None:
            raise AuthenticationError(message, status_code=status, result=result)
        raise SendError(message, result=result)
    warn_if_not_succeeded(result)
    return result
