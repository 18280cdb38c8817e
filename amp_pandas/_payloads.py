"""What a plan holds per row that is text: the identification's JSON, and the ids.

Two forms behind one small interface (:class:`Payloads`):

- :class:`ArrowPayloads`, what a build makes, holds no row's text at all: it keeps the converted
  columns (compact Arrow ``large_string`` arrays) and the template that joins them, and writes
  the text of the rows a request needs when the request is encoded. A million identifications
  held as Python strings cost ~240 MB and touch that much fresh memory; the columns they are made
  of take a third of it, and each request's text (a few hundred kB) lives only while it is sent.
- :class:`TextPayloads` holds one ``str`` per row: plans made from ready-made dicts
  (``Plan.from_identifications``, for tests and tools).

:class:`Ids` does the same for the user and device ids: codes per row, the distinct ids once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["ArrowPayloads", "Ids", "Payloads", "TextPayloads", "arrow_literal", "text_bounds"]


class Payloads:
    """Per row: the identification's JSON text (``str``), or None for rows that are not sent.

    Read-only and array-like enough for inspection (``len``, ``payloads[i]``, iteration,
    ``tolist()``); the sender uses :meth:`json_array`, which never makes one ``str`` per row on
    the Arrow path.
    """

    #: UTF-8 length of each row's text (0 for rows that are not sent).
    nbytes: np.ndarray

    def __len__(self) -> int:
        return len(self.nbytes)

    def texts(self, rows: np.ndarray) -> list[str]:
        """The JSON texts of ``rows`` (positions of rows that are sent), in that order."""
        raise NotImplementedError

    def request_texts(self, rows: np.ndarray) -> Any:
        """The texts of a request's ``rows`` written ahead of :meth:`json_array` (which then
        only joins them), or ``None`` where writing them is no work (texts held as ``str``)."""
        return None

    def json_array(self, rows: np.ndarray, texts: Any = None) -> bytes:
        """``[text,text,...]`` of ``rows``, UTF-8 encoded: the request's identification field
        (``texts``: what :meth:`request_texts` gave for the same rows, if anything)."""
        return ("[" + ",".join(self.texts(rows)) + "]").encode()

    def has_text(self, position: int) -> bool:
        return bool(self.nbytes[position])

    def __getitem__(self, key: Any) -> Any:
        """One row's text (``payloads[i]``), or an object array of texts for positions, a
        slice or a boolean mask (``payloads[rows]``), None where the row is not sent."""
        if not isinstance(key, (int, np.integer)):
            positions = np.arange(len(self))[key]
            out = np.full(len(positions), None, dtype=object)
            sent = self.nbytes[positions] > 0
            if sent.any():
                out[sent] = self.texts(positions[sent])
            return out
        position = int(key)
        if position < 0:
            position += len(self)
        if not 0 <= position < len(self):
            raise IndexError(f"row position {position} is out of range for {len(self)} rows")
        if not self.has_text(position):
            return None
        return self.texts(np.array([position], dtype=np.int64))[0]

    def tolist(self) -> list[str | None]:
        """Every row's text (None where not sent): a million Python strings for a million rows."""
        out: list[str | None] = [None] * len(self)
        rows = np.flatnonzero(self.nbytes)
        for position, text in zip(rows.tolist(), self.texts(rows), strict=True):
            out[position] = text
        return out

    def __iter__(self) -> Iterator[str | None]:
        return iter(self.tolist())

    def __repr__(self) -> str:
        sent = int(np.count_nonzero(self.nbytes))
        size = int(self.nbytes.sum())
        return f"<{type(self).__name__}: {sent:,} of {len(self):,} rows, {size:,} bytes>"


class TextPayloads(Payloads):
    """Payloads held as one ``str`` per row (None where not sent)."""

    def __init__(self, text: np.ndarray, nbytes: np.ndarray | None = None) -> None:
        self._text = text
        self.nbytes = _utf8_lengths(text) if nbytes is None else nbytes

    def texts(self, rows: np.ndarray) -> list[str]:
        return self._text[rows].tolist()

    def has_text(self, position: int) -> bool:
        return self._text[position] is not None

    def tolist(self) -> list[str | None]:
        return self._text.tolist()


def _utf8_lengths(text: np.ndarray) -> np.ndarray:
    """UTF-8 length of each text (0 where None); ASCII text needs no encoding."""
    return np.fromiter(
        (0 if p is None else len(p) if p.isascii() else len(p.encode()) for p in text),
        dtype=np.int64,
        count=len(text),
    )


class ArrowPayloads(Payloads):
    """Payloads written on demand from Arrow columns.

    Parameters
    ----------
    pieces : list of pyarrow.Scalar or pyarrow.Array
        One row's text, but for its closing brace, is the element-wise concatenation of these
        (arrays are full-length ``large_string`` columns, scalars literal text), for rows in
        ``complete``.
    complete : ndarray of bool
        Rows that ``pieces`` write.
    general : callable, optional
        ``general(rows: pa.Array) -> pa.Array``: the object's inside for the other sent rows
        (those with a missing value or an optional member), written member by member.
    nbytes : ndarray of int64
        UTF-8 length of each row's text, 0 where not sent.
    """

    def __init__(
        self,
        pieces: Sequence[Any],
        complete: np.ndarray,
        general: Callable[[pa.Array], pa.Array] | None,
        nbytes: np.ndarray,
    ) -> None:
        self._pieces = list(pieces)
        self._complete = complete
        self._general = general
        self.nbytes = nbytes

    def render(self, rows: np.ndarray, close: str = "}") -> pa.Array:
        """The texts of ``rows`` (sent rows, in that order) as one ``large_string`` array;
        ``close`` ends each text (``"},"`` lets :meth:`json_array` skip a join)."""
        rows = np.asarray(rows, dtype=np.int64)
        fast = self._complete[rows]
        if fast.all():
            return self._fast(rows, close)
        if not fast.any():
            return self._slow(rows, close)
        fast_at, slow_at = np.flatnonzero(fast), np.flatnonzero(~fast)
        both = pa.concat_arrays(
            [self._fast(rows[fast_at], close), self._slow(rows[slow_at], close)]
        )
        back = np.empty(len(rows), dtype=np.int64)
        back[fast_at] = np.arange(len(fast_at))
        back[slow_at] = np.arange(len(fast_at), len(rows))
        return both.take(pa.array(back))

    def _fast(self, rows: np.ndarray, close: str) -> pa.Array:
        n = len(rows)
        start = int(rows[0]) if n else 0
        contiguous = n > 0 and rows[-1] - start == n - 1 and bool((np.diff(rows) == 1).all())
        index = None if contiguous else pa.array(rows)
        args = [
            p if isinstance(p, pa.Scalar) else p.slice(start, n) if index is None else p.take(index)
            for p in self._pieces
        ]
        args.append(arrow_literal(close))
        if not any(isinstance(a, pa.Array) for a in args):
            return pa.repeat(pc.binary_join_element_wise(*args, arrow_literal("")), n)
        return pc.binary_join_element_wise(*args, arrow_literal(""))

    def _slow(self, rows: np.ndarray, close: str) -> pa.Array:
        assert self._general is not None
        inner = self._general(pa.array(rows))
        return pc.binary_join_element_wise(
            arrow_literal("{"), inner, arrow_literal(close), arrow_literal("")
        )

    def texts(self, rows: np.ndarray) -> list[str]:
        return self.render(rows).to_pylist()

    def request_texts(self, rows: np.ndarray) -> pa.Array:
        """The texts of ``rows`` as one ``large_string`` array, each ending in ``"},"``: what
        :meth:`json_array` joins."""
        return self.render(rows, close="},")

    def json_array(self, rows: np.ndarray, texts: pa.Array | None = None) -> bytes:
        if not len(rows):
            return b"[]"
        text = self.request_texts(rows) if texts is None else texts
        if len(text) != len(rows):
            raise ValueError("json_array: texts written for other rows")
        data, bounds = text_bounds(text)
        # the texts back to back, each ending in "," -- the last comma gives way to the bracket
        return b"".join((b"[", memoryview(data)[int(bounds[0]) : int(bounds[-1]) - 1], b"]"))


    def without(self, rows: np.ndarray) -> ArrowPayloads:
        """These payloads with the rows at positions ``rows`` no longer sent (the build drops
        rows it finds invalid only once their size is known)."""
        complete, nbytes = self._complete.copy(), self.nbytes.copy()
        complete[rows] = False
        nbytes[rows] = 0
        return ArrowPayloads(self._pieces, complete, self._general, nbytes)


def text_bounds(texts: pa.Array) -> tuple[pa.Buffer, np.ndarray]:
    """A ``large_string`` array's data buffer and where each text starts in it (``len + 1``
    int64 offsets, a view: text ``i`` is ``data[bounds[i]:bounds[i + 1]]``).

    Examples
    --------
    >>> data, bounds = text_bounds(pa.array(["ab", "", "cde"], pa.large_string()).slice(1))
    >>> bounds.tolist(), data.to_pybytes()[bounds[0]:bounds[-1]]
    ([2, 2, 5], b'cde')
    """
    _, offsets, data = texts.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64, count=len(texts) + 1, offset=8 * texts.offset)
    return data, bounds


def arrow_literal(text: str | None) -> pa.Scalar:
    """A ``large_string`` scalar: Arrow's string kernels want one string type for all inputs."""
    return pa.scalar(text, pa.large_string())


class Ids:
    """One id per row as sent (``str``), or None: codes into the distinct ids.

    The distinct ids stay where the build left them (an Arrow string array, or a numpy object
    array for plans made from ready-made dicts); ``ids[rows]`` makes ``str`` objects for those
    rows only, so a million distinct ids never become a million Python strings unless somebody
    asks for them.

    Examples
    --------
    >>> import numpy as np
    >>> ids = Ids.from_strings(np.array(["alice", None, "alice"], dtype=object))
    >>> ids.codes.tolist(), ids[0], ids[np.array([1, 2])].tolist()
    ([0, -1, 0], 'alice', [None, 'alice'])
    """

    def __init__(self, codes: np.ndarray, distinct: Any) -> None:
        self.codes = codes
        self._distinct = distinct

    @classmethod
    def from_strings(cls, strings: np.ndarray) -> Ids:
        """Ids from an object array of ``str`` (None where there is no id)."""
        codes, uniques = pd.factorize(strings, use_na_sentinel=True)
        return cls(codes.astype(np.int64, copy=False), np.asarray(uniques, dtype=object))

    @classmethod
    def none(cls, n: int) -> Ids:
        """No id on any row."""
        return cls(np.full(n, -1, dtype=np.int64), np.empty(0, dtype=object))

    def __len__(self) -> int:
        return len(self.codes)

    def values(self, codes: np.ndarray) -> np.ndarray:
        """The ids of ``codes`` as an object array (None for -1)."""
        out = np.full(len(codes), None, dtype=object)
        has = np.flatnonzero(codes >= 0)
        if len(has):
            picked = codes[has]
            if isinstance(self._distinct, np.ndarray):
                out[has] = self._distinct[picked]
            else:
                out[has] = self._distinct.take(pa.array(picked)).to_pylist()
        return out

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            return self.values(self.codes[[int(key)]])[0]
        return self.values(np.atleast_1d(self.codes[key]))

    def tolist(self) -> list[str | None]:
        return self.values(self.codes).tolist()

    def __iter__(self) -> Iterator[str | None]:
        return iter(self.tolist())

    def __repr__(self) -> str:
        return f"<Ids: {len(self):,} rows, {len(self._distinct):,} distinct>"
