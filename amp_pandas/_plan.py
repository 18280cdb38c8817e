"""The plan: everything a send needs, built once from a DataFrame and never changed.

A :class:`Plan` is the hand-off between building (``_build``) and sending (``_send``): per input
row it holds the row's state (valid, invalid, skipped), the identification as the exact JSON bytes
that will travel, the ids used for throttling, whether the row is safe to retry after an ambiguous
outcome, and the *lane* of the row. A lane is a connected group of rows that share a user id or a
device id (for group identifications: one group, its type and value); rows of one lane must be
sent in row order and never in two requests at once. The plan also carries its API's limits per
request (identifications, and for groups the properties they touch), and
:func:`chunk_rows` cuts its valid rows into requests within them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._amplitude import MAX_IDENTIFICATIONS, NON_IDEMPOTENT_OPERATIONS
from ._encode import DEFAULT_BATCH_SIZE, MAX_BODY_BYTES, body_overhead
from ._payloads import Ids, Payloads, TextPayloads

__all__ = ["Plan", "VALID", "INVALID", "SKIPPED", "chunk_rows", "compute_lanes"]

VALID: int = 0
INVALID: int = 1
SKIPPED: int = 2
STATE_NAMES = {VALID: "valid", INVALID: "invalid", SKIPPED: "skipped"}

@dataclass(frozen=True, eq=False)
class Plan:
    """The built identifications of one frame, row by row.

    Attributes
    ----------
    index : pandas.Index
        The input frame's index; every per-row array below is aligned with it by position.
    state : ndarray of int8
        ``VALID``, ``INVALID`` or ``SKIPPED`` per row.
    payload : Payloads
        The JSON text (``str``) of the identification for valid rows, ``None`` for the others:
        ``plan.payload[i]``, ``plan.payload[rows]`` (an object array), ``plan.payload.tolist()``.
        A built plan writes it when a request is encoded (``payload.json_array(rows)``), and
        does not hold it row by row.
    user_id, device_id : Ids
        The row's ids as sent (``str``), or ``None``: ``plan.user_id[rows]`` gives them as an
        object array; ``plan.user_id.codes`` numbers the distinct ids (-1 for none).
    idempotent : ndarray of bool
        False when the row holds ``$add``, ``$append`` or ``$prepend``.
    reason : ndarray of object
        For invalid and skipped rows, why (the first error); ``None`` otherwise.
    problems : pandas.DataFrame
        One row per problem: ``row`` (index label), ``column``, ``severity``, ``message``,
        ``kind`` (the message without the cell's value, to group problems by) and ``position``
        (the row's position in the frame).
    lane : ndarray of int64
        Lane code per row (``-1`` for rows that are not valid), numbered by first appearance.
    order : ndarray of int64
        Positions of the valid rows in send order: grouped by lane, row order within a lane.
    nbytes : ndarray of int64
        Length in UTF-8 bytes of each row's payload (0 for rows that are not valid): the
        payloads' own ``payload.nbytes``.
    group : Ids or None
        Group identifications: each row's group as ``"group_type:group_value"`` (the form a 429
        names throttled groups in), its codes numbering the distinct (type, value) pairs; the
        lanes are these groups. None for user identifications.
    properties : ndarray of int64 or None
        Per row, the properties its identification touches (one per name in each operation),
        when the API limits them per request.
    max_rows : int
        Most identifications in one request.
    max_properties : int or None
        Most ``properties`` in one request (None: no such limit).
    """

    index: pd.Index
    state: np.ndarray
    payload: Payloads
    user_id: Ids
    device_id: Ids
    idempotent: np.ndarray
    reason: np.ndarray
    problems: pd.DataFrame
    lane: np.ndarray = field(repr=False)
    order: np.ndarray = field(repr=False)
    group: Ids | None = field(default=None, repr=False)
    properties: np.ndarray | None = field(default=None, repr=False)
    max_rows: int = MAX_IDENTIFICATIONS
    max_properties: int | None = None

    @classmethod
    def from_parts(
        cls,
        *,
        index: pd.Index,
        state: np.ndarray,
        payload: Payloads,
        user_id: Ids,
        device_id: Ids,
        idempotent: np.ndarray,
        reason: np.ndarray,
        problems: pd.DataFrame,
        group: Ids | None = None,
        properties: np.ndarray | None = None,
        max_rows: int = MAX_IDENTIFICATIONS,
        max_properties: int | None = None,
    ) -> Plan:
        """Assemble a plan, deriving lanes and the send order.

        The lane key is the ids (rows sharing a user or device id), or ``group`` when given
        (rows of one group).
        """
        valid = state == VALID
        if group is not None:
            lane = compute_lanes(group.codes, np.full(len(state), -1, dtype=np.int64), valid)
        else:
            lane = compute_lanes(user_id.codes, device_id.codes, valid)
        valid_pos = np.flatnonzero(valid)
        if len(valid_pos) == len(index):  # every row: positions are 0..n-1 already
            order = _stable_argsort(lane)
        else:
            order = valid_pos[_stable_argsort(lane[valid_pos])]
        return cls(
            index=index,
            state=state,
            payload=payload,
            user_id=user_id,
            device_id=device_id,
            idempotent=idempotent,
            reason=reason,
            problems=problems,
            lane=lane,
            order=order,
            group=group,
            properties=properties,
            max_rows=max_rows,
            max_properties=max_properties,
        )

    @classmethod
    def from_identifications(
        cls, identifications: Sequence[dict[str, Any]], index: Iterable[Any] | None = None
    ) -> Plan:
        """A plan of ready-made identification dicts, all valid (for tests and tools).

        Examples
        --------
        >>> plan = Plan.from_identifications([{"user_id": "user-1", "user_properties":
        ...     {"$add": {"logins": 1}}}])
        >>> plan.idempotent.tolist(), plan.order.tolist()
        ([False], [0])
        """
        n = len(identifications)
        idx = pd.RangeIndex(n) if index is None else pd.Index(list(index))
        text = np.empty(n, dtype=object)
        text[:] = [
            json.dumps(i, separators=(",", ":"), ensure_ascii=False) for i in identifications
        ]
        user, device = (
            Ids.from_strings(
                np.array([i.get(k) for i in identifications] + [None], dtype=object)[:n]
            )
            for k in ("user_id", "device_id")
        )
        idem = np.array(
            [
                not (NON_IDEMPOTENT_OPERATIONS & set((i.get("user_properties") or {}).keys()))
                for i in identifications
            ],
            dtype=bool,
        )
        return cls.from_parts(
            index=idx,
            state=np.zeros(n, dtype=np.int8),
            payload=TextPayloads(text),
            user_id=user,
            device_id=device,
            idempotent=idem,
            reason=np.full(n, None, dtype=object),
            problems=empty_problems(),
        )

    def __len__(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> np.ndarray:
        return self.payload.nbytes

    @property
    def n_valid(self) -> int:
        return int(np.count_nonzero(self.state == VALID))

    def identifications(self) -> list[dict[str, Any]]:
        """The valid rows' identifications as dicts, in row order, decoded from the exact bytes."""
        return [json.loads(p) for p in self.payload.texts(np.flatnonzero(self.state == VALID))]


def _stable_argsort(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for non-negative integer keys, faster.

    NumPy sorts 16-bit keys with a stable radix sort in linear time but larger ones with
    timsort; two radix passes (low 16 bits, then high 16 bits) sort keys below 2**32 stably in
    less than half the time on a million rows.
    """
    if not len(keys) or keys.min() < 0 or keys.max() >= 1 << 32:
        return np.argsort(keys, kind="stable")
    by_low = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    if keys.max() < 1 << 16:
        return by_low
    high = (keys[by_low] >> 16).astype(np.uint16)
    return by_low[np.argsort(high, kind="stable")]


def _numbered_by_first_appearance(codes: np.ndarray) -> bool:
    """True when ``codes`` (all >= 0) already are 0, 1, 2 ... in order of first appearance,
    i.e. what ``pd.factorize(codes)[0]`` would return: each code is at most one above every
    code before it."""
    highest = -1  # the largest code before the current block
    for start in range(0, len(codes), _BLOCK):  # block-wise: temporaries stay small and hot
        block = codes[start : start + _BLOCK]
        before = np.maximum.accumulate(np.concatenate(([highest], block[:-1])))
        if (block > before + 1).any():
            return False
        highest = max(highest, int(block.max()))
    return True


_BLOCK = 1 << 16


def empty_problems() -> pd.DataFrame:
    """An empty problems frame with the documented columns."""
    return pd.DataFrame(
        {
            "row": pd.Series([], dtype=object),
            "column": pd.Series([], dtype=object),
            "severity": pd.Series([], dtype=object),
            "message": pd.Series([], dtype=object),
            "kind": pd.Series([], dtype=object),
            "position": pd.Series([], dtype=np.int64),
        }
    )


def compute_lanes(user_codes: np.ndarray, device_codes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Number the connected groups of rows that share a user id or a device id.

    ``user_codes`` and ``device_codes`` number the distinct ids (equal ids, equal codes; -1
    where the row has none). Rows outside ``mask`` get ``-1``. Lanes are numbered by first
    appearance, so sorting rows by lane (stably) keeps each user's rows together and in row
    order.

    Examples
    --------
    >>> import numpy as np
    >>> u = np.array([0, -1, 1, 0])  # alice, -, bob, alice
    >>> d = np.array([-1, 0, 0, -1])  # -, dev-1, dev-1, -
    >>> compute_lanes(u, d, np.ones(4, dtype=bool)).tolist()
    [0, 1, 1, 0]
    """
    n = len(mask)
    lane = np.full(n, -1, dtype=np.int64)
    count = int(np.count_nonzero(mask))
    if not count:
        return lane
    # Every row, usually: a slice then takes views where positions would copy 8 MB arrays.
    pos: slice | np.ndarray = slice(None) if count == n else np.flatnonzero(mask)
    ucodes, dcodes = user_codes[pos], device_codes[pos]
    # One kind of id only: the id codes are the lanes, numbered by first appearance.
    for one, other in ((ucodes, dcodes), (dcodes, ucodes)):
        if (other < 0).all() and (one >= 0).all():
            lane[pos] = one if _numbered_by_first_appearance(one) else pd.factorize(one)[0]
            return lane
    label = np.arange(count, dtype=np.int64)
    # Label propagation: every row takes the smallest label among rows sharing one of its ids,
    # until nothing changes. Usually one or two rounds: chains of device<->user links are short.
    big = np.int64(count)
    while True:
        new = label.copy()
        for codes in (ucodes, dcodes):
            has = codes >= 0
            if not has.any():
                continue
            mins = np.full(int(codes.max()) + 1, big, dtype=np.int64)
            np.minimum.at(mins, codes[has], label[has])
            new[has] = np.minimum(new[has], mins[codes[has]])
        if np.array_equal(new, label):
            break
        label = new
    lane[pos] = pd.factorize(label)[0]
    return lane


def chunk_rows(
    plan: Plan,
    rows: np.ndarray | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_body_bytes: int = MAX_BODY_BYTES,
    overhead: int | None = None,
) -> list[np.ndarray]:
    """Cut rows (positions, in send order) into requests.

    Each request holds at most ``batch_size`` identifications (and never more than the plan's
    ``max_rows``), at most the plan's ``max_properties`` properties when it has that limit, and
    its body stays under ``max_body_bytes``. A lane (rows sharing an id, or a group) is kept
    inside one request when it fits, so that requests rarely depend on each other; a lane
    longer than a request spans consecutive requests, which the sender then sends one after
    another. A single identification larger than
    the byte budget gets a request of its own (the server will answer 413 for it).

    Examples
    --------
    >>> plan = Plan.from_identifications([{"user_id": f"user-{i % 3}"} for i in range(7)])
    >>> [c.tolist() for c in chunk_rows(plan, batch_size=3)]
    [[0, 3, 6], [1, 4], [2, 5]]
    """
    if rows is None:
        rows = plan.order
    n = len(rows)
    if n == 0:
        return []
    budget = max_body_bytes - (body_overhead(64) if overhead is None else overhead)
    batch_size = min(batch_size, plan.max_rows)
    sizes = plan.nbytes[rows] + 1  # each identification plus its comma / bracket
    cum = np.concatenate(([0], np.cumsum(sizes)))
    props = None
    if plan.max_properties is not None and plan.properties is not None:
        props = np.concatenate(([0], np.cumsum(plan.properties[rows])))
    lanes = plan.lane[rows]
    # position (within rows) where each row's lane run starts
    starts_flag = np.empty(n, dtype=bool)
    starts_flag[0] = True
    starts_flag[1:] = lanes[1:] != lanes[:-1]
    run_start = np.maximum.accumulate(np.where(starts_flag, np.arange(n), 0))
    chunks: list[np.ndarray] = []
    s = 0
    while s < n:
        end = min(s + batch_size, n)
        by_bytes = int(np.searchsorted(cum, cum[s] + budget, side="right")) - 1
        end = min(end, by_bytes)
        if props is not None:
            assert plan.max_properties is not None
            by_props = int(np.searchsorted(props, props[s] + plan.max_properties, side="right"))
            end = min(end, by_props - 1)
        if end <= s:
            end = s + 1  # one oversized identification alone
        elif end < n and lanes[end] == lanes[end - 1]:
            start_of_lane = int(run_start[end - 1])
            if start_of_lane > s:
                end = start_of_lane
        chunks.append(rows[s:end])
        s = end
    return chunks
