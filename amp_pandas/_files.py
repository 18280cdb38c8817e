"""Reading input files exactly as written: CSV, Parquet, JSON lines and JSON arrays.

A value must reach Amplitude as the file holds it. pandas' CSV inference does not promise that:
it turns the id ``0012345`` into ``12345`` (another user), 19-digit ids into rounded floats, and
the text ``NA`` (a country code), ``None`` and ``null`` into missing cells. So text files are read
with every cell as text, and a column becomes a number only when no cell's text would change:

* **Missing** cells are the empty ones, and only those, unless more markers are named
  (``missing=("NULL", "-")``): the text ``NA`` stays ``"NA"``.
* A column whose every present cell is a plain **integer** (``-?(0|[1-9][0-9]*)``, at most 18
  digits, so that it fits an int64 exactly) is read as integers.
* A column whose every present cell is a plain **decimal number** (``1.5``, ``-0.25``, ``3e4``)
  that a double holds exactly as written is read as floats (``1.50`` is the number 1.5).
* A column with ``true``/``false`` only (any case) is read as booleans.
* Everything else stays text: leading zeros (``007``), a ``+`` sign, more digits than a double
  holds, thousands separators, dates. Text dates are sent as written.
* Columns named in ``keep_text`` (ids, group values) stay text whatever they hold.

* A type named for a column in ``column_types`` wins over the rule (``{"n": "int64"}``); a cell
  that does not convert is an error naming the column and row.

Parquet files are typed already and are read as they are, through Arrow (an integer column with
missing cells stays integer). JSON values are parsed by Python's own ``json`` module (integers
of any size stay exact); a ``.json`` file may hold JSON lines or one array of objects.

The rule applies per column, over every row: :class:`ColumnTypes` observes chunks one after the
other and then converts each chunk the same way, so that a file read in chunks is typed as the
whole file would be. :class:`TextFile` reads a CSV/TSV or JSON file a chunk at a time with the
same readers :func:`read_table` uses, so the whole-file and the streamed path see the same values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._arrow import to_pandas
from .errors import ArgumentError, InputFileError

__all__ = ["ColumnTypes", "TextFile", "arrow_type", "file_kind", "read_table", "type_text_columns"]

_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE]-?[0-9]+)?")
_BOOLS = {"true": True, "false": False}

_KINDS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonl.gz": "jsonl",
    ".json": "json",
}


def file_kind(path: str | Path) -> str:
    """``"csv"``, ``"tsv"``, ``"parquet"``, ``"jsonl"`` or ``"json"``, by the file's extension.

    Raises
    ------
    InputFileError
        The extension is not one of those read.

    Examples
    --------
    >>> file_kind("users.csv"), file_kind("users.jsonl.gz"), file_kind("x.parquet")
    ('csv', 'jsonl', 'parquet')
    """
    p = Path(path)
    suffix = "".join(p.suffixes[-2:]).lower() if p.suffix.lower() == ".gz" else p.suffix.lower()
    kind = _KINDS.get(suffix)
    if kind is None:
        raise InputFileError(
            f"cannot read {path}: unknown file type {p.suffix!r} "
            "(use .csv, .tsv, .parquet, .jsonl or .json)"
        )
    return kind


def _exact_decimal(text: str) -> bool:
    """Whether the double nearest to ``text`` has exactly the value ``text`` writes."""
    try:
        return Decimal(text) == Decimal(float(text))
    except (InvalidOperation, ValueError, OverflowError):
        return False


def arrow_type(given: Any, label: Any) -> Any:
    """``given`` (a pyarrow type or its name, e.g. ``"int64"``) as a pyarrow type.

    Raises
    ------
    ArgumentError
        ``given`` names no pyarrow type.

    Examples
    --------
    >>> str(arrow_type("timestamp[s]", "signup"))
    'timestamp[s]'
    """
    import pyarrow as pa

    if isinstance(given, pa.DataType):
        return given
    try:
        return pa.type_for_alias(str(given))
    except (ValueError, KeyError):
        raise ArgumentError(
            f"column_types[{label!r}]: {given!r} is not a pyarrow type "
            "(e.g. 'int64', 'float64', 'bool', 'timestamp[s]', 'string')"
        ) from None


class ColumnTypes:
    """The text-to-type rule of one table, learned over all its rows, applied chunk by chunk.

    Parameters
    ----------
    keep_text : iterable of labels
        Columns that stay text whatever they hold (ids, group values).
    explicit : mapping, optional
        ``{label: pyarrow type or type name}``: these columns are converted to that type (the
        rule is not consulted); a cell that does not convert raises :class:`InputFileError`.

    Examples
    --------
    >>> chunk1 = pd.DataFrame({"id": ["007", "123"], "n": ["1", "2"], "x": ["1.5", "2"]})
    >>> chunk2 = pd.DataFrame({"id": ["9"], "n": ["+3"], "x": [None]})
    >>> types = ColumnTypes(keep_text=["id"])
    >>> types.observe(chunk1); types.observe(chunk2)
    >>> types.kinds
    {'id': 'text', 'n': 'text', 'x': 'float'}
    >>> types.apply(chunk1)["x"].tolist()
    [1.5, 2.0]
    >>> ColumnTypes(explicit={"n": "int64"}).apply(chunk1)["n"].tolist()
    [1, 2]
    """

    def __init__(
        self, keep_text: Iterable[Any] = (), explicit: Mapping[Any, Any] | None = None
    ) -> None:
        self._keep = set(keep_text)
        self._explicit = {k: arrow_type(v, k) for k, v in (explicit or {}).items()}
        #: label -> the kinds every present cell so far could be: subset of int/float/bool
        self._possible: dict[Any, set[str]] = {}

    def observe(self, frame: pd.DataFrame) -> None:
        """Narrow each column's possible types by the cells of ``frame`` (text or missing)."""
        for label in frame.columns:
            possible = self._possible.setdefault(
                label,
                set()
                if label in self._keep or label in self._explicit
                else {"int", "float", "bool"},
            )
            if not possible:
                continue
            values = frame[label]
            present = values[values.notna()]
            if present.empty:
                continue
            text = present.astype(str)
            if "int" in possible and not text.str.fullmatch(_INT).all():
                possible.discard("int")
            if "float" in possible and not (
                text.str.fullmatch(_DECIMAL).all() and all(map(_exact_decimal, text.unique()))
            ):
                possible.discard("float")
            if "bool" in possible and not text.str.lower().isin(_BOOLS).all():
                possible.discard("bool")

    @property
    def kinds(self) -> dict[Any, str]:
        """Per column: ``"int"``, ``"float"``, ``"bool"``, ``"text"``, or the explicit type."""
        out = {}
        for label, possible in self._possible.items():
            kind = str(self._explicit[label]) if label in self._explicit else "text"
            for candidate in ("bool", "int", "float"):
                if candidate in possible:
                    kind = candidate
                    break
            out[label] = kind
        return out

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with each column converted to its learned type (missing cells stay so)."""
        kinds = self.kinds
        columns = {}
        for label in frame.columns:
            values = frame[label]
            kind = kinds.get(label, "text")
            if label in self._explicit:
                columns[label] = _convert_explicit(values, self._explicit[label], label)
            elif kind == "int":
                # nullable Int64 keeps a missing cell missing without turning ints into floats
                columns[label] = pd.array(
                    [None if v is None or v is pd.NA or v != v else int(v) for v in values],
                    dtype="Int64",
                )
            elif kind == "float":
                # each text as a double (to_numeric would read "-0" alone as the integer 0)
                columns[label] = values.astype("float64")
            elif kind == "bool":
                columns[label] = pd.array(
                    [None if not isinstance(v, str) else _BOOLS[v.lower()] for v in values],
                    dtype="boolean",
                )
            else:
                columns[label] = values.astype(object).where(values.notna(), None)
        return pd.DataFrame(columns, index=frame.index)


def _convert_explicit(values: pd.Series, target: Any, label: Any) -> Any:
    """Text cells to ``target`` through Arrow's cast; the first cell that does not convert is an
    error naming the column and row."""
    import pyarrow as pa

    cells = [v if isinstance(v, str) else None for v in values.astype(object)]
    text = pa.array(cells, pa.string())
    if pa.types.is_string(target) or pa.types.is_large_string(target):
        return pd.Series(cells, index=values.index, dtype=object)
    try:
        converted = text.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        for position, cell in enumerate(cells):
            if cell is None:
                continue
            try:
                pa.array([cell], pa.string()).cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InputFileError(
                    f"column {label!r}, row {values.index[position]}: {cell!r} does not read as "
                    f"{target}; fix the cell, or name another type for the column"
                ) from None
        raise InputFileError(f"column {label!r}: cannot read as {target} ({exc})") from None
    return pd.Series(pd.arrays.ArrowExtensionArray(converted), index=values.index)


def type_text_columns(
    frame: pd.DataFrame,
    keep_text: Iterable[Any] = (),
    column_types: Mapping[Any, Any] | None = None,
) -> pd.DataFrame:
    """Apply the text-to-type rule to a frame read as text (see the module's docstring).

    Examples
    --------
    >>> raw = pd.DataFrame({"uid": ["0012345"], "country": ["NA"], "n": ["12"]})
    >>> typed = type_text_columns(raw, keep_text=["uid"])
    >>> typed["uid"].tolist(), typed["country"].tolist(), typed["n"].tolist()
    (['0012345'], ['NA'], [12])
    """
    types = ColumnTypes(keep_text, column_types)
    types.observe(frame)
    return types.apply(frame)


#: The name of the column that catches a field past the header's last one.
_EXTRA_FIELD = "\x00extra field"


def _csv_options(kind: str, missing: Sequence[str]) -> dict[str, Any]:
    """The one way a CSV/TSV is read: every cell text, only the named texts missing."""
    return {
        "sep": "\t" if kind == "tsv" else ",",
        "dtype": str,
        "keep_default_na": False,
        "na_values": [""] + list(missing),
        "na_filter": True,
        "skip_blank_lines": True,
    }


def _read_csv_text(path: Path, kind: str, missing: Sequence[str]) -> pd.DataFrame:
    return pd.read_csv(path, **_csv_options(kind, missing))


def _open_text(path: Path) -> Any:
    import gzip

    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _is_json_array(path: Path) -> bool:
    with _open_text(path) as handle:
        while True:
            char = handle.read(1)
            if not char or not char.isspace():
                return char == "["


def _check_record(path: Path, position: int, record: Any) -> None:
    if not isinstance(record, dict):
        raise InputFileError(
            f"cannot read {path}: record {position} is a {type(record).__name__}, "
            "not an object; each record must be a JSON object of column: value"
        )


def _iter_json_records(path: Path, kind: str) -> Iterator[dict[str, Any]]:
    """The file's records one at a time: a JSON array is parsed whole, JSON lines line by line."""
    if kind == "json" and _is_json_array(path):
        with _open_text(path) as handle:
            try:
                records = json.load(handle)
            except ValueError as exc:
                raise InputFileError(
                    f"cannot read {path}: not valid JSON ({exc}); a .json file holds one array "
                    "of objects or one object per line"
                ) from None
        for position, record in enumerate(records, start=1):
            _check_record(path, position, record)
            yield record
        return
    position = 0
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFileError(
                    f"cannot read {path}: line {number} is not JSON ({exc.msg}); "
                    "a JSON-lines file holds one object per line"
                ) from None
            position += 1
            _check_record(path, position, record)
            yield record


def _json_records(path: Path, kind: str) -> list[Any]:
    return list(_iter_json_records(path, kind))


def _frame_from_records(
    records: list[dict[str, Any]], labels: Sequence[str] | None = None
) -> pd.DataFrame:
    if labels is None:
        seen: dict[str, None] = {}
        for record in records:
            seen.update(dict.fromkeys(record))
        labels = list(seen)
    if not records and not labels:
        return pd.DataFrame()
    columns = {}
    for label in labels:
        cells = [record.get(label) for record in records]
        # object columns keep every value as parsed: big ints exact, strings as strings
        columns[label] = pd.Series(cells, dtype=object)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(records)))


def _one_line(path: Any, exc: BaseException) -> InputFileError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InputFileError(f"cannot read {path}: {first}")


def read_table(
    path: str | Path,
    *,
    missing: Sequence[str] = (),
    keep_text: Iterable[Any] = (),
    column_types: Mapping[Any, Any] | None = None,
) -> pd.DataFrame:
    """Read a CSV, TSV, Parquet, JSON-lines or JSON-array file with its values as written.

    Parameters
    ----------
    path : str or Path
        The file; its extension says how to read it (``.csv``, ``.tsv``, ``.parquet``, ``.jsonl``,
        ``.ndjson``, ``.json``; ``.gz`` for compressed CSV and JSON lines).
    missing : sequence of str, default ()
        Texts that mean "missing" in a CSV/TSV besides the empty cell, e.g. ``("NULL",)``.
    keep_text : iterable of labels, default ()
        CSV/TSV columns that stay text whatever they hold (ids, group values).
    column_types : mapping, optional
        ``{column: pyarrow type or name}`` for CSV/TSV columns that must have that type.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    InputFileError
        The file does not exist or cannot be read; the message says why in one line.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "users.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("user_id,country,visits\\n0012345,NA,3\\n0099999,,4\\n")
    >>> df = read_table(path, keep_text=["user_id"])
    >>> df["user_id"].tolist(), df["country"].tolist(), df["visits"].tolist()
    (['0012345', '0099999'], ['NA', None], [3, 4])
    """
    p = Path(path)
    kind = file_kind(p)
    if not p.is_file():
        raise InputFileError(f"cannot read {path}: no such file")
    if kind not in ("csv", "tsv") and (missing or column_types):
        raise ArgumentError(
            "missing texts and column types apply to CSV/TSV files; "
            f"{kind} files keep their own types and missing values"
        )
    try:
        if kind in ("csv", "tsv"):
            raw = _read_csv_text(p, kind, missing)
            return type_text_columns(raw, keep_text, column_types)
        if kind == "parquet":
            import pyarrow.parquet as pq

            return to_pandas(pq.read_table(p))
        return _frame_from_records(_json_records(p, kind))
    except (InputFileError, ArgumentError):
        raise
    except Exception as exc:  # readers raise many types; one clear line is what helps
        raise _one_line(path, exc) from exc


class TextFile:
    """A CSV/TSV or JSON file read a chunk at a time, by the same rule as :func:`read_table`.

    CSV/TSV: the text of every chunk comes from the reader :func:`read_table` uses;
    :meth:`learn` observes every chunk of the columns asked for (one pass over the file, one
    chunk in memory at a time), and :meth:`frames` then converts each chunk with the types
    learned over the whole file. JSON: records are parsed by ``json``, chunk by chunk for JSON
    lines (a ``.json`` array is parsed whole: use JSON lines for files larger than memory).

    Parameters
    ----------
    path : str or Path
    kind : {"csv", "tsv", "json", "jsonl"}, optional
        Default: from the extension (:func:`file_kind`).
    missing, keep_text, column_types
        As for :func:`read_table`.

    Attributes
    ----------
    names : list of str
        The file's column labels (CSV: its header; JSON: every key of every record, in order
        of first appearance).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "u.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("uid,n\\n007,1\\n008,2\\n009,+3\\n")
    >>> text = TextFile(path, keep_text=["uid"])
    >>> [f["n"].tolist() for f in text.frames(["uid", "n"], chunk_rows=2)]
    [['1', '2'], ['+3']]
    """

    def __init__(
        self,
        path: str | Path,
        *,
        kind: str | None = None,
        missing: Sequence[str] = (),
        keep_text: Iterable[Any] = (),
        column_types: Mapping[Any, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.kind = kind or file_kind(self.path)
        if self.kind not in ("csv", "tsv", "json", "jsonl"):
            raise ArgumentError(f"TextFile reads CSV, TSV and JSON, not {self.kind}")
        if not self.path.is_file():
            raise InputFileError(f"cannot read {path}: no such file")
        if self.kind in ("json", "jsonl") and (missing or column_types):
            raise ArgumentError(
                "missing texts and column types apply to CSV/TSV files; "
                "JSON has null and keeps its own types"
            )
        self.missing = list(missing)
        self.names = self._names()
        unknown = sorted(set(column_types or {}) - set(self.names), key=str)
        if unknown:
            raise ArgumentError(
                f"column types name columns not in {self.path.name}: {unknown}"
            )
        self.types = ColumnTypes(keep_text, column_types)
        self._learned: set[Any] | None = None

    def _names(self) -> list[str]:
        try:
            if self.kind in ("csv", "tsv"):
                header = pd.read_csv(self.path, nrows=0, **_csv_options(self.kind, self.missing))
                return [str(c) for c in header.columns]
            seen: dict[str, None] = {}
            for record in _iter_json_records(self.path, self.kind):
                seen.update(dict.fromkeys(record))
            return list(seen)
        except (InputFileError, ArgumentError):
            raise
        except Exception as exc:
            raise _one_line(self.path, exc) from exc

    def empty(self) -> pd.DataFrame:
        """A frame of the file's columns and no rows (for checking arguments before reading)."""
        return pd.DataFrame({n: pd.Series([], dtype=object) for n in self.names})

    def text_chunks(self, columns: Sequence[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
        """The columns as read, before typing: index = the rows' 0-based numbers in the file."""
        start = 0
        try:
            for chunk in self._raw_chunks(list(columns), chunk_rows):
                chunk.index = pd.RangeIndex(start, start + len(chunk))
                start += len(chunk)
                yield chunk
        except (InputFileError, ArgumentError):
            raise
        except Exception as exc:
            raise _one_line(self.path, exc) from exc

    def _raw_chunks(self, columns: list[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
        if self.kind in ("csv", "tsv"):
            # every column is read (not ``usecols``), plus one more: a row with more fields than
            # the header is then an error here as in read_table, not silently cut short (pandas
            # 2.2's chunked reader drops a row's extra field without a word)
            reader = pd.read_csv(
                self.path,
                chunksize=chunk_rows,
                header=None,
                skiprows=1,
                names=[*self.names, _EXTRA_FIELD],
                **_csv_options(self.kind, self.missing),
            )
            start = 0
            with reader:
                for chunk in reader:
                    extra = np.flatnonzero(chunk[_EXTRA_FIELD].notna().to_numpy())
                    if len(extra):
                        line = start + int(extra[0]) + 2  # 1-based, after the header line
                        raise InputFileError(
                            f"cannot read {self.path}: line {line} has more fields than the "
                            f"header's {len(self.names)}; fix the file (quote a value that "
                            "holds the separator)"
                        )
                    start += len(chunk)
                    yield chunk.loc[:, columns]
            return
        records: list[dict[str, Any]] = []
        for record in _iter_json_records(self.path, self.kind):
            records.append(record)
            if len(records) == chunk_rows:
                yield _frame_from_records(records, columns)
                records = []
        if records:
            yield _frame_from_records(records, columns)

    def learn(self, columns: Sequence[str], chunk_rows: int) -> dict[Any, str]:
        """Learn the types of ``columns`` over the whole file (CSV/TSV; nothing for JSON)."""
        if self.kind in ("csv", "tsv"):
            for chunk in self.text_chunks(columns, chunk_rows):
                self.types.observe(chunk)
        self._learned = set(columns)
        return {k: v for k, v in self.types.kinds.items() if k in self._learned}

    def frames(self, columns: Sequence[str], chunk_rows: int) -> Iterator[pd.DataFrame]:
        """``columns`` a chunk at a time, typed by the rule over the whole file."""
        if self._learned is None or not set(columns) <= self._learned:
            self.learn(columns, chunk_rows)
        for chunk in self.text_chunks(columns, chunk_rows):
            yield self.types.apply(chunk) if self.kind in ("csv", "tsv") else chunk
