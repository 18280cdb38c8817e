"""Building: a DataFrame and a checked mapping become a :class:`~amp_pandas._plan.Plan`.

Column-wise throughout: each mapped column is converted to JSON text once (``_convert``), checked
with vectorised rules, and the identifications are assembled as JSON text directly — no per-row
dicts, no ``json.dumps`` of the whole payload. Every row is checked before anything is sent, and
every problem is reported (row, column, severity, message), not just the first.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any, Iterator

import numpy as np
import pandas as pd

from . import _convert as conv
from ._plan import INVALID, NON_IDEMPOTENT_OPERATIONS, SKIPPED, VALID, Plan, empty_problems
from ._spec import IdentifySpec, Literal, Slot

__all__ = ["build_plan", "REJECTED_IDS", "MAX_UPDATES_PER_HOUR"]

#: Ids Amplitude rejects (compared case-insensitively: Amplitude does not say whether the list is
#: case-sensitive, so the safe reading rejects every casing before it can cost a 400).
REJECTED_IDS = frozenset(
    {
        "anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", "",
        "00000000-0000-0000-0000-000000000000", "{}", "lmy47d", "0", "-1",
    }
)
MIN_ID_LENGTH = 5
MAX_ID_LENGTH = 1024
MAX_GROUPS = 10
#: Amplitude silently drops user-property updates past this many per user per hour.
MAX_UPDATES_PER_HOUR = 1800


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Building creates many small objects; the cyclic GC would re-scan them again and again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class _Problems:
    """Problems collected while building: arrays of positions with one message each."""

    chunks: list[tuple[np.ndarray, str, str, list[str] | str]] = field(default_factory=list)

    def add(self, pos: np.ndarray, column: str, severity: str, message: list[str] | str) -> None:
        if len(pos):
            self.chunks.append((np.asarray(pos, dtype=np.int64), column, severity, message))

    def error_positions(self) -> np.ndarray:
        errs = [p for p, _, sev, _ in self.chunks if sev == "error"]
        return np.unique(np.concatenate(errs)) if errs else np.empty(0, dtype=np.int64)

    def first_error_reason(self, n: int) -> np.ndarray:
        reason = np.full(n, None, dtype=object)
        for pos, column, sev, message in reversed(self.chunks):
            if sev != "error":
                continue
            msgs = message if isinstance(message, list) else [message] * len(pos)
            where = column if column.startswith("literal(") else f"column {column!r}"
            reason[pos] = [f"{where}: {m}" for m in msgs]
        return reason

    def frame(self, index: pd.Index) -> pd.DataFrame:
        if not self.chunks:
            return empty_problems()
        pos = np.concatenate([c[0] for c in self.chunks])
        column = np.concatenate([np.full(len(c[0]), c[1], dtype=object) for c in self.chunks])
        severity = np.concatenate([np.full(len(c[0]), c[2], dtype=object) for c in self.chunks])
        message = np.empty(len(pos), dtype=object)
        at = 0
        for p, _, _, m in self.chunks:
            message[at : at + len(p)] = m if isinstance(m, list) else [m] * len(p)
            at += len(p)
        order = np.lexsort((np.arange(len(pos)), pos))
        return pd.DataFrame(
            {
                "row": pd.Series(index.take(pos[order]).tolist() if len(pos) else [], dtype=object),
                "column": pd.Series(column[order], dtype=object),
                "severity": pd.Series(severity[order], dtype=object),
                "message": pd.Series(message[order], dtype=object),
                "position": pos[order],
            }
        )


def _label(slot: Slot) -> str:
    return repr(slot.source) if slot.is_literal else str(slot.source)


def _series(df: pd.DataFrame, slot: Slot) -> pd.Series:
    if isinstance(slot.source, Literal):
        raise AssertionError
    return df.iloc[:, df.columns.get_loc(slot.source)]


def _broadcast(c: conv.Converted, n: int) -> conv.Converted:
    bad = bool(len(c.bad_pos))
    return conv.Converted(
        text=np.full(n, c.text[0], dtype=object),
        missing=np.full(n, bool(c.missing[0])),
        bad_pos=np.arange(n, dtype=np.int64) if bad else c.bad_pos,
        bad_reason=c.bad_reason * n if bad else [],
        long_pos=np.arange(n, dtype=np.int64) if len(c.long_pos) else c.long_pos,
    )


def _convert_slot(df: pd.DataFrame, slot: Slot, convert: Any) -> conv.Converted:
    n = len(df)
    if isinstance(slot.source, Literal):
        return _broadcast(convert(_single(slot.source.value)), n)
    return convert(_series(df, slot))


def _join(parts: list[np.ndarray], n: int) -> np.ndarray:
    """Comma-join fragments row by row, skipping None; '' where a row has none."""
    if not parts:
        return np.full(n, "", dtype=object)
    if len(parts) == 1:
        out = parts[0].copy()
        out[np.equal(out, None)] = ""
        return out
    out = np.empty(n, dtype=object)
    out[:] = [",".join(filter(None, t)) for t in zip(*parts)]
    return out


def _wrap(prefix: str, inner: np.ndarray, suffix: str = "}") -> np.ndarray:
    out = np.full(len(inner), None, dtype=object)
    has = inner != ""
    if has.any():
        out[has] = prefix + inner[has] + suffix
    return out


def _check_ids(
    strings: np.ndarray, c: conv.Converted, arg: str, label: str, problems: _Problems
) -> np.ndarray:
    """Amplitude's id rules; returns a mask of rows whose id is usable."""
    problems.add(c.bad_pos, label, "error", c.bad_reason)
    present = np.not_equal(strings, None)
    usable = present.copy()
    pos = np.flatnonzero(present)
    if not len(pos):
        return usable
    vals = strings[pos]
    lengths = np.fromiter(map(len, vals), dtype=np.int64, count=len(vals))
    short_cand = lengths <= 36  # the longest rejected id
    rejected = np.zeros(len(pos), dtype=bool)
    if short_cand.any():
        lowered = pd.Series(vals[short_cand], dtype=object).str.lower()
        rejected[short_cand] = lowered.isin(REJECTED_IDS).to_numpy()
    too_short = (lengths < MIN_ID_LENGTH) & ~rejected
    too_long = lengths > MAX_ID_LENGTH
    for mask, template in (
        (rejected, "{arg} {v!r} is on Amplitude's list of rejected ids; fix or drop the row"),
        (too_short, "{arg} {v!r} is shorter than 5 characters, which Amplitude rejects"),
        (too_long, "{arg} is longer than 1024 characters ({k}), which Amplitude rejects"),
    ):
        if mask.any():
            p = pos[mask]
            problems.add(
                p,
                label,
                "error",
                [template.format(arg=arg, v=v, k=len(v)) for v in vals[mask]],
            )
            usable[p] = False
    return usable


@dataclass
class _Part:
    """One ``"key": value`` of the payload: per-row values, or a constant."""

    key: str
    conv: conv.Converted | None = None
    const: str | None = None  # JSON text of a constant
    optional: bool = False  # present on some rows only by design (nulls="unset")

    def key_text(self) -> str:
        return encode_basestring(self.key) + ":"

    def fragments(self, rows: np.ndarray) -> np.ndarray:
        """``"key":value`` for ``rows``, None where the row has no value."""
        if self.const is not None:
            return np.full(len(rows), self.key_text() + self.const, dtype=object)
        assert self.conv is not None
        text = self.conv.text[rows]
        out = np.full(len(rows), None, dtype=object)
        has = np.not_equal(text, None)
        if has.any():
            q = '"' if self.conv.quoted else ""
            out[has] = self.key_text() + q + text[has] + q
        return out


# A section is a list of parts or of (key, section) pairs: the payload's nested objects.
_Section = list  # list[_Part | tuple[str, "_Section"]]


def _template(section: _Section) -> tuple[str, list[np.ndarray]]:
    """A %-template of the section for rows where every non-optional part is present."""
    pieces: list[str] = []
    arrays: list[np.ndarray] = []
    for item in section:
        if isinstance(item, tuple):
            key, sub = item
            inner, sub_arrays = _template(sub)
            if inner:
                pieces.append(encode_basestring(key).replace("%", "%%") + ":{" + inner + "}")
                arrays += sub_arrays
            continue
        if item.optional:
            continue
        k = item.key_text().replace("%", "%%")
        if item.const is not None:
            pieces.append(k + item.const.replace("%", "%%"))
        else:
            assert item.conv is not None
            pieces.append(k + ('"%s"' if item.conv.quoted else "%s"))
            arrays.append(item.conv.text)
    return ",".join(pieces), arrays


def _general(section: _Section, rows: np.ndarray) -> np.ndarray:
    """The section's JSON members for ``rows`` in the general case ('' where empty)."""
    frags = []
    for item in section:
        if isinstance(item, tuple):
            key, sub = item
            inner = _general(sub, rows)
            frags.append(_wrap(encode_basestring(key) + ":{", inner))
        else:
            frags.append(item.fragments(rows))
    return _join(frags, len(rows))


def _assemble(section: _Section, valid: np.ndarray, n: int) -> np.ndarray:
    """JSON text of every valid row; a single template pass where all values are present.

    Text, not bytes: encoding happens per request (``_encode``), in memory that is reused, which
    on this kind of machine is far cheaper than holding a million fresh ``bytes`` objects.
    """
    payload = np.full(n, None, dtype=object)
    tpl, arrays = _template(section)
    tpl = "{" + tpl + "}"
    complete = valid.copy()
    for arr in arrays:
        complete &= np.not_equal(arr, None)
    optional = [p for p in _walk_parts(section) if p.optional and p.conv is not None]
    for p in optional:
        complete &= np.equal(p.conv.text, None)
    fast = np.flatnonzero(complete)
    if len(fast):
        if not arrays:
            payload[fast] = [tpl] * len(fast)
        else:
            cols = arrays if len(fast) == n else [a[fast] for a in arrays]
            payload[fast] = [tpl % t for t in zip(*cols)]
    slow = np.flatnonzero(valid & ~complete)
    if len(slow):
        payload[slow] = "{" + _general(section, slow) + "}"
    return payload


def _walk_parts(section: _Section) -> list[_Part]:
    out: list[_Part] = []
    for item in section:
        if isinstance(item, tuple):
            out += _walk_parts(item[1])
        else:
            out.append(item)
    return out


def _part(slot: Slot, c: conv.Converted, n: int) -> _Part:
    """A literal whose value converted cleanly becomes a constant part."""
    if (
        slot.is_literal
        and n
        and not len(c.bad_pos)
        and not c.missing[0]
        and c.text[0] is not None
    ):
        return _Part(slot.key, const=c.json()[0])
    return _Part(slot.key, conv=c)


def build_plan(df: pd.DataFrame, spec: IdentifySpec) -> Plan:
    """Build every identification of ``df`` as ``spec`` says; check every row.

    Pure: reads ``df`` and never changes it.
    """
    with _gc_paused():
        return _build(df, spec)


def _build(df: pd.DataFrame, spec: IdentifySpec) -> Plan:
    n = len(df)
    problems = _Problems()
    top: _Section = []  # payload members in order
    content = np.zeros(n, dtype=bool)  # rows with something besides one id

    # ---- ids
    id_strings: dict[str, np.ndarray] = {}
    usable_any = np.zeros(n, dtype=bool)
    both = np.ones(n, dtype=bool)
    for slot in (spec.user_id, spec.device_id):
        if slot is None:
            both[:] = False
            continue
        if isinstance(slot.source, Literal):
            s1, c1 = conv.convert_ids(_single(slot.source.value))
            strings = np.full(n, s1[0], dtype=object)
            c = _broadcast(c1, n)
        else:
            strings, c = conv.convert_ids(_series(df, slot))
        usable = _check_ids(strings, c, slot.key, _label(slot), problems)
        if not usable.all():
            strings = np.where(usable, strings, None)
            c.text = np.where(usable, c.text, None)
        id_strings[slot.key] = strings
        usable_any |= usable
        both &= usable
        top.append(_Part(slot.key, conv=c))
    content |= both
    no_id = np.flatnonzero(~usable_any)
    if len(no_id):
        reported = problems.error_positions()
        fresh = np.setdiff1d(no_id, reported, assume_unique=True)
        cols = [_label(s) for s in (spec.user_id, spec.device_id) if s is not None]
        problems.add(
            fresh,
            cols[0],
            "error",
            "no usable id: " + " and ".join(f"{c!r}" for c in cols) + " missing in this row",
        )

    # ---- top-level fields
    for slot in spec.fields:
        c = _convert_slot(df, slot, conv.convert_field)
        problems.add(c.bad_pos, _label(slot), "error", c.bad_reason)
        _null_policy(spec, slot, c, problems)
        content |= np.not_equal(c.text, None)
        top.append(_part(slot, c, n))

    # ---- user properties
    properties: _Section = []
    non_idempotent = np.zeros(n, dtype=bool)
    unset_parts: list[_Part] = []
    long_strings: list[tuple[np.ndarray, str]] = []
    for op, slots in spec.operations:
        parts: list[_Part] = []
        numeric = op == "$add"
        for slot in slots:
            c = _convert_slot(df, slot, lambda s: conv.convert_values(s, numeric_only=numeric))
            label = _label(slot)
            problems.add(c.bad_pos, label, "error", c.bad_reason)
            if len(c.long_pos):
                long_strings.append((c.long_pos, label))
            if spec.nulls == "unset" and op in ("$set", "$setOnce") and c.missing.any():
                miss = np.full(n, None, dtype=object)
                miss[c.missing] = "-"
                unset_parts.append(
                    _Part(
                        slot.key,
                        conv=conv.Converted(
                            miss, ~c.missing, c.bad_pos[:0], [], c.long_pos[:0], quoted=True
                        ),
                        optional=True,
                    )
                )
                content |= c.missing
            else:
                _null_policy(spec, slot, c, problems)
            present = np.not_equal(c.text, None)
            content |= present
            if op in NON_IDEMPOTENT_OPERATIONS:
                non_idempotent |= present
            parts.append(_part(slot, c, n))
        properties.append((op, parts))
    for name in spec.unset:
        unset_parts.append(_Part(name, const='"-"'))
        content[:] = True
    if unset_parts:
        properties.append(("$unset", unset_parts))
    if properties:
        top.append(("user_properties", properties))

    # ---- groups
    if spec.groups:
        gparts: list[_Part] = []
        total = np.zeros(n, dtype=np.int64)
        for slot in spec.groups:
            if isinstance(slot.source, Literal):
                c1, k1 = conv.convert_groups(_single(slot.source.value))
                c, k = _broadcast(c1, n), np.full(n, k1[0])
            else:
                c, k = conv.convert_groups(_series(df, slot))
            problems.add(c.bad_pos, _label(slot), "error", c.bad_reason)
            _null_policy(spec, slot, c, problems)
            total += k
            content |= np.not_equal(c.text, None)
            gparts.append(_part(slot, c, n))
        too_many = np.flatnonzero(total > MAX_GROUPS)
        problems.add(
            too_many,
            ", ".join(_label(s) for s in spec.groups),
            "error",
            [f"{int(total[p])} groups in one row; Amplitude allows at most {MAX_GROUPS}"
             for p in too_many],
        )
        top.append(("groups", gparts))

    # ---- row states
    state = np.full(n, VALID, dtype=np.int8)
    state[problems.error_positions()] = INVALID
    reason = problems.first_error_reason(n)
    skipped = (state == VALID) & ~content
    state[skipped] = SKIPPED
    reason[skipped] = "nothing to send: no property, field or group value in this row"

    # ---- warnings on rows that will be sent
    valid = state == VALID
    for pos, label in long_strings:
        problems.add(
            pos[valid[pos]],
            label,
            "warning",
            "string longer than 1024 characters; Amplitude truncates it",
        )
    user = np.where(valid, id_strings.get("user_id", None), None)
    device = np.where(valid, id_strings.get("device_id", None), None)
    codes = {}
    for key, values in (("user_id", user), ("device_id", device)):
        if key in id_strings:
            codes[key] = pd.factorize(values, use_na_sentinel=True)[0]
            slot = spec.user_id if key == "user_id" else spec.device_id
            _warn_busy_ids(key, codes[key], values, slot, problems)
    payload = _assemble(top, valid, n)
    return Plan.from_parts(
        index=df.index,
        state=state,
        payload=payload,
        user_id=user,
        device_id=device,
        idempotent=~non_idempotent,
        reason=reason,
        problems=problems.frame(df.index),
        id_codes=(codes.get("user_id"), codes.get("device_id")),
    )


def _single(value: Any) -> pd.Series:
    """A one-cell object Series holding ``value`` as is (lists and dicts included)."""
    cell = np.empty(1, dtype=object)
    cell[0] = value
    return pd.Series(cell, dtype=object)


def _null_policy(
    spec: IdentifySpec, slot: Slot, c: conv.Converted, problems: _Problems
) -> None:
    if spec.nulls == "error" and c.missing.any():
        problems.add(
            np.flatnonzero(c.missing),
            _label(slot),
            "error",
            "missing value (nulls='error'); fill it, drop the row, or use nulls='skip'",
        )


def _warn_busy_ids(
    key: str, codes: np.ndarray, strings: np.ndarray, slot: Slot | None, problems: _Problems
) -> None:
    """Warn on rows past the 1800th of one id (codes: factorized ids, -1 where none)."""
    has = codes >= 0
    if not has.any():
        return
    counts = np.bincount(codes[has])
    if counts.max() <= MAX_UPDATES_PER_HOUR:
        return
    rank = pd.Series(codes).groupby(codes).cumcount().to_numpy()
    over = np.flatnonzero(has & (rank >= MAX_UPDATES_PER_HOUR))
    problems.add(
        over,
        _label(slot) if slot else key,
        "warning",
        [
            f"{key} {v!r} has more than {MAX_UPDATES_PER_HOUR} identifications in this "
            "frame; Amplitude drops updates past 1800 per user per hour"
            for v in strings[over]
        ],
    )
