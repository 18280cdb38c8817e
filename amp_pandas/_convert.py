"""Cells to JSON text: the type rules, applied a whole column at a time.

Every converter returns a :class:`Converted`: per row the JSON text of the value (``None`` where
the cell is missing or bad), a mask of missing cells, and the rows whose value has no JSON form
with the reason. Common dtypes (numbers, booleans, strings, datetimes, categoricals) are converted
with vectorised numpy/pandas operations; object columns fall back to a per-cell walk that handles
lists, dicts, Decimals, dates and mixed types.

The rules (also in the README):

- numpy and pandas nullable ints, floats and bools become JSON numbers and booleans;
- ``Timestamp``/``datetime64``/``datetime`` become ``YYYY-MM-DDTHH:MM:SS`` (UTC for tz-aware
  values; fractional seconds only when non-zero), ``date`` becomes ``YYYY-MM-DD``;
- categoricals become their category values, ``Decimal`` a number, list/tuple/set/ndarray cells
  arrays and dict cells objects (nesting limited);
- None, NaN, NaT and pd.NA are *missing* (the caller's ``nulls`` policy decides);
- ±inf, bytes, timedeltas and values with no JSON form are *bad*: the row becomes invalid.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal
from json.encoder import encode_basestring  # C-accelerated; keeps non-ASCII as UTF-8
from typing import Any, Callable

import numpy as np
import pandas as pd

__all__ = [
    "Converted",
    "BadValue",
    "MAX_VALUE_DEPTH",
    "convert_values",
    "convert_ids",
    "convert_field",
    "convert_groups",
    "json_text",
]

#: Amplitude limits ``user_properties`` to 40 levels; ``{"$set": {"p": value}}`` uses two.
MAX_VALUE_DEPTH = 38
LONG_STRING = 1024


class BadValue(Exception):
    """A cell that has no JSON form; the message says why and what to do."""


@dataclass
class Converted:
    """One column converted: JSON text per row plus what went wrong where."""

    text: np.ndarray  # object: JSON text, or None where missing/bad
    missing: np.ndarray  # bool
    bad_pos: np.ndarray  # int64 positions of bad cells
    bad_reason: list[str]  # one per bad position
    long_pos: np.ndarray  # positions holding a string over 1024 characters (warning)
    #: True when ``text`` holds string contents that need no escaping and no quotes yet:
    #: the payload template adds the quotes, which saves a pass over every cell.
    quoted: bool = False

    def json(self) -> np.ndarray:
        """JSON text per row (quotes added when ``quoted``), None where absent."""
        if not self.quoted:
            return self.text
        out = np.full(len(self.text), None, dtype=object)
        has = np.not_equal(self.text, None)
        if has.any():
            out[has] = '"' + self.text[has] + '"'
        return out

    @classmethod
    def empty(cls, n: int) -> "Converted":
        return cls(
            text=np.full(n, None, dtype=object),
            missing=np.ones(n, dtype=bool),
            bad_pos=np.empty(0, dtype=np.int64),
            bad_reason=[],
            long_pos=np.empty(0, dtype=np.int64),
        )


_NO_POS = np.empty(0, dtype=np.int64)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


# --------------------------------------------------------------------------------------------
# scalars (object columns and literals)


def is_missing(value: Any) -> bool:
    """True for None, NaN, NaT and pd.NA (not for containers)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):
        return value != value
    if isinstance(value, (np.floating, np.datetime64, np.timedelta64)):
        return bool(np.isnat(value)) if not isinstance(value, np.floating) else value != value
    if isinstance(value, Decimal):
        return value.is_nan()
    return False


def iso_datetime(value: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS[.ffffff]`` in UTC for aware values; no fraction when it is zero."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(dt.timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S") if value.year >= 1000 else value.isoformat()[:19]
    nanos = getattr(value, "nanosecond", 0)
    if value.microsecond or nanos:
        frac = f"{value.microsecond:06d}{nanos:03d}".rstrip("0")
        text += "." + frac
    return text


def json_text(value: Any, depth: int = 0) -> str:
    """The JSON text of one value by the type rules; raises :class:`BadValue`.

    Missing values inside containers become ``null``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> json_text([np.int64(3), True, pd.Timestamp("2024-05-01 12:00", tz="Europe/Paris")])
    '[3,true,"2024-05-01T10:00:00"]'
    """
    if isinstance(value, str):
        return encode_basestring(value)
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if math.isfinite(f):
            return repr(f)
        if f != f:
            return "null"
        raise BadValue(f"{f} is not a valid JSON number; replace or drop it")
    if value is None or value is pd.NA or value is pd.NaT:
        return "null"
    if isinstance(value, Decimal):
        if value.is_finite():
            return str(value)
        if value.is_nan():
            return "null"
        raise BadValue(f"Decimal {value} is not a valid JSON number; replace or drop it")
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return "null"
        value = pd.Timestamp(value)
    if isinstance(value, dt.datetime):  # includes pd.Timestamp
        return '"' + iso_datetime(value) + '"'
    if isinstance(value, dt.date):
        return '"' + value.isoformat() + '"'
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series, pd.Index)):
        if depth >= MAX_VALUE_DEPTH:
            raise BadValue(f"nesting deeper than {MAX_VALUE_DEPTH} levels; Amplitude allows 40")
        items: Any = value
        if isinstance(value, (set, frozenset)):
            try:
                items = sorted(value)
            except TypeError:
                items = list(value)
        elif isinstance(value, (np.ndarray, pd.Series, pd.Index)):
            items = list(np.asarray(value).ravel()) if np.ndim(value) != 1 else list(value)
        return "[" + ",".join([json_text(v, depth + 1) for v in items]) + "]"
    if isinstance(value, dict):
        if depth >= MAX_VALUE_DEPTH:
            raise BadValue(f"nesting deeper than {MAX_VALUE_DEPTH} levels; Amplitude allows 40")
        parts = []
        for k, v in value.items():
            if isinstance(k, bool) or not isinstance(k, (str, int, float, np.integer)):
                raise BadValue(f"dict keys must be strings, got {_describe(k)}")
            parts.append(encode_basestring(str(k)) + ":" + json_text(v, depth + 1))
        return "{" + ",".join(parts) + "}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise BadValue("bytes have no JSON form; decode them first, e.g. .str.decode('utf-8')")
    if isinstance(value, (dt.timedelta, np.timedelta64)):
        raise BadValue(
            "a timedelta has no JSON form; convert it, e.g. with .dt.total_seconds()"
        )
    raise BadValue(f"{_describe(value)} has no JSON form; convert the column first")


def _walk(values: np.ndarray, fn: Callable[[Any], str | None]) -> Converted:
    """Convert cell by cell: ``fn`` returns JSON text, None for missing, or raises BadValue."""
    n = len(values)
    text = np.full(n, None, dtype=object)
    missing = np.zeros(n, dtype=bool)
    bad_pos: list[int] = []
    bad_reason: list[str] = []
    long_pos: list[int] = []
    for i, v in enumerate(values):
        if is_missing(v):
            missing[i] = True
            continue
        try:
            t = fn(v)
        except BadValue as exc:
            bad_pos.append(i)
            bad_reason.append(str(exc))
            continue
        except RecursionError:
            bad_pos.append(i)
            bad_reason.append(f"nesting deeper than {MAX_VALUE_DEPTH} levels; Amplitude allows 40")
            continue
        text[i] = t
        if isinstance(v, str) and len(v) > LONG_STRING:
            long_pos.append(i)
    return Converted(
        text,
        missing,
        np.asarray(bad_pos, dtype=np.int64),
        bad_reason,
        np.asarray(long_pos, dtype=np.int64),
    )


# --------------------------------------------------------------------------------------------
# columns


def _as_values(series: pd.Series) -> tuple[str, np.ndarray, np.ndarray]:
    """Classify a column: (kind, values, missing) with kind in
    bool/int/float/datetime/string/object."""
    dtype = series.dtype
    missing = series.isna().to_numpy()
    if isinstance(dtype, pd.CategoricalDtype):
        raise AssertionError("categoricals are handled by the caller")
    if pd.api.types.is_bool_dtype(dtype):
        return "bool", series.to_numpy(dtype=bool, na_value=False), missing
    if pd.api.types.is_integer_dtype(dtype):
        return "int", series.to_numpy(dtype=np.int64 if dtype.kind == "i" or
                                      str(dtype).startswith("Int") else np.uint64,
                                      na_value=0), missing
    if pd.api.types.is_float_dtype(dtype):
        return "float", series.to_numpy(dtype=np.float64, na_value=np.nan), missing
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "datetime", series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(), missing
    if pd.api.types.is_datetime64_dtype(dtype):
        return "datetime", series.to_numpy(), missing
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return "string", series.to_numpy(dtype=object, na_value=None), missing
    values = series.to_numpy(dtype=object)
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        if inferred == "string":
            return "string", values, missing
        if inferred == "empty":
            return "string", values, np.ones(len(values), dtype=bool)
    return "object", values, missing


_TIME_OF_DAY: np.ndarray | None = None


def _time_of_day_table() -> np.ndarray:
    """``"HH:MM:SS"`` for every second of a day (built once, 86,400 short strings)."""
    global _TIME_OF_DAY
    if _TIME_OF_DAY is None:
        _TIME_OF_DAY = np.array(
            [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)],
            dtype=object,
        )
    return _TIME_OF_DAY


def _datetime_text(values: np.ndarray) -> np.ndarray:
    """datetime64 values (no NaT) to ISO text, seconds precision unless a fraction exists.

    ``np.datetime_as_string`` costs ~0.9 µs a value; formatting each distinct day once and
    looking the time of day up in a table costs a tenth of that.
    """
    unit = np.datetime_data(values.dtype)[0]
    seconds = values.astype("datetime64[s]")
    secs = seconds.astype(np.int64)
    days = np.floor_divide(secs, 86_400)
    codes, uniq = pd.factorize(days)
    day_text = np.datetime_as_string(uniq.astype("datetime64[D]")).astype(object) + "T"
    out = day_text[codes] + _time_of_day_table()[secs - days * 86_400]
    frac = values != seconds.astype(values.dtype)
    if frac.any():
        fine = "ns" if unit == "ns" else "us" if unit in ("us", "ms", "s") else unit
        texts = np.datetime_as_string(values[frac], unit=fine)
        out[frac] = [t.rstrip("0") for t in texts]
    return out


_ESCAPE_PATTERN = r'["\\\x00-\x1f]'


def _needs_no_escaping(series: pd.Series, present: np.ndarray) -> bool:
    """True when no string of a column needs JSON escaping (checked in C for Arrow strings).

    Only Arrow-backed string columns are checked (one vectorised regex); other columns are
    escaped cell by cell, which is as fast as checking them.
    """
    if not (isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow"):
        return False
    if not present.any():
        return True
    try:
        return not bool(series.str.contains(_ESCAPE_PATTERN, regex=True).fillna(False).any())
    except Exception:  # pragma: no cover - a regex engine that rejects the class: be safe
        return False


def convert_values(series: pd.Series, *, numeric_only: bool = False, column: str = "") -> Converted:
    """Convert a column of property values to JSON text (``numeric_only`` for ``$add``)."""
    n = len(series)
    if isinstance(series.dtype, pd.CategoricalDtype):
        cats = convert_values(pd.Series(series.cat.categories), numeric_only=numeric_only)
        codes = series.cat.codes.to_numpy()
        has = codes >= 0
        text = np.full(n, None, dtype=object)
        text[has] = cats.text[codes[has]]
        bad_cat = np.zeros(len(cats.text) + 1, dtype=bool)
        bad_cat[cats.bad_pos] = True
        reason_of = dict(zip(cats.bad_pos.tolist(), cats.bad_reason))
        bad_pos = np.flatnonzero(has & bad_cat[np.where(has, codes, len(cats.text))])
        long_cat = np.zeros(len(cats.text) + 1, dtype=bool)
        long_cat[cats.long_pos] = True
        long_pos = np.flatnonzero(has & long_cat[np.where(has, codes, len(cats.text))])
        return Converted(
            text,
            ~has,
            bad_pos,
            [reason_of[int(codes[p])] for p in bad_pos],
            long_pos,
            quoted=cats.quoted,
        )
    kind, values, missing = _as_values(series)
    present = ~missing
    text = np.full(n, None, dtype=object)
    if kind == "bool":
        if numeric_only:
            return _not_numeric(n, missing, "bool")
        text[present] = np.where(values[present], "true", "false").astype(object)
        return Converted(text, missing, _NO_POS, [], _NO_POS)
    if kind == "int":
        text[present] = list(map(str, values[present].tolist()))
        return Converted(text, missing, _NO_POS, [], _NO_POS)
    if kind == "float":
        finite = np.isfinite(values)
        ok = present & finite
        text[ok] = list(map(repr, values[ok].tolist()))
        bad = np.flatnonzero(present & ~finite)
        reasons = [
            f"{values[p]} is not a valid JSON number; replace or drop it" for p in bad
        ]
        return Converted(text, missing, bad, reasons, _NO_POS)
    if kind == "datetime":
        if numeric_only:
            return _not_numeric(n, missing, "datetime")
        if present.any():
            text[present] = _datetime_text(values[present])
        return Converted(text, missing, _NO_POS, [], _NO_POS, quoted=True)
    if kind == "string":
        if numeric_only:
            return _not_numeric(n, missing, "str")
        vals = values[present]
        quoted = _needs_no_escaping(series, present)
        text[present] = vals if quoted else list(map(encode_basestring, vals))
        lengths = np.fromiter(map(len, vals), dtype=np.int64, count=len(vals))
        long_pos = np.flatnonzero(present)[lengths > LONG_STRING]
        return Converted(text, missing, _NO_POS, [], long_pos, quoted=quoted)
    if pd.api.types.is_timedelta64_dtype(series.dtype):
        conv = Converted.empty(n)
        conv.missing = missing
        conv.bad_pos = np.flatnonzero(present)
        conv.bad_reason = [
            "a timedelta has no JSON form; convert it, e.g. with .dt.total_seconds()"
        ] * len(conv.bad_pos)
        return conv
    fn = _number_text if numeric_only else json_text
    return _walk(values, fn)


def _not_numeric(n: int, missing: np.ndarray, kind: str) -> Converted:
    conv = Converted.empty(n)
    conv.missing = missing
    conv.bad_pos = np.flatnonzero(~missing)
    conv.bad_reason = [
        f"$add needs a number, got {kind}; convert the column, e.g. with pd.to_numeric"
    ] * len(conv.bad_pos)
    return conv


def _number_text(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, Decimal, np.integer, np.floating)
    ):
        raise BadValue(
            f"$add needs a number, got {_describe(value)}; convert the column, "
            "e.g. with pd.to_numeric"
        )
    return json_text(value)


# --------------------------------------------------------------------------------------------
# ids, fields, groups: strings


def _id_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise BadValue(f"an id must be a string or an integer, got {_describe(value)}")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating, Decimal)):
        f = float(value)
        if math.isfinite(f) and f == int(f):
            return str(int(f))
        raise BadValue(f"an id must be a string or a whole number, got {_describe(value)}")
    raise BadValue(f"an id must be a string or an integer, got {_describe(value)}")


def convert_ids(series: pd.Series) -> tuple[np.ndarray, Converted]:
    """Ids to Python strings (``12345`` and ``12345.0`` become ``"12345"``).

    Returns the strings (``None`` where missing or bad) and the conversion record whose
    ``text`` is the JSON text of each id.
    """
    n = len(series)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object).where(series.notna(), None)
    kind, values, missing = _as_values(series)
    present = ~missing
    strings = np.full(n, None, dtype=object)
    bad_pos: np.ndarray = _NO_POS
    bad_reason: list[str] = []
    if kind == "string":
        strings[present] = values[present]
    elif kind == "int":
        strings[present] = list(map(str, values[present].tolist()))
    elif kind == "float":
        v = values
        whole = present & np.isfinite(v) & (np.floor(np.where(present, v, 0)) == v)
        strings[whole] = list(map(str, v[whole].astype(np.int64).tolist()))
        bad_pos = np.flatnonzero(present & ~whole)
        bad_reason = [
            f"an id must be a string or a whole number, got float {v[p]!r}" for p in bad_pos
        ]
    else:
        conv = _walk(values if kind == "object" else series.to_numpy(dtype=object), _id_string)
        strings = conv.text  # _walk stored the id strings themselves
        missing, bad_pos, bad_reason = conv.missing, conv.bad_pos, conv.bad_reason
    text = np.full(n, None, dtype=object)
    ok = np.flatnonzero(np.not_equal(strings, None))
    quoted = kind == "int" or (kind == "string" and _needs_no_escaping(series, ~missing))
    text[ok] = strings[ok] if quoted else list(map(encode_basestring, strings[ok]))
    return strings, Converted(text, missing, bad_pos, bad_reason, _NO_POS, quoted=quoted)


def _field_text(value: Any) -> str:
    if isinstance(value, str):
        return encode_basestring(value)
    if isinstance(value, (bool, np.bool_)):
        return '"true"' if value else '"false"'
    if isinstance(value, (int, float, Decimal, np.integer, np.floating, dt.date, np.datetime64)):
        inner = json_text(value)
        return inner if inner.startswith('"') else '"' + inner + '"'
    raise BadValue(f"a top-level field must be a single value, got {_describe(value)}")


def convert_field(series: pd.Series) -> Converted:
    """Top-level fields are strings in Amplitude: scalars become their text."""
    conv = convert_values(series)
    # Fast dtypes give JSON scalars; turn numbers/booleans into JSON strings.
    kind = _kind_of(series)
    if kind in ("bool", "int", "float"):
        conv.quoted = True  # 12 -> "12": the template quotes them
        return conv
    if kind in ("string", "datetime"):
        return conv
    values = series.to_numpy(dtype=object)
    return _walk(values, _field_text)


def _kind_of(series: pd.Series) -> str:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _kind_of(pd.Series(dtype.categories))
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return "string"
    return "object"


def _group_text(value: Any) -> tuple[str, int]:
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        names = [_id_string(v) if not isinstance(v, str) else v for v in value]
        return "[" + ",".join(map(encode_basestring, names)) + "]", len(names)
    try:
        return encode_basestring(_id_string(value)), 1
    except BadValue:
        raise BadValue(
            f"a group must be a string or a list of strings, got {_describe(value)}"
        ) from None


def convert_groups(series: pd.Series) -> tuple[Converted, np.ndarray]:
    """Group names: a string (or integer) or a list of them per cell; also the count per row."""
    n = len(series)
    counts = np.zeros(n, dtype=np.int64)
    kind = _kind_of(series)
    if kind in ("string", "int"):
        strings, conv = convert_ids(series)
        counts[np.not_equal(conv.text, None)] = 1
        return conv, counts
    values = series.to_numpy(dtype=object)
    sizes: dict[int, int] = {}

    def one(v: Any) -> str:
        text, k = _group_text(v)
        sizes[id(v)] = k
        return text

    conv = _walk(values, one)
    for i, v in enumerate(values):
        if conv.text[i] is not None:
            counts[i] = sizes.get(id(v), 1)
    return conv, counts
