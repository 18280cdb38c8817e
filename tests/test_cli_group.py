"""``amp-pandas group-identify FILE``: group properties from a file, read as identify reads it."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr
from pathlib import Path

import pandas as pd
import pytest
from _support.cli import run

from amp_pandas import cli
from amp_pandas.sandbox import Sandbox

KEY = "cli-group-key-7f3a9c2e"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch):
    with Sandbox(api_key=KEY) as sb:
        monkeypatch.setenv("AMPLITUDE_API_KEY", KEY)
        yield sb


@pytest.fixture
def companies_csv(tmp_path: Path) -> Path:
    path = tmp_path / "companies.csv"
    path.write_text(
        "company_id,kind,plan,seats,tag\n"
        "007,company,pro,40,b2b\n"
        "42,company,free,3,smb\n"
        "red,team,,5,ops\n"
    )
    return path


def test_group_identify_sends_and_writes_the_result(sandbox, companies_csv, tmp_path) -> None:
    out = tmp_path / "result.csv"
    code, stdout, stderr = run(
        "group-identify", str(companies_csv), "--group-type-column", "kind",
        "--group-value", "company_id", "--set", "plan", "--add", "seat_count=seats",
        "--append", "tags=tag", "--literal", "source=crm", "--unset", "legacy",
        "--server-url", sandbox.group_url, "--no-progress", "--out", str(out),
    )
    assert code == 0, stderr
    assert "success 3" in stdout
    assert pd.read_csv(out, index_col=0)["status"].tolist() == ["success"] * 3
    # "007" stays text: the group value column is read as written
    assert sandbox.group_profile("company", "007") == {
        "plan": "pro", "seat_count": 40, "tags": ["b2b"], "source": "crm"}
    assert sandbox.group_profile("company", "42") == {
        "plan": "free", "seat_count": 3, "tags": ["smb"], "source": "crm"}
    assert sandbox.group_profile("team", "red") == {
        "seat_count": 5, "tags": ["ops"], "source": "crm"}
    assert KEY not in stdout + stderr


def test_a_group_type_for_every_row(sandbox, companies_csv) -> None:
    code, _, stderr = run(
        "group-identify", str(companies_csv), "--group-type", "account",
        "--group-value", "company_id", "--set", "plan", "--set", "seats",
        "--server-url", sandbox.group_url, "--no-progress",
    )
    assert code == 0, stderr
    assert list(sandbox.group_profiles().index) == [
        ("account", "007"), ("account", "42"), ("account", "red")]


def test_dry_run_shows_the_group_preview_and_exit_status(companies_csv, tmp_path) -> None:
    code, stdout, _ = run("group-identify", str(companies_csv), "--group-type", "company",
                          "--group-value", "company_id", "--set", "plan", "--dry-run")
    assert code == 0
    assert "Amplitude group identify preview" in stdout
    assert "https://api2.amplitude.com/groupidentify" in stdout
    assert "valid 2" in stdout and "skipped 1" in stdout
    # a constant shows as its value, not as Python (nor as advice to use --literal)
    assert "group_type           ← 'company' (constant)" in stdout
    assert "literal(" not in stdout and "PROP=VALUE" not in stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("company_id,plan\nacme,pro\n,free\n")
    code, stdout, _ = run("group-identify", str(bad), "--group-type", "company",
                          "--group-value", "company_id", "--set", "plan", "--dry-run",
                          "--region", "eu")
    assert code == 1
    assert "group_value is missing in this row" in stdout
    assert "https://api.eu.amplitude.com/groupidentify" in stdout


@pytest.mark.parametrize("argv, fragment", [
    (["--group-type", "company", "--group-value", "company_id", "--remove", "tag"],
     "remove ($remove): not documented for group properties"),
    (["--group-type", "company", "--group-value", "company_id", "--pre-insert", "tag"],
     "--pre-insert ($preInsert): not documented for group properties"),
    (["--group-type", "company", "--group-value", "nope", "--set", "plan"],
     "--group-value: column 'nope' is not in the DataFrame"),
    (["--group-type", "company", "--group-value", "company_id", "--set", "plan",
      "--batch-size", "2000"], "--batch-size (group identifications per request) must be"),
    (["--group-type", "company", "--group-value", "company_id", "--set", "plan",
      "--add", "plan"], "given by both --set plan and --add plan"),
])
def test_bad_arguments_are_one_line_errors(argv, fragment, companies_csv) -> None:
    code, stdout, stderr = run("group-identify", str(companies_csv), *argv, "--dry-run")
    assert code == 2
    assert fragment in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr


def test_group_type_and_its_column_exclude_each_other(companies_csv) -> None:
    with pytest.raises(SystemExit) as info, redirect_stderr(io.StringIO()):
        cli.main(["group-identify", str(companies_csv), "--group-type", "a",
                  "--group-type-column", "kind", "--group-value", "company_id"])
    assert info.value.code == 2


def test_rows_that_do_not_succeed_exit_1(sandbox, tmp_path) -> None:
    sandbox.set_faults(reject_groups={"company": "bad-co"})
    path = tmp_path / "c.csv"
    path.write_text("id,plan\nacme,pro\nbad-co,free\n")
    out = tmp_path / "r.csv"
    code, _, stderr = run("group-identify", str(path), "--group-type", "company",
                          "--group-value", "id", "--set", "plan", "--no-progress",
                          "--server-url", sandbox.group_url, "--out", str(out))
    assert code == 1
    assert "rejected by Amplitude (HTTP 400)" in stderr
    assert pd.read_csv(out, index_col=0)["status"].tolist() == ["success", "failed"]


def test_sigterm_writes_the_partial_result_and_exits_143(tmp_path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,n\n" + "".join(f"c{i:04d},1\n" for i in range(400)))
    out = tmp_path / "result.csv"
    env = dict(os.environ, AMPLITUDE_API_KEY=KEY, PYTHONPATH=str(Path(cli.__file__).parents[1]))
    with Sandbox(api_key=KEY, latency=0.05) as sb:
        proc = subprocess.Popen(
            [sys.executable, "-m", "amp_pandas", "group-identify", str(path), "--group-type",
             "company", "--group-value", "id", "--add", "n", "--server-url", sb.group_url,
             "--no-progress", "--out", str(out), "--batch-size", "10", "--max-workers", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while len(sb.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 143, stderr
        assert "terminated" in stderr and "not_sent" in stderr
        result = pd.read_csv(out, index_col=0)
        assert len(result) == 400
        assert set(result["status"]) == {"success", "not_sent"}
        applied = {value for _, value in sb.group_applied_counts().index}
        done = {f"c{i:04d}" for i in result.index[result["status"] == "success"]}
        assert applied == done
        assert (sb.group_applied_counts() == 1).all()


def test_cli_words_speak_of_group_flags() -> None:
    assert cli.cli_words("group_value: column 'x' is not in the DataFrame") == (
        "--group-value: column 'x' is not in the DataFrame"
    )
