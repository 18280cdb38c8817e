"""An independent reference for what a build must produce: the README's type rules and id rules
written out cell by cell, the plain way (a dict per row, ``json.dumps`` per scalar).

It shares no code with ``amp_pandas._convert``/``_build``/``_assemble``: each row of a frame is
read with ``df.iloc`` and turned into the expected outcome (``valid`` with the exact JSON text,
``invalid`` with the columns at fault, or ``skipped``), which the tests compare with the plan.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from amp_pandas import literal
from amp_pandas._amplitude import FIELDS, OPERATIONS, REJECTED_IDS

#: Written out again here, on purpose (the README's numbers).
MIN_ID, MAX_ID, MAX_DEPTH, MAX_GROUPS, EXACT_FLOAT = 5, 1024, 38, 10, 2**53
LITERAL_TYPE = type(literal(0))


class Bad(Exception):
    """The cell has no JSON form: its row is invalid."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


@dataclass(frozen=True)
class Raw:
    """JSON text written as is (a Decimal keeps its digits: ``Decimal("1.10")`` -> ``1.10``)."""

    text: str


def dump(value: Any) -> str:
    """Compact JSON of the oracle's values: dicts keep their order, ``Raw`` goes in as is."""
    if isinstance(value, dict):
        return "{" + ",".join(dump(str(k)) + ":" + dump(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if isinstance(value, Raw):
        return value.text
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def loads(value: Any) -> Any:
    """What ``json.loads`` of ``dump(value)`` gives (Raw numbers become floats/ints)."""
    return json.loads(dump(value))


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def is_missing(value: Any) -> bool:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(value))
    if isinstance(value, Decimal):
        return value.is_nan()
    return False


def iso(value: Any) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC for aware values), a fraction only when it is not zero; a
    year before 0000 as ``-YYYY``."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    text = stamp.isoformat()
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text.startswith("-"):  # a year before 0000: ISO 8601's expanded form, >= 4 digits
        year, rest = text[1:].split("-", 1)
        text = f"-{year.zfill(4)}-{rest}"
    return text


def number(value: Any) -> Any:
    """A number's JSON value; Bad when no finite double holds it."""
    if isinstance(value, Decimal):
        if not value.is_finite() or math.isinf(float(value)):
            raise Bad("decimal")
        return Raw(str(value))
    if isinstance(value, (int, np.integer)):
        try:
            float(int(value))
        except OverflowError:
            raise Bad("huge int") from None
        return int(value)
    f = float(value)
    if math.isinf(f):
        raise Bad("inf")
    return f


def value_json(value: Any, depth: int = 0) -> Any:
    """One cell (or an element inside one) by the type rules; raises Bad."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value_json(value[()], depth)
    if is_missing(value):
        return None  # inside a container (top-level cells are checked first)
    if isinstance(value, str):
        if has_surrogate(value):
            raise Bad("surrogate")
        return str(value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (dt.timedelta, np.timedelta64, complex, bytes, bytearray)):
        raise Bad(type(value).__name__)
    if isinstance(value, (int, np.integer, float, np.floating, Decimal)):
        return number(value)
    if isinstance(value, (pd.Timestamp, dt.datetime, np.datetime64)):
        return iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        if depth >= MAX_DEPTH:
            raise Bad("deep")
        items = list(value)
        if isinstance(value, (set, frozenset)):
            try:
                items = sorted(value)
            except TypeError:
                pass
        return [value_json(v, depth + 1) for v in items]
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise Bad("deep")
        out = {}
        for k, v in value.items():
            if isinstance(k, (bool, np.bool_)) or not isinstance(k, (str, int, float, np.integer)):
                raise Bad("key")
            if has_surrogate(str(k)):
                raise Bad("surrogate key")
            out[str(k)] = value_json(v, depth + 1)
        return out
    raise Bad(type(value).__name__)


def add_json(value: Any) -> Any:
    """``$add`` takes numbers only."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_, np.timedelta64)) or not isinstance(
        value, (int, float, Decimal, np.integer, np.floating)
    ):
        raise Bad("not a number")  # (numpy's timedelta64 is an integer type)
    return number(value)


def field_json(value: Any) -> str:
    """Top-level fields are strings: a scalar's text."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, str):
        if has_surrogate(value):
            raise Bad("surrogate")
        return str(value)
    if isinstance(value, np.timedelta64):  # an integer type to numpy
        raise Bad("timedelta")
    if isinstance(value, (int, float, Decimal, np.integer, np.floating)):
        return dump(number(value))
    if isinstance(value, (pd.Timestamp, dt.datetime, np.datetime64)):
        return iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise Bad(type(value).__name__)


def id_text(value: Any) -> str:
    """An id cell (or a group name) as text; Bad when it is not a string or an exact integer."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, str):
        if has_surrogate(value):
            raise Bad("surrogate")
        return str(value)
    if isinstance(value, (bool, np.bool_, np.timedelta64)):
        raise Bad("bool")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, Decimal):
        if value.is_finite() and value == int(value):
            return str(int(value))
        raise Bad("decimal id")
    if isinstance(value, (float, np.floating)):
        if math.isfinite(value) and value == int(value) and abs(value) < EXACT_FLOAT:
            return str(int(value))
        raise Bad("float id")
    raise Bad(type(value).__name__)


def id_rules(text: str) -> None:
    """Amplitude's id rules (and blank ids); raises Bad."""
    if not text.strip():
        raise Bad("blank")
    if text.lower() in REJECTED_IDS or len(text) < MIN_ID or len(text) > MAX_ID:
        raise Bad("rejected")


def group_json(value: Any) -> tuple[Any, int]:
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [id_text(v) for v in value], len(value)
    return id_text(value), 1


@dataclass
class Row:
    """What one row must become."""

    state: str  # valid / invalid / skipped
    text: str | None = None  # the exact JSON when valid
    errors: set[str] = field(default_factory=set)  # columns at fault when invalid
    padded: set[str] = field(default_factory=set)  # id columns with whitespace around the id
    user_id: str | None = None
    device_id: str | None = None
    idempotent: bool = True


def _items(mapping_part: Any) -> list[tuple[str, Any]]:
    if isinstance(mapping_part, dict):
        return [(str(k), v) for k, v in mapping_part.items()]
    return [(str(v), v) for v in mapping_part]


def _label(source: Any) -> str:
    return repr(source) if isinstance(source, LITERAL_TYPE) else str(source)


class _Cells:
    """The frame's cells as objects (read once per column)."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df
        self.columns: dict[int, list[Any]] = {}

    def __call__(self, i: int, source: Any) -> Any:
        if isinstance(source, LITERAL_TYPE):
            return source.value
        j = self.df.columns.get_loc(source)
        if j not in self.columns:
            column = self.df.iloc[:, j]
            self.columns[j] = list(column)
        return self.columns[j][i]


def expected_rows(df: pd.DataFrame, mapping: dict[str, Any]) -> list[Row]:
    """Every row of ``df`` as ``df.amplitude.identify(**mapping)`` must build it."""
    cells = _Cells(df)
    return [expected_row(cells, i, mapping) for i in range(len(df))]


def expected_row(cell_of: _Cells, i: int, mapping: dict[str, Any]) -> Row:
    nulls = mapping.get("nulls", "skip")
    errors: set[str] = set()
    padded: set[str] = set()
    payload: dict[str, Any] = {}
    content = False
    ids: dict[str, str] = {}
    for key in ("user_id", "device_id"):
        source = mapping.get(key, "uid" if key == "user_id" else None)
        if source is None:
            continue
        cell = cell_of(i, source)
        if is_missing(cell):
            continue
        try:
            text = id_text(cell)
            id_rules(text)
        except Bad:
            errors.add(_label(source))
            continue
        if text != text.strip():
            padded.add(_label(source))
        ids[key] = text
        payload[key] = text
    id_sources = [mapping.get(k, "uid" if k == "user_id" else None)
                  for k in ("user_id", "device_id")]
    id_sources = [s for s in id_sources if s is not None]
    if not ids and not errors:
        errors.add(_label(id_sources[0]))
    content = len(ids) == 2

    def convert(source: Any, fn: Any) -> Any:
        cell = cell_of(i, source)
        if is_missing(cell):
            return MISSING
        try:
            return fn(cell)
        except (Bad, RecursionError):
            errors.add(_label(source))
            return MISSING  # bad: absent from the payload (the row is invalid anyway)

    for name, source in _items(mapping.get("fields") or {}):
        value = convert(source, field_json)
        if value is MISSING:
            if nulls == "error" and is_missing(cell_of(i, source)):
                errors.add(_label(source))
            continue
        payload[name] = value
        content = True

    properties: dict[str, Any] = {}
    unset: dict[str, str] = {}
    idempotent = True
    for arg, op in OPERATIONS.items():
        if arg not in mapping:
            continue
        members: dict[str, Any] = {}
        for name, source in _items(mapping[arg]):
            cell_missing = is_missing(cell_of(i, source))
            value = convert(source, add_json if op == "$add" else value_json)
            if value is MISSING:
                if cell_missing and nulls == "unset" and op in ("$set", "$setOnce"):
                    unset[name] = "-"
                    content = True
                elif cell_missing and nulls == "error":
                    errors.add(_label(source))
                continue
            members[name] = value
            content = True
            if op in ("$add", "$append", "$prepend"):
                idempotent = False
        properties[op] = members
    for name in mapping.get("unset") or ():
        unset[str(name)] = "-"
        content = True
    if unset:
        properties["$unset"] = unset
    properties = {op: members for op, members in properties.items() if members}
    if properties:
        payload["user_properties"] = properties

    groups: dict[str, Any] = {}
    total = 0
    for name, source in _items(mapping.get("groups") or {}):
        cell = cell_of(i, source)
        if is_missing(cell):
            if nulls == "error":
                errors.add(_label(source))
            continue
        try:
            value, count = group_json(cell)
        except Bad:
            errors.add(_label(source))
            continue
        groups[name] = value
        total += count
        content = True
    if total > MAX_GROUPS:
        errors.add(", ".join(_label(s) for _, s in _items(mapping["groups"])))
    if groups:
        payload["groups"] = groups

    if errors:
        return Row("invalid", errors=errors)
    if not content:
        return Row("skipped")
    return Row("valid", dump(payload), padded=padded, user_id=ids.get("user_id"),
               device_id=ids.get("device_id"), idempotent=idempotent)


def expected_lanes(user: list[str | None], device: list[str | None]) -> list[int]:
    """Rows sharing a user id or a device id (directly or through others) share a lane; lanes
    are numbered by first appearance, -1 for rows without ids (not sent)."""
    parent = list(range(len(user)))

    def root(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    first: dict[tuple[str, str], int] = {}
    for k, ids in enumerate(zip(user, device, strict=True)):
        for kind, value in zip(("u", "d"), ids, strict=True):
            if value is None:
                continue
            if (kind, value) in first:
                a, b = root(first[(kind, value)]), root(k)
                parent[max(a, b)] = min(a, b)
            else:
                first[(kind, value)] = k
    lanes: list[int] = []
    number_of: dict[int, int] = {}
    for k in range(len(user)):
        if user[k] is None and device[k] is None:
            lanes.append(-1)
            continue
        lanes.append(number_of.setdefault(root(k), len(number_of)))
    return lanes


__all__ = ["FIELDS", "Bad", "Row", "dump", "expected_lanes", "expected_rows", "value_json"]
