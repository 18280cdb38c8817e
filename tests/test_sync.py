"""Sync runs end to end against the sandbox: statuses, removed users, jobs, the lock, the ledger
file's errors, and a process killed at random points of a send."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import amp_pandas
from amp_pandas import Ledger, literal
from amp_pandas.errors import (
    ArgumentError,
    LedgerAccessError,
    LedgerCorruptError,
    LedgerLockedError,
    LedgerVersionError,
)
from amp_pandas.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
HELD_TEXT = "may or may not have been applied"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


def run(df: pd.DataFrame, sb: Sandbox, path: Path, **kw: Any) -> Any:
    """A sync run of ``df`` (warnings recorded, not raised)."""
    args: dict[str, Any] = {"user_id": "uid", "server_url": sb.url, "api_key": sb.api_key,
                            "progress": False, "sync": "weekly", "ledger": path}  # fmt: skip
    args.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return df.amplitude.identify(**args)


def cohort(*users: str, plan: dict[str, str] | None = None) -> pd.DataFrame:
    plans = plan or {}
    return pd.DataFrame({"uid": list(users), "plan": [plans.get(u, "pro") for u in users]})


def sent_users(sb: Sandbox) -> list[str]:
    return sorted(i["user_id"] for i in sb.applied)


TAG = {"set": ["plan"], "post_insert": {"campaigns": literal("winback")}}


# --- statuses -----------------------------------------------------------------------------------


def test_first_run_sends_all_then_an_identical_rerun_sends_nothing(sb: Sandbox,
                                                                   path: Path) -> None:
    df = cohort("user-1", "user-2", "user-3")
    first = run(df, sb, path, **TAG)
    assert first.status.tolist() == ["success"] * 3
    assert sent_users(sb) == ["user-1", "user-2", "user-3"]
    requests = len(sb.requests)
    again = run(df, sb, path, **TAG)
    assert again.status.tolist() == ["unchanged"] * 3
    assert again.error.isna().all()
    assert len(sb.requests) == requests  # not one request
    assert len(again.removed) == 0
    assert sb.profile("user-1") == {"plan": "pro", "campaigns": ["winback"]}


def test_changed_and_new_users_are_sent_unchanged_ones_are_not(sb: Sandbox, path: Path) -> None:
    run(cohort("user-1", "user-2"), sb, path, **TAG)
    sb.reset()
    df = cohort("user-1", "user-2", "user-3", plan={"user-2": "team"})
    preview = run(df, sb, path, dry_run=True, **TAG)
    assert preview.sync.counts == {"new": 1, "changed": 1, "unchanged": 1, "ambiguous": 0,
                                   "held": 0, "removed": 0}  # fmt: skip
    assert preview.summary["unchanged"] == 1 and preview.summary["removed"] == 0
    result = preview.send(progress=False)
    assert result.status.tolist() == ["unchanged", "success", "success"]
    assert sent_users(sb) == ["user-2", "user-3"]
    assert sb.profile("user-2") == {"plan": "team", "campaigns": ["winback"]}


def test_a_user_whose_rows_change_order_is_changed(sb: Sandbox, path: Path) -> None:
    df = pd.DataFrame({"uid": ["user-1", "user-1"], "plan": ["a", "b"]})
    run(df, sb, path, set=["plan"])
    assert run(df, sb, path, set=["plan"]).status.tolist() == ["unchanged", "unchanged"]
    swapped = run(df.iloc[::-1], sb, path, set=["plan"])
    assert swapped.status.tolist() == ["success", "success"]
    assert sb.profile("user-1") == {"plan": "a"}


def test_without_sync_no_ledger_is_touched(sb: Sandbox, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMP_PANDAS_LEDGER", str(tmp_path / "default.sqlite3"))
    df = cohort("user-1")
    for _ in range(2):
        result = df.amplitude.identify(user_id="uid", set=["plan"], server_url=sb.url,
                                       api_key=sb.api_key, progress=False)  # fmt: skip
        assert result.status.tolist() == ["success"]
        assert result.removed is None
    assert list(tmp_path.iterdir()) == []
    assert len(sb.applied) == 2


def test_default_ledger_is_the_environment_variable(sb: Sandbox, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    where = tmp_path / "env" / "ledger.sqlite3"
    monkeypatch.setenv("AMP_PANDAS_LEDGER", str(where))
    cohort("user-1").amplitude.identify(user_id="uid", set=["plan"], server_url=sb.url,
                                        api_key=sb.api_key, progress=False, sync="env-job")
    assert where.exists()
    assert oct(where.stat().st_mode & 0o777) == "0o600"
    assert Ledger(where).jobs()["job"].tolist() == ["env-job"]


def test_sync_arguments_are_checked_before_anything_is_sent(sb: Sandbox, path: Path) -> None:
    df = cohort("user-1")
    with pytest.raises(ArgumentError, match="sync= takes a job name"):
        run(df, sb, path, sync=" ", set=["plan"])
    with pytest.raises(ArgumentError, match='removed="revert" needs a sync job'):
        run(df, sb, path, sync=None, ledger=None, removed="revert", set=["plan"])
    with pytest.raises(ArgumentError, match="ledger= is used by sync runs only"):
        run(df, sb, path, sync=None, set=["plan"])
    assert sb.requests == []
    assert not path.exists()


# --- ambiguous users ----------------------------------------------------------------------------


def leave_unknown(path: Path, sb: Sandbox, texts: dict[str, str], job: str = "weekly") -> None:
    """Write users into the ledger as sent with an unknown outcome (the digests of ``texts``,
    computed here by hand: SHA-256 of the JSON text and a newline, first 16 bytes)."""
    with Ledger(path) as ledger:
        with ledger.begin_run(ledger.job(job, sb.url, sb.api_key)) as r:
            keys = list(texts)
            digests = [hashlib.sha256(texts[k].encode() + b"\n").digest()[:16] for k in keys]
            r.mark_in_flight(keys, digests)
            r.mark_done(keys, "unknown")


def test_ambiguous_idempotent_users_are_sent_again(sb: Sandbox, path: Path) -> None:
    text = '{"user_id":"user-1","user_properties":{"$set":{"plan":"pro"}}}'
    leave_unknown(path, sb, {"user-1": text})
    preview = run(cohort("user-1"), sb, path, set=["plan"], dry_run=True)
    assert preview.payloads[0] == json.loads(text)  # the digest above is of what is sent
    assert preview.sync.counts["ambiguous"] == 1
    assert preview.send(progress=False).status.tolist() == ["success"]
    assert sent_users(sb) == ["user-1"]
    # acknowledged now: the next run leaves it alone
    assert run(cohort("user-1"), sb, path, set=["plan"]).status.tolist() == ["unchanged"]


def test_ambiguous_non_idempotent_users_are_held_unless_retry_ambiguous(
    sb: Sandbox, path: Path
) -> None:
    df = pd.DataFrame({"uid": ["user-1", "user-2"], "n": [1, 2]})
    texts = {u: f'{{"user_id":"{u}","user_properties":{{"$add":{{"logins":{n}}}}}}}'
             for u, n in (("user-1", 1), ("user-2", 2))}  # fmt: skip
    leave_unknown(path, sb, texts)
    with pytest.warns(amp_pandas.errors.RowsNotSucceededWarning):
        held = df.amplitude.identify(user_id="uid", add={"logins": "n"}, server_url=sb.url,
                                     api_key=sb.api_key, progress=False, sync="weekly",
                                     ledger=path)  # fmt: skip
    assert held.status.tolist() == ["unknown", "unknown"]
    assert all(HELD_TEXT in e and "retry_ambiguous=True" in e for e in held.error)
    assert sb.requests == []
    # held again on the next run (nothing learnt meanwhile)
    assert run(df, sb, path, add={"logins": "n"}).status.tolist() == ["unknown", "unknown"]
    retried = run(df, sb, path, add={"logins": "n"}, retry_ambiguous=True)
    assert retried.status.tolist() == ["success", "success"]
    assert sb.profile("user-2") == {"logins": 2}
    assert run(df, sb, path, add={"logins": "n"}).status.tolist() == ["unchanged"] * 2


def test_a_failed_user_is_sent_again(sb: Sandbox, path: Path) -> None:
    sb.throttle(["user-2"], seconds=60)
    first = run(cohort("user-1", "user-2"), sb, path, set=["plan"], throttle_pause=0.01,
                throttle_budget=0.05)  # fmt: skip
    assert first.status.tolist() == ["success", "throttled"]
    sb.clear_throttle()
    again = run(cohort("user-1", "user-2"), sb, path, set=["plan"])
    assert again.status.tolist() == ["unchanged", "success"]
    assert sb.profile("user-2") == {"plan": "pro"}


# --- removed users ------------------------------------------------------------------------------


def test_removed_keep_sends_nothing_and_reports_once(sb: Sandbox, path: Path) -> None:
    run(cohort("user-1", "user-2"), sb, path, **TAG)
    sb.reset()
    preview = run(cohort("user-1"), sb, path, dry_run=True, **TAG)
    assert preview.sync.counts["removed"] == 1
    assert preview.sync.reverts["identification"].tolist() == [None]
    result = preview.send(progress=False)
    assert result.status.tolist() == ["unchanged"]
    assert result.removed[["user_id", "status"]].values.tolist() == [["user-2", "kept"]]
    assert sb.requests == []
    # let go: not removed again, and a revert later does not reach it either
    later = run(cohort("user-1"), sb, path, removed="revert", **TAG)
    assert len(later.removed) == 0
    assert sb.requests == []


def test_removed_revert_undoes_every_operation_it_can(sb: Sandbox, path: Path) -> None:
    # before the job: the profile holds values of its own
    sb_setup = pd.DataFrame({"uid": ["user-1"], "old": ["old"], "n": [5]})
    sb_setup.amplitude.identify(user_id="uid", append={"tags": "old"}, add={"logins": "n"},
                                server_url=sb.url, api_key=sb.api_key, progress=False)
    before = {"tags": ["old"], "logins": 5}
    assert sb.profile("user-1") == before
    job = {
        "set": {"cohort": literal("q2")},
        "set_once": {"first_seen": literal("2024-05-01")},
        "append": {"tags": literal("q2")},
        "prepend": {"history": literal(["h1", "h2"])},
        "pre_insert": {"early": literal("e")},
        "post_insert": {"late": literal("l")},
        "add": {"logins": literal(1)},
    }
    df = pd.DataFrame({"uid": ["user-1", "user-2"]})
    assert run(df, sb, path, **job).status.tolist() == ["success", "success"]
    assert sb.profile("user-1") == {"tags": ["old", "q2"], "logins": 6, "cohort": "q2",
                                    "first_seen": "2024-05-01", "history": ["h1", "h2"],
                                    "early": ["e"], "late": ["l"]}  # fmt: skip
    result = run(df.iloc[1:], sb, path, removed="revert", **job)
    assert result.status.tolist() == ["unchanged"]
    removed = result.removed
    assert removed["user_id"].tolist() == ["user-1"]
    assert removed["identification"].tolist() == [{
        "user_id": "user-1",
        "user_properties": {
            "$unset": {"cohort": "-", "first_seen": "-"},
            "$remove": {"early": ["e"], "history": ["h1", "h2"], "late": ["l"], "tags": ["q2"]},
        },
    }]  # fmt: skip
    assert removed["status"].tolist() == ["success"]
    assert removed["not_undone"].tolist() == [["$add logins"]]
    # everything the job did is gone except the $add; emptied lists stay empty lists
    assert sb.profile("user-1") == {"tags": ["old"], "logins": 6, "history": [], "early": [],
                                    "late": []}  # fmt: skip
    # reverted: no longer a member; back in the cohort it is new again
    assert len(run(df.iloc[1:], sb, path, removed="revert", **job).removed) == 0
    back = run(df, sb, path, removed="revert", **job)
    assert back.status.tolist() == ["success", "unchanged"]


def test_revert_of_a_device_only_user_and_a_failed_revert_is_tried_again(
    sb: Sandbox, path: Path
) -> None:
    df = pd.DataFrame({"uid": [None, "user-2"], "dev": ["device-1", "device-2"],
                       "plan": ["a", "b"]})  # fmt: skip
    run(df, sb, path, device_id="dev", set=["plan"])
    sb.set_faults(rate_503=1.0)
    failed = run(df.iloc[1:], sb, path, device_id="dev", set=["plan"], removed="revert",
                 max_retries=0)  # fmt: skip
    assert failed.removed[["device_id", "status"]].values.tolist() == [["device-1", "failed"]]
    assert sb.profile("device-1") == {"plan": "a"}
    sb.set_faults(rate_503=0.0)
    again = run(df.iloc[1:], sb, path, device_id="dev", set=["plan"], removed="revert")
    assert again.removed["identification"].tolist() == [
        {"device_id": "device-1", "user_properties": {"$unset": {"plan": "-"}}}
    ]
    assert again.removed["status"].tolist() == ["success"]
    assert sb.profile("device-1") == {}


# --- jobs, lock, ledger errors ------------------------------------------------------------------


def test_jobs_are_separate_by_name_endpoint_and_key(sb: Sandbox, path: Path) -> None:
    df = cohort("user-1")
    run(df, sb, path, set=["plan"])
    assert run(df, sb, path, set=["plan"]).status.tolist() == ["unchanged"]
    assert run(df, sb, path, set=["plan"], sync="other").status.tolist() == ["success"]
    with Sandbox(api_key="another-key") as other:
        moved = run(df, other, path, set=["plan"])  # another endpoint and key
        assert moved.status.tolist() == ["success"]
        assert other.profile("user-1") == {"plan": "pro"}
    # the same endpoint with another key is another job too (a dry run: nothing sent)
    preview = run(df, sb, path, set=["plan"], dry_run=True, api_key="a-third-key")
    assert preview.sync.counts["new"] == 1 and preview.sync.held_users == 0
    jobs = Ledger(path).jobs()
    assert sorted(jobs["job"]) == ["other", "weekly", "weekly"]


def test_the_api_key_is_never_in_the_ledger(sb: Sandbox, path: Path) -> None:
    with Sandbox(api_key="secret-key-0123456789") as other:
        run(cohort("user-1", "user-2"), other, path, **TAG)
        run(cohort("user-1"), other, path, removed="revert", **TAG)
        raw = b"".join(p.read_bytes() for p in path.parent.iterdir() if p.is_file())
        assert b"secret-key-0123456789" not in raw
        assert b"user-1" in raw  # the check reads the real data


def test_a_second_run_of_the_job_is_refused_before_sending(sb: Sandbox, path: Path) -> None:
    ledger = Ledger(path)
    holder = ledger.begin_run(ledger.job("weekly", sb.url, sb.api_key))
    try:
        with pytest.raises(LedgerLockedError, match=f"process {os.getpid()} on "
                           f"{socket.gethostname()}") as info:  # fmt: skip
            run(cohort("user-1"), sb, path, set=["plan"])
        assert "Nothing was sent" in str(info.value)
        assert sb.requests == []
    finally:
        holder.finish()
        ledger.close()
    assert run(cohort("user-1"), sb, path, set=["plan"]).status.tolist() == ["success"]


def test_another_process_holding_the_job_is_named(sb: Sandbox, path: Path) -> None:
    hold = textwrap.dedent(f"""
        import sys, time
        from amp_pandas import Ledger
        ledger = Ledger({str(path)!r})
        run = ledger.begin_run(ledger.job("weekly", {sb.url!r}, {sb.api_key!r}))
        print("held", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(LedgerLockedError, match=f"process {proc.pid} "):
            run(cohort("user-1"), sb, path, set=["plan"])
        assert sb.requests == []
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    # the holder died: its lock is taken over
    assert run(cohort("user-1"), sb, path, set=["plan"]).status.tolist() == ["success"]


def test_a_corrupt_ledger_is_an_error_and_nothing_is_sent(sb: Sandbox, path: Path) -> None:
    path.write_bytes(b"this is not a database" * 100)
    for dry_run in (True, False):
        with pytest.raises(LedgerCorruptError, match="nothing was sent"):
            run(cohort("user-1"), sb, path, set=["plan"], dry_run=dry_run)
    assert sb.requests == []
    assert path.read_bytes() == b"this is not a database" * 100


def test_an_unwritable_ledger_is_an_error_and_nothing_is_sent(sb: Sandbox,
                                                              tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(LedgerAccessError, match="cannot be created or opened"):
        run(cohort("user-1"), sb, blocker / "ledger.sqlite3", set=["plan"])
    assert sb.requests == []


def test_a_newer_ledger_is_an_error_and_nothing_is_sent(sb: Sandbox, path: Path) -> None:
    run(cohort("user-1"), sb, path, set=["plan"])
    sb.reset()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(LedgerVersionError, match="schema version 99"):
        run(cohort("user-2"), sb, path, set=["plan"])
    assert sb.requests == []


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


def test_a_schema_1_ledger_is_migrated_and_used(sb: Sandbox, path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(V1_DDL)
    conn.execute("INSERT INTO meta VALUES ('salt', 'abc')")
    conn.execute(f"PRAGMA application_id = {int.from_bytes(b'ampl', 'big')}")
    conn.execute("PRAGMA user_version = 1")
    fp = hashlib.sha256(f"abc\x00{sb.api_key}".encode()).hexdigest()[:32]
    endpoint = sb.url.rstrip("/")
    conn.execute("INSERT INTO jobs VALUES (1, 'weekly', ?, ?, 0)", (endpoint, fp))
    conn.execute("INSERT INTO runs VALUES (1, 1, 1, 'elsewhere', 100, 200, 'finished')")
    digest = hashlib.sha256(
        b'{"user_id":"user-1","user_properties":{"$set":{"plan":"pro"}}}\n'
    ).digest()[:16]
    # user-1 acknowledged with today's identification; user-9 a member absent now
    conn.execute("INSERT INTO users VALUES (1, 'user-1', ?, 1, 0, NULL, NULL, 1, 200)", (digest,))
    conn.execute("INSERT INTO users VALUES (1, 'user-9', ?, 1, 0, NULL, NULL, 1, 200)", (digest,))
    conn.commit()
    conn.close()
    result = run(cohort("user-1", "user-2"), sb, path, set=["plan"])
    assert result.status.tolist() == ["unchanged", "success"]
    assert result.removed["user_id"].tolist() == ["user-9"]
    assert sent_users(sb) == ["user-2"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    conn.close()


# --- crash safety -------------------------------------------------------------------------------

KILLED_SEND = """
import sys
import numpy as np
import pandas as pd
import amp_pandas
from amp_pandas import literal
url, key, ledger, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
df = pd.DataFrame({"uid": [f"user-{i:04d}" for i in range(n)], "n": 1})
print("start", flush=True)
df.amplitude.identify(user_id="uid", add={"logins": "n"}, set={"cohort": literal("x")},
                      server_url=url, api_key=key, sync="killed", ledger=ledger, batch_size=5,
                      max_workers=3, progress=False)
print("finished", flush=True)
"""
N_KILLED = 120


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kill_9_at_a_random_point_then_rerun(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "ledger.sqlite3"
    with Sandbox(latency=0.02) as sb:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_SEND, sb.url, sb.api_key, str(path), str(N_KILLED)],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "start"
            deadline = time.monotonic() + 60
            while not sb.requests and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.35))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
        time.sleep(0.3)  # requests that reached the sandbox before the kill are applied by now
        applied_before = Counter(i["user_id"] for i in sb.applied)
        with Ledger(path) as ledger:
            users = ledger.users("killed").set_index("key")["outcome"].to_dict()
        # never success for a user whose answer was not received: acknowledged => applied
        acknowledged = {u for u, o in users.items() if o == "acknowledged"}
        assert all(applied_before[u] == 1 for u in acknowledged)
        assert 0 < len(applied_before)  # the kill landed during the send
        df = pd.DataFrame({"uid": [f"user-{i:04d}" for i in range(N_KILLED)], "n": 1})
        result = run(df, sb, path, sync="killed", add={"logins": "n"},
                     set={"cohort": literal("x")}, batch_size=5)  # fmt: skip
        status = dict(zip(df.uid, result.status, strict=True))
        applied = Counter(i["user_id"] for i in sb.applied)
        # no $add applied twice; no acknowledged user forgotten (not sent again)
        assert max(applied.values()) == 1
        assert all(status[u] == "unchanged" for u in acknowledged)
        for u in df.uid:
            if u not in users:  # never in flight: sent now, once
                assert status[u] == "success" and applied[u] == 1
            elif users[u] != "acknowledged":  # in flight when killed: held, never resent
                assert users[u] == "unknown" and status[u] == "unknown"
                assert applied[u] == applied_before[u]


# --- Ctrl-C -------------------------------------------------------------------------------------


def test_ctrl_c_mid_send_keeps_the_ledger_right(tmp_path: Path) -> None:
    """A real SIGINT after the first answers: the partial result, the ledger and a re-run
    agree: acknowledged users are not sent again, users never sent are sent, the removed users
    are left for the next run."""
    path = tmp_path / "ledger.sqlite3"
    users = [f"user-{i:03d}" for i in range(60)]
    df = pd.DataFrame({"uid": users, "n": 1})
    job = {"add": {"logins": "n"}, "batch_size": 5, "max_workers": 1}
    with Sandbox(latency=0.01) as sb:
        run(df.assign(uid=[u.replace("user", "gone") for u in users]).iloc[:3], sb, path,
            **job)  # members that the next run removes  # fmt: skip
        sb.reset()
        fired: list[int] = []

        def interrupt(done: dict[str, int], waiting: object) -> None:
            if done.get("success", 0) >= 10 and not fired:
                fired.append(1)
                signal.raise_signal(signal.SIGINT)

        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            preview = run(df, sb, path, dry_run=True, removed="revert", **job)
            with pytest.warns(amp_pandas.errors.InterruptedSendWarning):
                partial = preview.send(progress=False, progress_callback=interrupt)
        finally:
            signal.signal(signal.SIGINT, previous)
        status = dict(zip(users, partial.status, strict=True))
        assert set(status.values()) <= {"success", "not_sent", "unknown"}
        assert 10 <= list(status.values()).count("success") < 60
        assert partial.removed["status"].tolist() == ["not_sent"] * 3
        applied = Counter(i["user_id"] for i in sb.applied)
        assert {u for u, s in status.items() if s == "success"} == set(applied)
        again = run(df, sb, path, removed="revert", **job)
        for u, s in zip(users, again.status, strict=True):
            expected = {"success": "unchanged", "not_sent": "success", "unknown": "unknown"}
            assert s == expected[status[u]], u
        assert max(Counter(i["user_id"] for i in sb.applied).values()) == 1
        assert again.removed["status"].tolist() == ["skipped"] * 3  # $add: nothing to undo


def test_users_and_digests_of_a_plan() -> None:
    """Keys, rows and digests per user, against texts and SHA-256 computed here."""
    from amp_pandas._syncrun import group_users

    df = pd.DataFrame({"uid": ["user-1", None, "user-2", "user-1", None],
                       "dev": ["d-0001", "d-0002", "d-0003", "d-0004", "d-0002"],
                       "plan": ["a", "b", "c", "d", "e"]})  # fmt: skip
    preview = df.amplitude.identify(user_id="uid", device_id="dev", set=["plan"], dry_run=True)
    users = group_users(preview.plan)
    assert users.keys.tolist() == ["user-1", "\x00d-0002", "user-2"]
    assert users.n_rows.tolist() == [2, 2, 1]
    text = {i: json.dumps(p, separators=(",", ":")) for i, p in enumerate(preview.payloads)}
    expected = [hashlib.sha256((text[0] + "\n" + text[3] + "\n").encode()).digest()[:16],
                hashlib.sha256((text[1] + "\n" + text[4] + "\n").encode()).digest()[:16],
                hashlib.sha256((text[2] + "\n").encode()).digest()[:16]]  # fmt: skip
    assert users.digests(np.array([2, 0])) == [expected[2], expected[0]]
    assert users.digests(np.array([0, 1, 2])) == expected


_PLANS = st.sampled_from(["pro", "free", "ñandú", "\u2603", None])


@settings(max_examples=60, deadline=None)
@given(
    users=st.lists(st.sampled_from([f"user-{c}" for c in "abcdef"]), min_size=1, max_size=30),
    plans=st.lists(_PLANS, min_size=30, max_size=30),
    batch=st.integers(1, 7),
    prepared=st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_digests_from_request_texts_are_the_users_digests(
    users: list[str], plans: list[str | None], batch: int, prepared: list[bool]
) -> None:
    """Digests taken from the texts a request writes ahead (one-row users) equal SHA-256 of each
    user's texts in row order, each followed by a newline, computed here; so do the digests of
    users left to the by-user path (several rows, or requests not written ahead)."""
    from amp_pandas._plan import chunk_rows
    from amp_pandas._syncrun import group_users

    n = len(users)
    df = pd.DataFrame({"uid": users, "plan": plans[:n], "n": range(n)})
    plan = df.amplitude.identify(user_id="uid", set=["plan", "n"], dry_run=True).plan
    groups = group_users(plan)
    assert len(groups) == len(set(users))  # every row valid
    for chunk, ahead in zip(chunk_rows(plan, batch_size=batch), prepared, strict=False):
        if ahead:
            groups.digests_from_request(chunk, plan.payload.request_texts(chunk))
    expected = []
    for key in groups.keys.tolist():
        rows = [i for i, u in enumerate(users) if u == key]
        text = "".join(t + "\n" for t in plan.payload.texts(np.array(rows)))
        expected.append(hashlib.sha256(text.encode()).digest()[:16])
    assert groups.digests(np.arange(len(groups))) == expected
