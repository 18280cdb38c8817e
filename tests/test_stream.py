"""``amp_pandas.identify_file``: files checked then sent a chunk at a time, against the sandbox.

Every row appends its own marker to its user's ``seq`` list, so the profiles say in which order
each user's rows were applied; the expected values are computed here from the rows written.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pa = pytest.importorskip("pyarrow")
ds = pytest.importorskip("pyarrow.dataset")
pq = pytest.importorskip("pyarrow.parquet")

import amp_pandas  # noqa: E402
from amp_pandas.errors import (  # noqa: E402
    ArgumentError,
    AuthenticationError,
    ColumnNotFoundError,
    InputFileError,
    MissingApiKeyError,
    RowsNotSucceededWarning,
)
from amp_pandas.sandbox import Sandbox  # noqa: E402

KEY = "stream-key-0123456789abcdef"
JOB: dict[str, Any] = {"user_id": "uid", "append": {"seq": "marker"}}


@pytest.fixture(scope="module")
def _server() -> Iterator[Sandbox]:
    with Sandbox(api_key=KEY) as sandbox:
        yield sandbox


@pytest.fixture
def sb(_server: Sandbox) -> Sandbox:
    _server.reset()
    return _server


def target(sb: Sandbox, **options: Any) -> dict[str, Any]:
    return {"server_url": sb.url, "api_key": KEY, "progress": False, **options}


def rows(n: int, users: int) -> list[dict[str, str]]:
    return [{"uid": f"user-{i % users:03d}", "marker": f"r{i}"} for i in range(n)]


def write(path: Path, records: list[dict[str, Any]], fmt: str, **parquet: Any) -> Path:
    if fmt == "csv":
        cols = list(records[0])
        lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in records]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "json":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        pq.write_table(pa.Table.from_pylist(records), path, **parquet)
    return path


def check_sent_once_in_order(sb: Sandbox, records: list[dict[str, Any]]) -> None:
    applied = Counter(i["user_properties"]["$append"]["seq"] for i in sb.applied)
    assert applied == Counter(r["marker"] for r in records)
    expected: dict[str, list[str]] = {}
    for r in records:
        expected.setdefault(r["uid"], []).append(r["marker"])
    assert {k: list(v) for k, v in sb.profiles()["seq"].items()} == expected


# ---------------------------------------------------------------- sending
@pytest.mark.parametrize(
    "fmt,suffix", [("csv", ".csv"), ("json", ".jsonl"), ("parquet", ".parquet")]
)
def test_file_larger_than_a_chunk_sent_once_in_user_order(
    sb: Sandbox, tmp_path: Path, fmt: str, suffix: str
) -> None:
    records = rows(50, users=7)  # every user's rows start in several chunks
    path = write(tmp_path / f"users{suffix}", records, fmt, row_group_size=13)
    preview = amp_pandas.identify_file(path, **JOB, chunk_rows=8, dry_run=True, **target(sb))
    assert preview.parts == 7  # ceil(50 / 8) chunks read in the checking pass
    assert preview.summary[["rows", "valid"]].tolist() == [50, 50]
    assert sb.requests == []
    result = preview.send(batch_size=2000)
    check_sent_once_in_order(sb, records)
    # a request never holds more than one chunk: memory follows the chunk, not the file
    assert max(r.count for r in sb.requests) <= 8
    assert len(sb.requests) >= 7
    assert result.index.tolist() == list(range(50)) and result.index.name == "row"
    assert result["status"].tolist() == ["success"] * 50


def test_send_without_dry_run_checks_then_sends(sb: Sandbox, tmp_path: Path) -> None:
    records = rows(30, users=4)
    path = write(tmp_path / "u.parquet", records, "parquet")
    result = amp_pandas.identify_file(path, **JOB, chunk_rows=7, **target(sb))
    check_sent_once_in_order(sb, records)
    assert result["status"].tolist() == ["success"] * 30


def test_a_dataset_is_read_in_chunks(sb: Sandbox, tmp_path: Path) -> None:
    records = rows(40, users=3)
    folder = tmp_path / "parts"
    folder.mkdir()
    write(folder / "a.parquet", records[:25], "parquet")
    write(folder / "b.parquet", records[25:], "parquet")
    dataset = ds.dataset(folder, format="parquet")
    preview = amp_pandas.identify_file(dataset, **JOB, chunk_rows=10, dry_run=True, **target(sb))
    assert preview.parts == 4
    preview.send()
    check_sent_once_in_order(sb, records)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_out_receives_every_row_and_the_call_returns_counts(
    sb: Sandbox, tmp_path: Path, suffix: str
) -> None:
    records = rows(20, users=5)
    records[6]["uid"] = "null"
    path = write(tmp_path / "u.csv", records, "csv")
    out = tmp_path / f"result{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RowsNotSucceededWarning)
        counts = amp_pandas.identify_file(path, **JOB, chunk_rows=6, out=out, **target(sb))
    assert counts.to_dict() == {
        "success": 19, "invalid": 1, "skipped": 0, "failed": 0,
        "throttled": 0, "unknown": 0, "not_sent": 0, "unchanged": 0,
    }
    written = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert written["row"].tolist() == list(range(20))
    assert written["status"].tolist() == ["invalid" if i == 6 else "success" for i in range(20)]
    check_sent_once_in_order(sb, records[:6] + records[7:])


# ---------------------------------------------------------------- reading exactly
def test_csv_ids_read_as_written_and_only_empty_cells_missing(sb: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("uid,plan,n\n0012345,NA,1\n00099999,,2\n1e5xx,null,3\n")
    result = amp_pandas.identify_file(
        path, user_id="uid", set=["plan", "n"], column_types={"n": "int64"}, **target(sb)
    )
    assert result["status"].tolist() == ["success"] * 3
    assert sb.applied == [
        {"user_id": "0012345", "user_properties": {"$set": {"plan": "NA", "n": 1}}},
        {"user_id": "00099999", "user_properties": {"$set": {"n": 2}}},
        {"user_id": "1e5xx", "user_properties": {"$set": {"plan": "null", "n": 3}}},
    ]


def test_missing_values_name_more_missing_markers(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("uid,plan\nuser-1,NA\nuser-2,pro\n")
    preview = amp_pandas.identify_file(
        path, user_id="uid", set=["plan"], missing_values=["NA"], dry_run=True
    )
    assert preview.summary[["valid", "skipped"]].tolist() == [1, 1]


def test_json_lines_keep_types(sb: Sandbox, tmp_path: Path) -> None:
    path = write(
        tmp_path / "u.jsonl",
        [{"uid": "0012345", "n": 2, "tags": ["a", "b"]}, {"uid": "user-2", "n": None, "tags": []}],
        "json",
    )
    amp_pandas.identify_file(path, user_id="uid", add=["n"], set=["tags"], **target(sb))
    assert sb.applied == [
        {"user_id": "0012345", "user_properties": {"$add": {"n": 2}, "$set": {"tags": ["a", "b"]}}},
        {"user_id": "user-2", "user_properties": {"$set": {"tags": []}}},
    ]


# ---------------------------------------------------------------- the dry run's verdict
def test_problems_cover_every_chunk(tmp_path: Path) -> None:
    records = rows(40, users=4)
    for i in (3, 17, 29, 38):
        records[i]["uid"] = "null"
    path = write(tmp_path / "u.csv", records, "csv")
    preview = amp_pandas.identify_file(path, **JOB, chunk_rows=10, dry_run=True, problem_rows=3)
    assert preview.summary[["rows", "valid", "invalid"]].tolist() == [40, 36, 4]
    assert preview.problems["row"].tolist() == [3, 17, 29]
    assert preview.problem_counts.values.tolist() == [["uid", "error", 4]]


def test_unreadable_file_fails_in_the_checking_pass_before_any_send(
    sb: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "u.csv"
    good = "".join(f"user-{i:03d},r{i}\n" for i in range(40))
    path.write_text("uid,marker\n" + good + "user-999,r40,extra-field\n")
    with pytest.raises(InputFileError):
        amp_pandas.identify_file(path, **JOB, chunk_rows=10, **target(sb))
    assert sb.requests == []


# ---------------------------------------------------------------- refusals
def test_unknown_column_named_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path / "u.csv", rows(3, 1), "csv")
    with pytest.raises(ColumnNotFoundError, match="uidd"):
        amp_pandas.identify_file(path, user_id="uidd", dry_run=True)


@pytest.mark.parametrize(
    "name,kwargs,error",
    [
        ("u.xlsx", {}, InputFileError),
        ("missing.csv", {}, InputFileError),
        ("u.csv", {"chunk_rows": 0}, ArgumentError),
        ("u.csv", {"column_types": {"n": "no-such-type"}}, ArgumentError),
        ("u.csv", {"column_types": {"nope": "int64"}}, ArgumentError),
        ("u.csv", {"sync": "ledger.db"}, ArgumentError),
    ],
)
def test_bad_input_is_refused(
    tmp_path: Path, name: str, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    write(tmp_path / "u.csv", rows(3, 1), "csv")
    (tmp_path / "u.xlsx").write_text("uid\nuser-1\n")
    with pytest.raises(error):
        amp_pandas.identify_file(tmp_path / name, **JOB, dry_run=True, **kwargs)


def test_missing_key_fails_before_reading(
    tmp_path: Path, sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)
    path = write(tmp_path / "u.csv", rows(3, 1), "csv")
    with pytest.raises(MissingApiKeyError):
        amp_pandas.identify_file(path, **JOB, server_url=sb.url)


def test_rejected_key_stops_and_the_result_covers_the_file(sb: Sandbox, tmp_path: Path) -> None:
    path = write(tmp_path / "u.csv", rows(30, 3), "csv")
    with pytest.raises(AuthenticationError) as info:
        amp_pandas.identify_file(
            path, **JOB, chunk_rows=10, server_url=sb.url, api_key="wrong-0123456789abc",
            progress=False,
        )
    result = info.value.result
    assert result.index.tolist() == list(range(30))
    assert set(result["status"].iloc[10:]) == {"not_sent"}  # later chunks never sent
    assert sb.applied == []
    assert len(sb.requests) == 1  # one rejected request, then the send stopped


def test_peak_memory_follows_the_chunk_not_the_file(tmp_path: Path) -> None:
    """Python-heap peak of checking and sending (results to ``out``): a file four times longer
    read in the same chunks peaks about as high; reading it whole would peak ~4x higher. (The
    Parquet result file's footer grows by one row group per chunk, a few bytes each; one request
    at a time keeps the sandbox's own work, in this process too, from adding to the peak.)"""
    import tracemalloc

    def peak(n: int) -> int:
        records = [{"uid": f"user-{i % 10:03d}", "plan": f"plan-{i:07d}"} for i in range(n)]
        path = write(tmp_path / f"u{n}.csv", records, "csv")
        with Sandbox(api_key=KEY, record_identifications=False) as sandbox:
            tracemalloc.start()
            try:
                counts = amp_pandas.identify_file(
                    path, user_id="uid", set=["plan"], chunk_rows=500, max_workers=1,
                    out=tmp_path / f"r{n}.parquet", **target(sandbox),
                )
                highest = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert counts["success"] == n
        return highest

    # both files larger than the CSV reader's own buffer (~256 kB), which fills once and then
    # stays: that is the reader's size, not the file's
    small, large = peak(24_000), peak(96_000)
    assert large < 1.5 * small
