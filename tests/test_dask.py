"""``ddf.amplitude``: dry runs over every partition and eager, once-only sends to the sandbox.

Every row appends its own marker to its user's ``seq`` list, so the sandbox's profiles say in
which order each user's rows were applied, and its ``applied`` log how often each row was.
The expected values are computed here from the input frame, by hand.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")

import amp_pandas  # noqa: E402,F401  (registers the accessors)
from amp_pandas.errors import (  # noqa: E402
    ArgumentError,
    AuthenticationError,
    ColumnNotFoundError,
    MissingApiKeyError,
    RowsNotSucceededWarning,
)
from amp_pandas.sandbox import Sandbox  # noqa: E402

KEY = "dask-secret-key-0123456789abcdef"
USERS = 7
ROWS = 60


@pytest.fixture(scope="module")
def _server() -> Iterator[Sandbox]:
    with Sandbox(api_key=KEY) as sandbox:
        yield sandbox


@pytest.fixture
def sb(_server: Sandbox) -> Sandbox:
    _server.reset()
    return _server


def frame(rows: int = ROWS, users: int = USERS) -> pd.DataFrame:
    """Row i: user ``user-{i % users}``, marker ``r<i>``; the index is not the row number."""
    return pd.DataFrame(
        {
            "uid": [f"user-{i % users:03d}" for i in range(rows)],
            "marker": [f"r{i}" for i in range(rows)],
        },
        index=pd.Index([f"label-{rows - i}" for i in range(rows)], name="label"),
    )


JOB: dict[str, Any] = {"user_id": "uid", "append": {"seq": "marker"}}


def target(sb: Sandbox, **options: Any) -> dict[str, Any]:
    return {"server_url": sb.url, "api_key": KEY, **options}


def expected_sequences(df: pd.DataFrame) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for uid, marker in zip(df["uid"], df["marker"], strict=True):
        out.setdefault(uid, []).append(marker)
    return out


def applied_markers(sb: Sandbox) -> Counter[str]:
    return Counter(i["user_properties"]["$append"]["seq"] for i in sb.applied)


def check_sent_once_in_order(sb: Sandbox, df: pd.DataFrame) -> None:
    assert applied_markers(sb) == Counter(df["marker"])  # every row applied exactly once
    profiles = sb.profiles()
    got = {uid: list(seq) for uid, seq in profiles["seq"].items()}
    assert got == expected_sequences(df)  # and in input order per user


def spread(df: pd.DataFrame, npartitions: int) -> Any:
    ddf = dd.from_pandas(df, npartitions=npartitions, sort=False)
    # every user's rows start in more than one partition
    parts = dask.compute(*ddf.to_delayed())
    users = {u for u in df["uid"] if str(u).startswith("user-")}
    owners = {uid: {i for i, p in enumerate(parts) if uid in set(p["uid"])} for uid in users}
    assert all(len(o) > 1 for o in owners.values())
    return ddf


# ---------------------------------------------------------------- sending
@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_every_row_sent_once_in_user_order_and_result_aligned(sb: Sandbox, scheduler: str) -> None:
    df = frame()
    ddf = spread(df, 4)
    with dask.config.set(scheduler=scheduler):
        result = ddf.amplitude.identify(**JOB, **target(sb))
    check_sent_once_in_order(sb, df)
    assert isinstance(result, pd.DataFrame)
    # aligned with the Dask frame's own index (Dask may hold labels as strings where pandas 2.2
    # holds objects), label for label and in order
    assert result.index.equals(ddf.index.compute()) and result.index.name == "label"
    assert result.index.tolist() == df.index.tolist()
    assert result["status"].tolist() == ["success"] * ROWS
    assert result["attempts"].tolist() == [1] * ROWS


def test_invalid_rows_keep_their_place_with_duplicate_labels(sb: Sandbox) -> None:
    df = frame(rows=24, users=4)
    df.index = pd.Index([i % 5 for i in range(24)])  # duplicated labels
    bad = [3, 11, 20]
    df.iloc[bad, df.columns.get_loc("uid")] = ["null", "", "anonymous"]
    ddf = spread(df, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ddf.amplitude.identify(**JOB, **target(sb))
    # one warning for the whole frame (a partition's sender may also warn for its own rows)
    whole = [w for w in caught if "of 24 rows did not succeed" in str(w.message)]
    assert [str(w.message)[:33] for w in whole] == ["3 of 24 rows did not succeed (3 i"]
    assert all(issubclass(w.category, RowsNotSucceededWarning) for w in caught)
    assert whole[0].filename == __file__
    expected = ["invalid" if i in bad else "success" for i in range(24)]
    assert result["status"].tolist() == expected
    assert result.index.tolist() == df.index.tolist()
    good = df.iloc[[i for i in range(24) if i not in bad]]
    check_sent_once_in_order(sb, good)


def test_rows_without_user_id_keep_device_order(sb: Sandbox) -> None:
    df = pd.DataFrame(
        {
            "uid": [None] * 12,
            "dev": [f"device-{i % 3}" for i in range(12)],
            "marker": [f"r{i}" for i in range(12)],
        }
    )
    ddf = dd.from_pandas(df, npartitions=4, sort=False)
    result = ddf.amplitude.identify(
        user_id="uid", device_id="dev", append={"seq": "marker"}, **target(sb)
    )
    assert result["status"].tolist() == ["success"] * 12
    got = {k: list(v) for k, v in sb.profiles()["seq"].items()}
    assert got == {f"device-{d}": [f"r{i}" for i in range(d, 12, 3)] for d in range(3)}


def test_nothing_sends_again_after_the_call(sb: Sandbox) -> None:
    df = frame()
    ddf = spread(df, 4)
    result = ddf.amplitude.identify(**JOB, **target(sb))
    sent = len(sb.requests)
    assert sent > 0
    ddf.compute()
    ddf.persist()
    dask.compute(ddf, ddf.amplitude)
    _ = result.copy(), result["status"].value_counts()
    assert len(sb.requests) == sent
    assert applied_markers(sb) == Counter(df["marker"])


def test_preview_send_sends_once(sb: Sandbox) -> None:
    df = frame()
    ddf = spread(df, 3)
    preview = ddf.amplitude.identify(**JOB, dry_run=True, **target(sb))
    assert sb.requests == []
    result = preview.send()
    assert preview.result is result
    check_sent_once_in_order(sb, df)


def test_partitions_in_flight_bound_the_requests_in_flight() -> None:
    df = frame(rows=40, users=40)

    class Counting(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()
            self.now = 0
            self.most = 0

        def request(self, *args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                return super().request(*args, **kwargs)
            finally:
                with self.lock:
                    self.now -= 1

    with Sandbox(api_key=KEY, latency=0.05) as sandbox:
        session = Counting()
        ddf = dd.from_pandas(df, npartitions=4, sort=False)
        with dask.config.set(scheduler="threads", num_workers=4):
            result = ddf.amplitude.identify(
                **JOB,
                **target(sandbox),
                session=session,
                batch_size=2,
                max_workers=2,
                max_partitions_in_flight=1,
            )
        assert result["status"].tolist() == ["success"] * 40
        assert len(sandbox.requests) >= 20
    assert 1 <= session.most <= 2  # 1 partition x 2 requests


# ---------------------------------------------------------------- dry run
def test_dry_run_counts_and_problems_cover_every_partition(sb: Sandbox) -> None:
    df = frame(rows=40, users=5)
    bad = {2: "null", 9: "", 17: "nil", 25: "undefined", 33: "n/a", 38: "abc"}
    for i, uid in bad.items():
        df.iloc[i, df.columns.get_loc("uid")] = uid
    ddf = dd.from_pandas(df, npartitions=4, sort=False)
    preview = ddf.amplitude.identify(**JOB, dry_run=True, problem_rows=2)
    assert preview.parts == 4
    summary = preview.summary
    assert summary[["rows", "valid", "invalid", "skipped"]].tolist() == [40, 34, 6, 0]
    counts = preview.problem_counts
    assert counts[["column", "severity", "rows"]].values.tolist() == [["uid", "error", 6]]
    # the first two problems of the kind, in input order
    assert preview.problems["row"].tolist() == [df.index[2], df.index[9]]
    assert sb.requests == []
    text = repr(preview)
    assert "4 partitions" in text and "6 errors" in text and "nothing sent" in text


def test_dry_run_counts_match_pandas() -> None:
    df = frame()
    whole = df.amplitude.identify(**JOB, dry_run=True).summary
    parts = dd.from_pandas(df, npartitions=3).amplitude.identify(**JOB, dry_run=True).summary
    assert parts[["rows", "valid", "invalid", "warnings"]].equals(
        whole[["rows", "valid", "invalid", "warnings"]]
    )


# ---------------------------------------------------------------- refusals, at once
def _exploding() -> Any:
    def boom() -> pd.DataFrame:
        raise AssertionError("a partition was computed")

    return dd.from_delayed([dask.delayed(boom)()], meta=frame(0), verify_meta=False)


@pytest.mark.parametrize("dry_run", [True, False])
def test_bad_arguments_fail_before_any_partition_is_read(sb: Sandbox, dry_run: bool) -> None:
    with pytest.raises(ColumnNotFoundError, match="uidd"):
        _exploding().amplitude.identify(user_id="uidd", dry_run=dry_run, **target(sb))


def test_sync_refused_with_a_clear_error(sb: Sandbox) -> None:
    with pytest.raises(ArgumentError, match="sync= is not supported on a Dask DataFrame"):
        _exploding().amplitude.identify(**JOB, sync="ledger.db", **target(sb))


def test_missing_key_fails_before_any_partition_is_read(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)
    with pytest.raises(MissingApiKeyError):
        _exploding().amplitude.identify(**JOB, server_url=sb.url)


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_partitions_in_flight_must_be_positive(sb: Sandbox, value: Any) -> None:
    with pytest.raises(ArgumentError, match="max_partitions_in_flight"):
        _exploding().amplitude.identify(**JOB, max_partitions_in_flight=value, **target(sb))


def test_rejected_key_raises_with_the_whole_result(sb: Sandbox) -> None:
    df = frame(rows=12, users=3)
    ddf = dd.from_pandas(df, npartitions=3, sort=False)
    with pytest.raises(AuthenticationError) as info:
        ddf.amplitude.identify(**JOB, server_url=sb.url, api_key="wrong-key-000000000000")
    result = info.value.result
    assert result.index.equals(ddf.index.compute())
    assert result.index.tolist() == df.index.tolist()
    # rows of a rejected request failed; the others were never sent
    assert set(result["status"]) <= {"failed", "not_sent"} and len(result) == 12
    assert "wrong-key" not in str(info.value)
    assert sb.applied == []


# ---------------------------------------------------------------- the key stays hidden
def test_key_in_no_task_key_or_graph_repr(sb: Sandbox) -> None:
    from amp_pandas import _dask

    ddf = dd.from_pandas(frame(), npartitions=2)
    job = _dask._Job("identify", JOB, _dask.Secret(KEY))
    prepared, names = _dask._prepared(ddf, job)
    tasks = _dask.send_tasks(prepared, job, names)
    for task in tasks:
        graph = dict(task.__dask_graph__())
        assert KEY not in repr(graph) and KEY not in str(list(graph))
        assert KEY not in repr(task) and KEY not in dask.base.tokenize(task)
    assert KEY not in repr(job)
    assert job.kwargs(with_key=True)["api_key"] == KEY  # the partitions do get it


# ---------------------------------------------------------------- dask.distributed
def test_distributed_worker_processes_send_once_in_order(
    sb: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    distributed = pytest.importorskip("distributed")
    df = frame()
    caplog.set_level(logging.DEBUG)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        ddf = spread(df, 4)
        preview = ddf.amplitude.identify(**JOB, dry_run=True, **target(sb))
        assert preview.summary["valid"] == ROWS
        result = ddf.amplitude.identify(**JOB, **target(sb), max_partitions_in_flight=2)
        logs = [client.get_scheduler_logs(), client.get_worker_logs()]
        workers_that_sent = client.run(lambda: 1)
    assert len(workers_that_sent) == 2
    check_sent_once_in_order(sb, df)
    assert result.index.equals(ddf.index.compute())
    assert result.index.tolist() == df.index.tolist()
    assert result["status"].tolist() == ["success"] * ROWS
    assert KEY not in repr(logs) and KEY not in caplog.text
    assert np.all(result["http_status"].to_numpy() == 200)


# ---------------------------------------------------------------- registration
def _python(code: str) -> str:
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize(
    "order", ["import amp_pandas, dask.dataframe as dd", "import dask.dataframe as dd, amp_pandas"]
)
def test_accessor_registered_in_either_import_order(order: str) -> None:
    code = (
        f"{order}; import pandas as pd; "
        "print(type(dd.from_pandas(pd.DataFrame({'a': [1]}), npartitions=1).amplitude).__name__)"
    )
    assert _python(code) == "DaskAmplitudeAccessor"


def test_import_hook_removes_itself_once_both_are_registered() -> None:
    code = (
        "import sys, amp_pandas, dask.dataframe, polars; "
        "print(sum(type(f).__module__ == 'amp_pandas._extensions' for f in sys.meta_path), "
        "type(dask.dataframe.__spec__.loader).__module__.startswith('amp_pandas'))"
    )
    assert _python(code) == "0 False"
