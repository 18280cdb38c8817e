"""The ``amp-pandas`` command line: identify FILE, demo, exit codes and output files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from _support.cli import run

from amp_pandas.sandbox import Sandbox

KEY = "cli-test-key-7f3a9c2e"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch):
    with Sandbox(api_key=KEY) as sb:
        monkeypatch.setenv("AMPLITUDE_API_KEY", KEY)
        yield sb


@pytest.fixture
def users_csv(tmp_path: Path) -> Path:
    path = tmp_path / "users.csv"
    pd.DataFrame(
        {
            "uid": ["user-1", "user-2", "user-3"],
            "plan": ["pro", "free", None],
            "logins": [3, 1, 2],
            "tag": ["a", "b", "c"],
        }
    ).to_csv(path, index=False)
    return path


def test_identify_sends_and_writes_the_result(sandbox, users_csv, tmp_path) -> None:
    out = tmp_path / "result.csv"
    code, stdout, _ = run(
        "identify", str(users_csv), "--user-id", "uid", "--set", "plan",
        "--add", "login_count=logins", "--post-insert", "tags=tag",
        "--literal", "cohort=Test A", "--literal", "score=7", "--unset", "legacy",
        "--server-url", sandbox.url, "--no-progress", "--out", str(out),
    )
    assert code == 0, stdout
    assert "success 3" in stdout
    result = pd.read_csv(out, index_col=0)
    assert result["status"].tolist() == ["success"] * 3
    profiles = sandbox.profiles()
    assert profiles.loc["user-1", "plan"] == "pro"
    assert profiles.loc["user-2", "login_count"] == 1
    assert profiles.loc["user-3", "tags"] == ["c"]
    assert profiles.loc["user-3", "cohort"] == "Test A"
    assert profiles.loc["user-3", "score"] == 7
    assert KEY not in stdout


def test_dry_run_exit_status_says_whether_rows_are_invalid(users_csv, tmp_path) -> None:
    code, stdout, _ = run("identify", str(users_csv), "--user-id", "uid", "--set", "plan",
                          "--dry-run")
    assert code == 0
    assert "dry run, nothing sent" in stdout and "valid 2" in stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("uid,plan\nabc,a\nnull,b\nuser-3,c\n")
    code, stdout, _ = run("identify", str(bad), "--user-id", "uid", "--set", "plan", "--dry-run")
    assert code == 1
    assert "shorter than 5 characters" in stdout
    assert "invalid 2" in stdout  # the text "null" is read as written, and Amplitude rejects it


def test_rows_that_do_not_succeed_give_exit_status_1(sandbox, tmp_path) -> None:
    path = tmp_path / "u.csv"
    pd.DataFrame({"uid": ["user-1", "user-poison"], "plan": ["a", "b"]}).to_csv(path, index=False)
    sandbox.set_faults(reject_ids={"user-poison"})
    code, stdout, stderr = run(
        "identify", str(path), "--user-id", "uid", "--set", "plan",
        "--server-url", sandbox.url, "--no-progress",
    )
    assert code == 1
    assert "success 1" in stdout and "failed 1" in stdout
    assert "user-poison" in stderr


def test_jsonl_and_parquet(sandbox, tmp_path) -> None:
    frame = pd.DataFrame({"uid": ["user-1", "user-2"], "plan": ["a", "b"]})
    jsonl = tmp_path / "u.jsonl"
    frame.to_json(jsonl, orient="records", lines=True)
    parquet = tmp_path / "u.parquet"
    frame.to_parquet(parquet)
    for path in (jsonl, parquet):
        code, stdout, _ = run("identify", str(path), "--user-id", "uid", "--set", "plan",
                              "--server-url", sandbox.url, "--no-progress")
        assert code == 0, stdout


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["identify", "missing.csv", "--user-id", "uid"], "no such file"),
        (["identify", "{csv}", "--user-id", "nope", "--set", "plan"], "'nope' is not in"),
        (["identify", "{csv}", "--user-id", "uid", "--set", "plan", "--group", "x"],
         "--group expects NAME=VALUE"),
        (["identify", "{csv}", "--user-id", "uid", "--field", "platfrom=plan"],
         "Did you mean 'platform'"),
        (["identify", "{txt}", "--user-id", "uid"], "unknown file type"),
    ],
)
def test_bad_arguments_and_files_are_one_line_errors(argv, fragment, users_csv, tmp_path) -> None:
    txt = tmp_path / "data.xlsx"
    txt.write_text("x")
    argv = [a.format(csv=users_csv, txt=txt) for a in argv]
    code, _, stderr = run(*argv)
    assert code == 2
    assert fragment in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert "Traceback" not in stderr


def test_missing_key_is_a_clear_error(users_csv, monkeypatch) -> None:
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)
    code, _, stderr = run("identify", str(users_csv), "--user-id", "uid", "--set", "plan",
                          "--no-progress")
    assert code == 2
    assert "AMPLITUDE_API_KEY" in stderr


def test_invalid_key_exits_1_without_echoing_the_key(users_csv, monkeypatch) -> None:
    with Sandbox(api_key="the-right-key-000") as sb:
        monkeypatch.setenv("AMPLITUDE_API_KEY", "WRONG-KEY-abcdef-123456")
        code, stdout, stderr = run("identify", str(users_csv), "--user-id", "uid",
                                   "--set", "plan", "--server-url", sb.url, "--no-progress")
    assert code == 1
    assert "API key" in stderr
    assert "WRONG-KEY" not in stdout + stderr


def test_http_to_a_remote_host_is_refused(users_csv, monkeypatch) -> None:
    monkeypatch.setenv("AMPLITUDE_API_KEY", KEY)
    code, _, stderr = run("identify", str(users_csv), "--user-id", "uid", "--set", "plan",
                          "--server-url", "http://example.com/identify")
    assert code == 2
    assert "http://" in stderr


def test_demo_runs_end_to_end_in_a_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "amp_pandas", "demo", "--users", "400", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for marker in ("1. Dry run", "rejected ids", "2. Sending", "3. Result", "success",
                   "4. A few resulting profiles", "AMPLITUDE_API_KEY"):
        assert marker in out, marker
    assert "Traceback" not in proc.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly(users_csv) -> None:
    """``amp-pandas ... | head``: once the pipe is closed, exit 141 without a traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "amp_pandas", "identify", str(users_csv), "--user-id", "uid",
         "--set", "plan", "--dry-run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command has written anything (it is still importing)
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert err == ""
