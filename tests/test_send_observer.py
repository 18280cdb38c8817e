"""The sender's hooks (``observer=``) and rows settled before the send (``settled=``)."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from amp_pandas._config import resolve_settings
from amp_pandas._plan import Plan
from amp_pandas._result import STATUSES
from amp_pandas._send import send_plan
from amp_pandas.sandbox import Sandbox


class Recorder:
    """Writes down every hook call; ``fail_at``: the before_request call number that raises."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_at = fail_at
        self.requests = 0

    def before_request(self, rows: np.ndarray) -> None:
        self.requests += 1
        if self.requests == self.fail_at:
            raise OSError("the ledger's disk is full")
        self.calls.append(("before", rows.tolist()))

    def after_rows_final(self, rows: np.ndarray, statuses: np.ndarray) -> None:
        self.calls.append(("final", rows.tolist(), [STATUSES[s] for s in statuses]))

    def send_over(self, interrupted: bool) -> None:
        self.calls.append(("over", interrupted))


def plan(n: int) -> Plan:
    return Plan.from_identifications(
        [{"user_id": f"user-{i}", "user_properties": {"$set": {"n": i}}} for i in range(n)]
    )


def settings(sb: Sandbox, **kw: Any) -> Any:
    return resolve_settings(api_key=sb.api_key, server_url=sb.url, progress=False, **kw)


def test_hooks_come_in_order_before_and_after_each_request(sb: Sandbox) -> None:
    rec = Recorder()
    result = send_plan(plan(4), settings(sb, batch_size=2, max_workers=1), observer=rec)
    assert result.status.tolist() == ["success"] * 4
    assert rec.calls == [
        ("before", [0, 1]), ("final", [0, 1], ["success", "success"]),
        ("before", [2, 3]), ("final", [2, 3], ["success", "success"]),
        ("over", False),
    ]  # fmt: skip


def test_a_retried_request_is_announced_again_and_final_once(sb: Sandbox) -> None:
    sb.set_faults(rate_503=1.0)
    rec = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = send_plan(plan(1), settings(sb, max_retries=2, backoff=0.001), observer=rec)
    assert result.status.tolist() == ["failed"]
    assert rec.calls == [("before", [0])] * 3 + [("final", [0], ["failed"]), ("over", False)]


def test_a_hook_that_fails_stops_the_send_and_is_raised(sb: Sandbox) -> None:
    rec = Recorder(fail_at=2)
    with pytest.raises(OSError, match="disk is full"):
        send_plan(plan(6), settings(sb, batch_size=2, max_workers=1), observer=rec)
    # the first request went and was recorded; nothing left after the failure
    assert [i["user_id"] for i in sb.applied] == ["user-0", "user-1"]
    assert rec.calls[:2] == [("before", [0, 1]), ("final", [0, 1], ["success", "success"])]
    assert rec.calls[-1] == ("over", False)


def test_settled_rows_keep_their_status_and_are_not_sent(sb: Sandbox) -> None:
    rec = Recorder()
    settled = [(np.array([1]), STATUSES.index("unchanged"), None),
               (np.array([2]), STATUSES.index("unknown"), "held")]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = send_plan(plan(4), settings(sb), observer=rec, settled=settled)
    assert result.status.tolist() == ["success", "unchanged", "unknown", "success"]
    assert result.error.tolist()[2] == "held"
    assert sorted(i["user_id"] for i in sb.applied) == ["user-0", "user-3"]
    assert [c for c in rec.calls if c[0] == "before"] == [("before", [0, 3])]
    assert "1 unknown" in str(caught[0].message)


class Preparer(Recorder):
    """A Recorder with the spare-time hook: writes down what it was given ahead."""

    def prepare(self, rows: np.ndarray, texts: Any) -> None:
        self.calls.append(("prepare", rows.tolist(), texts.to_pylist()))


def test_requests_are_prepared_ahead_in_order_and_sent_as_written(sb: Sandbox) -> None:
    """While a request is answered slowly, the next one is prepared (once, before it leaves,
    never more than max_workers ahead); the texts written for it are what the server gets."""
    sb.set_faults(latency=0.05)
    df = pd.DataFrame({"uid": [f"user-{i}" for i in range(7)], "n": range(7)})
    built = df.amplitude.identify(user_id="uid", set=["n"], dry_run=True).plan
    written: list[list[int]] = []
    write = built.payload.request_texts

    def counted(rows: np.ndarray) -> Any:
        written.append(rows.tolist())
        return write(rows)

    built.payload.request_texts = counted  # type: ignore[method-assign]
    rec = Preparer()
    result = send_plan(built, settings(sb, batch_size=2, max_workers=1), observer=rec)
    assert result.status.tolist() == ["success"] * 7
    assert written == [[0, 1], [2, 3], [4, 5], [6]]  # each request's texts written once
    assert [i["user_id"] for i in sb.applied] == [f"user-{i}" for i in range(7)]
    assert [i["user_properties"]["$set"]["n"] for i in sb.applied] == list(range(7))
    # the first request leaves at once; each later one is prepared while the one before waits
    steps = [c[0] for c in rec.calls]
    assert steps == ["before", "prepare", "final", "before", "prepare", "final", "before",
                     "prepare", "final", "before", "final", "over"]  # fmt: skip
    prepared = [c for c in rec.calls if c[0] == "prepare"]
    assert [c[1] for c in prepared] == [[2, 3], [4, 5], [6]]
    for _, rows, texts in prepared:  # each text as the server received it, ending in "},"
        assert [json.loads(t[:-1]) for t in texts] == [sb.applied[r] for r in rows]


def test_texts_held_as_strings_are_not_written_ahead(sb: Sandbox) -> None:
    sb.set_faults(latency=0.05)
    rec = Recorder()
    rec.prepare = lambda rows, texts: rec.calls.append(("prepare", rows.tolist(), texts))  # type: ignore[attr-defined]
    send_plan(plan(3), settings(sb, batch_size=1, max_workers=1), observer=rec)
    assert [c for c in rec.calls if c[0] == "prepare"] == [("prepare", [1], None),
                                                           ("prepare", [2], None)]
