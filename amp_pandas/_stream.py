"""Files in bounded memory: Parquet, CSV/TSV and JSON read in chunks, checked, then sent.

Two passes over the file, a chunk of ``chunk_rows`` rows at a time, keeping only the mapped
columns. Parquet files and :class:`pyarrow.dataset.Dataset` objects are read through Arrow;
CSV/TSV and JSON through :class:`amp_pandas._files.TextFile`, the reading rule of the whole-file
path (a CSV's column types are learned over the whole file first, in one more pass):

1. every chunk is built as a dry run and reduced to counts and its first problems
   (:mod:`amp_pandas._aggregate`), so the verdict covers the whole file before anything is
   sent, and a file that cannot be read fails before any request;
2. every chunk is built again and sent by the pandas sender, one chunk after the other.

Per-user order across chunks: a chunk is sent only when every row of the previous chunk has a
final status, so a user whose rows span chunks gets them in file order (within a chunk the
sender keeps each user's rows in order). The cost is a short pause at each chunk boundary while
the last requests of a chunk are answered.

pyarrow is imported only when a file is read.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._aggregate import DEFAULT_KEEP, AggregatePreview, Tally, check_part, warn_if_not_succeeded
from ._arrow import to_pandas
from ._config import require_key
from ._files import TextFile, file_kind
from ._identify import identify
from ._result import NOT_SENT, STATUSES, SendResult, build_result, summarize
from .errors import (
    ArgumentError,
    InputFileError,
    InterruptedSendWarning,
    RowsNotSucceededWarning,
    SendError,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    import pyarrow.dataset as ds

__all__ = ["identify_file", "FORMATS", "DEFAULT_CHUNK_ROWS"]

#: The ``format=`` names and how each is read (a path's own ending says it otherwise: see
#: :func:`amp_pandas._files.file_kind`).
FORMATS = {
    "parquet": "parquet",
    "csv": "csv",
    "tsv": "tsv",
    "json": "json",
    "jsonl": "jsonl",
}
DEFAULT_CHUNK_ROWS = 100_000
_INDEX_NAME = "row"


def identify_file(
    source: str | os.PathLike[str] | ds.Dataset,
    *,
    format: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    column_types: Mapping[str, Any] | None = None,
    missing_values: Sequence[str] = (),
    out: str | os.PathLike[str] | None = None,
    problem_rows: int = DEFAULT_KEEP,
    dry_run: bool = False,
    **arguments: Any,
) -> AggregatePreview | pd.DataFrame | pd.Series:
    """Identify every row of a Parquet, CSV or JSON-lines file, in bounded memory.

    The file is read twice, ``chunk_rows`` rows at a time: a first pass checks every row
    (nothing is sent if the file cannot be read to the end), a second builds and sends each
    chunk with the pandas sender. Peak memory follows the chunk size, not the file size
    (for Parquet, the larger of a chunk and a row group). Only the mapped columns are read.

    Parameters
    ----------
    source : path or pyarrow.dataset.Dataset
        A ``.parquet``/``.pq``, ``.csv``/``.tsv`` (``.gz`` too), ``.jsonl``/``.ndjson`` (one
        JSON object per line) or ``.json`` (JSON lines, or one array of objects, parsed whole)
        file, a folder of Parquet files, or a dataset.
    format : {"parquet", "csv", "tsv", "json", "jsonl"}, optional
        The file format, when the name's ending does not say it.
    chunk_rows : int, default 100_000
        Rows per chunk.
    column_types : dict, optional
        ``{column: pyarrow type or type name}`` for CSV/TSV columns. Otherwise CSV cells are
        typed by the reading rule of :mod:`amp_pandas._files`, over the whole file: ids and
        group columns stay text (``0012345`` stays ``0012345``), a column becomes numbers or
        booleans only when every cell reads back exactly. A cell that does not convert to its
        named type raises :class:`~amp_pandas.errors.InputFileError` before anything is sent.
    missing_values : list of str, default ()
        CSV cells read as missing besides empty ones (e.g. ``["NA", "null"]``). By default
        only an empty cell is missing.
    out : path, optional
        Write the per-row result to this file (``.parquet``, else CSV) chunk by chunk instead
        of returning it; the call then returns the count of rows per status.
    problem_rows : int, default 5
        With ``dry_run=True``: problems kept per kind (a kind is a column and a severity).
    dry_run : bool, default False
        Check every row and return an :class:`~amp_pandas._aggregate.AggregatePreview`
        (``summary``, ``problems``, ``problem_counts``, ``parts`` = chunks read, ``send()``).
    **arguments
        The mapping and sending options of :meth:`amp_pandas.AmplitudeAccessor.identify`
        (``user_id``, ``set``, ..., ``api_key``, ``server_url``, ``batch_size`` ...).

    Returns
    -------
    AggregatePreview, pandas.DataFrame or pandas.Series
        The preview with ``dry_run=True``; else the result (``status``, ``http_status``,
        ``error``, ``attempts``) indexed by ``row``, the 0-based row number in the file; with
        ``out=``, the number of rows per status.

    Raises
    ------
    amp_pandas.errors.InputFileError
        The file does not exist, its format is unknown, or it cannot be read.
    amp_pandas.errors.ArgumentError
        Bad arguments (as for ``identify``), raised before any row is read.

    Notes
    -----
    Per-user order across chunks holds because chunks are sent one after another: each
    chunk's rows all reach a final status before the next chunk is sent.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import amp_pandas
    >>> from amp_pandas.sandbox import Sandbox
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "users.csv"
    >>> _ = path.write_text("uid,plan\\n0012345,pro\\nuser-2,free\\nuser-3,\\n")
    >>> preview = amp_pandas.identify_file(path, user_id="uid", set=["plan"], chunk_rows=2,
    ...                                    dry_run=True)
    >>> preview.summary[["rows", "valid", "skipped"]].tolist(), preview.parts
    ([3, 2, 1], 2)
    >>> with Sandbox() as sb:
    ...     result = preview.send(server_url=sb.url, api_key=sb.api_key, progress=False)
    ...     plans = sb.profiles()["plan"].to_dict()
    >>> result.status.tolist(), plans
    (['success', 'success', 'skipped'], {'0012345': 'pro', 'user-2': 'free'})
    """
    return run_file(
        "identify",
        source,
        format=format,
        chunk_rows=chunk_rows,
        column_types=column_types,
        missing_values=missing_values,
        out=out,
        problem_rows=problem_rows,
        dry_run=dry_run,
        arguments=arguments,
    )


def run_file(
    method: str,
    source: Any,
    *,
    format: str | None,
    chunk_rows: int,
    column_types: Mapping[str, Any] | None,
    missing_values: Sequence[str],
    out: Any,
    problem_rows: int,
    dry_run: bool,
    arguments: Mapping[str, Any],
    keep_result: bool = True,
    on_chunk: Callable[[pd.DataFrame], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> Any:
    """:func:`identify_file` for any frame method (``identify``, ``group_identify``).

    ``keep_result=False`` keeps no per-row result in memory (the send returns the count of rows
    per status, as with ``out``); ``on_chunk`` is called with each chunk's result as it is
    sent (the command line prints the first rows that did not succeed from it);
    ``stop_requested`` is asked before each chunk (the command line's SIGTERM): when it says
    yes, the checking pass raises ``KeyboardInterrupt`` and the send stops as after Ctrl-C.
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ArgumentError(f"chunk_rows must be a positive integer, not {chunk_rows!r}")
    if arguments.get("sync") is not None:
        raise ArgumentError("sync= is not supported when streaming a file")
    arguments = {k: v for k, v in arguments.items() if k != "sync"}
    reader = open_source(
        source, format, column_types, missing_values, keep_text=_text_columns(arguments)
    )
    call = _method(method)
    # Arguments are checked on the empty frame of the whole schema: no row is read yet.
    empty = reader.empty()
    meta = call(empty, **{**arguments, "dry_run": True})
    columns = _mapped_columns(arguments, reader.names)
    stream = _Stream(reader, columns, chunk_rows)

    def send(**options: Any) -> Any:
        merged = {**arguments, **options}
        require_key(call(empty, **{**merged, "dry_run": True}).settings)
        return _send_pass(
            stream, call, merged, out, total=tally.summary["rows"], keep=keep_result,
            on_chunk=on_chunk, stop_requested=stop_requested,
        )

    if not dry_run:
        require_key(meta.settings)
    tally = Tally(problem_rows)
    first: dict[str, Any] | None = None
    single: Any = None  # the preview of the first chunk, while it is the only one
    for frame in stream.frames():
        if stop_requested is not None and stop_requested():
            raise KeyboardInterrupt  # nothing sent yet
        preview = call(frame, **{**arguments, "dry_run": True})
        if first is None and len(preview.payloads):
            first = preview.payloads[0]
        single = preview if tally.parts == 0 else None
        tally.add(check_part(preview.summary, preview.problems, problem_rows))
    checked = AggregatePreview(
        tally,
        what="chunks",
        endpoint=meta.endpoint,
        key_status=meta.key_status,
        sender=send,
        first=first,
        single=single,
    )
    return checked if dry_run else checked.send()


def _method(method: str) -> Callable[..., Any]:
    if method == "identify":
        return identify

    def call(frame: pd.DataFrame, **kwargs: Any) -> Any:
        return getattr(frame.amplitude, method)(**kwargs)

    return call


# ---------------------------------------------------------------------- reading
def _same_columns(physical: pa.Schema, logical: pa.Schema, columns: list[str]) -> bool:
    """Whether a file holds ``columns`` with the dataset's own types (no partition columns,
    no casts to make)."""
    names = set(physical.names)
    return all(
        c in names and physical.field(c).type.equals(logical.field(c).type) for c in columns
    )


class _ArrowSource:
    """A Parquet file or folder, or a given :class:`pyarrow.dataset.Dataset`, read in chunks."""

    def __init__(self, dataset: ds.Dataset) -> None:
        self.dataset = dataset
        self.names = list(dataset.schema.names)

    def empty(self) -> pd.DataFrame:
        return to_pandas(self.dataset.schema.empty_table())

    def _batches(self, columns: list[str], chunk_rows: int) -> Iterator[pa.RecordBatch]:
        """Record batches of the columns, read one after the other.

        Parquet files are read a row group at a time by :class:`pyarrow.parquet.ParquetFile`,
        without pre-buffering: the dataset scanner reads ahead (column chunks of many row groups,
        decoded on its threads) and its memory then grows with the file, not the chunk.
        """
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        dataset = self.dataset
        plain = (
            isinstance(dataset, ds.FileSystemDataset)
            and isinstance(dataset.format, ds.ParquetFileFormat)
            and all(_same_columns(f.physical_schema, dataset.schema, columns)
                    for f in dataset.get_fragments())
        )
        if not plain:  # partitioned folders, filtered or other datasets: Arrow's scanner
            yield from dataset.to_batches(
                columns=columns,
                batch_size=chunk_rows,
                batch_readahead=1,
                fragment_readahead=1,
                use_threads=False,
            )
            return
        for path in dataset.files:
            with pq.ParquetFile(path, filesystem=dataset.filesystem, pre_buffer=False) as file:
                yield from file.iter_batches(
                    batch_size=chunk_rows, columns=columns, use_threads=False
                )

    def tables(self, columns: list[str], chunk_rows: int) -> Iterator[pa.Table]:
        import pyarrow as pa

        batches = self._batches(columns, chunk_rows)
        pending: list[pa.RecordBatch] = []
        held = 0
        try:
            for batch in batches:
                while batch.num_rows:
                    take = min(batch.num_rows, chunk_rows - held)
                    pending.append(batch.slice(0, take))
                    held += take
                    batch = batch.slice(take)
                    if held == chunk_rows:
                        yield pa.Table.from_batches(pending)
                        pending, held = [], 0
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise InputFileError(f"cannot read the input: {exc}") from exc
        if pending:
            yield pa.Table.from_batches(pending)

    def frames(self, columns: list[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
        start = 0
        for table in self.tables(columns, chunk_rows):
            n = table.num_rows
            yield to_pandas(table, index=pd.RangeIndex(start, start + n))
            start += n


def open_source(
    source: Any,
    format: str | None,
    column_types: Mapping[str, Any] | None,
    missing_values: Sequence[str],
    keep_text: Sequence[str] = (),
) -> _ArrowSource | TextFile:
    """``source`` as something read in chunks: Parquet through Arrow, CSV/TSV and JSON by the
    reading rule of :mod:`amp_pandas._files` (the one :func:`~amp_pandas._files.read_table`
    uses), with ``keep_text`` columns (ids, groups) always text."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    if isinstance(source, ds.Dataset):
        if column_types or missing_values:
            raise ArgumentError(
                "column_types= and missing_values= apply to a path; a dataset keeps its schema"
            )
        return _ArrowSource(source)
    path = Path(os.fspath(source))
    if not path.exists():
        raise InputFileError(f"cannot read {path}: no such file")
    if format is not None and format not in FORMATS:
        raise ArgumentError(f"format must be one of {sorted(FORMATS)}, not {format!r}")
    if path.is_dir():
        if format not in (None, "parquet"):
            raise InputFileError(
                f"cannot read {path}: a folder is read as Parquet files only; pass one "
                "CSV/JSON file, or a pyarrow.dataset of the folder"
            )
        kind = "parquet"
    else:
        kind = FORMATS[format] if format is not None else file_kind(path)
    if kind == "parquet":
        if column_types or missing_values:
            raise ArgumentError(
                "column_types= and missing_values= apply to CSV; Parquet keeps its own types"
            )
        try:
            return _ArrowSource(ds.dataset(path, format="parquet"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise InputFileError(f"cannot read {path} as Parquet: {exc}") from exc
    if kind in ("json", "jsonl") and missing_values:
        raise ArgumentError("missing_values= applies to CSV; JSON has null")
    if kind in ("json", "jsonl") and column_types:
        raise ArgumentError("column_types= applies to CSV; JSON values keep JSON's types")
    return TextFile(
        path,
        kind=kind,
        missing=missing_values,
        keep_text=keep_text,
        column_types=column_types,
    )


def _text_columns(arguments: Mapping[str, Any]) -> list[str]:
    """The columns that stay text whatever they hold: ids and group values."""
    out: list[str] = []
    for key in ("user_id", "device_id", "group_value"):
        value = arguments.get(key)
        if isinstance(value, str):
            out.append(value)
    groups = arguments.get("groups")
    if isinstance(groups, Mapping):
        out += [v for v in groups.values() if isinstance(v, str)]
    return out


def _mapped_columns(arguments: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """The columns the arguments name (a column label anywhere a column can stand)."""
    available = set(names)
    used: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, str):
            if value in available:
                used.add(value)
        elif isinstance(value, Mapping):
            for v in value.values():
                visit(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)

    for key, value in arguments.items():
        if key not in ("api_key", "server_url", "region", "session", "nulls"):
            visit(value)
    return [n for n in names if n in used]


class _Stream:
    """The source's mapped columns, re-readable, as pandas frames of ``chunk_rows`` rows
    indexed by their 0-based row numbers in the file (``row``)."""

    def __init__(
        self, source: _ArrowSource | TextFile, columns: list[str], chunk_rows: int
    ) -> None:
        self.source = source
        self.columns = columns
        self.chunk_rows = chunk_rows
        self.chunks_read = 0

    def frames(self) -> Iterator[pd.DataFrame]:
        for frame in self.source.frames(self.columns, self.chunk_rows):
            self.chunks_read += 1
            frame.index = pd.RangeIndex(
                frame.index[0] if len(frame) else 0,
                (frame.index[0] if len(frame) else 0) + len(frame),
                name=_INDEX_NAME,
            )
            yield frame


# ---------------------------------------------------------------------- sending
class _Sink:
    """Where chunk results go: kept in memory, appended to ``out``, or only counted."""

    def __init__(self, out: Any, keep: bool = True) -> None:
        self.path = None if out is None else Path(os.fspath(out))
        self.keep = keep and self.path is None
        self.frames: list[pd.DataFrame] = []
        self.counts = pd.Series(0, index=list(STATUSES), dtype="int64", name="rows")
        self._writer: Any = None

    def add(self, result: pd.DataFrame) -> None:
        self.counts = self.counts.add(summarize(result).reindex(STATUSES, fill_value=0))
        if self.keep:
            self.frames.append(pd.DataFrame(result))
        if self.path is None:
            return
        import pyarrow as pa

        table = pa.table(
            {
                _INDEX_NAME: pa.array(np.asarray(result.index, dtype=np.int64)),
                "status": pa.array(result["status"].astype(object), pa.string()),
                "http_status": pa.array(result["http_status"].astype(object), pa.int64()),
                "error": pa.array(result["error"].astype(object), pa.string()),
                "attempts": pa.array(result["attempts"].to_numpy(), pa.int64()),
            }
        )
        if self._writer is None:
            if self.path.suffix.lower() in (".parquet", ".pq"):
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(self.path, table.schema)
            else:
                import pyarrow.csv as pcsv

                self._writer = pcsv.CSVWriter(self.path, table.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def result(self) -> Any:
        if not self.keep:
            return self.counts
        frames = [f for f in self.frames if len(f)]
        if not frames:
            return SendResult(_not_sent(0, 0))
        return SendResult(pd.concat(frames))


def _not_sent(start: int, stop: int, reason: str | None = None) -> pd.DataFrame:
    n = stop - start
    return pd.DataFrame(
        build_result(
            pd.RangeIndex(start, stop, name=_INDEX_NAME),
            np.full(n, NOT_SENT, dtype=np.int64),
            np.zeros(n, dtype=np.int64),
            np.full(n, reason, dtype=object),
            np.zeros(n, dtype=np.int64),
        )
    )


def _send_pass(
    stream: _Stream,
    call: Callable[..., Any],
    arguments: Mapping[str, Any],
    out: Any,
    total: int,
    keep: bool = True,
    on_chunk: Callable[[pd.DataFrame], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> Any:
    arguments = dict(arguments)
    show = bool(arguments.pop("progress", True))
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(total), unit="rows", desc="identify")
    sink = _Sink(out, keep)
    done = 0
    stop: SendError | None = None
    interrupted = False
    in_call = False
    try:
        for frame in stream.frames():
            if stop_requested is not None and stop_requested():
                interrupted = True
                break
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RowsNotSucceededWarning)
                warnings.simplefilter("always", InterruptedSendWarning)
                in_call = True
                try:
                    result = call(frame, **arguments, progress=False)
                except SendError as exc:
                    if exc.result is None:
                        raise
                    result, stop = exc.result, exc
                in_call = False
            for w in caught:
                if issubclass(w.category, InterruptedSendWarning):
                    interrupted = True
                elif not issubclass(w.category, RowsNotSucceededWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            sink.add(result)
            if on_chunk is not None:
                on_chunk(result)
            done += len(frame)
            if bar is not None:
                bar.update(len(frame))
            if stop is not None or interrupted:
                break
    except KeyboardInterrupt:
        if in_call:  # a second Ctrl-C inside the sender: requests may be in flight
            raise
        interrupted = True  # while the next chunk was read: nothing of it was sent
    finally:
        if bar is not None:
            bar.close()
        try:
            if (stop is not None or interrupted) and done < total:
                rest = _not_sent(done, int(total), "not sent: the send stopped before this chunk")
                sink.add(rest)
                if on_chunk is not None:
                    on_chunk(rest)
        finally:
            sink.close()
    result = sink.result()
    if stop is not None:
        stop.result = result if sink.keep else None
        raise stop
    if interrupted:
        warnings.warn(
            "The send was interrupted; the result is partial: rows 'not_sent' were not "
            "applied, rows 'unknown' may have been.",
            InterruptedSendWarning,
            stacklevel=3,
        )
    elif sink.keep:
        warn_if_not_succeeded(result)
    return result
