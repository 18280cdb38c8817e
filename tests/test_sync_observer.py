"""The ledger's side of a send (``LedgerObserver``): users written in flight request by request,
and each user's outcome once all of its rows are final, against outcomes worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from amp_pandas._ledger import Ledger
from amp_pandas._result import STATUSES
from amp_pandas._sync import OUTCOMES, RevertInfo
from amp_pandas._syncrun import LazyReverts, LedgerObserver, group_users

URL = "https://api2.amplitude.com/identify"


class _Users:
    """What the observer asks of the users sent: their digests (here: user n -> bytes n)."""

    def __init__(self) -> None:
        self.asked: list[list[int]] = []

    def digests(self, users: np.ndarray) -> list[bytes]:
        self.asked.append(users.tolist())
        return [bytes([u + 1]) * 16 for u in users.tolist()]


def _codes(*names: str) -> np.ndarray:
    return np.array([STATUSES.index(n) for n in names], dtype=np.int8)


def _outcomes(ledger: Ledger, job: object) -> dict[str, str]:
    state = ledger.state(job)  # type: ignore[arg-type]
    return {k: OUTCOMES[o] for k, o in zip(state.keys, state.outcome, strict=True)}


def test_users_spanning_requests_end_with_all_their_rows(tmp_path: Path) -> None:
    # rows 0..5 of users a, b, c, a, c, d: a and c have two rows each, in two requests
    row_user = np.array([0, 1, 2, 0, 2, 3], dtype=np.int64)
    keys = np.array(["a", "b", "c", "d"], dtype=object)
    info = RevertInfo(set=("p",))
    users = _Users()
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        job = ledger.job("j", URL, "key")
        with ledger.begin_run(job) as run:
            obs = LedgerObserver(run, row_user, keys, users=users,  # type: ignore[arg-type]
                                 reverts=np.array([info] * 4, dtype=object),
                                 n_rows=np.array([2, 1, 2, 1]))  # fmt: skip
            obs.before_request(np.array([0, 1, 2]))
            assert _outcomes(ledger, job) == dict.fromkeys("abc", "in_flight")
            obs.after_rows_final(np.array([0, 1, 2]), _codes("success", "failed", "success"))
            # b is final; a and c wait for their second rows
            assert _outcomes(ledger, job) == {"a": "in_flight", "b": "failed",
                                              "c": "in_flight"}  # fmt: skip
            obs.before_request(np.array([3, 4, 5]))  # only d is new
            assert users.asked == [[0, 1, 2], [3]]
            obs.after_rows_final(np.array([3, 4]), _codes("success", "unknown"))
            assert _outcomes(ledger, job) == {"a": "acknowledged", "b": "failed",
                                              "c": "unknown", "d": "in_flight"}  # fmt: skip
            obs.after_rows_final(np.array([5]), _codes("throttled"))
        state = ledger.state(job)
        got = {k: (OUTCOMES[o], bytes(g)) for k, o, g in
               zip(state.keys, state.outcome, state.digest, strict=True)}  # fmt: skip
        assert got == {"a": ("acknowledged", b"\x01" * 16), "b": ("failed", b"\x02" * 16),
                       "c": ("unknown", b"\x03" * 16), "d": ("failed", b"\x04" * 16)}
        # what may be in effect: the new info, except for users whose send failed (new users:
        # nothing)
        reverts = {k: state.reverts.get(int(r)) for k, r in
                   zip(state.keys, state.revert, strict=True)}  # fmt: skip
        assert reverts == {"a": info, "b": None, "c": info, "d": None}


def test_a_run_ended_before_the_answers_leaves_its_users_unknown(tmp_path: Path) -> None:
    row_user = np.array([0, 1], dtype=np.int64)
    keys = np.array(["a", "b"], dtype=object)
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        job = ledger.job("j", URL, "key")
        with ledger.begin_run(job) as run:
            obs = LedgerObserver(run, row_user, keys, users=_Users(),  # type: ignore[arg-type]
                                 reverts=np.array([None, None], dtype=object),
                                 n_rows=np.array([1, 1]))  # fmt: skip
            obs.before_request(np.array([0]))
            obs.before_request(np.array([1]))
            obs.after_rows_final(np.array([1]), _codes("success"))
        assert _outcomes(ledger, job) == {"a": "unknown", "b": "acknowledged"}


def test_revert_infos_are_worked_out_when_first_asked_for() -> None:
    df = pd.DataFrame({"uid": [f"user-{i}" for i in range(5)], "country": ["FR"] * 5,
                       "plan": ["a", None, "b", None, "c"]})  # fmt: skip
    plan = df.amplitude.identify(user_id="uid", set=["country", "plan"], dry_run=True).plan
    users = group_users(plan)
    assert len(users) == 5
    send = np.array([True, True, False, True, True])
    reverts = LazyReverts(plan, users, send, None)
    sets, empty = RevertInfo(set=("country", "plan")), RevertInfo(set=("country",))
    assert reverts.computed == 0
    assert reverts[np.array([3])].tolist() == [empty]
    assert reverts.computed == 1  # only the user asked for
    assert reverts[np.array([4, 0, 2])].tolist() == [sets, sets, None]  # 2 is not sent
    assert reverts.computed == 3
    assert reverts[np.arange(5)].tolist() == [sets, empty, None, empty, sets]
    assert reverts.computed == 4
