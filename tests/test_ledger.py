"""The sync ledger's storage: schema, migration, refusals, file safety, lock, crash safety."""

from __future__ import annotations

import gc
import hashlib
import os
import random
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amp_pandas._ledger import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    Ledger,
    default_path,
    normalize_endpoint,
)
from amp_pandas._sync import (
    ACKNOWLEDGED,
    FAILED,
    IN_FLIGHT,
    KEPT,
    OUTCOMES,
    REVERT,
    SYNC,
    UNKNOWN,
    RevertInfo,
)
from amp_pandas.errors import (
    ArgumentError,
    LedgerAccessError,
    LedgerCorruptError,
    LedgerError,
    LedgerLockedError,
    LedgerVersionError,
)

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "_support" / "ledger_worker.py"
sys.path.insert(0, str(WORKER.parent))
import ledger_worker  # noqa: E402

URL = "https://api2.amplitude.com/identify"
KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "ledger.sqlite3"


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    with Ledger(path) as opened:
        yield opened


def outcomes(ledger: Ledger, job: object) -> dict[str, str]:
    state = ledger.state(job)  # type: ignore[arg-type]
    return {k: OUTCOMES[o] for k, o in zip(state.keys, state.outcome, strict=True)}


def d(n: int) -> bytes:
    return bytes([n]) * 16


# --- the file ----------------------------------------------------------------------------------


def test_new_file_is_owner_only_with_its_wal_and_shm(ledger: Ledger, path: Path) -> None:
    job = ledger.job("j", URL, KEY)
    with ledger.begin_run(job) as run:
        run.mark_in_flight(["user-1"], [d(1)])
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        for f in files:
            assert f.exists(), f
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_api_key_never_in_the_file(ledger: Ledger, path: Path) -> None:
    job = ledger.job("j", URL, KEY)
    with ledger.begin_run(job) as run:
        run.mark_in_flight(["user-1"], [d(1)], [RevertInfo(set=("plan",))])
        run.mark_done(["user-1"], "acknowledged")
        wal = Path(f"{path}-wal").read_bytes()
    blob = path.read_bytes() + wal
    assert b"user-1" in blob  # the bytes searched are the ones written
    for form in (KEY, KEY.upper(), KEY[:16], KEY[16:]):
        assert form.encode() not in blob
        assert form.encode("utf-16-le") not in blob
    assert KEY not in repr(job) and KEY not in repr(ledger.jobs())


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AMP_PANDAS_LEDGER", str(tmp_path / "x.db"))
    assert default_path() == tmp_path / "x.db"
    monkeypatch.delenv("AMP_PANDAS_LEDGER")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    if sys.platform.startswith("linux"):
        assert default_path() == tmp_path / "data" / "amp_pandas" / "ledger.sqlite3"


def test_env_var_is_where_a_default_ledger_goes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AMP_PANDAS_LEDGER", str(tmp_path / "env.sqlite3"))
    with Ledger() as ledger:
        assert ledger.path == tmp_path / "env.sqlite3"
    assert (tmp_path / "env.sqlite3").exists()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api2.amplitude.com/identify", "https://api2.amplitude.com/identify"),
        ("HTTPS://API2.AMPLITUDE.COM:443/identify/", "https://api2.amplitude.com/identify"),
        ("https://api2.amplitude.com/identify?a=1#x", "https://api2.amplitude.com/identify"),
        ("http://127.0.0.1:8080/identify", "http://127.0.0.1:8080/identify"),
        ("http://localhost:80/identify", "http://localhost/identify"),
        ("https://api.eu.amplitude.com/groupidentify", "https://api.eu.amplitude.com/groupidentify"),
    ],
)
def test_normalize_endpoint(url: str, expected: str) -> None:
    assert normalize_endpoint(url) == expected


# --- refusals ----------------------------------------------------------------------------------


def test_garbage_file_is_corrupt_and_left_alone(path: Path) -> None:
    path.parent.mkdir()
    garbage = bytes(random.Random(1).randrange(256) for _ in range(8192))
    path.write_bytes(garbage)
    with pytest.raises(LedgerCorruptError, match="damaged or not a ledger") as info:
        Ledger(path)
    assert info.value.path == str(path)
    assert path.read_bytes() == garbage


def test_truncated_ledger_is_corrupt(ledger: Ledger, path: Path) -> None:
    job = ledger.job("j", URL, KEY)
    with ledger.begin_run(job) as run:
        run.mark_in_flight([f"user-{i}" for i in range(2000)], [d(1)] * 2000)
    ledger.close()
    data = path.read_bytes()
    path.write_bytes(data[:4096] + b"\xff" * (len(data) - 4096))
    Path(f"{path}-wal").unlink(missing_ok=True)
    with pytest.raises(LedgerCorruptError):
        with Ledger(path) as again:
            again.jobs()


def test_other_sqlite_database_is_refused(path: Path) -> None:
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerCorruptError, match="not an amp_pandas ledger"):
        Ledger(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("mine",)]
    conn.close()


def test_newer_schema_is_refused_never_reset(ledger: Ledger, path: Path) -> None:
    job = ledger.job("j", URL, KEY)
    with ledger.begin_run(job) as run:
        run.mark_in_flight(["user-1"], [d(1)])
        run.mark_done(["user-1"], "acknowledged")
    ledger.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerVersionError, match="newer than this amp_pandas") as info:
        Ledger(path)
    assert info.value.version == SCHEMA_VERSION + 1
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT key FROM users").fetchall() == [("user-1",)]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    conn.close()


def test_directory_that_cannot_be_made_is_an_access_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LedgerAccessError, match="cannot be created or opened"):
        Ledger(blocker / "ledger.sqlite3")


def test_a_directory_as_ledger_is_an_access_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerAccessError, match="is a directory"):
        Ledger(tmp_path)


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A directory holding a ledger, then made unwritable (immutable for root)."""
    where = tmp_path / "ro"
    where.mkdir()
    with Ledger(where / "ledger.sqlite3") as ledger:
        job = ledger.job("j", URL, KEY)
        with ledger.begin_run(job) as run:
            run.mark_in_flight(["user-1"], [d(1)])
            run.mark_done(["user-1"], "acknowledged")
    # leave no -wal/-shm: SQLite removes them when the last connection closes
    files = [where / "ledger.sqlite3", where]
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: nothing can be made unwritable")
        for f in files:
            subprocess.run(["chattr", "+i", str(f)], check=True)
        try:
            yield where
        finally:
            for f in files:
                subprocess.run(["chattr", "-i", str(f)], check=True)
    else:
        (where / "ledger.sqlite3").chmod(0o400)
        where.chmod(0o500)
        try:
            yield where
        finally:
            where.chmod(0o700)


def test_unwritable_ledger_is_an_access_error(unwritable: Path) -> None:
    with pytest.raises(LedgerAccessError, match="cannot be written .*; nothing was sent") as info:
        with Ledger(unwritable / "ledger.sqlite3") as ledger:
            ledger.begin_run(ledger.job("j", URL, KEY))
    assert info.value.path == str(unwritable / "ledger.sqlite3")


def test_unwritable_directory_for_a_new_ledger(unwritable: Path) -> None:
    with pytest.raises(LedgerAccessError, match="cannot be created or opened"):
        Ledger(unwritable / "new.sqlite3")
    assert not (unwritable / "new.sqlite3").exists()


@pytest.mark.parametrize(("fsync", "level"), [(False, 1), (True, 2)])
def test_fsync_chooses_how_commits_reach_the_disk(path: Path, fsync: bool, level: int) -> None:
    with Ledger(path, fsync=fsync) as ledger:
        assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == level


# --- migration ---------------------------------------------------------------------------------

#: Schema 1 as amp_pandas wrote it, typed out by hand (the oracle for the migration).
V1_DDL = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT NOT NULL, endpoint TEXT NOT NULL,
    key_fingerprint TEXT NOT NULL, created REAL NOT NULL, UNIQUE (name, endpoint, key_fingerprint));
CREATE TABLE runs (id INTEGER PRIMARY KEY, job INTEGER NOT NULL, pid INTEGER NOT NULL,
    host TEXT NOT NULL, started REAL NOT NULL, finished REAL, state TEXT NOT NULL);
CREATE INDEX runs_job ON runs (job, started);
CREATE TABLE reverts (id INTEGER PRIMARY KEY, job INTEGER NOT NULL, info TEXT NOT NULL,
    UNIQUE (job, info));
CREATE TABLE users (job INTEGER NOT NULL, key TEXT NOT NULL, digest BLOB, outcome INTEGER NOT NULL,
    action INTEGER NOT NULL, revert INTEGER, pending INTEGER, run INTEGER, at REAL NOT NULL,
    PRIMARY KEY (job, key)) WITHOUT ROWID;
"""


def test_schema_1_file_is_migrated_with_its_data(path: Path) -> None:
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(V1_DDL)
    conn.execute("INSERT INTO meta VALUES ('salt', 'abc')")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    fp = hashlib.sha256(f"abc\x00{KEY}".encode()).hexdigest()[:32]
    conn.execute("INSERT INTO jobs VALUES (1, 'weekly', ?, ?, 0)", (URL, fp))
    # run 1 finished; run 2 died while sending (pid 2**22+1 does not exist)
    conn.execute("INSERT INTO runs VALUES (1, 1, 1, 'elsewhere-host', 100, 200, 'finished')")
    conn.execute("INSERT INTO runs VALUES (2, 1, 4194305, ?, 300, NULL, 'running')",
                 (socket.gethostname(),))
    conn.execute("""INSERT INTO reverts VALUES (1, 1, '{"added":{},"irreversible":[],
        "non_idempotent":[],"set":["plan"]}')""")
    conn.execute("INSERT INTO users VALUES (1, 'user-a', ?, 1, 0, 1, NULL, 1, 200)", (d(7),))
    conn.execute("INSERT INTO users VALUES (1, 'user-b', ?, 0, 0, NULL, 1, 2, 300)", (d(8),))
    conn.commit()
    conn.close()

    with Ledger(path) as ledger:
        job = ledger.job("weekly", URL, KEY)
        state = ledger.state(job)
        got = {k: (OUTCOMES[o], bytes(g)) for k, o, g in
               zip(state.keys, state.outcome, state.digest, strict=True)}
        # the dead run's in-flight user reads as unknown; nothing lost
        assert got == {"user-a": ("acknowledged", d(7)), "user-b": ("unknown", d(8))}
        assert state.reverts[1] == RevertInfo(set=("plan",))
        with ledger.begin_run(job) as run:  # the v1 lock row of a dead pid is taken over
            run.mark_in_flight(["user-c"], [d(9)])
            run.mark_done(["user-c"], "acknowledged")
        assert outcomes(ledger, job) == {
            "user-a": "acknowledged", "user-b": "unknown", "user-c": "acknowledged"
        }
        assert ledger.users("weekly").set_index("key").loc["user-b", "revert"] == \
            RevertInfo(set=("plan",)).to_json()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT state FROM runs WHERE id = 2").fetchone()[0] == "died"
    conn.close()


def test_schema_1_lock_of_a_live_process_is_kept(path: Path) -> None:
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(V1_DDL)
    conn.execute("INSERT INTO meta VALUES ('salt', 'abc')")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    fp = hashlib.sha256(f"abc\x00{KEY}".encode()).hexdigest()[:32]
    conn.execute("INSERT INTO jobs VALUES (1, 'weekly', ?, ?, 0)", (URL, fp))
    conn.execute("INSERT INTO runs VALUES (1, 1, ?, ?, 300, NULL, 'running')",
                 (os.getppid(), socket.gethostname()))
    conn.commit()
    conn.close()
    with Ledger(path) as ledger:
        with pytest.raises(LedgerLockedError, match=str(os.getppid())):
            ledger.begin_run(ledger.job("weekly", URL, KEY))


def test_fresh_file_steps_through_every_migration(ledger: Ledger, path: Path) -> None:
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert {"meta", "jobs", "runs", "reverts", "users", "locks", "flights", "done"} <= tables


# --- jobs --------------------------------------------------------------------------------------


def test_jobs_are_separated_by_name_endpoint_and_key(ledger: Ledger) -> None:
    jobs = [
        ledger.job("weekly", URL, KEY),
        ledger.job("weekly", "http://127.0.0.1:8123/identify", KEY),
        ledger.job("weekly", URL, "another-key-0000000000000000000"),
        ledger.job("daily", URL, KEY),
    ]
    assert len({(j.name, j.endpoint, j.fingerprint) for j in jobs}) == 4
    assert ledger.job("weekly", "HTTPS://api2.amplitude.com:443/identify/", KEY) == jobs[0]
    for n, job in enumerate(jobs):
        with ledger.begin_run(job) as run:
            run.mark_in_flight([f"user-{n}"], [d(n)])
            run.mark_done([f"user-{n}"], "acknowledged")
    for n, job in enumerate(jobs):
        assert outcomes(ledger, job) == {f"user-{n}": "acknowledged"}
    table = ledger.jobs()
    assert sorted(table["endpoint_host"]) == ["127.0.0.1:8123"] + ["api2.amplitude.com"] * 3
    assert list(table["users"]) == [1, 1, 1, 1]
    with pytest.raises(LedgerError, match="3 jobs are named 'weekly'"):
        ledger.forget("weekly")
    assert ledger.forget(int(table["id"][0])) == 1
    assert outcomes(ledger, jobs[0]) == {}
    assert outcomes(ledger, jobs[1]) == {"user-1": "acknowledged"}


@pytest.mark.parametrize("name", ["", "  ", None, 3])
def test_job_name_must_be_a_string(ledger: Ledger, name: object) -> None:
    with pytest.raises(ArgumentError, match="sync= takes a job name"):
        ledger.job(name, URL, KEY)  # type: ignore[arg-type]


def test_fingerprint_depends_on_the_file_salt(tmp_path: Path) -> None:
    with Ledger(tmp_path / "a.db") as a, Ledger(tmp_path / "b.db") as b:
        assert a.job("j", URL, KEY).fingerprint != b.job("j", URL, KEY).fingerprint
        assert a.job("j", URL, KEY).fingerprint == a.job("j", URL, KEY).fingerprint


def test_jobs_and_users_tables(ledger: Ledger) -> None:
    job = ledger.job("weekly", URL, KEY)
    with ledger.begin_run(job) as run:
        run.mark_in_flight(["u-ack", "u-fail", "u-unk", "u-open"], [d(1), d(2), d(3), d(4)],
                           [RevertInfo(set=("plan",))] * 4)
        run.mark_done(["u-ack", "u-fail", "u-unk"], ["success", "failed", "unknown"])
        table = ledger.jobs()
        assert table.loc[0, "in_flight"] == 1  # alive: still in flight
    row = ledger.jobs().iloc[0]
    assert (row["job"], row["endpoint_host"], row["users"], row["members"]) == (
        "weekly", "api2.amplitude.com", 4, 4)
    assert (row["acknowledged"], row["failed"], row["unknown"], row["in_flight"]) == (1, 1, 2, 0)
    assert row["last_state"] == "finished"
    assert isinstance(row["last_run"], pd.Timestamp)
    users = ledger.users("weekly").set_index("key")
    assert users["outcome"].to_dict() == {
        "u-ack": "acknowledged", "u-fail": "failed", "u-open": "unknown", "u-unk": "unknown"
    }
    assert users.loc["u-ack", "digest"] == d(1).hex()
    assert users.loc["u-ack", "revert"] == RevertInfo(set=("plan",)).to_json()
    assert pd.isna(users.loc["u-fail", "revert"])  # a new user whose send failed holds nothing


# --- runs and outcomes -------------------------------------------------------------------------


def test_outcomes_of_a_run(ledger: Ledger) -> None:
    job = ledger.job("j", URL, KEY)
    run = ledger.begin_run(job)
    run.mark_in_flight(["a", "b", "c", "e"], [d(1), d(2), d(3), d(4)])
    assert outcomes(ledger, job) == dict.fromkeys("abce", "in_flight")
    run.mark_done(["a", "b", "c"], ["acknowledged", "failed", "unknown"])
    assert outcomes(ledger, job) == {
        "a": "acknowledged", "b": "failed", "c": "unknown", "e": "in_flight"
    }
    run.finish()
    # "e" never answered: unknown, never acknowledged
    assert outcomes(ledger, job) == {
        "a": "acknowledged", "b": "failed", "c": "unknown", "e": "unknown"
    }
    with pytest.raises(LedgerError, match="finished"):
        run.mark_in_flight(["x"], [d(1)])


def test_user_spanning_requests_is_in_flight_until_its_last_row(ledger: Ledger) -> None:
    job = ledger.job("j", URL, KEY)
    with ledger.begin_run(job) as run:
        run.mark_in_flight(["a", "b", "c"], [d(1), d(2), d(3)], rows=[3, 2, 2])
        run.mark_done(["a", "a", "b", "c"], ["acknowledged"] * 3 + ["failed"])
        assert outcomes(ledger, job) == dict.fromkeys("abc", "in_flight")
        run.mark_in_flight(["a", "b", "c"], [d(1), d(2), d(3)])  # already in flight: no-op
        run.mark_done(["a", "b", "c"], ["acknowledged", "failed", "failed"])
    # all acknowledged; partly applied (ack + failed) is unknown; all failed is failed
    assert outcomes(ledger, job) == {"a": "acknowledged", "b": "unknown", "c": "failed"}


def test_mark_done_rejects_what_is_not_in_flight(ledger: Ledger) -> None:
    with ledger.begin_run(ledger.job("j", URL, KEY)) as run:
        with pytest.raises(ValueError, match="not in flight"):
            run.mark_done(["ghost"], "acknowledged")
        run.mark_in_flight(["a"], [d(1)])
        with pytest.raises(ValueError, match="not a final outcome"):
            run.mark_done(["a"], "in_flight")


def test_revert_infos_accumulate_and_failed_sends_add_nothing(ledger: Ledger) -> None:
    job = ledger.job("j", URL, KEY)
    first = RevertInfo(set=("cohort",), added=(("tags", ('"q1"',)),))
    second = RevertInfo(set=("plan",), added=(("tags", ('"q2"',)),))
    third = RevertInfo(set=("never",))
    with ledger.begin_run(job) as run:
        run.mark_in_flight(["a", "b"], [d(1), d(1)], [first, first])
        run.mark_done(["a", "b"], "acknowledged")
    with ledger.begin_run(job) as run:
        run.mark_in_flight(["a", "b"], [d(2), d(2)], [second, second])
        run.mark_done(["a", "b"], ["acknowledged", "unknown"])
    with ledger.begin_run(job) as run:
        run.mark_in_flight(["a"], [d(3)], [third])
        run.mark_done(["a"], "failed")
    state = ledger.state(job)
    held = dict(zip(state.keys, state.revert_of(range(len(state))), strict=True))
    both = RevertInfo(set=("cohort", "plan"), added=(("tags", ('"q1"', '"q2"')),))
    assert held == {"a": both, "b": both}


def test_revert_then_keep(ledger: Ledger) -> None:
    job = ledger.job("j", URL, KEY)
    info = RevertInfo(set=("cohort",))
    with ledger.begin_run(job) as run:
        run.mark_in_flight(["a", "b", "c", "e"], [d(1)] * 4, [info] * 4)
        run.mark_done(["a", "b", "c", "e"], "acknowledged")
    with ledger.begin_run(job) as run:
        run.mark_revert_in_flight(["a", "b", "c"])
        run.mark_done(["a", "b", "c"], ["acknowledged", "failed", "unknown"])
        run.mark_left(["e"])
    state = ledger.state(job)
    got = {k: (OUTCOMES[o], int(a), bytes(g), state.reverts.get(int(r)))
           for k, o, a, g, r in zip(state.keys, state.outcome, state.action, state.digest,
                                    state.revert, strict=True)}
    assert got == {
        "a": ("acknowledged", REVERT, b"", None),  # reverted: holds nothing
        "b": ("failed", REVERT, d(1), info),  # the revert failed: the job's effect stays
        "c": ("unknown", REVERT, d(1), info),
        "e": ("acknowledged", KEPT, d(1), info),
    }
    # b and c are still members: a revert not acknowledged is sent again by the next run
    assert state.member_mask().tolist() == [k in ("b", "c") for k in state.keys]
    assert state.members == 2


def test_forget_refused_while_running_and_counts_users(ledger: Ledger) -> None:
    job = ledger.job("j", URL, KEY)
    run = ledger.begin_run(job)
    run.mark_in_flight(["a", "b"], [d(1), d(2)])
    with pytest.raises(LedgerLockedError):
        ledger.forget("j")
    run.finish()
    assert ledger.forget("j") == 2
    assert ledger.jobs().empty
    with pytest.raises(LedgerError, match="no job"):
        ledger.users("j")


def test_a_run_dropped_without_finishing_in_this_process_is_taken_over(ledger: Ledger) -> None:
    job = ledger.job("j", URL, KEY)
    run = ledger.begin_run(job)
    with pytest.raises(LedgerLockedError, match=f"process {os.getpid()}"):
        ledger.begin_run(job)
    run.mark_in_flight(["a"], [d(1)])
    del run
    with ledger.begin_run(job):
        pass
    assert outcomes(ledger, job) == {"a": "unknown"}


def test_context_manager_marks_an_interrupted_run(ledger: Ledger, path: Path) -> None:
    job = ledger.job("j", URL, KEY)
    with pytest.raises(KeyboardInterrupt):
        with ledger.begin_run(job) as run:
            run.mark_in_flight(["a"], [d(1)])
            raise KeyboardInterrupt
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT state FROM runs").fetchall() == [("interrupted",)]
    assert conn.execute("SELECT count(*) FROM locks").fetchone()[0] == 0
    conn.close()
    assert outcomes(ledger, job) == {"a": "unknown"}


# --- other processes ---------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_second_run_while_another_process_sends(path: Path) -> None:
    path.parent.mkdir()
    child = subprocess.Popen(
        [sys.executable, str(WORKER), "hold", str(path)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, env=_env(),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["ready", str(child.pid)]
        with Ledger(path) as ledger:
            job = ledger.job(*ledger_worker.JOB)
            with pytest.raises(LedgerLockedError) as info:
                ledger.begin_run(job)
            err = info.value
            assert (err.pid, err.host, err.job) == (child.pid, socket.gethostname(), "crash")
            assert f"process {child.pid} on {socket.gethostname()}" in str(err)
            assert "started 20" in str(err) and "Nothing was sent" in str(err)
            # a reader is not blocked, and sees the holder's users in flight
            assert outcomes(ledger, job) == {"held-1": "in_flight", "held-2": "in_flight"}
    finally:
        assert child.stdin is not None
        child.stdin.close()
        assert child.wait(timeout=60) == 0
        assert child.stdout is not None
        child.stdout.close()
    with Ledger(path) as ledger:  # the holder finished: its lock is gone
        job = ledger.job(*ledger_worker.JOB)
        ledger.begin_run(job).finish()
        assert outcomes(ledger, job) == {"held-1": "unknown", "held-2": "unknown"}


def test_lock_of_a_killed_process_is_taken_over(path: Path) -> None:
    path.parent.mkdir()
    child = subprocess.Popen(
        [sys.executable, str(WORKER), "hold", str(path)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, env=_env(),
    )
    assert child.stdout is not None
    assert child.stdout.readline().startswith("ready")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.stdin is not None
    child.stdin.close()
    child.stdout.close()
    with Ledger(path) as ledger:
        job = ledger.job(*ledger_worker.JOB)
        assert outcomes(ledger, job) == {"held-1": "unknown", "held-2": "unknown"}
        with ledger.begin_run(job) as run:
            assert {OUTCOMES[o] for o in run.state().outcome} == {"unknown"}
        table = ledger.jobs()
        assert (table.loc[0, "unknown"], table.loc[0, "in_flight"]) == (2, 0)
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT state FROM runs ORDER BY id")] == [
        "died", "finished"
    ]
    conn.close()


def _kill_run(path: Path, seed: int, kill_at: int) -> list[str]:
    out = subprocess.run(
        [sys.executable, str(WORKER), "write", str(path), str(seed), str(kill_at)],
        capture_output=True, text=True, env=_env(), timeout=120,
    )
    if kill_at:
        assert out.returncode == -signal.SIGKILL, out.stderr
    else:
        assert out.returncode == 0, out.stderr
    return out.stdout.split("\n")


@pytest.mark.parametrize(("seed", "phase"), [(s, "in_flight") for s in range(3)] + [
    (s, "done") for s in range(3, 6)] + [(s, "finish") for s in range(6, 8)])
def test_kill_9_at_a_random_point_never_claims_an_unanswered_user(
    tmp_path: Path, seed: int, phase: str
) -> None:
    # A full run first tells where each step's transaction starts and ends (progress-handler
    # calls); the seed then picks a step of the phase and a point inside it.
    full = [line.split() for line in _kill_run(tmp_path / "full.db", seed, 0) if line]
    at = {(w[0], w[1]): int(w[2]) for w in full if len(w) == 3}
    sending, calls = (int(next(w for w in full if w[0] == word)[1])
                      for word in ("sending", "calls"))  # fmt: skip
    rng = random.Random(seed)
    step = rng.randrange(ledger_worker.BATCHES)
    if phase == "in_flight":
        start, end = at[("F", str(step))], at[("f", str(step))]
    elif phase == "done":
        start, end = at[("d", str(step))], at[("D", str(step))]
    else:
        start, end = sending, calls
    assert end > start, (phase, step, start, end)
    kill_at = rng.randrange(start + 1, end + 1)
    path = tmp_path / "killed.db"
    lines = {" ".join(line.split()[:2]) for line in _kill_run(path, seed, kill_at)}
    batches = ledger_worker.batches(seed)

    def check(state_outcomes: dict[str, str], *, recovered: bool) -> None:
        for b, (keys, outcome) in enumerate(batches):
            got = {state_outcomes.get(k) for k in keys}
            assert len(got) == 1, f"batch {b} half written: {got}"  # one transaction
            (value,) = got
            unanswered = "unknown" if recovered else "in_flight"
            if f"D {b}" in lines:  # its answer was committed: never lost
                assert value == outcome, (b, value)
            elif f"d {b}" in lines:  # killed while committing the answer: either
                assert value in (outcome, unanswered), (b, value)
            elif f"f {b}" in lines:  # in flight, no answer: never claimed
                assert value == unanswered, (b, value)
            elif f"F {b}" in lines:  # killed while writing it in flight
                assert value in (None, unanswered), (b, value)
            else:
                assert value is None, (b, value)

    with Ledger(path) as ledger:
        job = ledger.job(*ledger_worker.JOB)
        check(outcomes(ledger, job), recovered=True)  # the run is dead: read as unknown
        with ledger.begin_run(job) as run:  # takes the dead run's lock over
            check({k: OUTCOMES[o] for k, o in zip(run.state().keys, run.state().outcome,
                                                   strict=True)}, recovered=True)
        check(outcomes(ledger, job), recovered=True)
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT count(*) FROM flights").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM sends").fetchone()[0] == 0  # folded
        conn.close()


def test_states_have_stable_codes() -> None:
    # stored in files: renumbering them would misread every existing ledger
    assert (IN_FLIGHT, ACKNOWLEDGED, FAILED, UNKNOWN) == (0, 1, 2, 3)
    assert (SYNC, REVERT, KEPT) == (0, 1, 2)


def test_device_and_group_keys_survive_the_file(ledger: Ledger) -> None:
    job = ledger.job("j", URL, KEY)
    keys = ["\x00device-1", "device-1", "org\x00acme", "ünï\u2603"]
    with ledger.begin_run(job) as run:
        run.mark_in_flight(keys, [d(1), d(2), d(3), d(4)])
        run.mark_done(keys, "acknowledged")
    state = ledger.state(job)
    assert sorted(zip(state.keys, (bytes(g) for g in state.digest), strict=True)) == sorted(
        zip(keys, [d(1), d(2), d(3), d(4)], strict=True))


def test_mark_in_flight_checks_lengths(ledger: Ledger) -> None:
    with ledger.begin_run(ledger.job("j", URL, KEY)) as run:
        with pytest.raises(ValueError, match="differ in length"):
            run.mark_in_flight(["a", "b"], [d(1)])
        with pytest.raises(ValueError, match="differ in length"):
            run.mark_in_flight(["a"], [d(1)], rows=[1, 2])


def test_a_user_flown_twice_in_a_run_keeps_its_last_flight(ledger: Ledger) -> None:
    job = ledger.job("j", URL, KEY)
    with ledger.begin_run(job) as run:
        run.mark_in_flight(["b", "a"], [d(1), d(1)])
        run.mark_done(["b", "a"], "failed")
        run.mark_in_flight(["a", "b"], [d(2), d(3)])
        run.mark_done(["a", "b"], ["acknowledged", "unknown"])
        live = ledger.state(job)
    for state in (live, ledger.state(job)):  # read while running, then folded
        got = {k: (OUTCOMES[o], bytes(g)) for k, o, g in
               zip(state.keys, state.outcome, state.digest, strict=True)}
        assert got == {"a": ("acknowledged", d(2)), "b": ("unknown", d(3))}


def test_a_dropped_ledger_closes_its_connection(path: Path) -> None:
    ledger = Ledger(path)
    conn = ledger._db
    del ledger
    gc.collect()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        conn.execute("SELECT 1")


def _set_lock(path: Path, **values: object) -> None:
    conn = sqlite3.connect(path)
    for column, value in values.items():
        conn.execute(f"UPDATE locks SET {column} = ?", (value,))
    conn.commit()
    conn.close()


def test_a_reused_pid_is_not_the_lock_holder(ledger: Ledger, path: Path) -> None:
    from amp_pandas._ledger import _proc_start

    if _proc_start(os.getppid()) is None:
        pytest.skip("no process start times on this platform")
    job = ledger.job("j", URL, KEY)
    run = ledger.begin_run(job)
    run.mark_in_flight(["a"], [d(1)])
    # the lock now names a live process (our parent) with its true start time: respected
    _set_lock(path, pid=os.getppid(), proc_start=_proc_start(os.getppid()))
    with pytest.raises(LedgerLockedError, match=f"process {os.getppid()} "):
        ledger.begin_run(job)
    # the same pid with another start time is a process that reused the pid: taken over
    _set_lock(path, proc_start=_proc_start(os.getppid()) + 1)  # type: ignore[operator]
    ledger.begin_run(job).finish()
    assert outcomes(ledger, job) == {"a": "unknown"}
    run.finished = True  # its lock was taken over; nothing more to write


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_zombie_holder_is_dead(path: Path) -> None:
    path.parent.mkdir()
    child = subprocess.Popen(
        [sys.executable, str(WORKER), "hold", str(path)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, env=_env(),
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        assert child.stdout.readline().startswith("ready")
        os.kill(child.pid, signal.SIGKILL)
        # not reaped yet: the pid still exists, as a zombie
        for _ in range(200):
            with open(f"/proc/{child.pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    break
            time.sleep(0.05)
        with Ledger(path) as ledger:
            ledger.begin_run(ledger.job(*ledger_worker.JOB)).finish()
    finally:
        child.wait(timeout=60)
        child.stdin.close()
        child.stdout.close()


def test_a_lock_from_another_host_is_respected_until_unlocked(
    ledger: Ledger, path: Path
) -> None:
    job = ledger.job("j", URL, KEY)
    run = ledger.begin_run(job)
    run.mark_in_flight(["a"], [d(1)])
    _set_lock(path, host="elsewhere.example", pid=1)
    with pytest.raises(LedgerLockedError, match="process 1 on elsewhere.example") as info:
        ledger.begin_run(job)
    assert ".unlock('j')" in str(info.value)
    assert "amp-pandas ledger unlock 'j'" in str(info.value)
    assert outcomes(ledger, job) == {"a": "in_flight"}  # cannot tell: still in flight
    assert ledger.unlock("j") == (1, "elsewhere.example")
    assert outcomes(ledger, job) == {"a": "unknown"}
    assert ledger.unlock("j") is None  # nothing held any more
    ledger.begin_run(job).finish()
    run.finished = True


def test_a_running_holder_on_this_host_is_not_unlocked(ledger: Ledger) -> None:
    job = ledger.job("j", URL, KEY)
    run = ledger.begin_run(job)  # this process, running
    run.mark_in_flight(["a"], [d(1)])
    with pytest.raises(LedgerLockedError, match=f"process {os.getpid()} on this host"):
        ledger.unlock("j")
    assert outcomes(ledger, job) == {"a": "in_flight"}  # left as it was
    with pytest.raises(LedgerLockedError):
        ledger.begin_run(job)
    run.finish()
    assert ledger.unlock("j") is None


def test_a_busy_ledger_is_an_access_error(
    ledger: Ledger, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import amp_pandas._ledger as module

    monkeypatch.setattr(module, "_BUSY_TIMEOUT", 0.2)
    with Ledger(path) as other:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(LedgerAccessError, match="stayed busy"):
                other.begin_run(other.job("j", URL, KEY))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()


def test_another_application_id_is_refused(ledger: Ledger, path: Path) -> None:
    ledger.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 42")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerCorruptError, match="not an amp_pandas ledger"):
        Ledger(path)


def test_none_revert_info_is_nothing_to_undo(ledger: Ledger) -> None:
    job = ledger.job("j", URL, KEY)
    with ledger.begin_run(job) as run:
        run.mark_in_flight(["a", "b"], [d(1), d(2)], [None, RevertInfo(set=("p",))])
        run.mark_done(["a", "b"], "acknowledged")
    state = ledger.state(job)
    got = dict(zip(state.keys, state.revert_of(np.arange(len(state))), strict=True))
    assert got == {"a": RevertInfo(), "b": RevertInfo(set=("p",))}


def test_revert_infos_no_user_holds_are_dropped(ledger: Ledger, path: Path) -> None:
    job = ledger.job("j", URL, KEY)
    infos = [RevertInfo(added=(("t", (f'"v{n}"',)),)) for n in range(3)]
    with ledger.begin_run(job) as run:
        run.mark_in_flight(["a", "b"], [d(1), d(1)], [infos[0], infos[1]])
        run.mark_done(["a", "b"], "acknowledged")
    with ledger.begin_run(job) as run:  # b's send fails: b keeps infos[1]
        run.mark_in_flight(["a", "b"], [d(2), d(2)], [infos[2], infos[2]])
        run.mark_done(["a", "b"], ["acknowledged", "failed"])
    conn = sqlite3.connect(path)
    kept = sorted(t for (t,) in conn.execute("SELECT info FROM reverts"))
    conn.close()
    assert kept == sorted([infos[0].union(infos[2]).to_json(), infos[1].to_json()])


def test_a_failed_write_leaves_no_transaction_open(ledger: Ledger, path: Path) -> None:
    job = ledger.job("j", URL, KEY)
    with ledger.begin_run(job) as run:
        with pytest.raises(TypeError):
            run.mark_in_flight(["a", "b"], [d(1), "not bytes"])  # type: ignore[list-item]
        assert not ledger._db.in_transaction
        assert outcomes(ledger, job) == {}
        run.mark_in_flight(["a"], [d(1)])
        run.mark_done(["a"], "acknowledged")
    assert outcomes(ledger, job) == {"a": "acknowledged"}


# --- the log of sends, folded or not -------------------------------------------------------------

_INFOS = [RevertInfo(set=("p",)), RevertInfo(added=(("t", ('"v"',)),)), RevertInfo(set=("q",))]


def _two_runs(ledger: Ledger) -> None:
    """Every path a user's entry can take: acknowledged, failed, unknown, left in flight,
    changed, reverted (acknowledged and failed) and let go."""
    job = ledger.job("j", URL, KEY)
    with ledger.begin_run(job) as run:
        run.mark_in_flight(list("abcdefg"), [d(n) for n in range(7)],
                           [_INFOS[0]] * 4 + [_INFOS[1]] * 3, rows=[1, 1, 1, 1, 1, 1, 2])
        run.mark_done(list("abcdef"), ["acknowledged"] * 4 + ["failed", "unknown"])
        run.mark_done(["g"], "acknowledged")  # one of g's two rows: g stays in flight
    with ledger.begin_run(job) as run:
        run.mark_in_flight(["a", "b"], [d(10), d(11)], [_INFOS[2], _INFOS[2]])
        run.mark_done(["a", "b"], ["acknowledged", "failed"])
        run.mark_revert_in_flight(["c", "d"])
        run.mark_done(["c", "d"], ["acknowledged", "failed"])
        run.mark_left(["e", "f", "c"])  # c was reverted: no member, not let go


#: What the two runs leave, worked out by hand: key -> (outcome, action, digest, revert info).
_AFTER_TWO_RUNS = {
    "a": ("acknowledged", "sync", d(10), _INFOS[0].union(_INFOS[2])),
    "b": ("failed", "sync", d(11), _INFOS[0]),  # failed: what was in effect stays
    "c": ("acknowledged", "revert", None, None),
    "d": ("failed", "revert", d(3), _INFOS[0]),
    "e": ("failed", "kept", d(4), None),  # a new user whose send failed: nothing in effect
    "f": ("unknown", "kept", d(5), _INFOS[1]),
    "g": ("unknown", "sync", d(6), _INFOS[1]),
}


def _users(ledger: Ledger) -> dict[str, tuple[object, ...]]:
    frame = ledger.users("j")
    return {
        row.key: (row.outcome, row.action,
                  None if row.digest is None else bytes.fromhex(row.digest),
                  None if row.revert is None else RevertInfo.from_json(row.revert))
        for row in frame.itertuples()
    }  # fmt: skip


def _log_rows(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        return (conn.execute("SELECT count(*) FROM sends").fetchone()[0],
                conn.execute("SELECT count(*) FROM users").fetchone()[0])  # fmt: skip
    finally:
        conn.close()


@pytest.mark.parametrize("fold_below", [0, 50_000])
def test_the_log_reads_the_same_folded_or_not(
    path: Path, monkeypatch: pytest.MonkeyPatch, fold_below: int
) -> None:
    monkeypatch.setattr("amp_pandas._ledger._FOLD_BELOW", fold_below)
    with Ledger(path) as ledger:
        _two_runs(ledger)
        assert _users(ledger) == _AFTER_TWO_RUNS
        state = ledger.state(ledger.job("j", URL, KEY))
        assert dict(zip(state.keys, state.member_mask().tolist(), strict=True)) == {
            "a": True, "b": True, "c": False, "d": True, "e": False, "f": False, "g": True}
    sends, users = _log_rows(path)
    if fold_below:  # small runs are folded when they end
        assert (sends, users) == (0, 7)
    else:  # two runs, neither larger than twice the other: the log stays as written
        assert (sends, users) == (4, 0)
        monkeypatch.setattr("amp_pandas._ledger._FOLD_BELOW", 50_000)
        with Ledger(path) as ledger:
            with ledger.begin_run(ledger.job("j", URL, KEY)):
                pass  # the next run's end folds it
            assert _users(ledger) == _AFTER_TWO_RUNS
        assert _log_rows(path) == (0, 7)


def test_a_log_larger_than_twice_its_largest_run_is_folded(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("amp_pandas._ledger._FOLD_BELOW", 0)
    with Ledger(path) as ledger:
        job = ledger.job("j", URL, KEY)
        for n in range(3):
            with ledger.begin_run(job) as run:
                run.mark_in_flight(["a", "b"], [d(n + 1), d(n + 1)])
                run.mark_done(["a", "b"], ["acknowledged", "failed"])
            assert _log_rows(path) == ((n + 1, 0) if n < 2 else (0, 2))
            assert _users(ledger) == {"a": ("acknowledged", "sync", d(n + 1), RevertInfo()),
                                      "b": ("failed", "sync", d(n + 1), None)}  # fmt: skip


def test_a_live_runs_log_is_in_flight_and_a_dead_ones_unknown(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("amp_pandas._ledger._FOLD_BELOW", 0)
    with Ledger(path) as ledger:
        job = ledger.job("j", URL, KEY)
        run = ledger.begin_run(job)
        run.mark_in_flight(["a", "b"], [d(1), d(2)])
        run.mark_done(["a"], "acknowledged")
        assert outcomes(ledger, job) == {"a": "acknowledged", "b": "in_flight"}
        run.finish()
        with ledger.begin_run(job) as second:
            second.mark_in_flight(["c"], [d(3)])
            # b's run is over: unknown; c is in flight in the live run
            assert outcomes(ledger, job) == {"a": "acknowledged", "b": "unknown",
                                             "c": "in_flight"}  # fmt: skip
        assert outcomes(ledger, job) == {"a": "acknowledged", "b": "unknown", "c": "unknown"}


def test_a_schema_2_ledger_with_a_dead_runs_log_is_migrated(path: Path) -> None:
    """A run of schema 2 died with its log (``flights``, ``done``) unfolded: after the
    migration its answered user is kept, its unanswered one is unknown."""
    with Ledger(path):
        pass
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE sends; DROP TABLE answers; PRAGMA user_version = 2;")
    fp_row = conn.execute("SELECT value FROM meta WHERE name = 'salt'").fetchone()
    fp = hashlib.sha256(f"{fp_row[0]}\x00{KEY}".encode()).hexdigest()[:32]
    conn.execute("INSERT INTO jobs VALUES (1, 'j', ?, ?, 0)", (URL, fp))
    conn.execute("INSERT INTO runs VALUES (1, 1, 4194305, 'elsewhere-host', 100, NULL, "
                 "'running', NULL)")  # fmt: skip
    conn.execute("INSERT INTO reverts VALUES (1, 1, ?)", (RevertInfo().to_json(),))
    conn.execute("INSERT INTO flights VALUES (1, 1, 1, 'a', ?, 0, 1, 100)", (d(1),))
    conn.execute("INSERT INTO flights VALUES (2, 1, 1, 'b', ?, 0, 1, 100)", (d(2),))
    conn.execute("INSERT INTO done VALUES (1, 1, 1, 1)")
    conn.commit()
    conn.close()
    with Ledger(path) as ledger:
        job = ledger.job("j", URL, KEY)
        assert outcomes(ledger, job) == {"a": "acknowledged", "b": "unknown"}
        with ledger.begin_run(job) as run:
            run.mark_in_flight(["c"], [d(3)])
            run.mark_done(["c"], "acknowledged")
        assert _users(ledger) == {"a": ("acknowledged", "sync", d(1), RevertInfo()),
                                  "b": ("unknown", "sync", d(2), RevertInfo()),
                                  "c": ("acknowledged", "sync", d(3), RevertInfo())}  # fmt: skip
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert conn.execute("SELECT count(*) FROM flights").fetchone()[0] == 0
    conn.close()
