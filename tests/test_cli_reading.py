"""The command line reads files exactly as written, and speaks its own language.

The oracle for what lands is written here from the README's reading rules, independently of
``amp_pandas._files``: an id lands as its exact text; a property column lands as numbers only when
every cell is a plain number that a double (or an int64) holds exactly, else as the texts.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from _support.cli import run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amp_pandas import cli
from amp_pandas.sandbox import Sandbox

KEY = "cli-reading-key-5d1e0a7b"


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(api_key=KEY) as sb:
        yield sb


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMPLITUDE_API_KEY", KEY)


# --- the oracle -----------------------------------------------------------------------------

_PLAIN_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_PLAIN_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE]-?[0-9]+)?")


def expected_column(texts: list[str]) -> list[object]:
    """What Amplitude should receive for a property column holding these (present) texts."""
    if texts and all(_PLAIN_INT.fullmatch(t) for t in texts):
        return [int(t) for t in texts]
    if texts and all(
        _PLAIN_DECIMAL.fullmatch(t) and Decimal(t) == Decimal(float(t)) for t in texts
    ):
        return [float(t) for t in texts]
    if texts and all(t.lower() in ("true", "false") for t in texts):
        return [t.lower() == "true" for t in texts]
    return list(texts)


# --- hand-written cases: each is a way pandas' own inference changes a value --------------------

CASES = {
    "leading zeros": (["0012345", "0099999"], ["0012345", "0099999"]),
    "19-digit ids": (["1234567890123456789", "9223372036854775807"],
                     ["1234567890123456789", "9223372036854775807"]),
    "plus sign": (["+15", "+20"], ["+15", "+20"]),
    "NA country": (["NA", "US"], ["NA", "US"]),
    "None and null texts": (["None", "null"], ["None", "null"]),
    "plain ints": (["12", "-3"], [12, -3]),
    "decimals": (["1.50", "2.25"], [1.5, 2.25]),
    "too many digits for a double": (["0.1000000000000000055511151231257827", "1.5"],
                                     ["0.1000000000000000055511151231257827", "1.5"]),
    "booleans": (["true", "FALSE"], [True, False]),
    "thousands separators": (["1,000", "2,000"], ["1,000", "2,000"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_property_values_land_as_the_file_holds_them(case, sandbox, tmp_path) -> None:
    texts, expected = CASES[case]
    users = [f"user-{case[:6]}-{i}" for i in range(len(texts))]
    path = tmp_path / "u.csv"
    write_csv(path, ["uid", "value"], [[u, t] for u, t in zip(users, texts, strict=True)])
    code, stdout, stderr = run("identify", str(path), "--user-id", "uid", "--set", "value",
                               "--server-url", sandbox.url, "--no-progress")
    assert code == 0, stdout + stderr
    for user, want in zip(users, expected, strict=True):
        got = sandbox.profile(user)["value"]
        assert got == want and type(got) is type(want), (user, got, want)


ID_CASES = {
    "leading zeros": ["0012345", "0099999"],
    "19-digit ids": ["1234567890123456789", "9223372036854775807"],
    "plus sign": ["+15550001", "+15550002"],
    "exponent-like": ["1e100000", "12E45678"],
}


@pytest.mark.parametrize("case", sorted(ID_CASES))
def test_ids_land_as_written(case, sandbox, tmp_path) -> None:
    ids = ID_CASES[case]
    path = tmp_path / "u.csv"
    write_csv(path, ["uid", "plan"], [[i, "pro"] for i in ids])
    code, stdout, stderr = run("identify", str(path), "--user-id", "uid", "--set", "plan",
                               "--server-url", sandbox.url, "--no-progress")
    assert code == 0, stdout + stderr
    for i in ids:
        assert sandbox.profile(i)["plan"] == "pro"


@settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.one_of(
            st.from_regex(r"\A[+-]?[0-9]{1,22}\Z"),
            st.from_regex(r"\A-?[0-9]{1,3}\.[0-9]{1,20}\Z"),
            st.sampled_from(["NA", "None", "null", "nan", "true", "False", "1e5", "007"]),
            st.text(alphabet="abc019 .-", min_size=1, max_size=8).filter(
                lambda t: t.strip() == t
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_text_column_lands_by_the_rule(sandbox, tmp_path, texts) -> None:
    """The class: whatever texts a column holds, what lands is the oracle's reading."""
    sandbox.reset()
    users = [f"user-h-{i:03d}" for i in range(len(texts))]
    path = tmp_path / "h.csv"
    write_csv(path, ["uid", "value"], [[u, t] for u, t in zip(users, texts, strict=True)])
    code, stdout, stderr = run("identify", str(path), "--user-id", "uid", "--set", "value",
                               "--server-url", sandbox.url, "--no-progress")
    expected = expected_column(texts)
    assert code == 0, stdout + stderr
    for user, want in zip(users, expected, strict=True):
        got = sandbox.profile(user)["value"]
        assert got == want and type(got) is type(want), (texts, got, want)


def test_dry_run_shows_values_as_the_file_holds_them(tmp_path) -> None:
    path = tmp_path / "u.csv"
    write_csv(path, ["uid", "country"], [["0012345", "NA"]])
    code, stdout, _ = run("identify", str(path), "--user-id", "uid", "--set", "country",
                          "--dry-run")
    assert code == 0
    assert "0012345" in stdout and "'NA'" in stdout.replace('"', "'")


def test_only_empty_cells_are_missing_unless_named(sandbox, tmp_path) -> None:
    path = tmp_path / "u.csv"
    write_csv(path, ["uid", "country"],
              [["user-m-1", "NA"], ["user-m-2", ""], ["user-m-3", "NULL"]])
    code, stdout, stderr = run("identify", str(path), "--user-id", "uid", "--set", "country",
                               "--nulls", "unset", "--server-url", sandbox.url, "--no-progress")
    assert code == 0, stdout + stderr
    assert sandbox.profile("user-m-1")["country"] == "NA"
    assert "country" not in sandbox.profile("user-m-2")
    assert sandbox.profile("user-m-3")["country"] == "NULL"
    code, _, _ = run("identify", str(path), "--user-id", "uid", "--set", "country",
                     "--nulls", "unset", "--missing", "NULL", "--server-url", sandbox.url,
                     "--no-progress")
    assert code == 0
    assert "country" not in sandbox.profile("user-m-3")
    assert sandbox.profile("user-m-1")["country"] == "NA"


def test_json_array_file_is_read_as_records(sandbox, tmp_path) -> None:
    path = tmp_path / "u.json"
    path.write_text(json.dumps([
        {"uid": "user-j-1", "n": 12345678901234567890123, "tags": ["a", "b"]},
        {"uid": "user-j-2", "n": 2, "tags": []},
    ]))
    code, stdout, stderr = run("identify", str(path), "--user-id", "uid", "--set", "n",
                               "--set", "tags", "--server-url", sandbox.url, "--no-progress")
    assert code == 0, stdout + stderr
    assert sandbox.profile("user-j-1")["n"] == 12345678901234567890123
    assert sandbox.profile("user-j-1")["tags"] == ["a", "b"]


def test_a_json_file_that_is_not_records_is_one_clear_line(tmp_path) -> None:
    path = tmp_path / "u.json"
    path.write_text("[1, 2]")
    code, _, stderr = run("identify", str(path), "--user-id", "uid", "--dry-run")
    assert code == 2
    assert stderr.strip() == (
        f"amp-pandas: cannot read {path}: record 1 is a int, not an object; each record must "
        "be a JSON object of column: value"
    )


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, first, second",
    [
        (["--set", "p=plan", "--set", "p=country"], "--set p=plan", "--set p=country"),
        (["--set", "plan", "--literal", "plan=1"], "--set plan", "--literal plan=..."),
        (["--add", "n=logins", "--set", "n=plan"], "--add n=logins", "--set n=plan"),
        (["--set", "plan", "--unset", "plan"], "--set plan", "--unset plan"),
    ],
)
def test_a_property_from_two_options_is_refused(extra, first, second, tmp_path) -> None:
    path = tmp_path / "u.csv"
    write_csv(path, ["uid", "plan", "country", "logins"], [["user-1", "a", "b", "1"]])
    code, _, stderr = run("identify", str(path), "--user-id", "uid", *extra, "--dry-run")
    assert code == 2
    assert first in stderr and second in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_every_pair_reads_name_from_source(sandbox, tmp_path) -> None:
    path = tmp_path / "u.csv"
    write_csv(path, ["uid", "plan_col", "os_col", "org_col"],
              [["user-d-1", "pro", "ios", "acme"]])
    code, stdout, stderr = run(
        "identify", str(path), "--user-id", "uid", "--set", "plan=plan_col",
        "--field", "platform=os_col", "--group", "org=org_col", "--literal", "cohort=A",
        "--server-url", sandbox.url, "--no-progress",
    )
    assert code == 0, stdout + stderr
    profile = sandbox.profile("user-d-1")
    assert profile["plan"] == "pro"
    assert profile["cohort"] == "A"
    assert profile["platform"] == "ios"
    assert profile["org"] == "acme"


def test_out_that_cannot_be_written_fails_before_sending(sandbox, tmp_path) -> None:
    path = tmp_path / "u.csv"
    write_csv(path, ["uid", "plan"], [["user-o-1", "a"]])
    before = len(sandbox.requests)
    for out in (tmp_path / "no-such-folder" / "r.csv", tmp_path):
        code, _, stderr = run("identify", str(path), "--user-id", "uid", "--set", "plan",
                              "--server-url", sandbox.url, "--no-progress", "--out", str(out))
        assert code == 2
        assert stderr.startswith(f"amp-pandas: --out {out}")
        assert "Traceback" not in stderr
    assert len(sandbox.requests) == before


PYTHON_WORDS = ("dry_run", "api_key=", "server_url", ".send(", "literal(", "=True",
                "retry_ambiguous", "set_once=")


@pytest.mark.parametrize(
    "argv",
    [
        ["--user-id", "nope", "--set", "plan"],
        ["--user-id", "uid", "--set", "nope"],
        ["--user-id", "uid", "--field", "platfrom=plan"],
        ["--user-id", "uid", "--set", "plan", "--server-url", "ftp://x"],
        ["--user-id", "uid", "--set", "plan", "--dry-run"],
        ["--user-id", "uid", "--set", "plan"],  # no key
    ],
)
def test_messages_speak_the_command_line(argv, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("AMPLITUDE_API_KEY")
    path = tmp_path / "u.csv"
    write_csv(path, ["uid", "plan"], [["user-1", "a"], ["bad", "b"]])
    code, stdout, stderr = run("identify", str(path), *argv, "--no-progress")
    text = stdout + stderr
    assert code in (1, 2)
    for word in PYTHON_WORDS:
        assert word not in text, (word, text)


def test_cli_words_table() -> None:
    assert cli.cli_words("Call .send() to send the 3 valid rows.") == (
        "Run again without --dry-run to send the 3 valid rows."
    )
    assert cli.cli_words("unknown: may have been applied — pass retry_ambiguous=True to retry") \
        == "unknown: may have been applied — use --retry-ambiguous to retry"
    assert cli.cli_words("post_insert: 'x' is not a column") == "--post-insert: 'x' is not a column"
    assert cli.cli_words("groups: 'x' is not a column") == "--group: 'x' is not a column"


# --- SIGTERM --------------------------------------------------------------------------------


def _start_cli(path: Path, url: str, out: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, AMPLITUDE_API_KEY=KEY, PYTHONPATH=str(Path(cli.__file__).parents[1]))
    return subprocess.Popen(
        [sys.executable, "-m", "amp_pandas", "identify", str(path), "--user-id", "uid",
         "--add", "n", "--server-url", url, "--no-progress", "--out", str(out),
         "--batch-size", "10", "--max-workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def test_sigterm_writes_the_partial_result_and_exits_143(tmp_path) -> None:
    rows = [[f"user-t-{i:04d}", "1"] for i in range(400)]
    path = tmp_path / "u.csv"
    write_csv(path, ["uid", "n"], rows)
    out = tmp_path / "result.csv"
    with Sandbox(api_key=KEY, latency=0.05) as sb:
        proc = _start_cli(path, sb.url, out)
        deadline = time.monotonic() + 60
        while len(sb.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 143, stderr
        assert "terminated" in stderr and "not_sent" in stderr
        result = pd.read_csv(out, index_col=0)
        assert len(result) == 400
        statuses = result["status"].value_counts().to_dict()
        assert set(statuses) == {"success", "not_sent"}, statuses
        # every row that succeeded was applied once, and no not_sent row was applied
        applied = {p: v.get("n") for p, v in
                   ((u, sb.profile(u)) for u in sb.profiles().index)}
        done = set(result.index[result["status"] == "success"])
        assert {rows[i][0] for i in done} == set(applied)
        assert set(applied.values()) == {1}
        # re-running the rows not sent sends exactly those
        rest = tmp_path / "rest.csv"
        write_csv(rest, ["uid", "n"], [rows[i] for i in result.index[result.status != "success"]])
        proc = _start_cli(rest, sb.url, tmp_path / "r2.csv")
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert len(sb.profiles()) == 400
        assert set(sb.profiles()["n"]) == {1}


def test_the_dry_run_prints_the_preview_as_python_shows_it(tmp_path) -> None:
    """Only the Python spellings change; the layout (column alignment) is the preview's own."""
    path = tmp_path / "u.csv"
    write_csv(path, ["uid", "plan"], [["user-1", "pro"], ["abc", "free"]])
    code, stdout, _ = run("identify", str(path), "--user-id", "uid", "--set", "plan",
                          "--dry-run")
    assert code == 1
    frame = pd.DataFrame({"uid": ["user-1", "abc"], "plan": ["pro", "free"]})
    preview = frame.amplitude.identify(user_id="uid", set=["plan"], dry_run=True)
    python_lines = repr(preview).splitlines()
    cli_lines = stdout.rstrip("\n").splitlines()
    assert len(cli_lines) == len(python_lines)
    differ = [(p, c) for p, c in zip(python_lines, cli_lines, strict=True) if p != c]
    assert differ == [
        ("Call .send() to send the 1 valid rows.",
         "Run again without --dry-run to send the 1 valid rows.")
    ]
