"""The command line's sync: ``identify --sync NAME --removed ... --ledger PATH`` and
``amp-pandas ledger list|show|forget|unlock``."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from _support.cli import run

from amp_pandas._sync import OUTCOMES
from amp_pandas.sandbox import Sandbox

KEY = "cli-sync-key-4b2d8e1f"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch):
    with Sandbox(api_key=KEY) as sb:
        monkeypatch.setenv("AMPLITUDE_API_KEY", KEY)
        yield sb


def csv(tmp_path: Path, users: list[str], name: str = "cohort.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame({"uid": users, "tag": "winback"}).to_csv(path, index=False)
    return path


def identify(sb: Sandbox, file: Path, ledger: Path, *more: str) -> tuple[int, str, str]:
    return run("identify", str(file), "--user-id", "uid", "--post-insert", "campaigns=tag",
               "--literal", "cohort=winback", "--server-url", sb.url, "--no-progress",
               "--sync", "winback", "--ledger", str(ledger), *more)  # fmt: skip


def test_sync_runs_and_the_ledger_commands(sandbox: Sandbox, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    first = csv(tmp_path, ["user-1", "user-2", "user-3"])
    code, out, err = identify(sandbox, first, ledger)
    assert (code, err) == (0, "")
    assert "success 3" in out
    # the same file again: nothing sent, exit 0
    requests = len(sandbox.requests)
    code, out, _ = identify(sandbox, first, ledger)
    assert code == 0 and "unchanged 3" in out
    assert len(sandbox.requests) == requests
    # the dry run shows the sync plan
    second = csv(tmp_path, ["user-1", "user-4"], "week2.csv")
    code, out, _ = identify(sandbox, second, ledger, "--dry-run", "--removed", "revert")
    assert code == 0
    assert "users: unchanged 1 · changed 0 · new 1 · removed 2 (revert)" in out
    assert '"$remove": {"campaigns": ["winback"]}' in out
    code, out, _ = identify(sandbox, second, ledger, "--removed", "revert")
    assert code == 0
    assert "removed users: success 2" in out
    assert sandbox.profile("user-2") == {"campaigns": []}
    assert sandbox.profile("user-4") == {"cohort": "winback", "campaigns": ["winback"]}

    code, out, _ = run("ledger", "list", "--ledger", str(ledger))
    assert code == 0
    line = next(line for line in out.splitlines() if "winback" in line)
    assert line.split()[1:5] == ["winback", sandbox.url.split("/")[2], "4", "2"]
    assert re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC ", line)  # to the second
    code, out, _ = run("ledger", "show", "winback", "--ledger", str(ledger))
    assert code == 0
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[1:]}
    assert rows == {"user-1": ["acknowledged", "sync"], "user-2": ["acknowledged", "revert"],
                    "user-3": ["acknowledged", "revert"], "user-4": ["acknowledged", "sync"]}
    assert KEY not in out
    code, out, _ = run("ledger", "forget", "winback", "--ledger", str(ledger))
    assert code == 0 and "4 users" in out
    code, out, _ = run("ledger", "list", "--ledger", str(ledger))
    assert code == 0 and "no sync jobs" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--sync", " "], "--sync takes a job name"),
        (["--removed", "revert"], "--removed and --ledger need --sync NAME"),
    ],
)
def test_sync_arguments_are_cli_words(sandbox: Sandbox, tmp_path: Path, argv: list[str],
                                      fragment: str) -> None:
    file = csv(tmp_path, ["user-1"])
    code, out, err = run("identify", str(file), "--user-id", "uid", "--server-url",
                         sandbox.url, "--no-progress", *argv)  # fmt: skip
    assert code == 2
    assert fragment in err
    assert "sync=" not in err and "removed=" not in err
    assert sandbox.requests == []


def test_a_corrupt_ledger_is_one_line_and_nothing_is_sent(sandbox: Sandbox,
                                                          tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    ledger.write_bytes(b"garbage" * 500)
    code, out, err = identify(sandbox, csv(tmp_path, ["user-1"]), ledger)
    assert code == 2
    assert err.startswith("amp-pandas: ") and "damaged or not a ledger" in err
    assert "--ledger another path" in err
    assert len(err.strip().splitlines()) == 1
    assert sandbox.requests == []


def test_unknown_job_for_show_and_forget(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    code, _, err = run("ledger", "show", "nope", "--ledger", str(ledger))
    assert code == 2 and "has no job 'nope'" in err
    code, out, _ = run("ledger", "forget", "nope", "--ledger", str(ledger))
    assert code == 0 and "0 users" in out


def test_ledger_unlock_releases_a_lock_left_by_another_host(tmp_path: Path) -> None:
    import sqlite3

    from amp_pandas import Ledger

    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as ledger:
        held = ledger.begin_run(ledger.job("weekly", "https://api2.amplitude.com/identify", KEY))
        held.mark_in_flight(["user-1"], [b"\x01" * 16])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE locks SET host = 'elsewhere.example', pid = 7")
    conn.commit()
    conn.close()
    code, out, err = run("ledger", "unlock", "weekly", "--ledger", str(path))
    assert (code, err) == (0, "")
    assert out.strip() == ("released the lock of sync job 'weekly' (process 7 on "
                           "elsewhere.example); its users in flight are now unknown")
    code, out, _ = run("ledger", "unlock", "weekly", "--ledger", str(path))
    assert (code, out.strip()) == (0, "sync job 'weekly' holds no lock")
    with Ledger(path) as ledger:
        state = ledger.state(ledger.job("weekly", "https://api2.amplitude.com/identify", KEY))
        assert [OUTCOMES[o] for o in state.outcome] == ["unknown"]
        held.finished = True
