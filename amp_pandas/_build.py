"""Building: a DataFrame and a checked mapping become a :class:`~amp_pandas._plan.Plan`.

Column-wise throughout: each mapped column is converted to JSON text once (``_convert``), checked
with vectorised rules, and the identifications are assembled from the converted columns
(``_assemble``) — no per-row dicts, no ``json.dumps`` of the whole payload. Every row is checked
before anything is sent, and every problem is reported (row, column, severity, message, and the
message's kind: the message without the cell's value), not just the first.

A build runs in steps, one method of :class:`_Build` each: the ids, the top-level fields, the
user properties, the groups; then each row's state; then the payloads (with the request size
limit, known only once a row's text is measured); then the warnings on rows that will be sent.
A group identification build (:class:`_GroupBuild`) shares :class:`_BuildBase`'s steps for the
properties, the rows and the payloads, with the group type and value in place of the ids.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._amplitude import (
    MAX_BODY_BYTES,
    MAX_GROUP_IDENTIFICATIONS,
    MAX_GROUP_PROPERTIES,
    MAX_GROUPS,
    MAX_ID_LENGTH,
    MAX_STRING_LENGTH,
    MAX_UPDATES_PER_HOUR,
    MIN_ID_LENGTH,
    NON_IDEMPOTENT_OPERATIONS,
    REJECTED_IDS,
    UNSET,
    UNSET_VALUE,
)
from ._assemble import Part, Section, assemble, largest_part, parts_of
from ._convert import (
    VALUE,
    Converted,
    IdColumn,
    convert_field,
    convert_groups,
    convert_ids,
    convert_values,
)
from ._encode import body_overhead
from ._payloads import ArrowPayloads, Ids, arrow_literal
from ._plan import INVALID, SKIPPED, VALID, Plan, empty_problems
from ._spec import GroupSpec, IdentifySpec, Literal, Slot

__all__ = ["build_group_plan", "build_plan", "MAX_IDENTIFICATION_BYTES"]

#: Room left in a request for the API key (Amplitude's keys have 32 characters).
_KEY_ROOM = 64
#: The largest identification that fits in a request on its own: Amplitude's body limit less the
#: multipart framing (the array's brackets included) and the key.
MAX_IDENTIFICATION_BYTES = MAX_BODY_BYTES - body_overhead(_KEY_ROOM)


def build_plan(df: pd.DataFrame, spec: IdentifySpec) -> Plan:
    """Build every identification of ``df`` as ``spec`` says; check every row.

    Pure: reads ``df`` and never changes it.
    """
    with _gc_paused():
        return _Build(df, spec).plan()


def build_group_plan(df: pd.DataFrame, spec: GroupSpec) -> Plan:
    """Build every group identification of ``df`` as ``spec`` says; check every row.

    The group properties are assembled and checked exactly as an identification's user
    properties are (one code path); the group type and value take the place of the ids, and
    the plan's lanes are the groups. Pure: reads ``df`` and never changes it.
    """
    with _gc_paused():
        return _GroupBuild(df, spec).plan()


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


# --------------------------------------------------------------------------------------------
# problems


@dataclass
class _Chunk:
    pos: np.ndarray
    column: str
    severity: str
    message: list[str] | str
    kind: list[str] | str


@dataclass
class _Problems:
    """Problems collected while building: arrays of positions with one message each."""

    chunks: list[_Chunk] = field(default_factory=list)

    def add(
        self,
        pos: np.ndarray,
        column: str,
        severity: str,
        message: list[str] | str,
        kind: list[str] | str | None = None,
    ) -> None:
        """Problems at positions ``pos``: one message for all, or one each; ``kind`` is the
        message without the cell's value (the message itself when it holds no value)."""
        if len(pos):
            chunk = _Chunk(np.asarray(pos, dtype=np.int64), column, severity, message,
                           message if kind is None else kind)
            self.chunks.append(chunk)

    def add_bad(self, c: Converted, column: str) -> None:
        """The cells a converter found bad: errors."""
        self.add(c.bad_pos, column, "error", c.bad_reason, c.kinds)

    def error_positions(self) -> np.ndarray:
        errs = [c.pos for c in self.chunks if c.severity == "error"]
        return np.unique(np.concatenate(errs)) if errs else np.empty(0, dtype=np.int64)

    def first_error_reason(self, n: int) -> np.ndarray:
        reason = np.full(n, None, dtype=object)
        for c in reversed(self.chunks):
            if c.severity != "error":
                continue
            where = c.column if c.column.startswith("literal(") else f"column {c.column!r}"
            reason[c.pos] = [f"{where}: {m}" for m in _each(c.message, len(c.pos))]
        return reason

    def frame(self, index: pd.Index) -> pd.DataFrame:
        if not self.chunks:
            return empty_problems()
        pos = np.concatenate([c.pos for c in self.chunks])
        order = np.lexsort((np.arange(len(pos)), pos))

        def column(get: Callable[[_Chunk], Any]) -> pd.Series:
            out = np.empty(len(pos), dtype=object)
            at = 0
            for c in self.chunks:
                out[at : at + len(c.pos)] = _each(get(c), len(c.pos))
                at += len(c.pos)
            return pd.Series(out[order], dtype=object)

        return pd.DataFrame(
            {
                "row": pd.Series(index.take(pos[order]).tolist(), dtype=object),
                "column": column(lambda c: c.column),
                "severity": column(lambda c: c.severity),
                "message": column(lambda c: c.message),
                "kind": column(lambda c: c.kind),
                "position": pos[order],
            }
        )


def _each(value: list[str] | str, n: int) -> list[str]:
    return value if isinstance(value, list) else [value] * n


# --------------------------------------------------------------------------------------------
# slots


def _label(slot: Slot) -> str:
    return repr(slot.source) if slot.is_literal else str(slot.source)


def _single(value: Any) -> pd.Series:
    """A one-cell object Series holding ``value`` as is (lists and dicts included)."""
    cell = np.empty(1, dtype=object)
    cell[0] = value
    return pd.Series(cell, dtype=object)


def _column(df: pd.DataFrame, slot: Slot) -> pd.Series:
    """The slot's column, or a one-cell Series holding its literal value."""
    if isinstance(slot.source, Literal):
        return _single(slot.source.value)
    return df.iloc[:, df.columns.get_loc(slot.source)]


def _part(slot: Slot, c: Converted, **options: Any) -> Part:
    """A literal whose value converted cleanly becomes a constant part."""
    if slot.is_literal and len(c.missing) and not len(c.bad_pos) and not c.missing[0]:
        text = c.json_at(0)
        if text is not None:
            return Part(slot.key, _label(slot), const=text, **options)
    return Part(slot.key, _label(slot), conv=c, **options)


# --------------------------------------------------------------------------------------------
# ids


@dataclass
class _IdTraits:
    """Per distinct id: its length in characters and what Amplitude (or the user) would mind."""

    lengths: np.ndarray
    rejected: np.ndarray  # on Amplitude's list (compared case-insensitively)
    blank: np.ndarray  # empty or only whitespace
    padded: np.ndarray  # leading or trailing whitespace around something


_LONGEST_REJECTED = max(map(len, REJECTED_IDS))


def _id_traits(distinct: pa.Array) -> _IdTraits:
    """Rejected ids compare case-insensitively with Python's ``str.lower``; for ASCII ids Arrow's
    ``ascii_lower`` is the same thing, for the (rare) others Python lowers them (the Kelvin sign
    lowers to "k", so "UNKNOWN" spelled with it is rejected too). Whitespace is Python's
    ``str.isspace``: Arrow finds the ids whose first or last character may be one (not a
    printable ASCII character), and Python decides for those.
    """
    k = len(distinct)
    lengths = pc.utf8_length(distinct).to_numpy().astype(np.int64)
    short = lengths <= _LONGEST_REJECTED
    ascii_ = np.asarray(pc.string_is_ascii(distinct).to_numpy(zero_copy_only=False), dtype=bool)
    rejected = np.asarray(
        pc.is_in(
            pc.ascii_lower(distinct),
            value_set=pa.array(sorted(REJECTED_IDS), type=distinct.type),
        ).to_numpy(zero_copy_only=False),
        dtype=bool,
    ) & short
    others = np.flatnonzero(short & ~ascii_)
    if len(others):
        lowered = pd.Series(_take(distinct, others), dtype=object).str.lower()
        rejected[others] = lowered.isin(REJECTED_IDS).to_numpy()
    edge = np.zeros(k, dtype=bool)
    for end in (pc.utf8_slice_codeunits(distinct, 0, 1), pc.utf8_slice_codeunits(distinct, -1)):
        outside = pc.or_(pc.less_equal(end, arrow_literal(" ")),
                         pc.greater_equal(end, arrow_literal("\x7f")))
        edge |= np.asarray(outside.to_numpy(zero_copy_only=False), dtype=bool)
    blank = np.zeros(k, dtype=bool)
    padded = np.zeros(k, dtype=bool)
    candidates = np.flatnonzero(edge)
    for i, text in zip(candidates.tolist(), _take(distinct, candidates), strict=True):
        stripped = text.strip()
        blank[i] = not stripped
        padded[i] = bool(stripped) and stripped != text
    return _IdTraits(lengths, rejected & ~blank, blank, padded)


def _take(distinct: pa.Array, at: np.ndarray) -> list[str]:
    return distinct.take(pa.array(at, type=pa.int64())).to_pylist()


_ID_RULES = (
    ("blank", "{arg} is empty or only whitespace, which is no id; fill it or drop the row"),
    ("rejected", "{arg} {v} is on Amplitude's list of rejected ids; fix or drop the row"),
    ("too_short", f"{{arg}} {{v}} is shorter than {MIN_ID_LENGTH} characters, which Amplitude "
                  "rejects; fix or drop the row"),
    ("too_long", f"{{arg}} is longer than {MAX_ID_LENGTH} characters ({{k}}), which Amplitude "
                 "rejects; shorten or drop it"),
)
_LONG = (
    f"string longer than {MAX_STRING_LENGTH} characters; Amplitude truncates it, so shorten it "
    "to keep it all"
)
_PADDED = (
    "{arg} {v} has leading or trailing whitespace, so Amplitude takes it for another id than "
    "the same text without it; strip the column (e.g. with .str.strip()) unless that is meant"
)


# --------------------------------------------------------------------------------------------
# the build


class _BuildBase:
    """What every build shares: the frame, the mapping's operations (user or group properties,
    one code path for operations, type rules and nulls), the problems found, row by row."""

    #: Why a row with nothing but its ids is skipped.
    nothing_to_send = "nothing to send: no property, field or group value in this row"

    def __init__(self, df: pd.DataFrame, spec: IdentifySpec | GroupSpec) -> None:
        self.df = df
        self.spec = spec
        self.n = len(df)
        self.problems = _Problems()
        #: rows with something to send besides one id
        self.content = np.zeros(self.n, dtype=bool)
        self.non_idempotent = np.zeros(self.n, dtype=bool)
        #: warnings that concern only rows that will be sent: (positions, column, message, kind)
        self.pending: list[tuple[np.ndarray, str, list[str] | str, list[str] | str]] = []
        self.ids: dict[str, IdColumn] = {}

    def apply_id_rules(
        self,
        ids: IdColumn,
        usable: np.ndarray,
        arg: str,
        label: str,
        masks: dict[str, np.ndarray],
        rules: tuple[tuple[str, str], ...],
        traits: _IdTraits,
        padded: str,
    ) -> np.ndarray:
        """Each rule's mask over the distinct ids, spread to the rows: an error (the row is not
        usable) per broken rule, and a warning for ids with whitespace around them."""
        codes = np.where(usable, ids.codes, ids.n_unique)  # -1 -> an extra "fine" slot

        def rows_of(mask: np.ndarray) -> np.ndarray:
            return np.flatnonzero(np.append(mask, False)[codes])

        for name, template in rules:
            p = rows_of(masks[name])
            if len(p):
                messages, kind = _id_messages(template, arg, ids.unique_at(ids.codes[p]))
                self.problems.add(p, label, "error", messages, kind)
                usable[p] = False
        p = rows_of(traits.padded)
        if len(p):
            messages, kind = _id_messages(padded, arg, ids.unique_at(ids.codes[p]))
            self.pending.append((p, label, messages, kind))
        return usable

    def warn_pending(self, valid: np.ndarray) -> None:
        """The warnings that concern rows that will be sent, on the ``valid`` ones."""
        for pos, column, message, kind in self.pending:
            keep = valid[pos]
            self.problems.add(pos[keep], column, "warning", _pick(message, keep), _pick(kind, keep))

    def convert(self, slot: Slot, converter: Callable[[pd.Series], Converted]) -> Converted:
        """The slot's column converted (a literal converted once and repeated)."""
        c = converter(_column(self.df, slot))
        return c.broadcast(self.n) if slot.is_literal else c

    # ---- properties

    def user_properties(self) -> Section:
        """One ``(operation, parts)`` per operation, then ``$unset``."""
        properties: Section = []
        unset: list[Part] = []
        for op, slots in self.spec.operations:
            parts = []
            numeric = op == "$add"
            for slot in slots:
                c = self.convert(slot, _values_converter(numeric))
                label = _label(slot)
                self.problems.add_bad(c, label)
                if len(c.long_pos):
                    self.pending.append((c.long_pos, label, _LONG, _LONG))
                if self.spec.nulls == "unset" and op in ("$set", "$setOnce") and c.missing.any():
                    unset.append(self.unset_where_missing(slot, c))
                else:
                    self.null_policy(slot, c)
                present = c.present
                self.content |= present
                if op in NON_IDEMPOTENT_OPERATIONS:
                    self.non_idempotent |= present
                parts.append(_part(slot, c))
            properties.append((op, parts))
        for name in self.spec.unset:
            unset.append(Part(name, repr(name), const=f'"{UNSET_VALUE}"'))
            self.content[:] = True
        if unset:
            properties.append((UNSET, unset))
        return properties

    def unset_where_missing(self, slot: Slot, c: Converted) -> Part:
        """``nulls="unset"``: ``$unset`` the property on the rows where its value is missing."""
        self.content |= c.missing
        text = pc.if_else(pa.array(c.missing), arrow_literal(UNSET_VALUE), arrow_literal(None))
        none = np.empty(0, dtype=np.int64)
        conv = Converted(text, ~c.missing, none, [], none, quoted=True)
        return Part(slot.key, _label(slot), conv=conv, optional=True)

    def null_policy(self, slot: Slot, c: Converted) -> None:
        if self.spec.nulls == "error" and c.missing.any():
            self.problems.add(
                np.flatnonzero(c.missing),
                _label(slot),
                "error",
                "missing value (nulls='error'); fill it, drop the row, or use nulls='skip'",
            )

    # ---- rows

    def row_states(self) -> tuple[np.ndarray, np.ndarray]:
        """Each row's state, and for the rows not sent, why."""
        state = np.full(self.n, VALID, dtype=np.int8)
        state[self.problems.error_positions()] = INVALID
        reason = self.problems.first_error_reason(self.n)
        skipped = (state == VALID) & ~self.content
        state[skipped] = SKIPPED
        reason[skipped] = self.nothing_to_send
        return state, reason

    def payloads(self, section: Section, state: np.ndarray, reason: np.ndarray) -> ArrowPayloads:
        """The valid rows' payloads; a row too large for a request of its own becomes invalid
        (``state`` and ``reason`` updated in place)."""
        payload = assemble(section, state == VALID)
        over = np.flatnonzero(payload.nbytes > MAX_IDENTIFICATION_BYTES)
        if not len(over):
            return payload
        template = (
            "the identification is {size} bytes, more than one request can carry "
            f"({MAX_IDENTIFICATION_BYTES:,} bytes within Amplitude's 1 MB limit); this value "
            "makes {part} of them: shorten or drop it"
        )
        for p in over.tolist():
            part, size = largest_part(section, p)
            message = template.format(size=f"{int(payload.nbytes[p]):,}", part=f"{size:,}")
            kind = template.format(size=VALUE, part=VALUE)
            self.problems.add(np.array([p]), part.label, "error", message, kind)
            where = part.label if part.label.startswith("literal(") else f"column {part.label!r}"
            reason[p] = f"{where}: {message}"
        state[over] = INVALID
        return payload.without(over)


def _values_converter(numeric_only: bool) -> Callable[[pd.Series], Converted]:
    return lambda series: convert_values(series, numeric_only=numeric_only)


def _id_messages(template: str, arg: str, values: np.ndarray) -> tuple[list[str], str]:
    """Per row: the message with its id (its length for long ids); and the kind."""
    messages = [template.format(arg=arg, v=repr(v), k=len(v)) for v in values]
    return messages, template.format(arg=arg, v=VALUE, k=VALUE)


def _pick(value: list[str] | str, keep: np.ndarray) -> list[str] | str:
    if isinstance(value, str):
        return value
    return [v for v, k in zip(value, keep.tolist(), strict=True) if k]


class _Build(_BuildBase):
    """One build of identifications: ids, fields, user properties and groups."""

    spec: IdentifySpec

    def plan(self) -> Plan:
        section: Section = [*self.id_parts(), *self.field_parts()]
        properties = self.user_properties()
        if properties:
            section.append(("user_properties", properties))
        groups = self.group_parts()
        if groups:
            section.append(("groups", groups))
        state, reason = self.row_states()
        payload = self.payloads(section, state, reason)
        valid = state == VALID
        self.warn_pending(valid)
        user, device = (self.sent_ids(key, slot, valid) for key, slot in
                        (("user_id", self.spec.user_id), ("device_id", self.spec.device_id)))
        return Plan.from_parts(
            index=self.df.index,
            state=state,
            payload=payload,
            user_id=user,
            device_id=device,
            idempotent=~self.non_idempotent,
            reason=reason,
            problems=self.problems.frame(self.df.index),
        )

    # ---- ids

    def id_parts(self) -> list[Part]:
        """``user_id`` and ``device_id``: converted, checked; an error where neither is usable."""
        parts = []
        usable_any = np.zeros(self.n, dtype=bool)
        both = np.ones(self.n, dtype=bool)
        for slot in (self.spec.user_id, self.spec.device_id):
            if slot is None:
                both[:] = False
                continue
            ids = convert_ids(_column(self.df, slot))
            if slot.is_literal:
                ids = ids.broadcast(self.n)
            usable = self.check_ids(ids, slot.key, _label(slot))
            if not usable.all():
                ids.keep(usable)
            self.ids[slot.key] = ids
            usable_any |= usable
            both &= usable
            parts.append(Part(slot.key, _label(slot), conv=ids.conv))
        self.content |= both  # both ids and nothing else: the row links a device to a user
        no_id = np.flatnonzero(~usable_any)
        if len(no_id):
            fresh = np.setdiff1d(no_id, self.problems.error_positions(), assume_unique=True)
            cols = [_label(s) for s in (self.spec.user_id, self.spec.device_id) if s is not None]
            self.problems.add(
                fresh,
                cols[0],
                "error",
                "no usable id: " + " and ".join(f"{c!r}" for c in cols) + " missing in this row"
                "; fill one of them or drop the row",
            )
        return parts

    def check_ids(self, ids: IdColumn, arg: str, label: str) -> np.ndarray:
        """Amplitude's id rules, checked once per distinct id; returns a mask of usable rows."""
        self.problems.add_bad(ids.conv, label)
        usable = ids.codes >= 0
        if not ids.n_unique or not usable.any():
            return usable
        traits = _id_traits(ids.distinct)
        masks = {
            "blank": traits.blank,
            "rejected": traits.rejected,
            "too_short": (traits.lengths < MIN_ID_LENGTH) & ~traits.rejected & ~traits.blank,
            "too_long": traits.lengths > MAX_ID_LENGTH,
        }
        return self.apply_id_rules(ids, usable, arg, label, masks, _ID_RULES, traits, _PADDED)

    def sent_ids(self, key: str, slot: Slot | None, valid: np.ndarray) -> Ids:
        """The ids as sent (code -1 on rows that are not valid), and the busy-id warning."""
        column = self.ids.get(key)
        if column is None:
            return Ids.none(self.n)
        codes = column.codes if valid.all() else np.where(valid, column.codes, -1)
        ids = Ids(codes, column.distinct)
        self.warn_busy(key, ids, _label(slot) if slot is not None else key)
        return ids

    def warn_busy(self, key: str, ids: Ids, label: str) -> None:
        """Warn on rows past the 1800th of one id."""
        codes = ids.codes
        has = codes >= 0
        if not has.any():
            return
        if np.bincount(codes[has]).max() <= MAX_UPDATES_PER_HOUR:
            return
        rank = pd.Series(codes).groupby(codes).cumcount().to_numpy()
        over = np.flatnonzero(has & (rank >= MAX_UPDATES_PER_HOUR))
        template = (
            f"{key} {{v}} has more than {MAX_UPDATES_PER_HOUR} identifications in this frame; "
            f"Amplitude drops updates past {MAX_UPDATES_PER_HOUR} per user per hour, so spread "
            "them over hours or combine them"
        )
        self.problems.add(
            over, label, "warning",
            [template.format(v=repr(v)) for v in ids[over]], template.format(v=VALUE),
        )

    # ---- fields, groups

    def field_parts(self) -> list[Part]:
        parts = []
        for slot in self.spec.fields:
            c = self.convert(slot, convert_field)
            self.problems.add_bad(c, _label(slot))
            self.null_policy(slot, c)
            self.content |= c.present
            parts.append(_part(slot, c))
        return parts

    def group_parts(self) -> list[Part]:
        parts: list[Part] = []
        if not self.spec.groups:
            return parts
        total = np.zeros(self.n, dtype=np.int64)
        for slot in self.spec.groups:
            c, k = convert_groups(_column(self.df, slot))
            if slot.is_literal:
                c, k = c.broadcast(self.n), np.full(self.n, k[0])
            self.problems.add_bad(c, _label(slot))
            self.null_policy(slot, c)
            total += k
            self.content |= c.present
            parts.append(_part(slot, c))
        too_many = np.flatnonzero(total > MAX_GROUPS)
        template = f"{{k}} groups in one row; Amplitude allows at most {MAX_GROUPS}, so split them"
        self.problems.add(
            too_many,
            ", ".join(_label(s) for s in self.spec.groups),
            "error",
            [template.format(k=int(total[p])) for p in too_many],
            template.format(k=VALUE),
        )
        return parts

# --------------------------------------------------------------------------------------------
# group identifications

_GROUP_RULES = (
    ("blank", "{arg} is empty or only whitespace, which names no group; fill it or drop the row"),
    ("too_long", f"{{arg}} is longer than {MAX_ID_LENGTH} characters ({{k}}), which Amplitude "
                 "rejects; shorten or drop it"),
)
_GROUP_PADDED = (
    "{arg} {v} has leading or trailing whitespace, so Amplitude takes it for another group than "
    "the same text without it; strip the column (e.g. with .str.strip()) unless that is meant"
)
_TOO_MANY_PROPERTIES = (
    f"{{k}} group properties in one row; Amplitude takes at most {MAX_GROUP_PROPERTIES} per "
    "request, so split them over several calls"
)
#: Problems about the row's properties taken together name this in their column.
GROUP_PROPERTIES = "group_properties"


class _GroupBuild(_BuildBase):
    """A build of group identifications: ``{"group_type", "group_value", "group_properties"}``.

    The group properties are :meth:`_BuildBase.user_properties` (the same operations, type rules
    and null policy); the group type and value are checked like ids, by Amplitude's rules for
    groups (present, not blank, at most 1024 characters).
    """

    spec: GroupSpec
    nothing_to_send = "nothing to send: no group property value in this row"

    def plan(self) -> Plan:
        section: Section = self.group_key_parts()
        properties = self.user_properties()
        if properties:
            section.append((GROUP_PROPERTIES, properties))
        touched = self.count_properties(properties)
        state, reason = self.row_states()
        payload = self.payloads(section, state, reason)
        valid = state == VALID
        self.warn_pending(valid)
        return Plan.from_parts(
            index=self.df.index,
            state=state,
            payload=payload,
            user_id=Ids.none(self.n),
            device_id=Ids.none(self.n),
            idempotent=~self.non_idempotent,
            reason=reason,
            problems=self.problems.frame(self.df.index),
            group=self.groups(valid),
            properties=np.where(valid, touched, 0),
            max_rows=MAX_GROUP_IDENTIFICATIONS,
            max_properties=MAX_GROUP_PROPERTIES,
        )

    def group_key_parts(self) -> list[Part]:
        """``group_type`` and ``group_value``: converted (ints as strings) and checked."""
        parts = []
        for slot in (self.spec.group_type, self.spec.group_value):
            ids = convert_ids(_column(self.df, slot))
            if slot.is_literal:
                ids = ids.broadcast(self.n)
            label = _label(slot)
            self.problems.add_bad(ids.conv, label)
            usable = self.check_group_key(ids, slot.key, label)
            if not usable.all():
                ids.keep(usable)
            self.ids[slot.key] = ids
            parts.append(Part(slot.key, label, conv=ids.conv))
        return parts

    def check_group_key(self, ids: IdColumn, arg: str, label: str) -> np.ndarray:
        """Amplitude's rules for a group type or value, once per distinct one; returns a mask
        of usable rows (missing ones are errors: a group identification needs both)."""
        usable = ids.codes >= 0
        missing = np.flatnonzero(ids.conv.missing)
        self.problems.add(
            missing, label, "error", f"{arg} is missing in this row; fill it or drop the row"
        )
        if not ids.n_unique or not usable.any():
            return usable
        traits = _id_traits(ids.distinct)
        masks = {"blank": traits.blank, "too_long": traits.lengths > MAX_ID_LENGTH}
        return self.apply_id_rules(
            ids, usable, arg, label, masks, _GROUP_RULES, traits, _GROUP_PADDED
        )

    def count_properties(self, properties: Section) -> np.ndarray:
        """Per row, the group properties it touches (one per name in each operation, as
        Amplitude's per-request limit counts them); a row over the limit is an error."""
        touched = np.zeros(self.n, dtype=np.int64)
        for part in parts_of(properties):
            touched += 1 if part.conv is None else part.conv.present
        over = np.flatnonzero(touched > MAX_GROUP_PROPERTIES)
        self.problems.add(
            over, GROUP_PROPERTIES, "error",
            [_TOO_MANY_PROPERTIES.format(k=int(touched[p])) for p in over],
            _TOO_MANY_PROPERTIES.format(k=VALUE),
        )
        return touched

    def groups(self, valid: np.ndarray) -> Ids:
        """Each valid row's group as ``"group_type:group_value"``; codes number the distinct
        (type, value) pairs, so two groups whose joined text collides keep their own lanes."""
        kind, value = self.ids["group_type"], self.ids["group_value"]
        has = valid & (kind.codes >= 0) & (value.codes >= 0)
        codes = np.full(self.n, -1, dtype=np.int64)
        if not has.any():
            return Ids(codes, np.empty(0, dtype=object))
        pair = kind.codes[has] * np.int64(max(value.n_unique, 1)) + value.codes[has]
        codes[has], _ = pd.factorize(pair)
        first = np.flatnonzero(has)[np.unique(codes[has], return_index=True)[1]]
        distinct = np.empty(len(first), dtype=object)
        distinct[:] = [
            f"{t}:{v}"
            for t, v in zip(
                kind.unique_at(kind.codes[first]), value.unique_at(value.codes[first]), strict=True
            )
        ]
        return Ids(codes, distinct)
