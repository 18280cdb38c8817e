"""Per-row state of one send: status, reason, HTTP status, attempts, and what may have landed.

:class:`RowState` holds one numpy array per field, aligned with the plan's rows. It records what
the send loop learns (a request left, an answer came, a row ended) and answers the questions the
decision needs (:meth:`RowState.request_rows`). Rows only ever move forward: a final row stays
final, and a row that may have been applied is never reported as not applied.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._decide import RequestRows
from ._plan import INVALID as PLAN_INVALID
from ._plan import SKIPPED as PLAN_SKIPPED
from ._plan import VALID, Plan
from ._result import INVALID, NOT_SENT, SKIPPED, STATUSES, SUCCESS, UNKNOWN

__all__ = ["RowState"]


class RowState:
    """What became of each row of a plan so far.

    Attributes
    ----------
    status : ndarray of int8
        Index into :data:`~amp_pandas._result.STATUSES`; ``not_sent`` until a row ends.
    done : ndarray of bool
        The row is final.
    http, attempts : ndarray of int64
        The last HTTP status (0: none), and the requests that carried the row.
    error : ndarray of object
        The reason (for rows still open: the last attempt's).
    sent_unanswered : ndarray of bool
        The row is in a request that has not been answered yet.
    maybe_applied : ndarray of bool
        An attempt of the row may have been applied (an ambiguous answer).
    throttled_since : ndarray of float
        When the row was first throttled (``time.monotonic()``), NaN if never.
    counts : ndarray of int64
        Rows per status so far.
    pending : int
        Valid rows not final yet.

    Examples
    --------
    >>> import numpy as np
    >>> rows = RowState(Plan.from_identifications([{"user_id": "user-1"}, {"user_id": "user-1"}]))
    >>> rows.pending, rows.resolve(np.array([0]), SUCCESS, None), rows.pending
    (2, None, 1)
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        n = len(plan)
        valid = plan.state == VALID
        self.status = np.full(n, NOT_SENT, dtype=np.int8)
        self.status[plan.state == PLAN_INVALID] = INVALID
        self.status[plan.state == PLAN_SKIPPED] = SKIPPED
        self.done = ~valid
        self.http = np.zeros(n, dtype=np.int64)
        self.error = plan.reason.copy()
        self.attempts = np.zeros(n, dtype=np.int64)
        self.sent_unanswered = np.zeros(n, dtype=bool)
        self.maybe_applied = np.zeros(n, dtype=bool)
        self.throttled_since = np.full(n, np.nan)
        self.counts = np.zeros(len(STATUSES), dtype=np.int64)
        self.counts[INVALID] = np.count_nonzero(plan.state == PLAN_INVALID)
        self.counts[SKIPPED] = np.count_nonzero(plan.state == PLAN_SKIPPED)
        self.pending = int(np.count_nonzero(valid))
        self._rank: np.ndarray | None = None  # position of each row in plan.order
        self._lane_end: np.ndarray | None = None  # per lane, the end of its run in plan.order

    def resolve(self, rows: np.ndarray, code: int, reason: str | None) -> None:
        """End ``rows`` with status ``code`` and ``reason``."""
        if not len(rows):
            return
        self.status[rows] = code
        self.error[rows] = reason
        self.done[rows] = True
        self.counts[code] += len(rows)
        self.pending -= len(rows)

    def throttled(self, rows: np.ndarray, now: float) -> None:
        """``rows`` were throttled at ``now`` (the first time counts for ``throttle_budget``)."""
        first = self.throttled_since[rows]
        self.throttled_since[rows] = np.where(np.isnan(first), now, first)

    def later_applied(self, rows: np.ndarray) -> np.ndarray:
        """Per row of a request: whether a later row of its lane, outside ``rows``, was sent or
        may have been applied (in flight, ``success``, or an ambiguous answer)."""
        plan = self.plan
        if self._rank is None or self._lane_end is None:
            self._rank = np.empty(len(plan), dtype=np.int64)
            self._rank[plan.order] = np.arange(len(plan.order))
            lanes = plan.lane[plan.order]
            self._lane_end = np.zeros(int(lanes.max()) + 1 if len(lanes) else 0, dtype=np.int64)
            self._lane_end[lanes] = np.arange(1, len(lanes) + 1)  # the last write wins
        touched = self.sent_unanswered | self.maybe_applied | (self.status == SUCCESS)
        # Per lane of the request: are any rows after the request's last row of that lane (up
        # to the lane's end, in send order) touched? Counted with a prefix sum over send order.
        lanes, inverse = np.unique(plan.lane[rows], return_inverse=True)
        last = np.full(len(lanes), -1, dtype=np.int64)
        np.maximum.at(last, inverse, self._rank[rows])
        before = np.concatenate(([0], np.cumsum(touched[plan.order], dtype=np.int64)))
        hit = before[self._lane_end[lanes]] - before[last + 1] > 0
        return hit[inverse]

    def request_rows(self, rows: np.ndarray, retries: int, *, ambiguous: bool) -> RequestRows:
        """The state of a request's rows as :func:`~amp_pandas._decide.decide` reads it.

        ``later_applied`` is computed only for an ambiguous answer (the only one that reads it).
        """
        plan = self.plan
        return RequestRows(
            lane=plan.lane[rows],
            idempotent=plan.idempotent[rows],
            maybe_applied=self.maybe_applied[rows],
            later_applied=(
                self.later_applied(rows) if ambiguous else np.zeros(len(rows), dtype=bool)
            ),
            throttled_since=self.throttled_since[rows],
            user_id=plan.user_id[rows],
            device_id=plan.device_id[rows],
            nbytes=plan.nbytes[rows],
            retries=retries,
            group=None if plan.group is None else plan.group[rows],
        )

    def finalize(self, why: str) -> None:
        """Give every row that is not final its status: ``unknown`` or ``not_sent``.

        ``why`` says why the send stopped (``"the send was interrupted"`` ...).
        """
        open_rows = np.flatnonzero(~self.done)
        if not len(open_rows):
            return
        unanswered = open_rows[self.sent_unanswered[open_rows]]
        self.resolve(
            unanswered, UNKNOWN, f"sent, but no answer before {why}: it may have been applied"
        )
        rest = open_rows[~self.sent_unanswered[open_rows]]
        maybe = rest[self.maybe_applied[rest]]
        if len(maybe):
            previous = self.error[maybe]
            self.resolve(maybe, UNKNOWN, None)
            earlier = "an earlier attempt may have been applied"
            self.error[maybe] = [
                f"{p if str(p).startswith('may have') else earlier}; not retried: {why}"
                for p in previous.tolist()
            ]
        never = rest[~self.maybe_applied[rest]]
        if len(never):
            previous = self.error[never]
            self.resolve(never, NOT_SENT, None)
            self.error[never] = _with_prefix(previous, f"not sent: {why}")


def _with_prefix(previous: np.ndarray, prefix: str) -> np.ndarray:
    """``prefix`` per row, followed by ``(last attempt: ...)`` where the row had a reason."""
    out = np.full(len(previous), prefix, dtype=object)
    had = np.flatnonzero(pd.notna(previous))
    if len(had):
        out[had] = [f"{prefix} (last attempt: {p})" for p in previous[had].tolist()]
    return out
