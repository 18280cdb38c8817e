"""Which request goes next: per-lane order, not-before times, and coalescing of resumed rows.

The valid rows, in send order (grouped by lane, row order within a lane), are cut into requests
by :func:`~amp_pandas._plan.chunk_rows`. Each request is an :class:`Item`: an array of row
positions plus a ``not_before`` time and, optionally, ``deps``: rows that must all be final
before the item may start. The :class:`Scheduler` holds the items not yet sent and hands out the
ready ones, lowest ``seq`` (send order) first.

Per-lane order: a lane (rows sharing a user id or a device id) may span consecutive requests;
each then waits on the previous one's rows of that lane. When an item is split (413, or bisection
after a 400) the second half waits on the first half's rows of the lanes they share; halves with
no lane in common fly concurrently. Retried rows are re-queued as a new item; later rows of their
lanes keep waiting because those rows are not final yet. So the rows of one lane are sent in row
order, never in two requests at once, and a row leaves only once every earlier row of its lane
is final.

Coalescing: a 429 pauses a few ids from each of many requests. When the pause is over, the
paused rows of different requests go out together, as many as fit in one request, instead of a
round trip apiece; an item resuming waits a moment (:data:`RESUME_GATHER`) for others about to
resume.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from ._plan import Plan

__all__ = ["RESUME_GATHER", "Item", "Scheduler"]

#: Rows resumed after a throttle pause wait up to this fraction of the pause (at most 1 s) for
#: others resuming just after them, so that they go out in one request rather than several.
RESUME_GATHER = 0.1


@dataclass(eq=False)
class Item:
    """Rows (positions, in send order) that go in one request."""

    rows: np.ndarray
    seq: float  # dispatch priority: send order of the original request
    not_before: float = 0.0
    deps: np.ndarray | None = None  # rows that must be final first
    retries: int = 0  # retries used after 503 / refused / ambiguous outcomes
    attempt: int = 1  # the how-many-th request for these rows (for the log)
    paused_ids: int = 0  # ids paused by a 429 (for the waiting text)


class Scheduler:
    """The items not sent yet, and the order in which they may go.

    Parameters
    ----------
    plan : Plan
        The plan (lanes and byte sizes).
    chunks : list of ndarray
        The requests, from :func:`~amp_pandas._plan.chunk_rows`, in send order.
    done : ndarray of bool
        Per row, whether it is final; read (never written) to resolve ``deps``.
    batch_size, budget : int
        Largest request, in identifications and in bytes of identifications (for coalescing).
    throttle_pause : float
        The throttle pause (to size the wait for rows resuming together).

    Examples
    --------
    >>> import numpy as np
    >>> plan = Plan.from_identifications([{"user_id": "user-1"}] * 3)
    >>> done = np.zeros(3, dtype=bool)
    >>> s = Scheduler(plan, [np.array([0, 1]), np.array([2])], done, 2, 10_000, 15.0)
    >>> [it.rows.tolist() for it in s.take(8, now=0.0)[0]]  # the second waits on the first
    [[0, 1]]
    >>> done[:2] = True
    >>> [it.rows.tolist() for it in s.take(8, now=0.0)[0]]
    [[2]]
    """

    def __init__(
        self,
        plan: Plan,
        chunks: list[np.ndarray],
        done: np.ndarray,
        batch_size: int,
        budget: int,
        throttle_pause: float,
    ) -> None:
        self.plan = plan
        self.done = done
        self.batch_size = min(batch_size, plan.max_rows)
        self.budget = budget
        self.throttle_pause = throttle_pause
        self.n_chunks = len(chunks)
        self.fresh: deque[Item] = deque()
        self.held: list[Item] = []  # sorted by seq
        lane = plan.lane
        for i, rows in enumerate(chunks):
            deps = None
            if i and lane[rows[0]] == lane[chunks[i - 1][-1]]:
                prev = chunks[i - 1]
                deps = prev[lane[prev] == lane[rows[0]]]
            self.fresh.append(Item(rows, seq=float(i), deps=deps))

    def __bool__(self) -> bool:
        """Whether items are left."""
        return bool(self.fresh or self.held)

    def ready(self, item: Item, now: float) -> bool:
        if item.not_before > now:
            return False
        if item.deps is not None:
            if not self.done[item.deps].all():
                return False
            item.deps = None
        return True

    def take(self, free: int, now: float) -> tuple[list[Item], float]:
        """Up to ``free`` ready items, lowest ``seq`` first; and the next ``not_before`` ahead
        (``inf`` when none)."""
        out: list[Item] = []
        next_time = math.inf
        i = 0
        held, fresh = self.held, self.fresh
        while len(out) < free and (i < len(held) or fresh):
            if i < len(held) and (not fresh or held[i].seq <= fresh[0].seq):
                item = held[i]
                if not self.ready(item, now):
                    i += 1
                    continue
                if item.paused_ids:
                    later = self._more_resuming_soon(item, now)
                    if later is not None:  # wait a moment for them: one request, not several
                        next_time = min(next_time, later)
                        i += 1
                        continue
                del held[i]
                if item.paused_ids:
                    item = self._coalesce(item, now)
            else:
                item = fresh.popleft()
                if not self.ready(item, now):
                    at = bisect.bisect_right(held, item.seq, key=lambda it: it.seq)
                    held.insert(at, item)
                    i += at <= i
                    continue
            out.append(item)
        for item in held:
            if item.not_before > now:
                next_time = min(next_time, item.not_before)
        return out, next_time

    def _more_resuming_soon(self, item: Item, now: float) -> float | None:
        """When ``item`` (resumed after a pause) should wait for others about to resume: the
        time the next of them does, else None.

        Waits at most ``RESUME_GATHER`` of the pause (and at most a second) past the item's own
        pause, and only while the rows ready to resume do not fill a request already.
        """
        limit = item.not_before + min(RESUME_GATHER * self.throttle_pause, 1.0)
        if now >= limit:
            return None
        upcoming = math.inf
        ready_rows = 0
        for other in self.held:
            if not other.paused_ids:
                continue
            if other.not_before <= now:
                ready_rows += len(other.rows)
            elif other.not_before <= limit:
                upcoming = min(upcoming, other.not_before)
        if upcoming == math.inf or ready_rows >= self.batch_size:
            return None
        return upcoming

    def _coalesce(self, item: Item, now: float) -> Item:
        """Rows whose throttle pause is over go out together, as many as fit in one request.

        Only items resumed after a pause are joined (never the halves of a split), and only
        items ready now whose lanes differ, so per-lane order holds.
        """
        plan = self.plan
        size, nbytes = len(item.rows), int(plan.nbytes[item.rows].sum()) + len(item.rows)
        if size >= self.batch_size:
            return item
        props, max_props = plan.properties, plan.max_properties
        touched = int(props[item.rows].sum()) if props is not None else 0
        joined, lanes = [item], set(plan.lane[item.rows].tolist())
        held, i = self.held, 0
        while i < len(held) and size < self.batch_size:
            other = held[i]
            if other.paused_ids and other.not_before <= now and self.ready(other, now):
                more = int(plan.nbytes[other.rows].sum()) + len(other.rows)
                other_lanes = set(plan.lane[other.rows].tolist())
                more_touched = int(props[other.rows].sum()) if props is not None else 0
                if (
                    size + len(other.rows) <= self.batch_size
                    and nbytes + more <= self.budget
                    and (max_props is None or touched + more_touched <= max_props)
                    and lanes.isdisjoint(other_lanes)
                ):
                    del held[i]
                    joined.append(other)
                    size, nbytes = size + len(other.rows), nbytes + more
                    touched += more_touched
                    lanes |= other_lanes
                    continue
            i += 1
        if len(joined) == 1:
            return item
        return Item(
            np.concatenate([it.rows for it in joined]),
            seq=item.seq,
            retries=max(it.retries for it in joined),
            attempt=max(it.attempt for it in joined),
        )

    def requeue(
        self,
        parent: Item,
        rows: np.ndarray,
        *,
        seq: float | None = None,
        not_before: float = 0.0,
        deps: np.ndarray | None = None,
        retries: int | None = None,
        paused_ids: int = 0,
    ) -> None:
        """Queue ``rows`` of ``parent`` again (a retry, a half, rows resent or paused)."""
        item = Item(
            rows,
            seq=parent.seq if seq is None else seq,
            not_before=not_before,
            deps=deps,
            retries=parent.retries if retries is None else retries,
            attempt=parent.attempt + 1,
            paused_ids=paused_ids,
        )
        bisect.insort(self.held, item, key=lambda it: it.seq)

    def resend_later(self, parent: Item, rows: np.ndarray) -> None:
        """Queue ``rows`` after the requests not sent yet (rows a 429 did not throttle), so that
        every throttled id is found, and its pause runs, as early as possible."""
        self.requeue(parent, rows, seq=parent.seq + self.n_chunks)

    def split(self, item: Item) -> None:
        """Two halves, cut at the lane boundary nearest the middle when there is one."""
        rows = item.rows
        lanes = self.plan.lane[rows]
        mid = len(rows) // 2
        starts = np.flatnonzero(lanes[1:] != lanes[:-1]) + 1
        if len(starts):
            mid = int(starts[np.argmin(np.abs(starts - mid))])
        first, second = rows[:mid], rows[mid:]
        shared = np.intersect1d(lanes[:mid], lanes[mid:])
        deps = first[np.isin(lanes[:mid], shared)] if len(shared) else None
        self.requeue(item, first)
        self.requeue(item, second, deps=deps)

    def paused(self, now: float) -> tuple[float, int] | None:
        """While ids are paused: seconds until the last pause ends, and the ids paused."""
        items = [it for it in self.held if it.paused_ids and it.not_before > now]
        if not items:
            return None
        return max(it.not_before for it in items) - now, sum(it.paused_ids for it in items)

    def drain(self) -> list[Item]:
        """Remove and return every item left."""
        items = [*self.held, *self.fresh]
        self.held.clear()
        self.fresh.clear()
        return items
