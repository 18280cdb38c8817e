"""One reading rule for files, whichever entry point reads them.

The same file sent through ``amp_pandas.identify_file`` (read and typed a chunk at a time), through
``read_table`` + ``df.amplitude.identify`` (read whole) and through ``amp-pandas identify`` must
reach Amplitude byte for byte the same, with the same dry-run verdict. The oracle for what lands
is written here from the README's reading rules (as in tests/test_cli_reading.py), independently
of ``amp_pandas._files``: ids land as their exact text; a property column lands as numbers or
booleans only when every present cell of the *whole file* is a plain number a double (or an
int64) holds exactly, or ``true``/``false``; else as the texts.
"""

from __future__ import annotations

import csv
import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import amp_pandas
from amp_pandas import cli
from amp_pandas._files import read_table
from amp_pandas.errors import ArgumentError, InputFileError
from amp_pandas.sandbox import Sandbox

KEY = "files-reading-key-93b1c0de"


@pytest.fixture(scope="module")
def _server():
    with Sandbox(api_key=KEY) as sandbox:
        yield sandbox


@pytest.fixture
def sb(_server: Sandbox) -> Sandbox:
    _server.reset()
    return _server


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMPLITUDE_API_KEY", KEY)


def target(sb: Sandbox) -> dict[str, Any]:
    return {"server_url": sb.url, "api_key": KEY, "progress": False}


def write_csv(path: Path, header: list[str], rows: list[list[str]], sep: str = ",") -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=sep)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def wire(sb: Sandbox) -> str:
    """What the sandbox applied, as JSON text: ``1``, ``1.0`` and ``true`` differ here."""
    return json.dumps(sb.applied, sort_keys=True)


def three_ways(sb: Sandbox, path: Path, mapping: dict[str, Any], chunk_rows: int,
               **reading: Any) -> tuple[str, str, pd.Series, pd.Series]:
    """Send ``path`` whole and streamed; the applied identifications and both verdicts."""
    keep_text = [mapping["user_id"]]
    sb.reset()
    frame = read_table(path, keep_text=keep_text, missing=reading.get("missing_values", ()))
    whole_preview = frame.amplitude.identify(**mapping, dry_run=True, **target(sb))
    whole_preview.send()
    whole = wire(sb)
    sb.reset()
    streamed_preview = amp_pandas.identify_file(
        path, **mapping, chunk_rows=chunk_rows, dry_run=True, **reading, **target(sb)
    )
    streamed_preview.send()
    streamed = wire(sb)
    keys = ["rows", "valid", "invalid", "skipped", "warnings"]
    return whole, streamed, whole_preview.summary[keys], streamed_preview.summary[keys]


# --- the oracle ---------------------------------------------------------------------------------

_PLAIN_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_PLAIN_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE]-?[0-9]+)?")


def expected_column(texts: list[str | None]) -> list[object]:
    """What lands for a property column holding these cells (None: an empty cell)."""
    present = [t for t in texts if t is not None]
    if present and all(_PLAIN_INT.fullmatch(t) for t in present):
        convert: Any = int
    elif present and all(
        _PLAIN_DECIMAL.fullmatch(t) and Decimal(t) == Decimal(float(t)) for t in present
    ):
        convert = float
    elif present and all(t.lower() in ("true", "false") for t in present):
        def convert(t: str) -> bool:
            return t.lower() == "true"
    else:
        def convert(t: str) -> str:
            return t
    return [None if t is None else convert(t) for t in texts]


def expected_wire(users: list[str], texts: list[str | None]) -> str:
    applied = []
    for user, value in zip(users, expected_column(texts), strict=True):
        item: dict[str, Any] = {"user_id": user}
        if value is not None:
            item["user_properties"] = {"$set": {"value": value}}
        applied.append(item)
    return json.dumps([a for a in applied if "user_properties" in a], sort_keys=True)


CELL = st.one_of(
    st.from_regex(r"\A[+-]?[0-9]{1,22}\Z"),
    st.from_regex(r"\A-?[0-9]{1,3}\.[0-9]{1,20}\Z"),
    st.sampled_from(["NA", "None", "null", "nan", "true", "False", "1e5", "007", "0", "-1"]),
    st.text(alphabet="abc019 .-", min_size=1, max_size=8).filter(lambda t: t.strip() == t),
    st.none(),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(CELL, min_size=1, max_size=9), chunk_rows=st.integers(1, 4))
@example(texts=["1e5", "0", "-0"], chunk_rows=1)  # a chunk of "-0" alone once read the integer 0
def test_the_same_csv_lands_the_same_through_every_entry_point(
    sb: Sandbox, tmp_path: Path, texts: list[str | None], chunk_rows: int
) -> None:
    """The class: whatever a column holds, wherever the chunk boundaries fall, the streamed
    path sends what the whole-file path sends, byte for byte, and both are the oracle's."""
    users = [f"user-h-{i:03d}" for i in range(len(texts))]
    path = write_csv(tmp_path / "h.csv", ["uid", "value"],
                     [[u, "" if t is None else t] for u, t in zip(users, texts, strict=True)])
    mapping = {"user_id": "uid", "set": ["value"]}
    whole, streamed, whole_verdict, streamed_verdict = three_ways(sb, path, mapping, chunk_rows)
    assert streamed == whole
    assert streamed == expected_wire(users, texts), texts
    assert streamed_verdict.tolist() == whole_verdict.tolist()
    sb.reset()
    code, stdout, stderr = run_cli("identify", str(path), "--user-id", "uid", "--set", "value",
                                   "--chunk-rows", str(chunk_rows), "--server-url", sb.url,
                                   "--no-progress")
    assert code == (1 if None in texts else 0), stdout + stderr  # a skipped row: status 1
    assert wire(sb) == whole


def test_a_column_typed_by_its_last_chunk(sb: Sandbox, tmp_path: Path) -> None:
    """Numbers in the first chunks, one text in the last: the whole column is text."""
    texts = ["1", "2", "3", "4", "5", "+6"]
    users = [f"user-l-{i}" for i in range(6)]
    rows = [list(r) for r in zip(users, texts, strict=True)]
    path = write_csv(tmp_path / "l.csv", ["uid", "value"], rows)
    whole, streamed, _, _ = three_ways(sb, path, {"user_id": "uid", "set": ["value"]}, 2)
    assert streamed == whole == expected_wire(users, texts)
    assert '"value": "1"' in streamed


def test_missing_texts_mean_the_same_in_both_paths(sb: Sandbox, tmp_path: Path) -> None:
    rows = [["user-m-1", "NA"], ["user-m-2", ""], ["user-m-3", "NULL"], ["user-m-4", "7"]]
    path = write_csv(tmp_path / "m.csv", ["uid", "value"], rows)
    mapping = {"user_id": "uid", "set": ["value"]}
    whole, streamed, wv, sv = three_ways(sb, path, mapping, 2)
    assert streamed == whole == expected_wire([r[0] for r in rows], ["NA", None, "NULL", "7"])
    whole, streamed, wv, sv = three_ways(sb, path, mapping, 2, missing_values=["NULL", "NA"])
    assert streamed == whole == expected_wire([r[0] for r in rows], [None, None, None, "7"])
    assert sv.tolist() == wv.tolist() == [4, 1, 0, 3, 0]


def test_tsv_and_group_columns_stay_text(sb: Sandbox, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "g.tsv", ["uid", "org", "n"],
                     [["0012345", "007", "1"], ["0099999", "12", "2"]], sep="\t")
    mapping = {"user_id": "uid", "set": ["n"], "groups": {"org": "org"}}
    sb.reset()
    amp_pandas.identify_file(path, **mapping, chunk_rows=1, **target(sb))
    assert sb.applied == [
        {"user_id": "0012345", "user_properties": {"$set": {"n": 1}}, "groups": {"org": "007"}},
        {"user_id": "0099999", "user_properties": {"$set": {"n": 2}}, "groups": {"org": "12"}},
    ]


def test_explicit_types_win_and_a_bad_cell_names_column_and_row(
    sb: Sandbox, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "t.csv", ["uid", "n", "when"],
                     [["user-t-1", "007", "2024-05-01 12:00:00"], ["user-t-2", "8", ""]])
    amp_pandas.identify_file(path, user_id="uid", set=["n", "when"],
                             column_types={"n": "int64", "when": "timestamp[s]"}, **target(sb))
    assert sb.applied == [
        {"user_id": "user-t-1",
         "user_properties": {"$set": {"n": 7, "when": "2024-05-01T12:00:00"}}},
        {"user_id": "user-t-2", "user_properties": {"$set": {"n": 8}}},
    ]  # fmt: skip
    bad = write_csv(tmp_path / "b.csv", ["uid", "n"],
                    [["user-b-1", "1"], ["user-b-2", "2"], ["user-b-3", "three"]])
    sb.reset()
    with pytest.raises(InputFileError) as info:
        amp_pandas.identify_file(bad, user_id="uid", add=["n"], chunk_rows=2,
                                 column_types={"n": "int64"}, **target(sb))
    assert str(info.value).startswith("column 'n', row 2: 'three' does not read as int64")
    assert sb.requests == []  # found while checking, before any request


# --- JSON ---------------------------------------------------------------------------------------

BIG = 12345678901234567890123


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_json_integers_of_any_size_stay_exact_in_both_paths(
    sb: Sandbox, tmp_path: Path, suffix: str
) -> None:
    records = [{"uid": "user-j-1", "n": BIG, "small": 3},
               {"uid": "user-j-2", "n": -BIG, "small": None},
               {"uid": "user-j-3", "n": 2**63, "small": 4, "late": "x"}]  # fmt: skip
    path = tmp_path / f"u{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(records))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    mapping = {"user_id": "uid", "set": ["n", "small", "late"]}
    whole, streamed, wv, sv = three_ways(sb, path, mapping, chunk_rows=2)
    assert streamed == whole
    assert json.loads(streamed) == [
        {"user_id": "user-j-1", "user_properties": {"$set": {"n": BIG, "small": 3}}},
        {"user_id": "user-j-2", "user_properties": {"$set": {"n": -BIG}}},
        {"user_id": "user-j-3", "user_properties": {"$set": {"n": 2**63, "small": 4,
                                                             "late": "x"}}},
    ]  # fmt: skip
    assert f'"n": {BIG}' in streamed  # digit for digit, never a rounded float
    assert sv.tolist() == wv.tolist()


def test_json_refusals_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_text('{"uid": "user-1"}\n[1]\n')
    with pytest.raises(InputFileError, match="record 2 is a list, not an object"):
        amp_pandas.identify_file(path, user_id="uid", dry_run=True)
    with pytest.raises(ArgumentError, match="missing_values= applies to CSV"):
        amp_pandas.identify_file(path, user_id="uid", missing_values=["x"], dry_run=True)


# --- the command line on a file larger than its chunk ----------------------------------------


def test_cli_streams_a_file_larger_than_its_chunk_in_user_order(
    sb: Sandbox, tmp_path: Path
) -> None:
    rows = [[f"user-c-{i % 6:02d}", f"r{i:02d}"] for i in range(50)]  # users span chunks
    path = write_csv(tmp_path / "c.csv", ["uid", "marker"], rows)
    out = tmp_path / "result.csv"
    code, stdout, stderr = run_cli("identify", str(path), "--user-id", "uid",
                                   "--append", "seq=marker", "--chunk-rows", "7",
                                   "--server-url", sb.url, "--no-progress", "--out", str(out))
    assert code == 0, stdout + stderr
    applied = [(i["user_id"], i["user_properties"]["$append"]["seq"]) for i in sb.applied]
    assert sorted(applied) == sorted((u, m) for u, m in rows)  # every row once
    expected: dict[str, list[str]] = {}
    for user, marker in rows:
        expected.setdefault(user, []).append(marker)
    assert {u: list(v) for u, v in sb.profiles()["seq"].items()} == expected  # file order
    assert max(r.count for r in sb.requests) <= 7  # a request never spans chunks
    result = pd.read_csv(out, index_col=0)
    assert result.index.tolist() == list(range(50))
    assert result["status"].tolist() == ["success"] * 50
    assert "success 50" in stdout


def test_cli_dry_run_verdict_covers_every_row(sb: Sandbox, tmp_path: Path) -> None:
    rows = [[f"user-v-{i:02d}", "pro"] for i in range(50)]
    for i in (3, 48, 49):
        rows[i][0] = "null"  # Amplitude rejects this id; the last chunk holds two of them
    path = write_csv(tmp_path / "v.csv", ["uid", "plan"], rows)
    code, stdout, _ = run_cli("identify", str(path), "--user-id", "uid", "--set", "plan",
                              "--chunk-rows", "7", "--dry-run")
    assert code == 1
    assert "over 8 chunks" in stdout
    assert "rows 50  valid 47  invalid 3" in stdout
    assert "uid: 3 errors" in stdout
    assert "row 48:" in stdout and "row 49:" in stdout
    assert sb.requests == []


def test_cli_rejects_a_bad_chunk_size(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "u.csv", ["uid"], [["user-1"]])
    code, _, stderr = run_cli("identify", str(path), "--user-id", "uid", "--chunk-rows", "0",
                              "--dry-run")
    assert code == 2
    assert stderr.startswith("amp-pandas: --chunk-rows must be a positive integer")


def test_sigterm_between_or_inside_chunks_writes_every_row_and_exits_143(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    rows = [[f"user-s-{i % 150:04d}", "1"] for i in range(600)]  # users span chunks
    path = write_csv(tmp_path / "s.csv", ["uid", "n"], rows)
    out = tmp_path / "result.csv"
    env = dict(os.environ, AMPLITUDE_API_KEY=KEY, PYTHONPATH=str(Path(cli.__file__).parents[1]))
    with Sandbox(api_key=KEY, latency=0.05) as sandbox:
        proc = subprocess.Popen(
            [sys.executable, "-m", "amp_pandas", "identify", str(path), "--user-id", "uid",
             "--add", "n", "--server-url", sandbox.url, "--no-progress", "--out", str(out),
             "--batch-size", "10", "--max-workers", "1", "--chunk-rows", "100"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while len(sandbox.requests) < 14 and time.monotonic() < deadline:  # in chunk 2
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 143, stderr
        assert "terminated" in stderr and "not_sent" in stderr
        result = pd.read_csv(out, index_col=0)
        assert result.index.tolist() == list(range(600))
        statuses = set(result["status"])
        assert statuses == {"success", "not_sent"}, statuses
        done = result.index[result["status"] == "success"]
        assert 100 < len(done) < 600  # stopped after the first chunk, before the last
        # every row that succeeded was applied once, and no not_sent row was applied
        applied: dict[str, int] = {}
        for item in sandbox.applied:
            applied[item["user_id"]] = applied.get(item["user_id"], 0) + 1
        expected: dict[str, int] = {}
        for i in done:
            expected[rows[i][0]] = expected.get(rows[i][0], 0) + 1
        assert applied == expected
        assert set(done) >= set(range(100))  # the first chunk was sent whole
        assert not set(done) & set(range(500, 600))  # the last chunk was never started


_ARROW_PEAK = """
import sys
import pyarrow as pa
import amp_pandas
preview = amp_pandas.identify_file(sys.argv[1], user_id="uid", set=["plan", "note"],
                                   chunk_rows=2000, dry_run=True)
assert preview.summary["valid"] == int(sys.argv[2]), preview.summary
print(pa.default_memory_pool().max_memory())
"""


def test_arrow_memory_follows_the_chunk_not_the_parquet_file(tmp_path: Path) -> None:
    """The peak of Arrow's memory pool while checking a Parquet file: a file ten times longer,
    read in the same chunks, peaks about as high (reading ahead grows with the file: 3.5 MB at
    20k rows and 27 MB at 200k rows when Arrow pre-buffered and read ahead on its threads)."""
    import os
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    def peak(rows: int) -> int:
        path = tmp_path / f"p{rows}.parquet"
        table = pa.table({"uid": [f"user-{i:08d}" for i in range(rows)],
                          "plan": ["pro"] * rows,
                          "note": [f"{i:0100d}" for i in range(rows)]})  # fmt: skip
        pq.write_table(table, path, row_group_size=2000)
        env = dict(os.environ, PYTHONPATH=str(Path(cli.__file__).parents[1]))
        done = subprocess.run([sys.executable, "-c", _ARROW_PEAK, str(path), str(rows)],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stdout.split()[-1])

    small, large = peak(20_000), peak(200_000)
    assert large < 2 * small, (small, large)


def test_a_partitioned_parquet_folder_is_read_with_its_partition_column(
    sb: Sandbox, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.dataset as ds

    records = [{"uid": f"user-p-{i % 5}", "marker": f"r{i:02d}", "region": "eu" if i % 2 else "us"}
               for i in range(30)]  # fmt: skip
    ds.write_dataset(pa.Table.from_pylist(records), tmp_path / "parts", format="parquet",
                     partitioning=["region"], partitioning_flavor="hive")  # fmt: skip
    dataset = ds.dataset(tmp_path / "parts", format="parquet", partitioning="hive")
    result = amp_pandas.identify_file(dataset, user_id="uid", append={"seq": "marker"},
                                      set=["region"], chunk_rows=4, **target(sb))  # fmt: skip
    assert result["status"].tolist() == ["success"] * 30
    order = dataset.to_table().to_pylist()  # the dataset's own row order
    expected: dict[str, list[str]] = {}
    for r in order:
        expected.setdefault(r["uid"], []).append(r["marker"])
    assert {u: list(v) for u, v in sb.profiles()["seq"].items()} == expected
    assert {u: sb.profile(u)["region"] for u in expected} == {
        r["uid"]: r["region"] for r in order  # each user's last row's region
    }


def test_a_short_row_has_its_last_cells_missing_in_every_path(sb: Sandbox, tmp_path: Path) -> None:
    """A row with fewer fields than the header: the values it holds stay in their columns and
    the cells it lacks are missing (as csv.DictReader reads it), whole and in chunks alike."""
    path = tmp_path / "short.csv"
    path.write_text("uid,value,other\nuser-s-1,7,x\nuser-s-2\nuser-s-3,9\n")
    expected = [dict(zip(["uid", "value", "other"], r, strict=False))
                for r in csv.reader(io.StringIO(path.read_text()))][1:]  # fmt: skip
    assert [r.get("value") for r in expected] == ["7", None, "9"]
    mapping = {"user_id": "uid", "set": ["value"]}
    whole, streamed, wv, sv = three_ways(sb, path, mapping, 1)
    assert streamed == whole == expected_wire(["user-s-1", "user-s-2", "user-s-3"],
                                              ["7", None, "9"])  # fmt: skip


@pytest.mark.parametrize("chunk_rows", [1, 100])
def test_a_row_with_more_fields_than_the_header_is_refused_naming_its_line(
    sb: Sandbox, tmp_path: Path, chunk_rows: int
) -> None:
    path = tmp_path / "long.csv"
    path.write_text("uid,value\nuser-l-1,1\nuser-l-2,2\nuser-l-3,3,Paris, France\n")
    sb.reset()
    with pytest.raises(InputFileError, match=r"line 4"):
        amp_pandas.identify_file(path, user_id="uid", set=["value"], chunk_rows=chunk_rows,
                                 **target(sb))  # fmt: skip
    with pytest.raises(InputFileError, match=r"line 4"):
        read_table(path)
    code, out, err = run_cli("identify", str(path), "--user-id", "uid", "--set", "value",
                             "--server-url", sb.url, "--no-progress")  # fmt: skip
    assert code != 0 and "line 4" in err and "Traceback" not in err
    assert sb.applied == []  # nothing sent by any path
