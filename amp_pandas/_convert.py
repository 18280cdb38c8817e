"""Cells to JSON text: the type rules, applied a whole column at a time.

Every converter returns a :class:`Converted`: per row the JSON text of the value as an Arrow
``large_string`` array (null where the cell is missing or bad), a mask of missing cells, and the
rows whose value has no JSON form with the reason. Strings, integers, booleans, datetimes and
categoricals of them are converted by ``pyarrow.compute`` and numpy, with no Python object per
cell; floats by ``repr`` (the shortest text that reads back as the same double); object columns
by a cell-by-cell walk (:func:`json_text`) that handles lists, dicts, Decimals, dates and mixed
types.

The rules (also in the README):

- numpy and pandas nullable ints, floats and bools become JSON numbers and booleans;
- ``Timestamp``/``datetime64``/``datetime`` become ``YYYY-MM-DDTHH:MM:SS`` (UTC for tz-aware
  values; fractional seconds only when non-zero), ``date`` becomes ``YYYY-MM-DD``;
- categoricals become their category values, ``Decimal`` a number, list/tuple/set cells arrays,
  ndarray cells arrays of their own shape (a 0-d array is its scalar), dict cells objects
  (nesting limited);
- None, NaN, NaT and pd.NA are *missing* (the caller's ``nulls`` policy decides); inside a list
  or dict they are ``null``;
- ±inf, numbers with no finite double form, bytes, timedeltas, strings with no UTF-8 form (lone
  surrogates) and values with no JSON form are *bad*: the row becomes invalid.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from json.encoder import encode_basestring  # C-accelerated; keeps non-ASCII as UTF-8
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._amplitude import MAX_STRING_LENGTH, MAX_USER_PROPERTIES_DEPTH
from ._payloads import arrow_literal

__all__ = [
    "Converted",
    "BadValue",
    "MAX_VALUE_DEPTH",
    "MAX_EXACT_FLOAT_ID",
    "NOT_UTF8",
    "VALUE",
    "convert_values",
    "convert_ids",
    "convert_field",
    "convert_groups",
    "json_text",
    "is_missing",
    "object_cells",
    "IdColumn",
    "describe",
]

#: Amplitude limits ``user_properties`` to 40 levels; ``{"$set": {"p": value}}`` uses two.
MAX_VALUE_DEPTH = MAX_USER_PROPERTIES_DEPTH - 2
LONG_STRING = MAX_STRING_LENGTH
#: Whole floats below this magnitude are exact; from 2**53 on, neighbouring integers share a
#: double, so a float id there may be another user's id rounded.
MAX_EXACT_FLOAT_ID = 2**53
_TOO_DEEP = (
    f"nesting deeper than {MAX_VALUE_DEPTH} levels (Amplitude allows {MAX_USER_PROPERTIES_DEPTH}, "
    "the operation's two included); flatten the value"
)
NOT_UTF8 = (
    "string is not valid Unicode (a lone surrogate, e.g. from decoding with "
    "'surrogateescape'), so it cannot be sent as UTF-8; clean the column first"
)
#: Stands for the cell's value in a problem's ``kind`` (its message without the value).
VALUE = "<value>"


class BadValue(Exception):
    """A cell that has no JSON form; the message says why and what to do.

    ``kind`` is the message without the cell's value, so that problems group by kind.

    Examples
    --------
    >>> err = BadValue.of("{value} has no JSON form; convert it", 1j)
    >>> str(err), err.kind
    ('complex 1j has no JSON form; convert it', '<value> has no JSON form; convert it')
    """

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = message if kind is None else kind

    @classmethod
    def of(cls, template: str, value: Any) -> BadValue:
        """A BadValue whose message is ``template`` with ``{value}`` the described value."""
        return cls(template.replace("{value}", describe(value)), template.replace("{value}", VALUE))


def describe(value: Any) -> str:
    """``type plain-repr`` of a value, short: ``float 1e+20``, ``Timestamp ...`` (numpy scalars
    shown as the Python value they hold, not as ``np.float64(...)``)."""
    shown = value.item() if isinstance(value, np.generic) and value.dtype.kind in "biufc" else value
    text = repr(shown)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


_NO_POS = np.empty(0, dtype=np.int64)


def _valid_mask(arr: pa.Array) -> np.ndarray:
    return np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)


@dataclass(eq=False)
class Converted:
    """One column converted: JSON text per row plus what went wrong where.

    The text is an Arrow ``large_string`` array, null where the cell is missing or bad:
    ``_build`` joins such arrays into whole identifications in C, and no Python string is made
    per cell.
    """

    arrow: pa.Array  # large_string: JSON text, null where missing or bad
    missing: np.ndarray  # bool
    bad_pos: np.ndarray  # int64 positions of bad cells
    bad_reason: list[str]  # one per bad position
    long_pos: np.ndarray  # positions holding a string over 1024 characters (warning)
    #: True when the text holds the (already escaped) contents of JSON strings without their
    #: quotes: the payload template adds the quotes, which saves a pass over every cell.
    quoted: bool = False
    #: Per bad position, its reason without the cell's value (None: the reasons themselves).
    bad_kind: list[str] | None = field(default=None)

    @classmethod
    def from_objects(
        cls,
        text: np.ndarray,
        missing: np.ndarray,
        bad_pos: np.ndarray = _NO_POS,
        bad_reason: list[str] | None = None,
        long_pos: np.ndarray = _NO_POS,
        *,
        quoted: bool = False,
        bad_kind: list[str] | None = None,
    ) -> Converted:
        """From an object array of ``str`` (None where missing or bad); every ``str`` must have
        a UTF-8 form (the converters make lone surrogates bad before they get here)."""
        return cls(
            pa.array(text, type=pa.large_string(), from_pandas=True),
            missing,
            bad_pos,
            [] if bad_reason is None else bad_reason,
            long_pos,
            quoted,
            bad_kind,
        )

    @property
    def present(self) -> np.ndarray:
        """Bool mask of rows that have text (neither missing nor bad)."""
        return _valid_mask(self.arrow)

    @property
    def kinds(self) -> list[str]:
        """Per bad position, the reason without the cell's value."""
        return self.bad_reason if self.bad_kind is None else self.bad_kind

    def keep(self, rows: np.ndarray) -> None:
        """Drop the text of rows outside the bool mask ``rows`` (e.g. ids that are unusable)."""
        self.arrow = pc.if_else(pa.array(rows, type=pa.bool_()), self.arrow, arrow_literal(None))

    def json_at(self, position: int) -> str | None:
        """One row's JSON text (quotes added when ``quoted``), None where absent."""
        text = self.arrow[position].as_py()
        if text is None or not self.quoted:
            return text
        return '"' + text + '"'

    def broadcast(self, n: int) -> Converted:
        """This one-row conversion (a literal) repeated for ``n`` rows."""
        bad = bool(len(self.bad_pos))
        return Converted(
            pa.repeat(self.arrow[0], n) if n else self.arrow[:0],
            missing=np.full(n, bool(self.missing[0])),
            bad_pos=np.arange(n, dtype=np.int64) if bad else _NO_POS,
            bad_reason=self.bad_reason * n if bad else [],
            long_pos=np.arange(n, dtype=np.int64) if len(self.long_pos) else _NO_POS,
            quoted=self.quoted,
            bad_kind=self.kinds * n if bad else None,
        )

    @classmethod
    def bad_where(cls, present: np.ndarray, missing: np.ndarray, reason: str) -> Converted:
        """Every ``present`` row bad for one reason (a whole column with no JSON form)."""
        bad_pos = np.flatnonzero(present)
        return cls(
            pa.nulls(len(present), pa.large_string()),
            missing,
            bad_pos,
            [reason] * len(bad_pos),
            _NO_POS,
        )


# --------------------------------------------------------------------------------------------
# strings


def _is_arrow_string_dtype(dtype: Any) -> bool:
    """True for pandas string columns whose values already live in Arrow (``str`` in pandas 3,
    ``string[pyarrow]``, ``string[pyarrow_numpy]`` in pandas 2)."""
    if isinstance(dtype, pd.StringDtype):
        return dtype.storage in ("pyarrow", "pyarrow_numpy")
    if isinstance(dtype, pd.ArrowDtype):
        return pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(
            dtype.pyarrow_dtype
        )
    return False


def _large_strings(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous ``large_string`` array (pandas keeps Arrow strings as chunked arrays).

    ``large_string`` everywhere: ``binary_join_element_wise`` wants one string type for all its
    arguments, and 64-bit offsets never overflow however long the column's text is.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr.cast(pa.large_string())


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
    return np.asarray([i for i, v in enumerate(values) if not _is_utf8(v)], dtype=np.int64)


def _arrow_strings(series: pd.Series) -> tuple[pa.Array, np.ndarray]:
    """A string column as Arrow (null where missing), and the positions of strings with no
    UTF-8 form (lone surrogates, possible in object columns only), which are null too."""
    if _is_arrow_string_dtype(series.dtype):
        return _large_strings(pa.array(series.array)), _NO_POS
    values = series.to_numpy(dtype=object, na_value=None)
    missing = series.isna().to_numpy()
    try:
        return pa.array(values, type=pa.large_string(), mask=missing), _NO_POS
    except (pa.ArrowException, UnicodeError):
        present = np.flatnonzero(~missing)
        bad = present[_not_utf8_positions(values[present])]
        values = values.copy()
        values[bad] = None
        missing = missing.copy()
        missing[bad] = True
        return pa.array(values, type=pa.large_string(), mask=missing), bad


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
    special = _special_bytes(arr)
    # The backslash first: the other escapes add backslashes that must stay single.
    for byte in sorted(special, key=lambda b: b != 0x5C):
        arr = pc.replace_substring(arr, chr(byte), _JSON_ESCAPES[byte])
    return arr


def _arrow_long_positions(arr: pa.Array) -> np.ndarray:
    """Positions of strings over ``LONG_STRING`` characters (byte lengths rule most out)."""
    if len(arr) == 0:
        return _NO_POS
    longest = pc.max(pc.binary_length(arr)).as_py()
    if longest is None or longest <= LONG_STRING:  # a character is at least one byte
        return _NO_POS
    chars = pc.utf8_length(arr).fill_null(0).to_numpy()
    return np.flatnonzero(chars > LONG_STRING)


def _string_values(series: pd.Series) -> Converted:
    """A string column as quoted-by-template JSON text; lone surrogates are bad."""
    strings, bad = _arrow_strings(series)
    missing = ~_valid_mask(strings)
    missing[bad] = False
    return Converted(
        _escape_arrow(strings),
        missing,
        bad,
        [NOT_UTF8] * len(bad),
        _arrow_long_positions(strings),
        quoted=True,
    )


def _arrow_from_numpy(values: np.ndarray, missing: np.ndarray) -> pa.Array:
    return pa.array(values, mask=missing if missing.any() else None)


def _int_text(values: np.ndarray, missing: np.ndarray) -> pa.Array:
    """``str(int)`` in C: Arrow's integer-to-string cast writes plain decimal digits."""
    return pc.cast(_arrow_from_numpy(values, missing), pa.large_string())



# --------------------------------------------------------------------------------------------
# datetimes

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

    n, width = len(items), items.dtype.itemsize
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int64)
    nulls = int(n - np.count_nonzero(present))
    validity = pa.array(present, type=pa.bool_()).buffers()[1] if nulls else None
    return pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(items), validity, nulls
    )


_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_DATETIME_BLOCK = 1 << 16


def _datetime_text(values: np.ndarray, missing: np.ndarray) -> pa.Array:
    """datetime64 values to the ISO text of :func:`iso_datetime`, with integer arithmetic.

    ``pc.strftime`` costs ~2 µs a value here. Instead the days the column spans are formatted
    once by numpy, and each row's ``YYYY-MM-DDTHH:MM:SS`` is gathered
    as 11 + 8 bytes from that table and a table of the 86,400 times of day, straight into the
    buffer of the Arrow array. A fraction is joined on only where one exists.
    """
    per = _UNITS_PER_SECOND.get(np.datetime_data(values.dtype)[0])
    if per is None:  # a coarser numpy unit than pandas makes (days, hours...): exact in seconds
        values, per = values.astype("datetime64[s]"), 1
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
    # a year with a sign (numpy writes -001 in ten characters too) or five digits
    if not (np.char.str_len(day_text) == 10).all() or day_text[0].startswith("-"):
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
    """:func:`_datetime_text` for dates far apart or outside years 0000-9999."""

    secs, sub = np.divmod(raw, per)
    days, time_of_day = np.divmod(secs, 86_400)
    day_pos, table_days = pd.factorize(days)
    day_text = _iso_days(np.datetime_as_string(table_days.astype("datetime64[D]")))
    mask = missing if missing.any() else None
    # via object: pyarrow < 16 cannot convert numpy unicode arrays to large_string directly
    table = pa.array(day_text.astype(object), type=pa.large_string())
    date = pc.take(table, pa.array(day_pos, mask=mask))
    time = _fixed_width_strings(np.take(_time_of_day_bytes(), time_of_day), present)
    text = pc.binary_join_element_wise(date, arrow_literal("T"), time, arrow_literal(""))
    return _with_fractions(text, raw, per, np.flatnonzero(sub))


def _iso_days(day_text: np.ndarray) -> np.ndarray:
    """numpy's ``YYYY-MM-DD`` texts with a year before 0000 written as ISO 8601's expanded
    form does, at least four digits after the sign (``-0001-03-04``; numpy writes ``-001``).

    Examples
    --------
    >>> _iso_days(np.array(["-001-03-04", "0000-01-01", "-12345-01-01"])).tolist()
    ['-0001-03-04', '0000-01-01', '-12345-01-01']
    """
    negative = np.flatnonzero(np.char.startswith(day_text, "-"))
    if not len(negative):
        return day_text
    out = day_text.astype(object)
    for i in negative.tolist():
        year, rest = out[i][1:].split("-", 1)
        out[i] = f"-{year.zfill(4)}-{rest}"
    return out.astype(str)


def _with_fractions(text: pa.Array, raw: np.ndarray, per: int, pos: np.ndarray) -> pa.Array:
    """Append ``.digits`` (nanoseconds, trailing zeros stripped) to the rows at ``pos``."""

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



# --------------------------------------------------------------------------------------------
# scalars (object columns and literals)


def _unwrap(value: Any) -> Any:
    """A 0-d ndarray is the scalar it holds (``value[()]`` keeps numpy's type)."""
    while isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return value


def is_missing(value: Any) -> bool:
    """True for None, NaN, NaT, pd.NA and Decimal NaN (not for containers).

    Examples
    --------
    >>> import numpy as np
    >>> is_missing(np.nan), is_missing(np.array(np.nan)), is_missing([np.nan])
    (True, True, False)
    """
    value = _unwrap(value)
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(value != value)
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(value))
    if isinstance(value, Decimal):
        return value.is_nan()
    return False


def iso_datetime(value: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS[.ffffff]`` in UTC for aware values; no fraction when it is zero.

    A ``Timestamp`` beyond Python's ``datetime`` (years before 1 or after 9999) is written as
    a ``datetime64`` column would be.
    """
    if isinstance(value, pd.Timestamp) and not 1 <= value.year <= 9999:
        stamp = value.tz_convert("UTC").tz_localize(None) if value.tzinfo is not None else value
        one = np.array([stamp.to_datetime64()])
        return str(_datetime_text(one, np.zeros(1, dtype=bool))[0].as_py())
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(dt.UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S") if value.year >= 1000 else value.isoformat()[:19]
    nanos = getattr(value, "nanosecond", 0)
    if value.microsecond or nanos:
        frac = f"{value.microsecond:06d}{nanos:03d}".rstrip("0")
        text += "." + frac
    return text


_NOT_A_NUMBER = "{value} is not a valid JSON number (no finite double holds it); replace or drop it"


def _check_utf8(value: str) -> str:
    if not _is_utf8(value):
        raise BadValue(NOT_UTF8)
    return value


def json_text(value: Any, depth: int = 0) -> str:
    """The JSON text of one value by the type rules; raises :class:`BadValue`.

    Missing values inside containers become ``null``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> json_text([np.int64(3), True, pd.Timestamp("2024-05-01 12:00", tz="Europe/Paris")])
    '[3,true,"2024-05-01T10:00:00"]'
    >>> json_text({"a": [np.nan, None], "m": np.array([[1, 2], [3, 4]])})
    '{"a":[null,null],"m":[[1,2],[3,4]]}'
    """
    if isinstance(value, str):
        return encode_basestring(_check_utf8(value))
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (dt.timedelta, np.timedelta64)):  # before ints: numpy's is one
        if isinstance(value, np.timedelta64) and np.isnat(value):
            return "null"
        raise BadValue("a timedelta has no JSON form; convert it, e.g. with .dt.total_seconds()")
    if isinstance(value, (int, np.integer)):
        number = int(value)
        if number.bit_length() > 1000:  # near the largest double: does it have a finite one?
            try:
                float(number)
            except OverflowError:
                raise BadValue.of(_NOT_A_NUMBER, value) from None
        return str(number)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if math.isfinite(f):
            return repr(f)
        if f != f:
            return "null"
        raise BadValue.of(_NOT_A_NUMBER, value)
    if value is None or value is pd.NA or value is pd.NaT:
        return "null"
    if isinstance(value, Decimal):
        if value.is_nan():
            return "null"
        if value.is_finite() and math.isfinite(float(value)):
            return str(value)
        raise BadValue.of(_NOT_A_NUMBER, value)
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return "null"
        try:
            value = pd.Timestamp(value)
        except (ValueError, OverflowError):
            raise BadValue.of(
                "{value} is outside the dates pandas can hold; convert it", value
            ) from None
    if isinstance(value, dt.datetime):  # includes pd.Timestamp
        return '"' + iso_datetime(value) + '"'
    if isinstance(value, dt.date):
        return '"' + value.isoformat() + '"'
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return json_text(value[()], depth)
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series, pd.Index)):
        if depth >= MAX_VALUE_DEPTH:
            raise BadValue(_TOO_DEEP)
        items: Any = value
        if isinstance(value, (set, frozenset)):
            try:
                items = sorted(value)
            except TypeError:
                items = list(value)
        return "[" + ",".join([json_text(v, depth + 1) for v in items]) + "]"
    if isinstance(value, dict):
        if depth >= MAX_VALUE_DEPTH:
            raise BadValue(_TOO_DEEP)
        parts = []
        for k, v in value.items():
            if isinstance(k, bool) or not isinstance(k, (str, int, float, np.integer)):
                raise BadValue.of("dict keys must be strings, got {value}; convert the keys", k)
            parts.append(json_text(str(k)) + ":" + json_text(v, depth + 1))
        return "{" + ",".join(parts) + "}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise BadValue("bytes have no JSON form; decode them first, e.g. .str.decode('utf-8')")
    raise BadValue.of("{value} has no JSON form; convert the column first", value)


@dataclass
class _Walked:
    """What a cell-by-cell walk found: text (object, None where missing or bad) and problems."""

    text: np.ndarray
    missing: np.ndarray
    bad_pos: np.ndarray
    bad_reason: list[str]
    bad_kind: list[str]
    long_pos: np.ndarray

    def converted(self, *, quoted: bool = False) -> Converted:
        return Converted.from_objects(
            self.text, self.missing, self.bad_pos, self.bad_reason, self.long_pos,
            quoted=quoted, bad_kind=self.bad_kind,
        )


def _walk(values: np.ndarray, fn: Callable[[Any], str]) -> _Walked:
    """Convert cell by cell: ``fn`` returns text or raises BadValue; missing cells are skipped."""
    n = len(values)
    text = np.full(n, None, dtype=object)
    missing = np.zeros(n, dtype=bool)
    bad_pos: list[int] = []
    bad_reason: list[str] = []
    bad_kind: list[str] = []
    long_pos: list[int] = []
    for i, v in enumerate(values):
        if is_missing(v):
            missing[i] = True
            continue
        try:
            t = fn(_unwrap(v))
        except BadValue as exc:
            bad_pos.append(i)
            bad_reason.append(str(exc))
            bad_kind.append(exc.kind)
            continue
        except RecursionError:
            bad_pos.append(i)
            bad_reason.append(_TOO_DEEP)
            bad_kind.append(_TOO_DEEP)
            continue
        text[i] = t
        if isinstance(v, str) and len(v) > LONG_STRING:
            long_pos.append(i)
    return _Walked(
        text,
        missing,
        np.asarray(bad_pos, dtype=np.int64),
        bad_reason,
        bad_kind,
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
        signed = dtype.kind == "i" or str(dtype).startswith("Int")
        return "int", series.to_numpy(dtype=np.int64 if signed else np.uint64, na_value=0), missing
    if pd.api.types.is_float_dtype(dtype):
        return "float", series.to_numpy(dtype=np.float64, na_value=np.nan), missing
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "datetime", series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(), missing
    if pd.api.types.is_datetime64_dtype(dtype):
        return "datetime", series.to_numpy(), missing
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_timestamp(dtype.pyarrow_dtype):
        return "datetime", _arrow_timestamps(series, dtype.pyarrow_dtype), missing
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return "string", series.to_numpy(dtype=object, na_value=None), missing
    values = object_cells(series)
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        if inferred == "string":
            return "string", values, missing
        if inferred == "empty":
            return "string", values, np.ones(len(values), dtype=bool)
    return "object", values, missing


def object_cells(series: pd.Series) -> np.ndarray:
    """A column's cells as Python objects, exactly: Arrow list, struct and map columns through
    Arrow's own ``to_pylist`` (pandas' ``to_numpy(dtype=object)`` turns an int64 field of a
    struct with a missing value into floats, ``1`` into ``1.0``).

    Examples
    --------
    >>> s = pd.Series(pd.arrays.ArrowExtensionArray(pa.array([{"a": 1}, {"a": None}])))
    >>> object_cells(s).tolist()
    [{'a': 1}, {'a': None}]
    """
    dtype = series.dtype
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_timestamp(dtype.pyarrow_dtype):
        # numpy datetime64 cells, each exact: pandas 2.2 converts an Arrow timestamp outside
        # datetime64[ns]'s years through nanoseconds (and crashes the interpreter on some)
        stamps = _arrow_timestamps(series, dtype.pyarrow_dtype)
        out = np.empty(len(stamps), dtype=object)
        out[:] = list(stamps)
        out[series.isna().to_numpy()] = None
        return out
    if isinstance(dtype, np.dtype | pd.DatetimeTZDtype) and dtype.kind == "M":
        # the same for numpy datetimes, zoned ones as their UTC instants (pandas 2.2 turns
        # cells of s/ms/us units past year 2262 into Timestamps through nanoseconds, and crashes)
        naive = series.dt.tz_convert(None) if isinstance(dtype, pd.DatetimeTZDtype) else series
        stamps = naive.to_numpy()
        out = np.empty(len(stamps), dtype=object)
        out[:] = list(stamps)
        out[np.isnat(stamps)] = None
        return out
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_nested(dtype.pyarrow_dtype):
        cells = pa.array(series.array).to_pylist(maps_as_pydicts="strict")
        out = np.empty(len(cells), dtype=object)
        for i, cell in enumerate(cells):
            out[i] = cell
        return out
    return series.to_numpy(dtype=object)


def _arrow_timestamps(series: pd.Series, arrow_type: pa.TimestampType) -> np.ndarray:
    """An Arrow timestamp column as naive UTC ``datetime64`` (Arrow stores UTC instants for
    every zone, so the zone only needs dropping); missing cells hold 0, masked by the caller."""
    arr = pa.array(series.array)
    raw = pc.fill_null(arr.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    return raw.astype(np.int64, copy=False).view(f"datetime64[{arrow_type.unit}]")


def _float_text(values: np.ndarray, missing: np.ndarray) -> Converted:
    """``repr`` of each finite double (the shortest text that reads back exactly); ±inf bad."""
    present = ~missing
    finite = np.isfinite(values)
    ok = present & finite
    text = np.full(len(values), None, dtype=object)
    text[ok] = list(map(repr, values[ok].tolist()))
    bad = np.flatnonzero(present & ~finite)
    reasons = [_NOT_A_NUMBER.replace("{value}", f"float {values[p]}") for p in bad]
    kinds = [_NOT_A_NUMBER.replace("{value}", VALUE)] * len(bad)
    return Converted.from_objects(text, missing, bad, reasons, bad_kind=kinds)


def _categorical_values(series: pd.Series, numeric_only: bool) -> Converted:
    """Convert the categories once, then take each row's text by its code."""
    cats = convert_values(pd.Series(series.cat.categories), numeric_only=numeric_only)
    k = len(cats.missing)
    codes = series.cat.codes.to_numpy()
    has = codes >= 0
    safe = np.where(has, codes, k)
    bad_cat = np.zeros(k + 1, dtype=bool)
    bad_cat[cats.bad_pos] = True
    reasons = zip(cats.bad_reason, cats.kinds, strict=True)
    reason_of = dict(zip(cats.bad_pos.tolist(), reasons, strict=True))
    bad_pos = np.flatnonzero(bad_cat[safe])
    long_cat = np.zeros(k + 1, dtype=bool)
    long_cat[cats.long_pos] = True
    long_pos = np.flatnonzero(long_cat[safe])
    found = [reason_of[int(codes[p])] for p in bad_pos]
    return Converted(
        pc.take(cats.arrow, _arrow_from_numpy(codes, ~has)),
        ~has,
        bad_pos,
        [r for r, _ in found],
        long_pos,
        quoted=cats.quoted,
        bad_kind=[kind for _, kind in found],
    )


def _not_numeric(missing: np.ndarray, kind: str) -> Converted:
    return Converted.bad_where(
        ~missing,
        missing,
        f"$add needs a number, got {kind}; convert the column, e.g. with pd.to_numeric",
    )


def convert_values(series: pd.Series, *, numeric_only: bool = False) -> Converted:
    """Convert a column of property values to JSON text (``numeric_only`` for ``$add``)."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _categorical_values(series, numeric_only)
    if _is_arrow_string_dtype(dtype):
        return _not_numeric(series.isna().to_numpy(), "str") if numeric_only else \
            _string_values(series)
    if pd.api.types.is_timedelta64_dtype(dtype):
        missing = series.isna().to_numpy()
        return Converted.bad_where(
            ~missing, missing,
            "a timedelta has no JSON form; convert it, e.g. with .dt.total_seconds()",
        )
    kind, values, missing = _as_values(series)
    if kind == "int":
        return Converted(_int_text(values, missing), missing, _NO_POS, [], _NO_POS)
    if kind == "float":
        return _float_text(values, missing)
    if kind == "object":
        walked = _walk(values, _number_text if numeric_only else json_text)
        return walked.converted()
    if numeric_only:
        return _not_numeric(missing, {"bool": "bool", "datetime": "datetime"}.get(kind, "str"))
    if kind == "bool":
        text = pc.if_else(
            _arrow_from_numpy(values, missing), arrow_literal("true"), arrow_literal("false")
        )
        return Converted(text, missing, _NO_POS, [], _NO_POS)
    if kind == "datetime":
        return Converted(
            _datetime_text(values, missing), missing, _NO_POS, [], _NO_POS, quoted=True
        )
    return _string_values(series)  # kind == "string"


def _number_text(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, Decimal, np.integer, np.floating)
    ):
        raise BadValue.of(
            "$add needs a number, got {value}; convert the column, e.g. with pd.to_numeric",
            value,
        )
    return json_text(value)


# --------------------------------------------------------------------------------------------
# ids


_FLOAT_ID_NOT_WHOLE = (
    "an id must be a string or a whole number, got {value}; read the column as integers or text"
)
_FLOAT_ID_INEXACT = (
    "id {value} is a float of 2**53 or more, where a float cannot hold every whole number (it "
    "may be another user's id, rounded); read the column as integers or text, e.g. with "
    "dtype=str or dtype='Int64' when reading the file"
)


_NOT_AN_ID = "an id must be a string or an integer, got {value}; convert the column"


def _id_string(value: Any) -> str:
    """An id cell as the id's text; raises BadValue."""
    if isinstance(value, str):
        return _check_utf8(value)
    if isinstance(value, (bool, np.bool_, np.timedelta64)):  # numpy's timedelta is an integer
        raise BadValue.of(_NOT_AN_ID, value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return str(int(value))  # exact: a Decimal holds every digit
        raise BadValue.of(_FLOAT_ID_NOT_WHOLE, value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if not (math.isfinite(f) and f == int(f)):
            raise BadValue.of(_FLOAT_ID_NOT_WHOLE, value)
        if abs(f) >= MAX_EXACT_FLOAT_ID:
            raise BadValue.of(_FLOAT_ID_INEXACT, value)
        return str(int(f))
    raise BadValue.of(_NOT_AN_ID, value)


@dataclass(eq=False)
class IdColumn:
    """A column of ids, converted and factorized once.

    Equal ids share a code, numbered by first appearance; the distinct ids are held once, as an
    Arrow ``large_string`` array. The id checks run on the distinct ids, and the busy-id warning
    and the lanes reuse the codes, so the strings are hashed a single time.
    """

    codes: np.ndarray  # int64 per row: index into the distinct ids, -1 where missing or bad
    distinct: pa.Array  # large_string: the distinct ids
    conv: Converted  # the JSON text of each id, for the payload

    @property
    def n_unique(self) -> int:
        return len(self.distinct)

    def unique_at(self, codes: np.ndarray) -> np.ndarray:
        """The distinct ids numbered ``codes`` (all >= 0), as an object array of ``str``."""
        out = np.empty(len(codes), dtype=object)
        out[:] = self.distinct.take(pa.array(codes, type=pa.int64())).to_pylist()
        return out

    def keep(self, rows: np.ndarray) -> None:
        """Forget the ids of rows outside the bool mask ``rows`` (e.g. ids Amplitude rejects)."""
        self.codes = np.where(rows, self.codes, -1)
        self.conv.keep(rows)

    def broadcast(self, n: int) -> IdColumn:
        """A one-row column (a literal id) repeated for ``n`` rows."""
        conv = self.conv.broadcast(n)
        conv.long_pos = _NO_POS
        return IdColumn(np.full(n, self.codes[0], dtype=np.int64), self.distinct, conv)


def convert_ids(series: pd.Series) -> IdColumn:
    """Ids to strings (``12345`` and ``12345.0`` become ``"12345"``), factorized.

    ``conv`` holds the JSON text of each id (without its quotes; null where missing or bad).
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object).where(series.notna(), None)
    if _is_arrow_string_dtype(series.dtype):
        strings, bad = _arrow_strings(series)
        return _string_ids(strings, bad, [NOT_UTF8] * len(bad), None)
    kind, values, missing = _as_values(series)
    if kind == "int":
        return _int_ids(values, missing)
    if kind == "string":
        strings, bad = _arrow_strings(series)
        return _string_ids(strings, bad, [NOT_UTF8] * len(bad), None)
    if kind == "float":
        walked = _float_ids(values, missing)
    else:
        walked = _walk(values if kind == "object" else object_cells(series), _id_string)
    strings = pa.array(walked.text, type=pa.large_string(), from_pandas=True)
    return _string_ids(strings, walked.bad_pos, walked.bad_reason, walked.bad_kind)


def _int_ids(values: np.ndarray, missing: np.ndarray) -> IdColumn:
    present = ~missing
    codes = np.full(len(values), -1, dtype=np.int64)
    present_codes, distinct = pd.factorize(values[present])
    codes[present] = present_codes
    text = _int_text(values, missing)
    distinct_text = pc.cast(pa.array(np.asarray(distinct)), pa.large_string())
    return IdColumn(codes, distinct_text, Converted(text, missing, _NO_POS, [], _NO_POS, True))


def _float_ids(values: np.ndarray, missing: np.ndarray) -> _Walked:
    """Whole floats below 2**53 are exact ids; other floats are bad (NaN is missing)."""
    present = ~missing
    v = np.where(present, values, 0.0)
    whole = present & np.isfinite(v) & (np.floor(v) == v)
    exact = whole & (np.abs(v) < MAX_EXACT_FLOAT_ID)
    strings = np.full(len(values), None, dtype=object)
    strings[exact] = list(map(str, map(int, v[exact].tolist())))
    bad_pos = np.flatnonzero(present & ~exact)
    templates = [_FLOAT_ID_INEXACT if whole[p] else _FLOAT_ID_NOT_WHOLE for p in bad_pos]
    return _Walked(
        strings,
        missing,
        bad_pos,
        [t.replace("{value}", f"float {values[p]!r}")
         for t, p in zip(templates, bad_pos, strict=True)],
        [t.replace("{value}", VALUE) for t in templates],
        _NO_POS,
    )


def _string_ids(
    strings: pa.Array, bad_pos: np.ndarray, bad_reason: list[str], bad_kind: list[str] | None
) -> IdColumn:
    """Ids held as Arrow strings (null where missing or bad), factorized by Arrow."""
    codes, distinct = _factorize_strings(strings)
    missing = codes < 0
    missing[bad_pos] = False
    conv = Converted(
        _escape_arrow(strings), missing, bad_pos, bad_reason, _NO_POS, True, bad_kind
    )
    return IdColumn(codes, distinct, conv)


def _factorize_strings(strings: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Codes (int64, -1 where null, numbered by first appearance) and the distinct strings.

    Hashing is the costliest step of building on a frame with many users, so the layout hashed
    is chosen for speed: ids that all have one byte length (UUIDs, zero-padded numbers, hashes)
    are hashed as fixed-size binary values, ~40% faster than as strings; others as strings with
    32-bit offsets, ~25% faster than with 64-bit ones.
    """

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



# --------------------------------------------------------------------------------------------
# fields and groups: strings


def _field_text(value: Any) -> str:
    if isinstance(value, str):
        return encode_basestring(_check_utf8(value))
    if isinstance(value, (bool, np.bool_)):
        return '"true"' if value else '"false"'
    if isinstance(value, (int, float, Decimal, np.integer, np.floating, dt.date, np.datetime64)):
        inner = json_text(value)
        return inner if inner.startswith('"') else '"' + inner + '"'
    raise BadValue.of(
        "a top-level field must be a single value, got {value}; convert the column", value
    )


def convert_field(series: pd.Series) -> Converted:
    """Top-level fields are strings in Amplitude: scalars become their text."""
    kind = _kind_of(series)
    if kind in ("bool", "int", "float"):
        conv = convert_values(series)
        conv.quoted = True  # 12 -> "12": the template quotes them
        return conv
    if kind in ("string", "datetime"):
        return convert_values(series)
    return _walk(object_cells(series), _field_text).converted()


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


_GROUP_LISTS = (list, tuple, set, frozenset, np.ndarray)


def _group_text(value: Any) -> tuple[str, int]:
    if isinstance(value, _GROUP_LISTS):
        names = [_id_string(_unwrap(v)) for v in value]
        return "[" + ",".join(map(encode_basestring, names)) + "]", len(names)
    try:
        return encode_basestring(_id_string(value)), 1
    except BadValue as exc:
        if str(exc) == NOT_UTF8:
            raise
        raise BadValue.of(
            "a group must be a string or a list of strings, got {value}; convert the column",
            value,
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
    values = object_cells(series)
    walked = _walk(values, lambda v: _group_text(v)[0])
    for i in np.flatnonzero([t is not None for t in walked.text]).tolist():
        v = _unwrap(values[i])
        counts[i] = len(v) if isinstance(v, _GROUP_LISTS) else 1
    return walked.converted(), counts
