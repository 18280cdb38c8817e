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

Parquet files are typed already and are read as they are. JSON values are parsed by Python's own
``json`` module (integers of any size stay exact); a ``.json`` file may hold JSON lines or one
array of objects.

The rule applies per column, over every row: :class:`ColumnTypes` observes chunks one after the
other and then converts each chunk the same way, so that a file read in chunks is typed as the
whole file would be.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import InputFileError

__all__ = ["ColumnTypes", "file_kind", "read_table", "type_text_columns"]

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


class ColumnTypes:
    """The text-to-type rule of one table, learned over all its rows, applied chunk by chunk.

    Parameters
    ----------
    keep_text : iterable of labels
        Columns that stay text whatever they hold (ids, group values).

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
    """

    def __init__(self, keep_text: Iterable[Any] = ()) -> None:
        self._keep = set(keep_text)
        #: label -> the kinds every present cell so far could be: subset of int/float/bool
        self._possible: dict[Any, set[str]] = {}

    def observe(self, frame: pd.DataFrame) -> None:
        """Narrow each column's possible types by the cells of ``frame`` (text or missing)."""
        for label in frame.columns:
            possible = self._possible.setdefault(
                label, set() if label in self._keep else {"int", "float", "bool"}
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
        """Per column: ``"int"``, ``"float"``, ``"bool"`` or ``"text"``."""
        out = {}
        for label, possible in self._possible.items():
            kind = "text"
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
            if kind == "int":
                # nullable Int64 keeps a missing cell missing without turning ints into floats
                columns[label] = pd.array(
                    [None if v is None or v is pd.NA or v != v else int(v) for v in values],
                    dtype="Int64",
                )
            elif kind == "float":
                columns[label] = pd.to_numeric(values, errors="raise").astype("float64")
            elif kind == "bool":
                columns[label] = pd.array(
                    [None if not isinstance(v, str) else _BOOLS[v.lower()] for v in values],
                    dtype="boolean",
                )
            else:
                columns[label] = values.astype(object).where(values.notna(), None)
        return pd.DataFrame(columns, index=frame.index)


def type_text_columns(frame: pd.DataFrame, keep_text: Iterable[Any] = ()) -> pd.DataFrame:
    """Apply the text-to-type rule to a frame read as text (see the module's docstring).

    Examples
    --------
    >>> raw = pd.DataFrame({"uid": ["0012345"], "country": ["NA"], "n": ["12"]})
    >>> typed = type_text_columns(raw, keep_text=["uid"])
    >>> typed["uid"].tolist(), typed["country"].tolist(), typed["n"].tolist()
    (['0012345'], ['NA'], [12])
    """
    types = ColumnTypes(keep_text)
    types.observe(frame)
    return types.apply(frame)


def _read_csv_text(path: Path, sep: str, missing: Sequence[str]) -> pd.DataFrame:
    return pd.read_csv(
        path,
        sep=sep,
        dtype=str,
        keep_default_na=False,
        na_values=[""] + list(missing),
        na_filter=True,
        skip_blank_lines=True,
    )


def _json_records(path: Path, kind: str) -> list[Any]:
    import gzip

    opener: Any = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    stripped = text.lstrip()
    if kind == "json" and stripped.startswith("["):
        try:
            records = json.loads(text)
        except ValueError as exc:
            raise InputFileError(
                f"cannot read {path}: not valid JSON ({exc}); a .json file holds one array of "
                "objects or one object per line"
            ) from None
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputFileError(
                        f"cannot read {path}: line {number} is not JSON ({exc.msg}); "
                        "a JSON-lines file holds one object per line"
                    ) from None
    for position, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise InputFileError(
                f"cannot read {path}: record {position} is a {type(record).__name__}, "
                "not an object; each record must be a JSON object of column: value"
            )
    return records


def _frame_from_records(records: list[dict[str, Any]]) -> pd.DataFrame:
    if not records:
        return pd.DataFrame()
    labels: dict[str, None] = {}
    for record in records:
        labels.update(dict.fromkeys(record))
    columns = {}
    for label in labels:
        cells = [record.get(label) for record in records]
        # object columns keep every value as parsed: big ints exact, strings as strings
        columns[label] = pd.Series(cells, dtype=object)
    return pd.DataFrame(columns)


def read_table(
    path: str | Path,
    *,
    missing: Sequence[str] = (),
    keep_text: Iterable[Any] = (),
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
    try:
        if kind in ("csv", "tsv"):
            raw = _read_csv_text(p, "\t" if kind == "tsv" else ",", missing)
            return type_text_columns(raw, keep_text)
        if kind == "parquet":
            return pd.read_parquet(p)
        return _frame_from_records(_json_records(p, kind))
    except InputFileError:
        raise
    except Exception as exc:  # readers raise many types; one clear line is what helps
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFileError(f"cannot read {path}: {first}") from exc
