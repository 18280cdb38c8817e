"""Cells to JSON text: the type rules, applied a whole column at a time.

Every converter returns a :class:`Converted`: per row the JSON text of the value (``None`` where
the cell is missing or bad), a mask of missing cells, and the rows whose value has no JSON form
with the reason. Common dtypes (numbers, booleans, strings, datetimes, categoricals) are converted
with vectorised numpy/pandas operations; object columns fall back to a per-cell walk that handles
lists, dicts, Decimals, dates and mixed types.

When pyarrow is importable (see :func:`arrow_enabled`), strings, integers, booleans, datetimes and
categoricals of them are converted with ``pyarrow.compute`` instead, into Arrow string arrays that
``_build`` joins into whole identifications in C: no Python object is made per cell. Both paths
produce the same text, byte for byte (``tests/test_build_paths.py`` compares them).

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
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pyarrow is optional: imported at run time only inside the Arrow helpers
    import pyarrow as pa

from ._amplitude import MAX_STRING_LENGTH, MAX_USER_PROPERTIES_DEPTH

__all__ = [
    "Converted",
    "BadValue",
    "MAX_VALUE_DEPTH",
    "convert_values",
    "convert_ids",
    "convert_field",
    "convert_groups",
    "json_text",
    "IdColumn",
    "arrow_enabled",
    "USE_ARROW",
    "arrow_literal",
    "try_arrow",
    "arrow_to_objects",
]

#: Amplitude limits ``user_properties`` to 40 levels; ``{"$set": {"p": value}}`` uses two.
MAX_VALUE_DEPTH = MAX_USER_PROPERTIES_DEPTH - 2
LONG_STRING = MAX_STRING_LENGTH
_TOO_DEEP = (
    f"nesting deeper than {MAX_VALUE_DEPTH} levels; Amplitude allows {MAX_USER_PROPERTIES_DEPTH}"
)


class BadValue(Exception):
    """A cell that has no JSON form; the message says why and what to do."""


@dataclass(eq=False)
class Converted:
    """One column converted: JSON text per row plus what went wrong where.

    The text is held either as a numpy object array (``text``) or, on the Arrow path, as an Arrow
    ``large_string`` array (``arrow``) with the same contents (null where ``text`` is None). The
    other form is made on first use only: a million small ``str`` objects cost more than
    converting the column did, and the Arrow path of ``_build`` never needs them.
    """

    _text: np.ndarray | None  # object: JSON text, or None where missing/bad
    missing: np.ndarray  # bool
    bad_pos: np.ndarray  # int64 positions of bad cells
    bad_reason: list[str]  # one per bad position
    long_pos: np.ndarray  # positions holding a string over 1024 characters (warning)
    #: True when ``text`` holds the (already escaped) contents of JSON strings without their
    #: quotes: the payload template adds the quotes, which saves a pass over every cell.
    quoted: bool = False
    arrow: pa.Array | None = None  # the same text as an Arrow large_string array

    def __post_init__(self) -> None:
        if self._text is None and self.arrow is None:
            raise ValueError("Converted needs its text as a numpy array or an Arrow array")

    @property
    def text(self) -> np.ndarray:
        """JSON text per row (object array, None where absent), made from ``arrow`` if needed."""
        if self._text is None:
            self._text = arrow_to_objects(self.arrow)
        return self._text

    @property
    def present(self) -> np.ndarray:
        """Bool mask of rows that have text (neither missing nor bad), without making strings."""
        if self._text is None:
            return _arrow_valid(self.arrow)
        return np.not_equal(self._text, None)

    def to_arrow(self) -> pa.Array | None:
        """The text as an Arrow large_string array, or None when Arrow cannot hold it.

        Python strings may hold lone surrogates, which have no UTF-8 form; such columns keep the
        Python path.
        """
        if self.arrow is None:
            self.arrow = _objects_to_arrow(self._text)
        return self.arrow

    def keep(self, rows: np.ndarray) -> None:
        """Drop the text of rows outside the bool mask ``rows`` (e.g. ids that are unusable)."""
        if self._text is not None:
            self._text = np.where(rows, self._text, None)
        if self.arrow is not None:
            self.arrow = _arrow_where(rows, self.arrow)

    def json_at(self, position: int) -> str | None:
        """One row's JSON text (quotes added when ``quoted``), None where absent."""
        text = self.text[position] if self._text is not None else self.arrow[position].as_py()
        if text is None or not self.quoted:
            return text  # type: ignore[no-any-return]
        return '"' + text + '"'

    @classmethod
    def empty(cls, n: int) -> Converted:
        return cls(
            np.full(n, None, dtype=object),
            missing=np.ones(n, dtype=bool),
            bad_pos=np.empty(0, dtype=np.int64),
            bad_reason=[],
            long_pos=np.empty(0, dtype=np.int64),
        )


_NO_POS = np.empty(0, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Arrow: the same rules computed by pyarrow.compute, when pyarrow is importable

#: Use pyarrow when it is importable (None), never (False), or always (True: fails without it).
#: Tests set it to False to compare the pure-Python path with the Arrow one.
USE_ARROW: bool | None = None
#: The oldest pyarrow whose compute functions the Arrow path has been checked against.
MIN_PYARROW = (15, 0)
_ARROW_IMPORTED: bool | None = None  # None: not tried yet


def arrow_enabled() -> bool:
    """True when conversion and assembly should use pyarrow (imported here on first call).

    pyarrow is not a dependency of amp_pandas: pandas 3 installs usually have it (their string
    columns are Arrow arrays already), pandas 2 installs may not.
    """
    global _ARROW_IMPORTED
    if USE_ARROW is False:
        return False
    if _ARROW_IMPORTED is None:
        try:
            import pyarrow
            import pyarrow.compute

            version = tuple(int(x) for x in pyarrow.__version__.split(".")[:2])
            _ARROW_IMPORTED = version >= MIN_PYARROW
        except (ImportError, ValueError):
            _ARROW_IMPORTED = False
    if USE_ARROW and not _ARROW_IMPORTED:
        raise ImportError(f"USE_ARROW=True needs pyarrow>={'.'.join(map(str, MIN_PYARROW))}")
    return _ARROW_IMPORTED


def try_arrow(convert: Callable[..., Any], *args: Any) -> Any:
    """``convert(*args)``, or None (meaning: take the Python path) when this pyarrow lacks a
    kernel it uses. The Arrow path is checked against pyarrow 15 and 26; this keeps another
    version working, just slower, rather than failing."""
    import pyarrow as pa

    try:
        return convert(*args)
    except pa.ArrowNotImplementedError:
        return None


def arrow_literal(text: str | None) -> pa.Scalar:
    """A ``large_string`` scalar: Arrow's string kernels want one string type for all inputs."""
    import pyarrow as pa

    return pa.scalar(text, pa.large_string())


def arrow_to_objects(arr: pa.Array) -> np.ndarray:
    """An Arrow string array as a numpy object array of ``str`` (None where null)."""
    out = arr.to_numpy(zero_copy_only=False)
    return out if out.dtype == object else out.astype(object)


def _arrow_valid(arr: pa.Array) -> np.ndarray:
    import pyarrow.compute as pc

    return np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)


def _objects_to_arrow(text: np.ndarray | None) -> pa.Array | None:
    import pyarrow as pa

    try:
        return pa.array(text, type=pa.large_string())
    except (pa.ArrowException, UnicodeError, TypeError, ValueError):
        return None  # lone surrogates, or something else that is not a str


def _arrow_where(rows: np.ndarray, arr: pa.Array) -> pa.Array:
    """``arr`` where the bool mask ``rows`` is set, null elsewhere."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.if_else(pa.array(rows, type=pa.bool_()), arr, arrow_literal(None))


def _large_strings(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous ``large_string`` array (pandas keeps Arrow strings as chunked arrays).

    ``large_string`` everywhere: ``binary_join_element_wise`` wants one string type for all its
    arguments, and 64-bit offsets never overflow however long the column's text is.
    """
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr.cast(pa.large_string())


def _is_arrow_string_dtype(dtype: Any) -> bool:
    """True for pandas string columns whose values already live in Arrow (``str`` in pandas 3,
    ``string[pyarrow_numpy]`` in pandas 2 with ``future.infer_string``)."""
    if isinstance(dtype, pd.StringDtype):
        return dtype.storage in ("pyarrow", "pyarrow_numpy")
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        return pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(
            dtype.pyarrow_dtype
        )
    return False


def _arrow_strings(series: pd.Series) -> pa.Array | None:
    """The strings of a string column as Arrow (null where missing); None if Arrow cannot hold
    them (an object column with lone surrogates)."""
    import pyarrow as pa

    if _is_arrow_string_dtype(series.dtype):
        return _large_strings(pa.array(series.array))
    values = series.to_numpy(dtype=object)
    try:
        return pa.array(values, type=pa.large_string(), mask=series.isna().to_numpy())
    except (pa.ArrowException, UnicodeError, TypeError, ValueError):
        return None


#: Bytes that JSON strings must escape. In UTF-8 every byte of a multi-byte character is >= 0x80,
#: so scanning bytes finds exactly the characters ``encode_basestring`` escapes.
_JSON_ESCAPES: dict[int, str] = {
    **{c: f"\\u{c:04x}" for c in range(0x20)},
    0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t",
    0x22: '\\"', 0x5C: "\\\\",
}
_SCAN_BLOCK = 1 << 20  # scan 1 MiB at a time: the temporaries stay in cache and are reused


def _special_bytes(arr: pa.Array) -> list[int]:
    """The bytes of ``_JSON_ESCAPES`` that occur in a large_string array's text, ascending."""
    if len(arr) == 0:
        return []
    buffers = arr.buffers()
    if buffers[2] is None:
        return []
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    found: set[int] = set()
    for start in range(0, len(data), _SCAN_BLOCK):
        block = data[start : start + _SCAN_BLOCK]
        hit = (block < 0x20) | (block == 0x22) | (block == 0x5C)
        if hit.any():
            found.update(np.unique(block[hit]).tolist())
    return sorted(found)


def _escape_arrow(arr: pa.Array) -> pa.Array:
    """``encode_basestring`` without the quotes, on an Arrow string array.

    Most columns need no escaping at all, which a byte scan proves in a few milliseconds; for the
    others, one literal replace per character that occurs.
    """
    import pyarrow.compute as pc

    special = _special_bytes(arr)
    # The backslash first: the other escapes add backslashes that must stay single.
    for byte in sorted(special, key=lambda b: b != 0x5C):
        arr = pc.replace_substring(arr, chr(byte), _JSON_ESCAPES[byte])
    return arr


def _arrow_long_positions(arr: pa.Array) -> np.ndarray:
    """Positions of strings over ``LONG_STRING`` characters (byte lengths rule most out)."""
    import pyarrow.compute as pc

    if len(arr) == 0:
        return _NO_POS
    longest = pc.max(pc.binary_length(arr)).as_py()
    if longest is None or longest <= LONG_STRING:  # a character is at least one byte
        return _NO_POS
    chars = pc.utf8_length(arr).fill_null(0).to_numpy()
    return np.flatnonzero(chars > LONG_STRING)


def _arrow_string_values(arr: pa.Array) -> Converted:
    """A string column (Arrow, null where missing) as quoted-by-template JSON text."""
    return Converted(
        None,
        ~_arrow_valid(arr),
        _NO_POS,
        [],
        _arrow_long_positions(arr),
        quoted=True,
        arrow=_escape_arrow(arr),
    )


def _arrow_from_numpy(values: np.ndarray, missing: np.ndarray) -> pa.Array:
    import pyarrow as pa

    return pa.array(values, mask=missing if missing.any() else None)


def _arrow_int_text(values: np.ndarray, missing: np.ndarray) -> pa.Array:
    """``str(int)`` in C: Arrow's integer-to-string cast writes plain decimal digits."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(_arrow_from_numpy(values, missing), pa.large_string())


_TIME_OF_DAY_BYTES: np.ndarray | None = None


def _time_of_day_bytes() -> np.ndarray:
    """``b"HH:MM:SS"`` for every second of a day: 86,400 8-byte items (dtype ``V8``)."""
    global _TIME_OF_DAY_BYTES
    if _TIME_OF_DAY_BYTES is None:
        sec = np.arange(86_400)
        chars = np.empty((86_400, 8), dtype=np.uint8)
        for col, value in ((0, sec // 3600), (3, sec // 60 % 60), (6, sec % 60)):
            chars[:, col] = ord("0") + value // 10
            chars[:, col + 1] = ord("0") + value % 10
        chars[:, 2] = chars[:, 5] = ord(":")
        _TIME_OF_DAY_BYTES = chars.view("V8").ravel()
    return _TIME_OF_DAY_BYTES


def _fixed_width_strings(items: np.ndarray, present: np.ndarray) -> pa.Array:
    """An Arrow large_string array over a numpy array of same-size byte items, without copying.

    Every string has ``itemsize`` bytes, so the offsets are an arithmetic progression and the
    items are the data buffer. The validity bitmap is borrowed from a boolean Arrow array, which
    stores its values as exactly such a bitmap.
    """
    import pyarrow as pa

    n, width = len(items), items.dtype.itemsize
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int64)
    nulls = int(n - np.count_nonzero(present))
    validity = pa.array(present, type=pa.bool_()).buffers()[1] if nulls else None
    return pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(items), validity, nulls
    )


_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_DATETIME_BLOCK = 1 << 16


def _arrow_datetime_text(values: np.ndarray, missing: np.ndarray) -> pa.Array | None:
    """datetime64 values to the ISO text of :func:`_datetime_text`, with integer arithmetic.

    ``pc.strftime`` costs ~2 µs a value here. Instead the days the column spans are formatted
    once by numpy (as the Python path does), and each row's ``YYYY-MM-DDTHH:MM:SS`` is gathered
    as 11 + 8 bytes from that table and a table of the 86,400 times of day, straight into the
    buffer of the Arrow array. A fraction is joined on only where one exists.
    """
    per = _UNITS_PER_SECOND.get(np.datetime_data(values.dtype)[0])
    if per is None:
        return None
    present = ~missing
    raw = values.view(np.int64)
    if missing.any():
        # NaT is the smallest int64; missing rows borrow a present value (their text is masked
        # out in the end), so every table index below stays in range.
        fill = raw[np.argmax(present)] if present.any() else 0
        raw = np.where(present, raw, fill)
    # The day span from the extremes alone: no full-size temporary.
    lo = int(np.floor_divide(raw.min(), per * 86_400)) if len(raw) else 0
    hi = int(np.floor_divide(raw.max(), per * 86_400)) if len(raw) else 0
    if hi - lo > 4 * len(raw) + 1_000:  # far-apart dates: a table of the distinct days only
        return _arrow_sparse_datetime_text(raw, per, present, missing)
    day_text = np.datetime_as_string(np.arange(lo, hi + 1).astype("datetime64[D]"))
    if not (np.char.str_len(day_text) == 10).all():  # a year with a sign or five digits
        return _arrow_sparse_datetime_text(raw, per, present, missing)
    # Years 0000-9999: every row is "YYYY-MM-DDTHH:MM:SS", 19 bytes, gathered from two tables
    # a block at a time (the block's temporaries stay in cache and their memory is reused).
    date_table = np.empty((len(day_text), 11), dtype=np.uint8)
    date_table[:, :10] = day_text.astype("S10").view(np.uint8).reshape(-1, 10)
    date_table[:, 10] = ord("T")
    dates, times = date_table.view("V11").ravel(), _time_of_day_bytes()
    rows = np.empty(len(raw), dtype=[("date", "V11"), ("time", "V8")])
    fractions: list[np.ndarray] = []  # positions with a fraction of a second
    for start in range(0, len(raw), _DATETIME_BLOCK):
        block = slice(start, start + _DATETIME_BLOCK)
        secs, sub = np.divmod(raw[block], per)
        days, time_of_day = np.divmod(secs, 86_400)  # floor division: right before 1970 too
        days -= lo
        # mode="clip" writes into the strided ``out`` directly (mode="raise" would buffer);
        # every index is in range already.
        np.take(dates, days, out=rows["date"][block], mode="clip")
        np.take(times, time_of_day, out=rows["time"][block], mode="clip")
        if per > 1:
            fractions.append(np.flatnonzero(sub) + start)
    text = _fixed_width_strings(rows.view("V19"), present)
    frac_pos = np.concatenate(fractions) if fractions else _NO_POS
    return _with_fractions(text, raw, per, frac_pos)


def _arrow_sparse_datetime_text(
    raw: np.ndarray, per: int, present: np.ndarray, missing: np.ndarray
) -> pa.Array:
    """:func:`_arrow_datetime_text` for dates far apart or outside years 0000-9999."""
    import pyarrow as pa
    import pyarrow.compute as pc

    secs, sub = np.divmod(raw, per)
    days, time_of_day = np.divmod(secs, 86_400)
    day_pos, table_days = pd.factorize(days)
    day_text = np.datetime_as_string(table_days.astype("datetime64[D]"))
    mask = missing if missing.any() else None
    # via object: pyarrow < 16 cannot convert numpy unicode arrays to large_string directly
    table = pa.array(day_text.astype(object), type=pa.large_string())
    date = pc.take(table, pa.array(day_pos, mask=mask))
    time = _fixed_width_strings(np.take(_time_of_day_bytes(), time_of_day), present)
    text = pc.binary_join_element_wise(date, arrow_literal("T"), time, arrow_literal(""))
    return _with_fractions(text, raw, per, np.flatnonzero(sub))


def _with_fractions(text: pa.Array, raw: np.ndarray, per: int, pos: np.ndarray) -> pa.Array:
    """Append ``.digits`` (nanoseconds, trailing zeros stripped) to the rows at ``pos``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(pos):
        return text
    nanos = np.zeros(len(raw), dtype=np.int64)
    nanos[pos] = (raw[pos] % per) * (1_000_000_000 // per)
    # "%09d" stripped of trailing zeros: the digits of 1e9 + nanos after the leading "1"
    # ("" where there is no fraction).
    digits = pc.utf8_rtrim(
        pc.utf8_slice_codeunits(pc.cast(pa.array(nanos + 1_000_000_000), pa.large_string()), 1),
        "0",
    )
    has = np.zeros(len(raw), dtype=bool)
    has[pos] = True
    dotted = pc.binary_join_element_wise(arrow_literal("."), digits, arrow_literal(""))
    suffix = pc.if_else(pa.array(has), dotted, arrow_literal(""))
    return pc.binary_join_element_wise(text, suffix, arrow_literal(""))


def _arrow_values(series: pd.Series, numeric_only: bool) -> Converted | None:
    """:func:`convert_values` in C for strings, ints, bools and datetimes; None for the rest."""
    import pyarrow.compute as pc

    dtype = series.dtype
    if _is_arrow_string_dtype(dtype):
        return None if numeric_only else _arrow_string_values(_arrow_strings(series))
    if pd.api.types.is_float_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return None  # repr(float) has no Arrow twin; timedeltas are bad anyway
    kind, values, missing = _as_values(series)
    if kind == "int":
        return Converted(
            None, missing, _NO_POS, [], _NO_POS, arrow=_arrow_int_text(values, missing)
        )
    if numeric_only:
        return None
    if kind == "string":
        strings = _arrow_strings(series)
        return None if strings is None else _arrow_string_values(strings)
    if kind == "bool":
        text = pc.if_else(
            _arrow_from_numpy(values, missing), arrow_literal("true"), arrow_literal("false")
        )
        return Converted(None, missing, _NO_POS, [], _NO_POS, arrow=text)
    if kind == "datetime":
        text = _arrow_datetime_text(values, missing)
        if text is None:
            return None
        return Converted(None, missing, _NO_POS, [], _NO_POS, quoted=True, arrow=text)
    return None


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


NOT_UTF8 = (
    "string is not valid Unicode (a lone surrogate, e.g. from decoding with "
    "'surrogateescape'), so it cannot be sent as UTF-8; clean the column first"
)


def _is_utf8(text: str) -> bool:
    """False for a str holding a lone surrogate (it has no UTF-8 form). O(1) for ASCII."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_utf8_positions(values: np.ndarray) -> np.ndarray:
    """Positions (into ``values``, all str) of the strings that cannot be encoded as UTF-8."""
    return np.asarray(
        [i for i, v in enumerate(values) if not _is_utf8(v)], dtype=np.int64
    )


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
        if not _is_utf8(value):
            raise BadValue(NOT_UTF8)
        return encode_basestring(value)
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (dt.timedelta, np.timedelta64)):  # before ints: numpy's is one
        raise BadValue(
            "a timedelta has no JSON form; convert it, e.g. with .dt.total_seconds()"
        )
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
            raise BadValue(_TOO_DEEP)
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
            raise BadValue(_TOO_DEEP)
        parts = []
        for k, v in value.items():
            if isinstance(k, bool) or not isinstance(k, (str, int, float, np.integer)):
                raise BadValue(f"dict keys must be strings, got {_describe(k)}")
            parts.append(json_text(str(k)) + ":" + json_text(v, depth + 1))
        return "{" + ",".join(parts) + "}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise BadValue("bytes have no JSON form; decode them first, e.g. .str.decode('utf-8')")
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
            bad_reason.append(_TOO_DEEP)
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
    per = _UNITS_PER_SECOND.get(unit)
    if per is None:  # not a pandas unit: let numpy round to seconds
        seconds = values.astype("datetime64[s]")
        secs = seconds.astype(np.int64)
        frac = values != seconds.astype(values.dtype)
    else:
        # Integer floor division, not ``astype("datetime64[s]")``: numpy's cast overflows for
        # nanosecond values in the first second after pandas' minimum (1677-09-21 00:12:44
        # became 2262-04-11) and took them for fractional.
        secs, sub = np.divmod(values.view(np.int64), per)
        frac = sub != 0
    days = np.floor_divide(secs, 86_400)
    codes, uniq = pd.factorize(days)
    day_text = np.datetime_as_string(uniq.astype("datetime64[D]")).astype(object) + "T"
    out = day_text[codes] + _time_of_day_table()[secs - days * 86_400]
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


def _categorical_values(series: pd.Series, numeric_only: bool) -> Converted:
    """Convert the categories once, then take each row's text by its code."""
    n = len(series)
    cats = convert_values(pd.Series(series.cat.categories), numeric_only=numeric_only)
    k = len(cats.missing)
    codes = series.cat.codes.to_numpy()
    has = codes >= 0
    bad_cat = np.zeros(k + 1, dtype=bool)
    bad_cat[cats.bad_pos] = True
    reason_of = dict(zip(cats.bad_pos.tolist(), cats.bad_reason))
    bad_pos = np.flatnonzero(has & bad_cat[np.where(has, codes, k)])
    long_cat = np.zeros(k + 1, dtype=bool)
    long_cat[cats.long_pos] = True
    long_pos = np.flatnonzero(has & long_cat[np.where(has, codes, k)])
    reasons = [reason_of[int(codes[p])] for p in bad_pos]
    cat_arrow = cats.to_arrow() if arrow_enabled() else None
    if cat_arrow is not None:
        import pyarrow.compute as pc

        arrow = try_arrow(pc.take, cat_arrow, _arrow_from_numpy(codes, ~has))
        if arrow is not None:
            return Converted(
                None, ~has, bad_pos, reasons, long_pos, quoted=cats.quoted, arrow=arrow
            )
    text = np.full(n, None, dtype=object)
    text[has] = cats.text[codes[has]]
    return Converted(text, ~has, bad_pos, reasons, long_pos, quoted=cats.quoted)


def convert_values(series: pd.Series, *, numeric_only: bool = False, column: str = "") -> Converted:
    """Convert a column of property values to JSON text (``numeric_only`` for ``$add``)."""
    n = len(series)
    if isinstance(series.dtype, pd.CategoricalDtype):
        return _categorical_values(series, numeric_only)
    if arrow_enabled():
        fast = try_arrow(_arrow_values, series, numeric_only)
        if fast is not None:
            return fast
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
        bad = np.flatnonzero(present)[_not_utf8_positions(vals)]
        text[bad] = None
        return Converted(
            text, missing, bad, [NOT_UTF8] * len(bad), long_pos, quoted=quoted
        )
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
        if not _is_utf8(value):
            raise BadValue(NOT_UTF8)
        return value
    if isinstance(value, (bool, np.bool_, np.timedelta64)):  # numpy's timedelta is an integer
        raise BadValue(f"an id must be a string or an integer, got {_describe(value)}")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating, Decimal)):
        f = float(value)
        if math.isfinite(f) and f == int(f):
            return str(int(f))
        raise BadValue(f"an id must be a string or a whole number, got {_describe(value)}")
    raise BadValue(f"an id must be a string or an integer, got {_describe(value)}")


@dataclass(eq=False)
class IdColumn:
    """A column of ids, converted and factorized once.

    Equal ids share a code, numbered by first appearance; the distinct ids are held once, as a
    numpy object array (``uniques``) or, on the Arrow path, as Arrow strings (``unique_arrow``)
    only. The id checks run on the distinct ids, and the busy-id warning and the lanes reuse the
    codes, so the strings are hashed a single time.
    """

    codes: np.ndarray  # int64 per row: index into the distinct ids, -1 where missing or bad
    uniques: np.ndarray | None  # object: the distinct ids as ``str`` (None: see unique_arrow)
    conv: Converted  # the JSON text of each id, for the payload
    unique_arrow: pa.Array | None = None  # the distinct ids as Arrow strings

    def __post_init__(self) -> None:
        if self.uniques is None and self.unique_arrow is None:
            raise ValueError("IdColumn needs its distinct ids as a numpy or an Arrow array")

    @property
    def n_unique(self) -> int:
        return len(self.uniques if self.uniques is not None else self.unique_arrow)

    @property
    def distinct(self) -> Any:
        """The distinct ids in whichever form they are held (numpy object or Arrow array)."""
        return self.uniques if self.uniques is not None else self.unique_arrow

    def unique_at(self, codes: np.ndarray) -> np.ndarray:
        """The distinct ids numbered ``codes`` (all >= 0), as an object array of ``str``."""
        if self.uniques is not None:
            return self.uniques[codes]
        import pyarrow as pa

        out = np.empty(len(codes), dtype=object)
        out[:] = self.unique_arrow.take(pa.array(codes, type=pa.int64())).to_pylist()
        return out

    def keep(self, rows: np.ndarray) -> None:
        """Forget the ids of rows outside the bool mask ``rows`` (e.g. ids Amplitude rejects)."""
        self.codes = np.where(rows, self.codes, -1)
        self.conv.keep(rows)

    def broadcast(self, n: int) -> IdColumn:
        """A one-row column (a literal id) repeated for ``n`` rows."""
        first = self.conv
        bad = bool(len(first.bad_pos))
        return IdColumn(
            codes=np.full(n, self.codes[0], dtype=np.int64),
            uniques=self.uniques,
            conv=Converted(
                np.full(n, first.text[0], dtype=object),
                missing=np.full(n, bool(first.missing[0])),
                bad_pos=np.arange(n, dtype=np.int64) if bad else first.bad_pos,
                bad_reason=first.bad_reason * n if bad else [],
                long_pos=first.long_pos[:0],
                quoted=first.quoted,
            ),
            unique_arrow=self.unique_arrow,
        )


def convert_ids(series: pd.Series) -> IdColumn:
    """Ids to Python strings (``12345`` and ``12345.0`` become ``"12345"``), factorized.

    ``conv.text`` holds the JSON text of each id (``None`` where missing or bad).
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object).where(series.notna(), None)
    if arrow_enabled():
        fast = try_arrow(_arrow_ids, series)
        if fast is not None:
            return fast
    n = len(series)
    kind, values, missing = _as_values(series)
    present = ~missing
    strings = np.full(n, None, dtype=object)
    bad_pos: np.ndarray = _NO_POS
    bad_reason: list[str] = []
    if kind == "string":
        strings[present] = values[present]
        bad_pos = np.flatnonzero(present)[_not_utf8_positions(values[present])]
        bad_reason = [NOT_UTF8] * len(bad_pos)
        strings[bad_pos] = None
    elif kind == "int":
        strings[present] = list(map(str, values[present].tolist()))
    elif kind == "float":
        v = values
        whole = present & np.isfinite(v) & (np.floor(np.where(present, v, 0)) == v)
        # int() of a whole float is exact; astype(int64) would wrap 1e20 round to another id
        strings[whole] = list(map(str, map(int, v[whole].tolist())))
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
    codes, uniques = pd.factorize(strings, use_na_sentinel=True)
    return IdColumn(
        codes=codes.astype(np.int64, copy=False),
        uniques=np.asarray(uniques, dtype=object),
        conv=Converted(text, missing, bad_pos, bad_reason, _NO_POS, quoted=quoted),
    )


def _arrow_ids(series: pd.Series) -> IdColumn | None:
    """:func:`convert_ids` for string and integer columns, factorized by Arrow; else None."""

    dtype = series.dtype
    if _is_arrow_string_dtype(dtype):
        kind, values, missing = "string", None, None
    elif pd.api.types.is_float_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        return None
    else:
        kind, values, missing = _as_values(series)
    if kind == "int":
        assert values is not None and missing is not None
        present = ~missing
        codes = np.full(len(values), -1, dtype=np.int64)
        present_codes, distinct = pd.factorize(values[present])
        codes[present] = present_codes
        uniques = np.empty(len(distinct), dtype=object)
        uniques[:] = list(map(str, distinct.tolist()))
        text = _arrow_int_text(values, missing)
        return IdColumn(
            codes, uniques, Converted(None, missing, _NO_POS, [], _NO_POS, True, arrow=text)
        )
    if kind != "string":
        return None
    strings = _arrow_strings(series)
    if strings is None:
        return None
    codes, distinct = _factorize_strings(strings)
    conv = Converted(
        None, codes < 0, _NO_POS, [], _NO_POS, quoted=True, arrow=_escape_arrow(strings)
    )
    return IdColumn(codes, None, conv, unique_arrow=distinct)


def _factorize_strings(strings: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Codes (int64, -1 where null, numbered by first appearance) and the distinct strings.

    Hashing is the costliest step of building on a frame with many users, so the layout hashed
    is chosen for speed: ids that all have one byte length (UUIDs, zero-padded numbers, hashes)
    are hashed as fixed-size binary values, ~40% faster than as strings; others as strings with
    32-bit offsets, ~25% faster than with 64-bit ones.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    width = _uniform_byte_width(strings)
    if width is not None:
        offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64)
        first = int(offsets[strings.offset])
        fixed = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width),
            len(strings),
            [None, strings.buffers()[2].slice(first, width * len(strings))],
        )
        encoded = pc.dictionary_encode(fixed)
        distinct = encoded.dictionary
        # The distinct values back as strings: same bytes, offsets every ``width`` bytes.
        distinct = pa.LargeStringArray.from_buffers(
            len(distinct),
            pa.py_buffer(np.arange(0, width * (len(distinct) + 1), width, dtype=np.int64)),
            distinct.buffers()[1].slice(distinct.offset * width, width * len(distinct)),
        )
        return encoded.indices.to_numpy().astype(np.int64), distinct
    try:
        narrow = strings.cast(pa.string())
    except pa.ArrowException:  # pragma: no cover - more than 2 GB of id text
        narrow = strings
    encoded = pc.dictionary_encode(narrow)
    codes = encoded.indices.fill_null(-1).to_numpy().astype(np.int64)
    return codes, encoded.dictionary.cast(pa.large_string())


def _uniform_byte_width(strings: pa.Array) -> int | None:
    """The byte length shared by every string, if there are no nulls and it is one length > 0
    (then the strings lie back to back in the data buffer, ``width`` bytes apart)."""
    n = len(strings)
    if not n or strings.null_count:
        return None
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64)[strings.offset :][: n + 1]
    width = int(offsets[1] - offsets[0])
    if width <= 0 or int(offsets[-1] - offsets[0]) != width * n:
        return None
    for start in range(0, n, _SCAN_BLOCK):  # block-wise: no 8 MB temporary of lengths
        if (np.diff(offsets[start : start + _SCAN_BLOCK + 1]) != width).any():
            return None
    return width


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
        conv = convert_ids(series).conv
        counts[conv.present] = 1
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
