"""Building: a DataFrame and a checked mapping become a :class:`~amp_pandas._plan.Plan`.

Column-wise throughout: each mapped column is converted to JSON text once (``_convert``), checked
with vectorised rules, and the identifications are assembled as JSON text directly — no per-row
dicts, no ``json.dumps`` of the whole payload. Every row is checked before anything is sent, and
every problem is reported (row, column, severity, message), not just the first.

Two assemblers write the same bytes: with pyarrow, :func:`_assemble_arrow` joins whole rows with
``pyarrow.compute.binary_join_element_wise`` in C, a block of rows at a time; without it (or when
a column's text cannot live in Arrow), :func:`_assemble` fills a ``%``-template per row.
"""

from __future__ import annotations

import functools
import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pandas as pd

from . import _convert as conv
from ._payloads import ArrowPayloads, Ids, TextPayloads
from ._amplitude import (
    MAX_GROUPS,
    MAX_ID_LENGTH,
    MAX_UPDATES_PER_HOUR,
    MIN_ID_LENGTH,
    NON_IDEMPOTENT_OPERATIONS,
    REJECTED_IDS,
)
from ._plan import INVALID, SKIPPED, VALID, Plan, empty_problems
from ._spec import IdentifySpec, Literal, Slot

if TYPE_CHECKING:  # pyarrow is optional: imported at run time only on the Arrow path
    import pyarrow as pa

__all__ = ["build_plan"]



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
        np.full(n, c.text[0], dtype=object),
        missing=np.full(n, bool(c.missing[0])),
        bad_pos=np.arange(n, dtype=np.int64) if bad else c.bad_pos,
        bad_reason=c.bad_reason * n if bad else [],
        long_pos=np.arange(n, dtype=np.int64) if len(c.long_pos) else c.long_pos,
        quoted=c.quoted,
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


def _check_ids(ids: conv.IdColumn, arg: str, label: str, problems: _Problems) -> np.ndarray:
    """Amplitude's id rules, checked once per distinct id; returns a mask of usable rows."""
    c = ids.conv
    problems.add(c.bad_pos, label, "error", c.bad_reason)
    usable = ids.codes >= 0
    if not ids.n_unique or not usable.any():
        return usable
    lengths, rejected = _id_lengths_and_rejected(ids)
    too_short = (lengths < MIN_ID_LENGTH) & ~rejected
    too_long = lengths > MAX_ID_LENGTH
    codes = np.where(usable, ids.codes, ids.n_unique)  # -1 -> an extra "fine" slot
    for mask, template in (
        (rejected, "{arg} {v!r} is on Amplitude's list of rejected ids; fix or drop the row"),
        (too_short, "{arg} {v!r} is shorter than 5 characters, which Amplitude rejects"),
        (too_long, "{arg} is longer than 1024 characters ({k}), which Amplitude rejects"),
    ):
        if mask.any():
            p = np.flatnonzero(np.append(mask, False)[codes])
            problems.add(
                p,
                label,
                "error",
                [template.format(arg=arg, v=v, k=len(v)) for v in ids.unique_at(ids.codes[p])],
            )
            usable[p] = False
    return usable


def _id_lengths_and_rejected(ids: conv.IdColumn) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct id: its length in characters, and whether Amplitude rejects it.

    Rejected ids compare case-insensitively with Python's ``str.lower``; for ASCII ids Arrow's
    ``ascii_lower`` is the same thing, for the (rare) others Python lowers them (the Kelvin sign
    lowers to "k", so "UNKNOWN" spelled with it is rejected too).
    """
    short_cand: np.ndarray
    if ids.unique_arrow is not None:
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = ids.unique_arrow
        lengths = pc.utf8_length(arr).to_numpy().astype(np.int64)
        short_cand = lengths <= 36  # the longest rejected id
        ascii_ = np.asarray(pc.string_is_ascii(arr).to_numpy(zero_copy_only=False), dtype=bool)
        lowered = pc.ascii_lower(arr)
        rejected = np.asarray(
            pc.is_in(lowered, value_set=pa.array(sorted(REJECTED_IDS), type=arr.type))
            .to_numpy(zero_copy_only=False),
            dtype=bool,
        ) & short_cand
        others = np.flatnonzero(short_cand & ~ascii_)
    else:
        assert ids.uniques is not None
        lengths = np.fromiter(map(len, ids.uniques), dtype=np.int64, count=ids.n_unique)
        short_cand = lengths <= 36
        rejected = np.zeros(ids.n_unique, dtype=bool)
        others = np.flatnonzero(short_cand)
    if len(others):
        lowered_others = pd.Series(ids.unique_at(others), dtype=object).str.lower()
        rejected[others] = lowered_others.isin(REJECTED_IDS).to_numpy()
    return lengths, rejected


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


#: One row's JSON text as a sequence: literal text, and the converted columns whose value (in
#: quotes when ``quoted``) goes in between.
_Pieces = list  # list[str | conv.Converted]


def _template(section: _Section) -> _Pieces:
    """The section's members for rows where every non-optional part is present.

    Adjacent literal pieces are merged, so a row is ``len(columns)`` values in fixed text.
    """
    members: list[_Pieces] = []
    for item in section:
        if isinstance(item, tuple):
            key, sub = item
            inner = _template(sub)
            if inner:
                members.append([encode_basestring(key) + ":{", *inner, "}"])
            continue
        if item.optional:
            continue
        if item.const is not None:
            members.append([item.key_text() + item.const])
        else:
            assert item.conv is not None
            q = '"' if item.conv.quoted else ""
            members.append([item.key_text() + q, item.conv, q])
    pieces: _Pieces = []
    for i, member in enumerate(members):
        pieces += ([","] if i else []) + member
    merged: _Pieces = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        elif not isinstance(piece, str) or piece:
            merged.append(piece)
    return merged


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


def _complete_rows(section: _Section, pieces: _Pieces, valid: np.ndarray) -> np.ndarray:
    """Valid rows that the template covers: every template value present, no optional one."""
    complete = valid.copy()
    for piece in pieces:
        if isinstance(piece, conv.Converted):
            complete &= piece.present
    for p in _walk_parts(section):
        if p.optional and p.conv is not None:
            complete &= ~p.conv.present
    return complete


def _assemble(section: _Section, valid: np.ndarray, n: int) -> np.ndarray:
    """JSON text of every valid row; a single template pass where all values are present.

    Text, not bytes: encoding happens per request (``_encode``), in memory that is reused, which
    on this kind of machine is far cheaper than holding a million fresh ``bytes`` objects.
    """
    payload = np.full(n, None, dtype=object)
    pieces = ["{", *_template(section), "}"]
    tpl = "".join(p.replace("%", "%%") if isinstance(p, str) else "%s" for p in pieces)
    arrays = [p.text for p in pieces if isinstance(p, conv.Converted)]
    complete = _complete_rows(section, pieces, valid)
    fast = np.flatnonzero(complete)
    if len(fast):
        if not arrays:
            payload[fast] = [tpl % ()] * len(fast)
        else:
            cols = arrays if len(fast) == n else [a[fast] for a in arrays]
            payload[fast] = [tpl % t for t in zip(*cols)]
    slow = np.flatnonzero(valid & ~complete)
    if len(slow):
        payload[slow] = "{" + _general(section, slow) + "}"
    return payload


#: Rows measured per Arrow call where rows need the general (member by member) text.
_ARROW_BLOCK = 1 << 15


def _assemble_arrow(section: _Section, valid: np.ndarray, n: int) -> ArrowPayloads | None:
    """:func:`_assemble` with pyarrow, lazily: the template and its columns, and each row's
    UTF-8 length; the text itself is written per request (:class:`ArrowPayloads`).

    Returns None when some column's text cannot be held by Arrow (lone surrogates in Python
    strings); the caller then uses :func:`_assemble`.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    for p in _walk_parts(section):
        if p.conv is not None and p.conv.to_arrow() is None:
            return None
    lit = conv.arrow_literal
    pieces: _Pieces = ["{", *_template(section)]  # the closing brace is ArrowPayloads' own
    complete = _complete_rows(section, pieces, valid)
    slow = np.flatnonzero(valid & ~complete)
    nbytes = np.zeros(n, dtype=np.int64)
    fast = np.flatnonzero(complete)
    if len(fast):
        constant = 1 + sum(len(p.encode()) for p in pieces if isinstance(p, str))  # 1: "}"
        for p in pieces:
            if not isinstance(p, str):
                nbytes += pc.binary_length(p.to_arrow()).fill_null(0).to_numpy()
        nbytes += constant
        if len(fast) < n:
            nbytes[~complete] = 0  # measured below when sent, else 0
    general = None
    if len(slow):
        general = functools.partial(_general_arrow, section)
        for start in range(0, len(slow), _ARROW_BLOCK):
            rows = slow[start : start + _ARROW_BLOCK]
            inner = pc.binary_length(general(pa.array(rows))).to_numpy(zero_copy_only=False)
            nbytes[rows] = inner.astype(np.int64) + 2  # "{" and "}"
    args = [lit(p) if isinstance(p, str) else p.to_arrow() for p in pieces]
    return ArrowPayloads(args, complete, general, nbytes)


def _general_arrow(section: _Section, rows: pa.Array) -> pa.Array:
    """:func:`_general` in Arrow: the section's members for ``rows`` ('' where empty)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lit = conv.arrow_literal
    none, empty = lit(None), lit("")
    frags: list[Any] = []  # each a large_string array (null where absent) or a scalar
    for item in section:
        if isinstance(item, tuple):
            key, sub = item
            inner = _general_arrow(sub, rows)
            prefix = lit(encode_basestring(key) + ":{")
            wrapped = pc.binary_join_element_wise(prefix, inner, lit("}"), empty)
            frags.append(pc.if_else(pc.equal(inner, empty), none, wrapped))
        elif item.const is not None:
            frags.append(lit(item.key_text() + item.const))
        else:
            assert item.conv is not None
            q = '"' if item.conv.quoted else ""
            values = item.conv.to_arrow().take(rows)
            frags.append(pc.binary_join_element_wise(lit(item.key_text() + q), values, lit(q), empty))
    # ",".join of the present fragments: each present one gets a leading comma, absent ones
    # become "", and the first character (a comma, when any) is cut. (binary_join_element_wise's
    # own null_handling="skip" drops rows where every value is null in pyarrow 26: avoided.)
    comma = lit(",")
    parts = [pa.repeat(empty, len(rows))]  # keeps the result an array when all are constants
    for frag in frags:
        if isinstance(frag, pa.Scalar):
            parts.append(lit("," + frag.as_py()))
        else:
            parts.append(pc.binary_join_element_wise(comma, frag, empty).fill_null(empty))
    joined = pc.binary_join_element_wise(*parts, empty)
    return pc.utf8_slice_codeunits(joined, 1)


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
        return _Part(slot.key, const=c.json_at(0))
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
    id_columns: dict[str, conv.IdColumn] = {}
    usable_any = np.zeros(n, dtype=bool)
    both = np.ones(n, dtype=bool)
    for slot in (spec.user_id, spec.device_id):
        if slot is None:
            both[:] = False
            continue
        if isinstance(slot.source, Literal):
            ids = conv.convert_ids(_single(slot.source.value)).broadcast(n)
        else:
            ids = conv.convert_ids(_series(df, slot))
        usable = _check_ids(ids, slot.key, _label(slot), problems)
        if not usable.all():
            ids.keep(usable)
        id_columns[slot.key] = ids
        usable_any |= usable
        both &= usable
        top.append(_Part(slot.key, conv=ids.conv))
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
        content |= c.present
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
            present = c.present
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
            content |= c.present
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
    all_valid = bool(valid.all())
    sent: dict[str, Ids] = {}  # the ids as sent: code -1 on rows that are not valid
    for key, slot in (("user_id", spec.user_id), ("device_id", spec.device_id)):
        column = id_columns.get(key)
        if column is None:
            sent[key] = Ids.none(n)
            continue
        sent[key] = Ids(column.codes if all_valid else np.where(valid, column.codes, -1),
                        column.distinct)
        _warn_busy_ids(key, sent[key], slot, problems)
    user, device = sent["user_id"], sent["device_id"]
    payload = conv.try_arrow(_assemble_arrow, top, valid, n) if conv.arrow_enabled() else None
    if payload is None:
        payload = TextPayloads(_assemble(top, valid, n))
    return Plan.from_parts(
        index=df.index,
        state=state,
        payload=payload,
        user_id=user,
        device_id=device,
        idempotent=~non_idempotent,
        reason=reason,
        problems=problems.frame(df.index),
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


def _warn_busy_ids(key: str, ids: Ids, slot: Slot | None, problems: _Problems) -> None:
    """Warn on rows past the 1800th of one id."""
    codes = ids.codes
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
            for v in ids[over]
        ],
    )
