"""The sender's parts without HTTP: the scheduler's per-lane order and the per-row state."""

from __future__ import annotations

import random

import numpy as np
import pytest

from amp_pandas._plan import Plan, chunk_rows
from amp_pandas._result import STATUSES, SUCCESS, UNKNOWN
from amp_pandas._rowstate import RowState
from amp_pandas._schedule import Item, Scheduler


def plan_of(users: list[str]) -> Plan:
    return Plan.from_identifications([{"user_id": u} for u in users])


# ---------------------------------------------------------------- RowState.later_applied
# Rows 0..7: user a holds 0, 2, 5; user b holds 1, 4; user c holds 3, 6, 7.
USERS = ["user-a", "user-b", "user-a", "user-c", "user-b", "user-a", "user-c", "user-c"]
REQUEST = np.array([0, 2, 3])  # the first two rows of a, the first row of c


@pytest.mark.parametrize(
    "touch, row, expected",
    [
        (None, None, [False, False, False]),
        ("success", 5, [True, True, False]),  # a later row of a landed
        ("sent_unanswered", 6, [False, False, True]),  # a later row of c is in flight
        ("maybe_applied", 7, [False, False, True]),  # a later row of c may have landed
        ("maybe_applied", 2, [False, False, False]),  # rows of the request itself don't count
        ("success", 4, [False, False, False]),  # another user's row
        ("unknown_not_sent", 5, [False, False, False]),  # final, but never left
    ],
)
def test_later_applied(touch: str | None, row: int | None, expected: list[bool]) -> None:
    state = RowState(plan_of(USERS))
    if touch == "success":
        state.resolve(np.array([row]), SUCCESS, None)
    elif touch == "unknown_not_sent":
        state.resolve(np.array([row]), STATUSES.index("not_sent"), "not sent")
    elif touch is not None:
        getattr(state, touch)[row] = True
    assert state.later_applied(REQUEST).tolist() == expected


def test_later_applied_ignores_earlier_rows() -> None:
    state = RowState(plan_of(USERS))
    state.resolve(np.array([0, 2]), SUCCESS, None)
    state.maybe_applied[3] = True
    assert state.later_applied(np.array([5, 6])).tolist() == [False, False]
    assert state.later_applied(np.array([6])).tolist() == [False]  # 7 untouched
    state.resolve(np.array([7]), UNKNOWN, "may have been applied")
    state.maybe_applied[7] = True
    assert state.later_applied(np.array([6])).tolist() == [True]


def test_finalize_says_why_each_open_row_ends_as_it_does() -> None:
    state = RowState(plan_of(["user-1", "user-2", "user-3", "user-4"]))
    state.resolve(np.array([0]), SUCCESS, None)
    state.sent_unanswered[1] = True
    state.maybe_applied[2] = True
    state.error[2] = "may have been applied (HTTP 500)"
    state.error[3] = "HTTP 503 (not applied)"
    state.finalize("the send was interrupted")
    assert [STATUSES[s] for s in state.status] == ["success", "unknown", "unknown", "not_sent"]
    assert state.error.tolist() == [
        None,
        "sent, but no answer before the send was interrupted: it may have been applied",
        "may have been applied (HTTP 500); not retried: the send was interrupted",
        "not sent: the send was interrupted (last attempt: HTTP 503 (not applied))",
    ]
    assert state.pending == 0 and state.counts.tolist() == [1, 0, 0, 0, 0, 2, 1, 0]


# ---------------------------------------------------------------- Scheduler: per-lane order
@pytest.mark.parametrize("seed", range(25))
def test_a_row_leaves_only_after_every_earlier_row_of_its_lane_is_final(seed: int) -> None:
    """Random answers (success, retry, split, partial resend, pause), random completion order:
    whenever an item leaves, every earlier row of each of its lanes is final or in the item,
    and no two items in flight share a lane."""
    rng = random.Random(seed)
    n = rng.randint(5, 60)
    users = [f"user-{rng.randint(0, max(1, n // 4)):03d}" for _ in range(n)]
    plan = plan_of(users)
    done = np.zeros(n, dtype=bool)
    chunks = chunk_rows(plan, batch_size=rng.randint(1, 8))
    queue = Scheduler(plan, chunks, done, batch_size=8, budget=10**6, throttle_pause=0.0)
    rank = np.empty(n, dtype=np.int64)
    rank[plan.order] = np.arange(n)
    inflight: list[Item] = []
    now, sent = 0.0, 0
    while queue or inflight:
        items, _ = queue.take(3 - len(inflight), now)
        for item in items:
            mine = set(item.rows.tolist())
            for r in item.rows.tolist():
                earlier = [
                    e for e in range(n)
                    if plan.lane[e] == plan.lane[r] and rank[e] < rank[r] and e not in mine
                ]
                assert done[earlier].all(), (seed, r, earlier)
            lanes = set(plan.lane[item.rows].tolist())
            for other in inflight:
                assert lanes.isdisjoint(plan.lane[other.rows].tolist())
            inflight.append(item)
            sent += 1
        assert sent < 10_000
        if not inflight:
            now += 1.0  # only paused items are left: let time pass
            continue
        item = inflight.pop(rng.randrange(len(inflight)))
        action = rng.choice(["success", "success", "retry", "split", "partial", "pause"])
        rows = item.rows
        if action == "success" or (action == "split" and len(rows) < 2):
            done[rows] = True
        elif action == "retry":
            queue.requeue(item, rows, not_before=now + rng.random())
        elif action == "split":
            queue.split(item)
        elif action == "partial":  # some lanes final, the rest resent after the fresh items
            lanes = plan.lane[rows]
            keep = np.isin(lanes, lanes[: rng.randint(1, len(rows))])
            done[rows[keep]] = True
            if (~keep).any():
                queue.resend_later(item, rows[~keep])
        else:
            queue.requeue(item, rows, not_before=now + 0.5, paused_ids=1)
    assert done.all()
