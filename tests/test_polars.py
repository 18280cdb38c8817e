"""``pl_df.amplitude``: the pandas accessor through Arrow, results as polars, to the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pl = pytest.importorskip("polars")
pytest.importorskip("pyarrow")

import amp_pandas  # noqa: E402,F401  (registers the namespace)
from amp_pandas import _arrow  # noqa: E402
from amp_pandas.errors import AuthenticationError, ColumnNotFoundError  # noqa: E402
from amp_pandas.sandbox import Sandbox  # noqa: E402

KEY = "polars-key-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def _server() -> Iterator[Sandbox]:
    with Sandbox(api_key=KEY) as sandbox:
        yield sandbox


@pytest.fixture
def sb(_server: Sandbox) -> Sandbox:
    _server.reset()
    return _server


def target(sb: Sandbox) -> dict[str, Any]:
    return {"server_url": sb.url, "api_key": KEY, "progress": False}


def test_identify_returns_a_polars_result_in_row_order(sb: Sandbox) -> None:
    df = pl.DataFrame(
        {
            "uid": ["0012345", "user-2", "0012345", "user-2", "null"],
            "logins": [1, None, 3, 4, 5],
            "tags": [["a", "b"], [], None, ["c"], ["d"]],
            "marker": [f"r{i}" for i in range(5)],
        }
    )
    with pytest.warns(Warning, match="1 of 5 rows did not succeed"):
        result = df.amplitude.identify(
            user_id="uid", add=["logins"], set=["tags"], append={"seq": "marker"}, **target(sb)
        )
    assert isinstance(result, pl.DataFrame)
    assert result.columns == ["status", "http_status", "error", "attempts"]
    assert result["status"].to_list() == ["success"] * 4 + ["invalid"]
    assert result["http_status"].to_list() == [200, 200, 200, 200, None]
    assert sb.applied == [
        {"user_id": "0012345",
         "user_properties": {"$add": {"logins": 1}, "$set": {"tags": ["a", "b"]},
                             "$append": {"seq": "r0"}}},
        {"user_id": "0012345",
         "user_properties": {"$add": {"logins": 3}, "$append": {"seq": "r2"}}},
        {"user_id": "user-2",
         "user_properties": {"$set": {"tags": []}, "$append": {"seq": "r1"}}},
        {"user_id": "user-2",
         "user_properties": {"$add": {"logins": 4}, "$set": {"tags": ["c"]},
                             "$append": {"seq": "r3"}}},
    ]  # the sender groups each user's rows (in row order) in the request


def test_each_row_applied_once_in_user_order(sb: Sandbox) -> None:
    df = pl.DataFrame(
        {"uid": [f"user-{i % 3}" for i in range(12)], "marker": [f"r{i}" for i in range(12)]}
    )
    result = df.amplitude.identify(
        user_id="uid", append={"seq": "marker"}, batch_size=2, **target(sb)
    )
    assert result["status"].to_list() == ["success"] * 12
    seqs = {k: list(v) for k, v in sb.profiles()["seq"].items()}
    assert seqs == {f"user-{u}": [f"r{i}" for i in range(u, 12, 3)] for u in range(3)}
    assert sorted(i["user_properties"]["$append"]["seq"] for i in sb.applied) == sorted(
        f"r{i}" for i in range(12)
    )


def test_dry_run_then_send(sb: Sandbox) -> None:
    df = pl.DataFrame({"uid": ["user-1", "nil", "user-3"], "plan": ["pro", "free", None]})
    preview = df.amplitude.identify(user_id="uid", set=["plan"], dry_run=True, **target(sb))
    assert preview.summary[["rows", "valid", "invalid", "skipped"]].tolist() == [3, 1, 1, 1]
    assert preview.problems["row"].tolist() == [1]
    assert "identify" in repr(preview).lower()
    assert sb.requests == []
    with pytest.warns(Warning):
        result = preview.send()
    assert isinstance(result, pl.DataFrame) and isinstance(preview.result, pl.DataFrame)
    assert result["status"].to_list() == ["success", "invalid", "skipped"]
    assert sb.profiles()["plan"].to_dict() == {"user-1": "pro"}


def test_bad_column_is_the_pandas_error() -> None:
    with pytest.raises(ColumnNotFoundError, match="uidd"):
        pl.DataFrame({"uid": ["user-1"]}).amplitude.identify(user_id="uidd", dry_run=True)


def test_rejected_key_carries_a_polars_result(sb: Sandbox) -> None:
    df = pl.DataFrame({"uid": ["user-1", "user-2"]})
    with pytest.raises(AuthenticationError) as info:
        df.amplitude.identify(user_id="uid", set={"x": "uid"}, server_url=sb.url,
                              api_key="wrong-0123456789abc", progress=False)
    assert isinstance(info.value.result, pl.DataFrame)
    assert info.value.result["status"].to_list() == ["failed", "failed"]


@pytest.mark.parametrize("compat", ["oldest", "newest"])
def test_scalar_columns_stay_arrow_backed(compat: str) -> None:
    df = pl.DataFrame({"uid": ["user-1", None], "n": [1, None], "tags": [["a"], None]})
    level = getattr(pl.CompatLevel, compat)()
    frame = _arrow.to_pandas(df.to_arrow(compat_level=level))
    assert isinstance(frame["uid"].dtype, pd.ArrowDtype)
    assert str(frame["n"].dtype) == "int64[pyarrow]"  # not float64: 1 stays 1
    assert frame["tags"].dtype == object
    preview = frame.amplitude.identify(user_id="uid", set=["n", "tags"], dry_run=True)
    assert preview.payloads == [
        {"user_id": "user-1", "user_properties": {"$set": {"n": 1, "tags": ["a"]}}}
    ]


# ---------------------------------------------------------------- registration
def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_amp_pandas_imports_neither_polars_nor_dask() -> None:
    code = (
        "import sys, amp_pandas; "
        "print(sorted(m for m in ('polars', 'dask') if m in sys.modules))"
    )
    assert _python(code) == "[]"


@pytest.mark.parametrize(
    "order", ["import amp_pandas, polars as pl", "import polars as pl, amp_pandas"]
)
def test_namespace_registered_in_either_import_order(order: str) -> None:
    code = f"{order}; print(type(pl.DataFrame({{'a': [1]}}).amplitude).__name__)"
    assert _python(code) == "PolarsAmplitudeNamespace"


def test_a_sync_run_brings_its_removed_users_as_polars(sb: Sandbox, tmp_path: Path) -> None:
    """``result.removed`` of a sync run through polars holds what the pandas run reports for
    the same weeks (each with its own ledger)."""
    from amp_pandas import literal

    week1 = {"uid": ["user-1", "user-2", "user-3"], "plan": ["a", "b", "c"]}
    week2 = {"uid": ["user-1", "user-2"], "plan": ["a", "b"]}
    kw = {"user_id": "uid", "set": ["plan"], "post_insert": {"tags": literal("q2")},
          "sync": "weekly", "removed": "revert", **target(sb)}  # fmt: skip
    pl.DataFrame(week1).amplitude.identify(**kw, ledger=tmp_path / "pl.sqlite3")
    got = pl.DataFrame(week2).amplitude.identify(**kw, ledger=tmp_path / "pl.sqlite3")
    pd.DataFrame(week1).amplitude.identify(**kw, ledger=tmp_path / "pd.sqlite3")
    want = pd.DataFrame(week2).amplitude.identify(**kw, ledger=tmp_path / "pd.sqlite3")
    assert got["status"].to_list() == ["unchanged", "unchanged"]
    assert isinstance(got.removed, pl.DataFrame)
    assert got.removed.columns == want.removed.columns.tolist()
    assert got.removed["user_id"].to_list() == ["user-3"]
    assert got.removed["status"].to_list() == ["success"]
    assert got.removed["identification"].to_list() == want.removed["identification"].tolist() == [
        {"user_id": "user-3", "user_properties": {"$unset": {"plan": "-"},
                                                  "$remove": {"tags": ["q2"]}}}]  # fmt: skip
    assert got.removed["not_undone"].to_list() == [[]]
