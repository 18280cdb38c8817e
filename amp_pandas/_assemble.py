"""Assembling: converted columns become each row's identification as JSON text.

The payload is described as a *section*: a list of :class:`Part` (one ``"key": value`` member,
per row from a converted column or a constant) and ``(key, section)`` pairs (nested objects such
as ``user_properties`` and ``$set``). :func:`assemble` turns it into
:class:`~amp_pandas._payloads.ArrowPayloads`: for rows where every member is present, a fixed
template of literal text and columns that ``pyarrow.compute.binary_join_element_wise`` joins in
C; for the others, member by member (:func:`_general`). No text is written here, only measured:
the payloads write it per request.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._convert import Converted
from ._payloads import ArrowPayloads, arrow_literal

__all__ = ["Part", "Section", "assemble", "parts_of", "largest_part"]


@dataclass
class Part:
    """One ``"key": value`` of the payload: per-row values, or a constant."""

    key: str
    label: str  # what problems name: the column, or the literal
    conv: Converted | None = None
    const: str | None = None  # JSON text of a constant
    optional: bool = False  # present on some rows only by design (nulls="unset")

    def key_text(self) -> str:
        return encode_basestring(self.key) + ":"

    def nbytes(self, rows: np.ndarray) -> np.ndarray:
        """UTF-8 bytes this member adds to each of ``rows`` (0 where absent), comma excluded."""
        if self.const is not None:
            return np.full(len(rows), len((self.key_text() + self.const).encode()))
        assert self.conv is not None
        values = self.conv.arrow.take(pa.array(rows, type=pa.int64()))
        size = pc.binary_length(values).fill_null(-1).to_numpy().astype(np.int64)
        extra = len(self.key_text().encode()) + (2 if self.conv.quoted else 0)
        return np.where(size >= 0, size + extra, 0)


#: A section is a list of parts or of (key, section) pairs: the payload's nested objects.
Section = list  # list[Part | tuple[str, "Section"]]

#: One row's JSON text as a sequence: literal text, and the converted columns whose value (in
#: quotes when ``quoted``) goes in between.
_Pieces = list  # list[str | Converted]

#: Rows measured per Arrow call where rows need the general (member by member) text.
_BLOCK = 1 << 15


def parts_of(section: Section) -> list[Part]:
    """Every part of a section, nested ones included, in payload order."""
    out: list[Part] = []
    for item in section:
        if isinstance(item, tuple):
            out += parts_of(item[1])
        else:
            out.append(item)
    return out


def largest_part(section: Section, row: int) -> tuple[Part, int]:
    """The part that adds the most bytes to ``row``'s text, and how many."""
    rows = np.array([row], dtype=np.int64)
    sizes = [(int(p.nbytes(rows)[0]), i) for i, p in enumerate(parts_of(section))]
    size, at = max(sizes)
    return parts_of(section)[at], size


def assemble(section: Section, valid: np.ndarray) -> ArrowPayloads:
    """The payloads of the ``valid`` rows: the template and its columns, and each row's UTF-8
    length; the text itself is written per request (:class:`ArrowPayloads`)."""
    n = len(valid)
    pieces: _Pieces = ["{", *_template(section)]  # the closing brace is ArrowPayloads' own
    complete = _complete_rows(section, pieces, valid)
    nbytes = np.zeros(n, dtype=np.int64)
    if complete.any():
        constant = 1 + sum(len(p.encode()) for p in pieces if isinstance(p, str))  # 1: "}"
        for p in pieces:
            if not isinstance(p, str):
                nbytes += pc.binary_length(p.arrow).fill_null(0).to_numpy()
        nbytes += constant
        nbytes[~complete] = 0
    general = None
    slow = np.flatnonzero(valid & ~complete)
    if len(slow):
        general = functools.partial(_general, section)
        for start in range(0, len(slow), _BLOCK):
            rows = slow[start : start + _BLOCK]
            inner = pc.binary_length(general(pa.array(rows))).to_numpy(zero_copy_only=False)
            nbytes[rows] = inner.astype(np.int64) + 2  # "{" and "}"
    args = [arrow_literal(p) if isinstance(p, str) else p.arrow for p in pieces]
    return ArrowPayloads(args, complete, general, nbytes)


def _template(section: Section) -> _Pieces:
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


def _complete_rows(section: Section, pieces: _Pieces, valid: np.ndarray) -> np.ndarray:
    """Valid rows that the template covers: every template value present, no optional one."""
    complete = valid.copy()
    for piece in pieces:
        if isinstance(piece, Converted):
            complete &= piece.present
    for p in parts_of(section):
        if p.optional and p.conv is not None:
            complete &= ~p.conv.present
    return complete


def _general(section: Section, rows: pa.Array) -> pa.Array:
    """The section's members for ``rows``, member by member ('' where the section is empty)."""
    lit = arrow_literal
    none, empty = lit(None), lit("")
    frags: list[Any] = []  # each a large_string array (null where absent) or a scalar
    for item in section:
        if isinstance(item, tuple):
            key, sub = item
            inner = _general(sub, rows)
            prefix = lit(encode_basestring(key) + ":{")
            wrapped = pc.binary_join_element_wise(prefix, inner, lit("}"), empty)
            frags.append(pc.if_else(pc.equal(inner, empty), none, wrapped))
        elif item.const is not None:
            frags.append(lit(item.key_text() + item.const))
        else:
            assert item.conv is not None
            q = '"' if item.conv.quoted else ""
            values = item.conv.arrow.take(rows)
            key_text = lit(item.key_text() + q)
            frags.append(pc.binary_join_element_wise(key_text, values, lit(q), empty))
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
