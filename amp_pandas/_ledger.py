"""The sync ledger: an SQLite file that remembers, per job and user, what was sent and its outcome.

Storage only: the schema and its migrations, the one-run-per-job lock, and the writes a sending
run makes. What to send is decided from the state read here by :mod:`amp_pandas._sync`.

The file
--------
One SQLite database (the standard library's :mod:`sqlite3`) in WAL mode: a reader (a dry run, the
``Ledger`` inspection API) never waits for the writer, and a process killed at any moment loses
no committed transaction. ``PRAGMA user_version`` is the schema number; :data:`MIGRATIONS`
steps an older file up to :data:`SCHEMA_VERSION`, one transaction per step. A file with a newer
number is refused (:class:`~amp_pandas.errors.LedgerVersionError`), never reset; so is a file
that is not an amp_pandas ledger (``PRAGMA application_id``). The file (and SQLite's ``-wal``
and ``-shm`` files, which take its mode) is created readable and writable by its owner only;
the API key never enters it, only a salted SHA-256 fingerprint of it.

Durability: ``synchronous=NORMAL`` by default, so a committed transaction survives the process
being killed (SIGKILL included); after a power cut or OS crash the last transactions may roll
back, which can only turn an acknowledged user back into in-flight-then-unknown or a new user
(``Ledger(fsync=True)`` syncs every commit instead, at a cost of one fsync per request).

Jobs and users
--------------
A job is (name, endpoint URL normalised, key fingerprint). Per job and user key the ``users``
table holds: the digest of the identifications last sent, the outcome (``in_flight``,
``acknowledged``, ``failed``, ``unknown``), the action (``sync``, ``revert``, ``kept``), the
revert info of what may be in effect (``revert``) and, while a send is in flight, of what will be
in effect if it lands (``pending``), the run, and the time. Revert infos are stored once per
distinct value in ``reverts`` (users of a job mostly share them).

A run writes an append-only log instead (schema 3): one ``sends`` row per request, holding its
users packed (their keys as one text with their lengths, their digests, the revert ids pending
and in effect before, as arrays), and one ``answers`` row per answered send (one outcome byte
per user of the send). What a job holds is ``users`` overridden by its log, a later entry of a
key winning (:func:`_read_log`). When a run ends its log is folded into ``users`` if the log is
small (:data:`_FOLD_BELOW` users) or holds more than twice as many users as its largest run;
otherwise it stays as written, and is read back as it is: writing a million users into
``users`` costs seconds, reading them from the log a fraction of a second. Schema 2's log
(``flights``, ``done``: a row per user) is still read and folded.

Crash safety (written before the act it records)
-----------------------------------------------
- :meth:`Run.mark_in_flight` (:meth:`Run.mark_request_in_flight`): before a request leaves, its
  users are written ``in_flight`` (one transaction, one ``sends`` row).
- :meth:`Run.mark_done` (:meth:`Run.mark_request_done`): after the answer, users whose every row
  has a final status are written ``acknowledged``, ``failed`` or ``unknown`` (one transaction,
  an ``answers`` row per send). A user whose rows span several requests stays ``in_flight``
  until the last of them is answered; a mix of outcomes is ``unknown`` (partly applied).
- A run that ends with users still in flight, or dies, leaves them ``unknown`` (a user of the
  log without an answer is in flight only while its run holds the job's lock): success is never
  claimed for a user whose answer was not recorded. A fold is one transaction.

One run per job
---------------
A run holds a row of the ``locks`` table, taken in a ``BEGIN IMMEDIATE`` transaction with its
pid, host and process start time. A second run of the job while the holder is alive raises
:class:`~amp_pandas.errors.LedgerLockedError` naming that process, before anything is sent. A
holder that is gone (no such pid on this host, a pid reused by a newer process, a zombie, or a
run of this process that was dropped without finishing) is taken over. A lock held from another
host cannot be checked and is respected; :meth:`Ledger.unlock` clears it by hand.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._sync import (
    ACKNOWLEDGED,
    ACTIONS,
    DIGEST_BYTES,
    EMPTY_REVERT,
    FAILED,
    IN_FLIGHT,
    KEPT,
    OUTCOMES,
    REVERT,
    SYNC,
    UNKNOWN,
    LedgerState,
    RevertInfo,
)
from .errors import (
    ArgumentError,
    LedgerAccessError,
    LedgerCorruptError,
    LedgerError,
    LedgerLockedError,
    LedgerVersionError,
)

__all__ = [
    "APPLICATION_ID",
    "ENV_VAR",
    "MIGRATIONS",
    "OUTCOME_OF_STATUS",
    "SCHEMA_VERSION",
    "Job",
    "Ledger",
    "Run",
    "default_path",
    "normalize_endpoint",
]

#: Environment variable naming the ledger file when ``ledger=`` is not given.
ENV_VAR = "AMP_PANDAS_LEDGER"
#: ``PRAGMA application_id`` of an amp_pandas ledger ("ampl").
APPLICATION_ID = 0x616D706C
#: The schema this code writes; older files are migrated up to it.
SCHEMA_VERSION = 3
#: Result status of a row -> the ledger outcome it means.
OUTCOME_OF_STATUS: dict[str, str] = {
    "success": "acknowledged",
    "failed": "failed",
    "throttled": "failed",
    "not_sent": "failed",
    "invalid": "failed",
    "unknown": "unknown",
}
_OUTCOME_CODE = {name: code for code, name in enumerate(OUTCOMES)}
#: Outcome flags a user's rows collect during a run; one flag alone is that outcome, a mix is
#: unknown (partly applied).
_FLAG = {ACKNOWLEDGED: 1, FAILED: 2, UNKNOWN: 4}
_BUSY_TIMEOUT = 10.0

# --- Schema -------------------------------------------------------------------------------------

_V1 = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    key_fingerprint TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (name, endpoint, key_fingerprint)
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    job INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    state TEXT NOT NULL
);
CREATE INDEX runs_job ON runs (job, started);
CREATE TABLE reverts (
    id INTEGER PRIMARY KEY,
    job INTEGER NOT NULL,
    info TEXT NOT NULL,
    UNIQUE (job, info)
);
CREATE TABLE users (
    job INTEGER NOT NULL,
    key TEXT NOT NULL,
    digest BLOB,
    outcome INTEGER NOT NULL,
    action INTEGER NOT NULL,
    revert INTEGER,
    pending INTEGER,
    run INTEGER,
    at REAL NOT NULL,
    PRIMARY KEY (job, key)
) WITHOUT ROWID;
"""


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    """A new file: the first schema, and the salt of its key fingerprints."""
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise _NotALedger
    for statement in _V1.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('salt', ?)", (secrets.token_hex(16),))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Two changes. The lock moves from ``runs.state = 'running'`` to a ``locks`` row with the
    holder's process start time (a reused pid is not mistaken for the holder). A run's writes go
    to an append-only log (``flights``, and ``done`` ranges of flight ids) that is folded into
    ``users`` when the run ends: appending is sequential, where updating ``users`` in place
    touched a random page per user."""
    conn.execute("ALTER TABLE runs ADD COLUMN proc_start REAL")
    conn.execute(
        "CREATE TABLE locks (job INTEGER PRIMARY KEY, run INTEGER NOT NULL, pid INTEGER NOT NULL,"
        " host TEXT NOT NULL, proc_start REAL, started REAL NOT NULL)"
    )
    conn.execute(
        "INSERT INTO locks (job, run, pid, host, proc_start, started) "
        "SELECT job, max(id), pid, host, NULL, started FROM runs WHERE state = 'running' "
        "GROUP BY job"
    )
    conn.execute(
        "CREATE TABLE flights (id INTEGER PRIMARY KEY, job INTEGER NOT NULL, run INTEGER NOT "
        "NULL, key TEXT NOT NULL, digest BLOB, action INTEGER NOT NULL, pending INTEGER, "
        "at REAL NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE done (first INTEGER PRIMARY KEY, last INTEGER NOT NULL, "
        "job INTEGER NOT NULL, outcome INTEGER NOT NULL)"
    )


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """A run's log is written one row per request rather than one per user: ``sends`` holds
    a request's users packed (their keys, digests and revert ids as arrays) and ``answers``
    the outcomes of its users, one byte each. Logs of schema 2 (``flights``, ``done``) are read
    and folded as before."""
    conn.execute(
        "CREATE TABLE sends (id INTEGER PRIMARY KEY, job INTEGER NOT NULL, run INTEGER NOT "
        "NULL, action INTEGER NOT NULL, n INTEGER NOT NULL, keys BLOB NOT NULL, lengths BLOB "
        "NOT NULL, digests BLOB NOT NULL, pending BLOB NOT NULL, previous BLOB NOT NULL, "
        "at REAL NOT NULL)"
    )
    conn.execute("CREATE INDEX sends_job ON sends (job, id)")
    conn.execute(
        "CREATE TABLE answers (id INTEGER PRIMARY KEY, job INTEGER NOT NULL, send INTEGER NOT "
        "NULL, codes BLOB NOT NULL)"
    )
    conn.execute("CREATE INDEX answers_job ON answers (job)")


#: ``MIGRATIONS[v]`` steps a file from schema ``v`` to ``v + 1``.
MIGRATIONS = {0: _migrate_0_to_1, 1: _migrate_1_to_2, 2: _migrate_2_to_3}


class _NotALedger(Exception):
    pass


#: A run's log folded into one row per user, as ``users`` holds them: the outcome from the
#: ``done`` range holding the flight (else ``:missing``: in flight, or unknown once the run is
#: over); the revert info stays the old one when the send failed, and is cleared by an
#: acknowledged revert.
_FOLDED = f"""
SELECT f.job AS job, f.key AS key,
    CASE WHEN f.action = {REVERT} AND o = {ACKNOWLEDGED} THEN NULL ELSE f.digest END AS digest,
    o AS outcome, f.action AS action,
    CASE WHEN o = {FAILED} THEN u.revert
         WHEN f.action = {REVERT} AND o = {ACKNOWLEDGED} THEN NULL
         ELSE f.pending END AS revert,
    f.run AS run, f.at AS at, f.id AS flight
FROM (
    SELECT f.*, coalesce(d.outcome, :missing) AS o FROM flights f
    LEFT JOIN done d ON d.first = (SELECT max(first) FROM done WHERE first <= f.id)
        AND f.id <= d.last
    WHERE f.run = :run
) f LEFT JOIN users u ON u.job = f.job AND u.key = f.key
"""
#: Folded in key order (pages of ``users`` are visited in order); a user flown twice in one
#: run takes its last flight.
_FOLD = f"""
INSERT INTO users (job, key, digest, outcome, action, revert, run, at)
SELECT job, key, digest, outcome, action, revert, run, at FROM ({_FOLDED}) ORDER BY key, flight
ON CONFLICT (job, key) DO UPDATE SET digest = excluded.digest, outcome = excluded.outcome,
    action = excluded.action, revert = excluded.revert, pending = NULL, run = excluded.run,
    at = excluded.at
"""


def _fold(conn: sqlite3.Connection, run_id: int) -> None:
    """Fold a finished or dead run's log into ``users`` (users still in flight: unknown)."""
    conn.execute(_FOLD, {"missing": UNKNOWN, "run": run_id})
    conn.execute(
        "DELETE FROM done WHERE first IN (SELECT id FROM flights WHERE run = ?)", (run_id,)
    )
    conn.execute("DELETE FROM flights WHERE run = ?", (run_id,))


#: A run's log is folded into ``users`` when it ends if the job's log holds at most this many
#: users, or more than twice as many as its largest run (the rest stays in the log, which is
#: read as it is: folding a million users costs seconds, reading them back a fraction of that).
_FOLD_BELOW = 50_000


@dataclass
class _Log:
    """A job's log of schema 3 (``sends`` and ``answers``), one entry per user sent, in the
    order written (a later entry of a key overrides an earlier one)."""

    keys: list[str]
    digest: np.ndarray  # V16 (exact bytes; all zero when there is none)
    outcome: np.ndarray  # int8, IN_FLIGHT where no answer is recorded
    action: np.ndarray  # int8
    revert: np.ndarray  # int64, -1: none
    run: np.ndarray  # int64
    at: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.keys)


def _pack_keys(keys: Sequence[str]) -> tuple[bytes, bytes]:
    """Keys as one UTF-8 text and their lengths in characters (int32)."""
    text = "".join(keys).encode("utf-8", "surrogatepass")
    lengths = np.fromiter(map(len, keys), dtype=np.int32, count=len(keys))
    return text, lengths.tobytes()


def _squeeze(ids: bytes) -> bytes:
    """Revert ids (int64) as stored: one value when all are equal (most sends)."""
    arr = np.frombuffer(ids, dtype=np.int64)
    return ids[:8] if len(arr) > 1 and (arr == arr[0]).all() else ids


def _ids(blob: bytes, n: int) -> np.ndarray:
    """The inverse of :func:`_squeeze`, for a send of ``n`` users."""
    arr = np.frombuffer(blob, dtype=np.int64)
    return np.repeat(arr, n) if len(arr) == 1 and n != 1 else arr


def _read_log(conn: sqlite3.Connection, job_id: int) -> _Log:
    """The job's log of schema 3, as the users it holds would be folded: the outcome of each
    entry from its answer (else ``in_flight``), its revert info the one in effect after it
    (the previous one when the send failed, none after an acknowledged revert)."""
    sends = conn.execute(
        "SELECT id, run, action, n, keys, lengths, digests, pending, previous, at FROM sends "
        "WHERE job = ? ORDER BY id", (job_id,),
    ).fetchall()
    if not sends:
        return _Log([], np.empty(0, dtype="V16"), *(np.empty(0, dtype=t) for t in
                    (np.int8, np.int8, np.int64, np.int64, np.float64)))  # fmt: skip
    ids, runs, actions, ns, _, _, _, _, _, ats = zip(*sends, strict=True)
    counts = np.array(ns, dtype=np.int64)
    starts = dict(zip(ids, np.concatenate(([0], np.cumsum(counts)[:-1])).tolist(), strict=True))
    total = int(counts.sum())
    text = b"".join(r[4] for r in sends).decode("utf-8", "surrogatepass")
    bounds = np.concatenate(
        ([0], np.cumsum(np.frombuffer(b"".join(r[5] for r in sends), dtype=np.int32)))
    ).tolist()
    ends = iter(bounds)
    next(ends)
    keys = [text[a:b] for a, b in zip(bounds, ends, strict=False)]
    outcome = np.zeros(total, dtype=np.int8)
    for send, codes in conn.execute(
        "SELECT send, codes FROM answers WHERE job = ? ORDER BY id", (job_id,)
    ):
        start = starts.get(send)
        if start is None:
            continue
        got = np.frombuffer(codes, dtype=np.int8)
        part = outcome[start : start + len(got)]
        final = got != IN_FLIGHT
        part[final] = got[final]
    action = np.repeat(np.array(actions, dtype=np.int8), counts)
    pending = np.concatenate([_ids(r[7], r[3]) for r in sends])
    previous = np.concatenate([_ids(r[8], r[3]) for r in sends])
    reverted = (action == REVERT) & (outcome == ACKNOWLEDGED)
    digest = np.frombuffer(b"".join(r[6] for r in sends), dtype="V16").copy()
    digest[reverted] = np.zeros(1, dtype="V16")[0]
    revert = np.where(outcome == FAILED, previous, np.where(reverted, -1, pending))
    return _Log(keys, digest, outcome, action, revert,
                np.repeat(np.array(runs, dtype=np.int64), counts),
                np.repeat(np.array(ats, dtype=np.float64), counts))  # fmt: skip


def _fold_log(conn: sqlite3.Connection, job_id: int) -> None:
    """Fold the job's log of schema 3 into ``users`` (its runs are over: users without an
    answer are ``unknown``), in key order, and empty it."""
    log = _read_log(conn, job_id)
    if not len(log):
        return
    keep = ~pd.Index(log.keys, dtype=object).duplicated(keep="last")
    where = np.flatnonzero(keep)
    keys = np.asarray(log.keys, dtype=object)[where]
    order = np.asarray(pc.sort_indices(pa.array(keys.tolist(), type=pa.large_string())))
    where, keys = where[order], keys[order]
    outcome = log.outcome[where]
    outcome[outcome == IN_FLIGHT] = UNKNOWN
    digests = [d if any(d) else None for d in log.digest[where].tolist()]
    revert = [None if r < 0 else r for r in log.revert[where].tolist()]
    conn.executemany(
        "INSERT INTO users (job, key, digest, outcome, action, revert, run, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job, key) DO UPDATE SET "
        "digest = excluded.digest, outcome = excluded.outcome, action = excluded.action, "
        "revert = excluded.revert, pending = NULL, run = excluded.run, at = excluded.at",
        zip(repeat(job_id, len(where)), keys.tolist(), digests, outcome.tolist(),
            log.action[where].tolist(), revert, log.run[where].tolist(),
            log.at[where].tolist(), strict=True),
    )  # fmt: skip
    conn.execute("DELETE FROM answers WHERE job = ?", (job_id,))
    conn.execute("DELETE FROM sends WHERE job = ?", (job_id,))


def _log_due(conn: sqlite3.Connection, job_id: int) -> bool:
    """Whether the job's log is to be folded now (see :data:`_FOLD_BELOW`)."""
    total, largest = conn.execute(
        "SELECT coalesce(sum(n), 0), coalesce(max(n), 0) FROM (SELECT run, sum(n) AS n FROM "
        "sends WHERE job = ? GROUP BY run)", (job_id,),
    ).fetchone()
    return bool(total) and (total <= _FOLD_BELOW or total > 2 * largest)


# --- Paths, endpoints, processes ----------------------------------------------------------------


def default_path() -> Path:
    """Where the ledger lives when ``ledger=`` is not given.

    ``$AMP_PANDAS_LEDGER`` if set; else ``amp_pandas/ledger.sqlite3`` in the user's data
    directory: ``$XDG_DATA_HOME`` or ``~/.local/share`` on Linux, ``~/Library/Application
    Support`` on macOS, ``%LOCALAPPDATA%`` on Windows.

    Examples
    --------
    >>> default_path().name
    'ledger.sqlite3'
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "amp_pandas" / "ledger.sqlite3"


def normalize_endpoint(url: str) -> str:
    """The endpoint as a job knows it: scheme and host lower-cased, default port, trailing
    slash, query and fragment dropped.

    Examples
    --------
    >>> normalize_endpoint("HTTPS://API2.Amplitude.com:443/identify/?x=1")
    'https://api2.amplitude.com/identify'
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and (scheme, port) not in (("https", 443), ("http", 80)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path.rstrip("/"), "", ""))


def _proc_start(pid: int) -> float | None:
    """The process' start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return float(fields[19])


def _alive(pid: int, proc_start: float | None) -> bool:
    """Whether process ``pid`` of this host is running and is the one that took the lock."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True  # no /proc (macOS): the pid exists
    rest = stat[stat.rindex(b")") + 2 :].split()
    if rest[0] == b"Z":  # a zombie: dead, not yet reaped
        return False
    return proc_start is None or float(rest[19]) == proc_start


#: Runs of this process that are open: (ledger path, run id) -> the Run. A lock row naming this
#: process whose run is not here was left by a Run dropped without finishing.
_OPEN_RUNS: weakref.WeakValueDictionary[tuple[str, int], Run] = weakref.WeakValueDictionary()


def _iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return pd.Timestamp(ts, unit="s", tz="UTC").isoformat(timespec="seconds")


# --- Jobs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A job's identity: its name, the endpoint it sends to and its key's fingerprint."""

    name: str
    endpoint: str
    fingerprint: str

    def __repr__(self) -> str:
        host = urlsplit(self.endpoint).netloc
        return f"Job({self.name!r}, {host}, key {self.fingerprint[:8]})"


# --- The ledger ---------------------------------------------------------------------------------


class Ledger:
    """The sync ledger: what each ``sync=`` job sent, per user, and how it ended.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The ledger file; created (owner-only) if missing. Default: :func:`default_path`
        (``$AMP_PANDAS_LEDGER``, else the user's data directory).
    fsync : bool, default False
        Sync every commit to disk, so that a power cut loses nothing either (slower). Without
        it, a killed process loses nothing.

    Raises
    ------
    LedgerCorruptError
        The file is not a readable amp_pandas ledger.
    LedgerAccessError
        The file or its directory cannot be created, opened or written.
    LedgerVersionError
        The file was written by a newer amp_pandas.

    Examples
    --------
    >>> import tempfile, os
    >>> tmp = tempfile.TemporaryDirectory()
    >>> ledger = Ledger(os.path.join(tmp.name, "ledger.sqlite3"))
    >>> job = ledger.job("winback", "https://api2.amplitude.com/identify", "a-key")
    >>> with ledger.begin_run(job) as run:
    ...     run.mark_in_flight(["user-1", "user-2"], [b"d" * 16, b"e" * 16])
    ...     run.mark_done(["user-1", "user-2"], ["acknowledged", "failed"])
    >>> ledger.jobs()[["job", "endpoint_host", "users", "acknowledged", "failed"]]
           job       endpoint_host  users  acknowledged  failed
    0  winback  api2.amplitude.com      2             1       1
    >>> ledger.forget("winback")
    2
    >>> len(ledger.jobs())
    0
    >>> ledger.close()
    >>> tmp.cleanup()
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, fsync: bool = False) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        self._fsync = fsync
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._salt = ""
        with self._errors():
            self._open()
        self._where = str(self.path.resolve())

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- opening and errors --

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate sqlite3's and the file system's errors, in this one place."""
        where = str(self.path)
        try:
            yield
        except LedgerError:
            raise
        except _NotALedger:
            raise LedgerCorruptError(
                f"{where} is an SQLite database but not an amp_pandas ledger; it was left as it "
                "is. Pass ledger= another path.", path=where,
            ) from None
        except sqlite3.DatabaseError as exc:
            text = str(exc).lower()
            if "locked" in text or "busy" in text:
                raise LedgerAccessError(
                    f"the ledger {where} stayed busy (another process is writing to it): {exc}",
                    path=where,
                ) from exc
            if isinstance(exc, sqlite3.OperationalError) and (
                "readonly" in text or "unable to open" in text or "disk i/o" in text
                or "read-only" in text or "permission" in text
            ):
                raise LedgerAccessError(
                    f"the ledger {where} cannot be written ({exc}); nothing was sent. Check the "
                    f"permissions of the file and its directory, or pass ledger= another path.",
                    path=where,
                ) from exc
            raise LedgerCorruptError(
                f"the ledger {where} is damaged or not a ledger ({exc}); nothing was sent and "
                "the file was left as it is. Move it aside (amp_pandas then starts a new one) or "
                "pass ledger= another path.", path=where,
            ) from exc
        except OSError as exc:
            raise LedgerAccessError(
                f"the ledger {where} cannot be created or opened ({exc.strerror or exc}); nothing "
                "was sent. Check the permissions, or pass ledger= another path.", path=where,
            ) from exc

    def _open(self) -> None:
        path = self.path
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
                os.close(fd)
            except FileExistsError:
                pass
        elif path.is_dir():
            raise LedgerAccessError(
                f"the ledger {path} is a directory; pass ledger= a file path", path=str(path)
            )
        conn = sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        self._conn = conn
        weakref.finalize(self, conn.close)  # a ledger dropped without close() still closes
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise LedgerAccessError(
                    f"the ledger {path} cannot use WAL mode (journal mode {mode!r}); put it on a "
                    "local disk", path=str(path),
                )
            conn.execute(f"PRAGMA synchronous = {'FULL' if self._fsync else 'NORMAL'}")
            self._migrate(conn)
            self._salt = conn.execute("SELECT value FROM meta WHERE name = 'salt'").fetchone()[0]
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def _migrate(self, conn: sqlite3.Connection) -> None:
        where = str(self.path)
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        if app not in (0, APPLICATION_ID):
            raise _NotALedger
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LedgerVersionError(
                f"the ledger {where} has schema version {version}, newer than this amp_pandas "
                f"knows ({SCHEMA_VERSION}); it was left as it is. Upgrade amp_pandas, or pass "
                "ledger= another path.", path=where, version=version,
            )
        if version > 0 and app != APPLICATION_ID:
            raise _NotALedger
        while version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # re-read under the write lock: another process may have migrated meanwhile
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version < SCHEMA_VERSION:
                    MIGRATIONS[version](conn)
                    version += 1
                    conn.execute(f"PRAGMA user_version = {version}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(f"the ledger {self.path} is closed", path=str(self.path))
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock before any work)."""
        with self._lock, self._errors():
            conn = self._db
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (disk full...)
                    conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock, self._errors():
            return self._db.execute(sql, params).fetchall()

    # -- jobs --

    def job(self, name: str, endpoint: str, api_key: str) -> Job:
        """The identity of job ``name`` sending to ``endpoint`` with ``api_key`` (no write).

        The key is kept only as a salted SHA-256 fingerprint (the salt is this file's own).
        """
        if not isinstance(name, str) or not name.strip():
            raise ArgumentError(f"sync= takes a job name (a non-empty string), not {name!r}")
        digest = hashlib.sha256(f"{self._salt}\x00{api_key}".encode()).hexdigest()
        return Job(name, normalize_endpoint(endpoint), digest[:32])

    def _job_id(self, job: Job, *, create: bool = False) -> int | None:
        conn = self._db
        row = conn.execute(
            "SELECT id FROM jobs WHERE name = ? AND endpoint = ? AND key_fingerprint = ?",
            (job.name, job.endpoint, job.fingerprint),
        ).fetchone()
        if row is not None or not create:
            return None if row is None else int(row[0])
        cur = conn.execute(
            "INSERT INTO jobs (name, endpoint, key_fingerprint, created) VALUES (?, ?, ?, ?)",
            (job.name, job.endpoint, job.fingerprint, time.time()),
        )
        return int(cur.lastrowid or 0)

    def _resolve(self, job: str | int | Job) -> list[int]:
        if isinstance(job, Job):
            found = self._job_id(job)
            return [] if found is None else [found]
        if isinstance(job, int):
            rows = self._db.execute("SELECT id FROM jobs WHERE id = ?", (job,)).fetchall()
        else:
            rows = self._db.execute("SELECT id FROM jobs WHERE name = ?", (job,)).fetchall()
        return [int(r[0]) for r in rows]

    def state(self, job: Job) -> LedgerState:
        """What the ledger holds for ``job`` (empty if it never ran); reads only.

        A user in flight in a run that is not alive is reported ``unknown``.
        """
        with self._lock, self._errors():
            job_id = self._job_id(job)
            if job_id is None:
                return LedgerState.empty(job.name)
            return self._state(job_id, job.name)

    def _state(self, job_id: int, name: str) -> LedgerState:
        conn = self._db
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")  # one snapshot for every read below
        try:
            rows = conn.execute(
                "SELECT key, coalesce(digest, x''), outcome, action, coalesce(revert, -1) "
                "FROM users WHERE job = ?", (job_id,),
            ).fetchall()
            logged = []
            for (run_id,) in conn.execute(
                "SELECT DISTINCT run FROM flights WHERE job = ? ORDER BY run", (job_id,)
            ).fetchall():
                logged += self._logged(conn, run_id)
            reverts = {
                int(i): RevertInfo.from_json(t)
                for i, t in conn.execute("SELECT id, info FROM reverts WHERE job = ?", (job_id,))
            }
            last = conn.execute("SELECT max(started) FROM runs WHERE job = ?", (job_id,)).fetchone()
            live = self._live_lock(conn, job_id)
            log = _read_log(conn, job_id)
        finally:
            if own:
                conn.execute("COMMIT")
        if logged:  # a run's log not folded yet (running, or died): it overrides
            merged = {r[0]: r for r in rows}
            merged.update((r[0], r) for r in logged)
            rows = list(merged.values())
        n = len(rows)
        keys, digest, outcome, action, revert = (zip(*rows, strict=True) if n
                                                 else ((), (), (), (), ()))  # fmt: skip
        key_arr = np.fromiter(keys, dtype=object, count=n)
        digest_arr = (np.array(digest, dtype=f"S{DIGEST_BYTES}") if n
                      else np.empty(0, dtype=f"S{DIGEST_BYTES}"))  # fmt: skip
        outcome_arr = np.fromiter(outcome, dtype=np.int8, count=n)
        action_arr = np.fromiter(action, dtype=np.int8, count=n)
        revert_arr = np.fromiter(revert, dtype=np.int64, count=n)
        if len(log):  # the log of schema 3 overrides (a later entry of a key wins)
            log_outcome = log.outcome.copy()
            if live is not None:  # users without an answer: in flight in the live run only
                log_outcome[(log_outcome == IN_FLIGHT) & (log.run != live[0])] = UNKNOWN
            log_keys = np.fromiter(log.keys, dtype=object, count=len(log))
            key_arr = np.concatenate((key_arr, log_keys)) if n else log_keys
            digest_arr = np.concatenate((digest_arr, log.digest.view(f"S{DIGEST_BYTES}")))
            outcome_arr = np.concatenate((outcome_arr, log_outcome))
            action_arr = np.concatenate((action_arr, log.action))
            revert_arr = np.concatenate((revert_arr, log.revert))
            keep = ~pd.Index(key_arr, dtype=object).duplicated(keep="last")
            if not keep.all():
                key_arr, digest_arr, outcome_arr, action_arr, revert_arr = (
                    a[keep] for a in (key_arr, digest_arr, outcome_arr, action_arr, revert_arr)
                )
        if not live:
            outcome_arr[outcome_arr == IN_FLIGHT] = UNKNOWN
        return LedgerState(
            keys=key_arr,
            digest=digest_arr,
            outcome=outcome_arr,
            action=action_arr,
            revert=revert_arr,
            reverts=reverts,
            job=name,
            last_run=None if last[0] is None else pd.Timestamp(last[0], unit="s", tz="UTC"),
        )

    @staticmethod
    def _logged(conn: sqlite3.Connection, run_id: int) -> list[tuple[Any, ...]]:
        """A run's log as ``users`` rows (key, digest, outcome, action, revert), in flight
        where no answer is recorded."""
        return [
            (key, digest or b"", o, action, -1 if revert is None else revert)
            for _, key, digest, o, action, revert, _, _, _ in conn.execute(
                _FOLDED + " ORDER BY flight", {"missing": IN_FLIGHT, "run": run_id}
            )
        ]

    def _live_lock(self, conn: sqlite3.Connection, job_id: int) -> tuple[Any, ...] | None:
        """The job's lock row if its holder is alive, else ``None``."""
        row = conn.execute(
            "SELECT run, pid, host, proc_start, started FROM locks WHERE job = ?", (job_id,)
        ).fetchone()
        if row is None:
            return None
        run_id, pid, host, proc_start, _ = row
        if host != socket.gethostname():
            return tuple(row)  # cannot be checked from here: respected
        if pid == os.getpid() and proc_start == _proc_start(pid):
            run = _OPEN_RUNS.get((self._where, run_id))
            return tuple(row) if run is not None and not run.finished else None
        return tuple(row) if _alive(pid, proc_start) else None

    # -- runs --

    def begin_run(self, job: Job) -> Run:
        """Start a sending run of ``job``: take its lock, then recover what a dead run left.

        Raises
        ------
        LedgerLockedError
            Another run of the job is alive (the error names its pid, host and start).
        """
        pid, host, now = os.getpid(), socket.gethostname(), time.time()
        start = _proc_start(pid)
        with self._write() as conn:
            job_id = self._job_id(job, create=True)
            assert job_id is not None
            held = self._live_lock(conn, job_id)
            if held is not None:
                _, other_pid, other_host, _, started = held
                raise LedgerLockedError(
                    f"sync job {job.name!r} is already running: process {other_pid} on "
                    f"{other_host}, started {_iso(started)}. Nothing was sent. Wait for it to "
                    f"finish (if that process is gone for good: "
                    f"amp_pandas.Ledger({str(self.path)!r}).unlock({job.name!r}), or "
                    f"amp-pandas ledger unlock {job.name!r} --ledger {str(self.path)!r}).",
                    path=str(self.path), job=job.name, pid=other_pid, host=other_host,
                    started=_iso(started),
                )
            self._release(conn, job_id, now)
            run_id = conn.execute(
                "INSERT INTO runs (job, pid, host, started, state, proc_start) "
                "VALUES (?, ?, ?, ?, 'running', ?)", (job_id, pid, host, now, start),
            ).lastrowid
            assert run_id is not None
            conn.execute(
                "INSERT INTO locks (job, run, pid, host, proc_start, started) "
                "VALUES (?, ?, ?, ?, ?, ?)", (job_id, run_id, pid, host, start, now),
            )
        run = Run(self, job, job_id, run_id)
        _OPEN_RUNS[(self._where, run_id)] = run
        return run

    @staticmethod
    def _release(conn: sqlite3.Connection, job_id: int, now: float) -> None:
        """Clear a dead holder: its run died; its log is folded, users in flight ``unknown``."""
        conn.execute(
            "UPDATE runs SET state = 'died', finished = ? WHERE job = ? AND state = 'running'",
            (now, job_id),
        )
        conn.execute("DELETE FROM locks WHERE job = ?", (job_id,))
        for (run_id,) in conn.execute(
            "SELECT DISTINCT run FROM flights WHERE job = ? ORDER BY run", (job_id,)
        ).fetchall():
            _fold(conn, run_id)
        conn.execute(  # written in place by schema 1
            f"UPDATE users SET outcome = {UNKNOWN}, revert = coalesce(pending, revert), "
            f"pending = NULL WHERE job = ? AND outcome = {IN_FLIGHT}", (job_id,),
        )

    def unlock(self, job: str | int) -> tuple[int, str] | None:
        """Release a job's lock by hand: for a run on another host that will never finish (a
        holder on this host that is gone is taken over by the next run without this).

        Its users in flight become ``unknown``. Returns the holder's ``(pid, host)``, or
        ``None`` when the job held no lock.

        Raises
        ------
        LedgerLockedError
            The holder is a process on this host that is still running: it is not released
            (stop that process first; its run then ends by itself).
        """
        with self._write() as conn:
            held = None
            for job_id in self._one(job):
                row = conn.execute("SELECT pid, host, started FROM locks WHERE job = ?",
                                   (job_id,)).fetchone()  # fmt: skip
                live = self._live_lock(conn, job_id)
                if live is not None and live[2] == socket.gethostname():
                    _, pid, host, _, started = live
                    raise LedgerLockedError(
                        f"sync job {job!r} is running: process {pid} on this host, started "
                        f"{_iso(started)}. Its lock was not released; stop that process "
                        "first (its run then ends by itself).",
                        path=str(self.path), job=str(job), pid=pid, host=host,
                        started=_iso(started),
                    )
                self._release(conn, job_id, time.time())
                if row is not None:
                    held = (int(row[0]), str(row[1]))
            return held

    def _one(self, job: str | int) -> list[int]:
        ids = self._resolve(job)
        if len(ids) > 1:
            raise LedgerError(
                f"{len(ids)} jobs are named {job!r} (other endpoints or keys); pass the id from "
                "the 'id' column of Ledger.jobs()", path=str(self.path),
            )
        return ids

    # -- inspection --

    def jobs(self) -> pd.DataFrame:
        """One row per job: name, endpoint host, users, last run and users per outcome.

        Columns: ``job``, ``endpoint_host``, ``users``, ``members`` (users the job would count
        as removed when absent), ``last_run`` (UTC), ``last_state``, one count per outcome
        (``in_flight`` only while its run is alive; a dead run's are ``unknown``), then
        ``endpoint``, ``key`` (the first 8 characters of the key's fingerprint) and ``id``.
        """
        with self._lock, self._errors():
            jobs = self._db.execute(
                "SELECT j.id, j.name, j.endpoint, j.key_fingerprint, r.started, r.state "
                "FROM jobs j LEFT JOIN runs r ON r.id = "
                "(SELECT id FROM runs WHERE job = j.id ORDER BY started DESC, id DESC LIMIT 1) "
                "ORDER BY j.id"
            ).fetchall()
            states = {j[0]: self._state(j[0], j[1]) for j in jobs}
        rows = []
        for job_id, name, endpoint, fp, started, run_state in jobs:
            state = states[job_id]
            counts = np.bincount(state.outcome.astype(np.int64), minlength=len(OUTCOMES))
            rows.append({
                "id": job_id, "job": name, "endpoint_host": urlsplit(endpoint).netloc,
                "endpoint": endpoint, "key": fp[:8], "users": len(state),
                "members": state.members,
                "last_run": pd.NaT if started is None
                else pd.Timestamp(started, unit="s", tz="UTC"),
                "last_state": run_state,
                **{o: int(counts[i]) for i, o in enumerate(OUTCOMES)},
            })  # fmt: skip
        columns = ["job", "endpoint_host", "users", "members", "last_run", "last_state",
                   "acknowledged", "failed", "unknown", "in_flight", "endpoint", "key", "id"]
        return pd.DataFrame(rows, columns=columns)

    def users(self, job: str | int | Job) -> pd.DataFrame:
        """One row per user the job knows: key, outcome, action, digest (hex), and what a
        revert would undo (JSON).

        Examples
        --------
        >>> import tempfile, os
        >>> tmp = tempfile.TemporaryDirectory()
        >>> ledger = Ledger(os.path.join(tmp.name, "l.sqlite3"))
        >>> job = ledger.job("tags", "http://127.0.0.1:8080/identify", "k")
        >>> with ledger.begin_run(job) as run:
        ...     run.mark_in_flight(["user-1"], [bytes(16)])
        ...     run.mark_done(["user-1"], "acknowledged")
        >>> ledger.users("tags")[["key", "outcome", "action"]]
              key       outcome action
        0  user-1  acknowledged   sync
        >>> ledger.close()
        >>> tmp.cleanup()
        """
        with self._lock, self._errors():
            ids = self._one(job) if not isinstance(job, Job) else self._resolve(job)
            if not ids:
                raise LedgerError(f"the ledger has no job {job!r}", path=str(self.path))
            state = self._state(ids[0], "")
        order = np.argsort(state.keys.astype(str), kind="stable")
        return pd.DataFrame({
            "key": state.keys[order],
            "outcome": pd.Series([OUTCOMES[o] for o in state.outcome[order]], dtype=object),
            "action": pd.Series([ACTIONS[a] for a in state.action[order]], dtype=object),
            "digest": pd.Series([d.ljust(DIGEST_BYTES, b"\0").hex() if d else None
                                 for d in state.digest[order].tolist()], dtype=object),
            "revert": pd.Series([state.reverts[r].to_json() if r in state.reverts else None
                                 for r in state.revert[order].tolist()], dtype=object),
        })  # fmt: skip

    def forget(self, job: str | int) -> int:
        """Forget a job: its users, runs and revert infos. Returns how many users it held.

        Its next run starts afresh (every user new). Refused while a run of it is alive.
        """
        with self._write() as conn:
            total = 0
            for job_id in self._one(job):
                held = self._live_lock(conn, job_id)
                if held is not None:
                    raise LedgerLockedError(
                        f"sync job {job!r} is running (process {held[1]} on {held[2]}); it "
                        "cannot be forgotten now", path=str(self.path), job=str(job),
                        pid=held[1], host=held[2], started=_iso(held[4]),
                    )
                total += conn.execute("DELETE FROM users WHERE job = ?", (job_id,)).rowcount
                for table in ("reverts", "runs", "locks", "flights", "done", "sends",
                              "answers"):
                    conn.execute(f"DELETE FROM {table} WHERE job = ?", (job_id,))
                conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            return total


# --- A run --------------------------------------------------------------------------------------


class Run:
    """One sending run of a job, holding its lock; made by :meth:`Ledger.begin_run`.

    The sender calls, for every request: :meth:`mark_in_flight` (or
    :meth:`mark_revert_in_flight`) with the request's users before it leaves, and
    :meth:`mark_done` with its rows' final outcomes after the answer; removed users let go get
    :meth:`mark_left`; then :meth:`finish` (the context manager calls it, ``interrupted`` if an
    exception is raised).
    """

    def __init__(self, ledger: Ledger, job: Job, job_id: int, run_id: int) -> None:
        self.ledger = ledger
        self.job = job
        self.id = run_id
        self._job_id = job_id
        self.finished = False
        self._state: LedgerState | None = None
        #: users in flight: key -> (rows not final yet, outcome flags so far, send, place in it)
        self._open: dict[str, tuple[int, int, int, int]] = {}
        #: users per send of this run
        self._sizes: dict[int, int] = {}
        #: the users of each send of this run (a user sent is not let go by mark_left)
        self._sent: list[list[str]] = []
        self._revert_ids: dict[RevertInfo, int] = {}
        self._infos: dict[int, RevertInfo] = {}
        self._unions: dict[tuple[int, int], int] = {}

    def __repr__(self) -> str:
        return f"Run({self.id}, {self.job!r}, {'finished' if self.finished else 'running'})"

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.finished:
            self.finish(interrupted=exc_type is not None)

    def state(self) -> LedgerState:
        """The job's state under this run's lock (what the plan to send must be made from)."""
        if self._state is None:
            with self.ledger._lock, self.ledger._errors():
                self._state = self.ledger._state(self._job_id, self.job.name)
        return self._state

    def _check(self) -> None:
        if self.finished:
            raise LedgerError(f"run {self.id} of {self.job.name!r} is finished",
                              path=str(self.ledger.path))  # fmt: skip

    def _revert_id(self, conn: sqlite3.Connection, info: RevertInfo) -> int:
        rid = self._revert_ids.get(info)
        if rid is None:
            text = info.to_json()
            conn.execute("INSERT OR IGNORE INTO reverts (job, info) VALUES (?, ?)",
                         (self._job_id, text))  # fmt: skip
            rid = int(conn.execute("SELECT id FROM reverts WHERE job = ? AND info = ?",
                                   (self._job_id, text)).fetchone()[0])  # fmt: skip
            self._revert_ids[info] = rid
            self._infos[rid] = info
        return rid

    def _revert_ids_of(
        self, conn: sqlite3.Connection, infos: list[RevertInfo | None]
    ) -> list[int]:
        """Ids of many infos; the same object passed for many users is looked up once."""
        out = []
        last: Any = None
        rid = -1
        for info in infos:
            if info is not last:
                rid = self._revert_id(conn, EMPTY_REVERT if info is None else info)
                last = info
            out.append(rid)
        return out

    def _union_id(self, conn: sqlite3.Connection, old: int, new: int) -> int:
        if old < 0 or old == new:
            return new
        rid = self._unions.get((old, new))
        if rid is None:
            old_info = self.state().reverts.get(old) or self._infos.get(old, EMPTY_REVERT)
            rid = self._revert_id(conn, old_info.union(self._infos[new]))
            self._unions[(old, new)] = rid
        return rid

    def _old_reverts(self, keys: list[str]) -> np.ndarray:
        state = self.state()
        if not len(state):
            return np.full(len(keys), -1, dtype=np.int64)
        pos = state.positions(keys)
        return np.where(pos >= 0, state.revert[pos], -1)

    def _append(self, conn: sqlite3.Connection, keys: list[str], digests: bytes, action: int,
                pending: bytes, previous: bytes) -> int:
        """Append one send of ``keys`` (one row for them all: keys, digests and revert ids
        packed); its id."""
        text, lengths = _pack_keys(keys)
        send = conn.execute(
            "INSERT INTO sends (job, run, action, n, keys, lengths, digests, pending, previous, "
            "at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self._job_id, self.id, action, len(keys), text, lengths, digests,
             _squeeze(pending), _squeeze(previous), time.time()),
        ).lastrowid  # fmt: skip
        assert send is not None
        self._sizes[send] = len(keys)
        self._sent.append(keys)
        return send

    def _log(self, conn: sqlite3.Connection, keys: list[str], rows: Iterable[int],
             digests: bytes, action: int, pending: bytes, previous: bytes) -> None:
        """:meth:`_append`, and remember the users as open: ``(rows not final yet, outcome
        flags, send, place)``."""
        send = self._append(conn, keys, digests, action, pending, previous)
        self._open.update(
            zip(keys, zip(rows, repeat(0), repeat(send), range(len(keys))), strict=False)
        )

    def mark_in_flight(
        self, keys: Sequence[str], digests: Sequence[bytes],
        reverts: Sequence[RevertInfo | None] | None = None, rows: Sequence[int] | None = None,
    ) -> None:
        """Before a request leaves: write its users as in flight (one transaction).

        Parameters
        ----------
        keys : sequence of str
            The users in the request, each once. Users already in flight in this run (a lane
            spanning requests, a retry) are left as they are.
        digests : sequence of bytes
            Each user's digest (of all its identifications in this run).
        reverts : sequence of RevertInfo or None, optional
            What undoes each user's identifications (``None``, or by default: nothing).
        rows : sequence of int, optional
            Each user's number of rows in this run (default 1): the user stays in flight until
            that many rows have a final outcome.
        """
        self._check()
        if len(digests) != len(keys) or any(
            other is not None and len(other) != len(keys) for other in (reverts, rows)
        ):
            raise ValueError("mark_in_flight: keys, digests, reverts and rows differ in length")
        opened = self._open
        if opened.keys().isdisjoint(keys):
            fresh = list(range(len(keys)))
        else:
            fresh = [i for i, k in enumerate(keys) if k not in opened]
        if not fresh:
            return
        every = len(fresh) == len(keys)
        counts: Iterable[int] = (
            repeat(1, len(fresh)) if rows is None
            else [int(r) for r in rows] if every else [int(rows[i]) for i in fresh]
        )  # fmt: skip
        self._fly(
            list(keys) if every else [keys[i] for i in fresh],
            digests if every else [digests[i] for i in fresh],
            None if reverts is None else list(reverts) if every else [reverts[i] for i in fresh],
            counts,
        )

    def mark_request_in_flight(
        self, keys: list[str], digests: Sequence[bytes],
        reverts: Sequence[RevertInfo | None] | None = None,
    ) -> int:
        """:meth:`mark_in_flight` for a sender that keeps count of its users' rows itself:
        ``keys`` are users not in flight yet in this run, each once. Returns the send's id, for
        :meth:`mark_request_done`."""
        self._check()
        if len(digests) != len(keys) or (reverts is not None and len(reverts) != len(keys)):
            raise ValueError("mark_request_in_flight: keys, digests and reverts differ in length")
        return self._fly(keys, digests, reverts, None)

    def _fly(self, keys: list[str], digests: Sequence[bytes],
             reverts: Sequence[RevertInfo | None] | None, rows: Iterable[int] | None) -> int:
        old = self._old_reverts(keys)
        with self.ledger._write() as conn:
            if reverts is None:
                new_ids = np.full(len(keys), self._revert_id(conn, EMPTY_REVERT), dtype=np.int64)
            else:
                new_ids = np.array(self._revert_ids_of(conn, list(reverts)), dtype=np.int64)
            pending = new_ids.copy()
            for i in np.flatnonzero((old >= 0) & (old != new_ids)).tolist():
                pending[i] = self._union_id(conn, int(old[i]), int(new_ids[i]))
            chosen = b"".join(digests)
            if len(chosen) != DIGEST_BYTES * len(keys):  # numpy's S16 drops trailing zeros
                chosen = b"".join([bytes(d).ljust(DIGEST_BYTES, b"\0") for d in digests])
                if len(chosen) != DIGEST_BYTES * len(keys):
                    raise ValueError(f"mark_in_flight: digests are {DIGEST_BYTES} bytes each")
            previous = old.astype(np.int64).tobytes()
            if rows is None:
                return self._append(conn, keys, chosen, SYNC, pending.tobytes(), previous)
            self._log(conn, keys, rows, chosen, SYNC, pending.tobytes(), previous)
            return -1

    def mark_revert_in_flight(self, keys: Sequence[str]) -> None:
        """Before a request of revert identifications leaves: write those users in flight.

        What a revert undoes is what the ledger holds for the user; once acknowledged the user
        is no member any more and holds nothing to undo.
        """
        self._check()
        fresh = [k for k in keys if k not in self._open]
        if not fresh:
            return
        state = self.state()
        pos = state.positions(fresh)
        if (pos < 0).any():
            raise ValueError("mark_revert_in_flight: a user the ledger does not hold")
        digests = state.digest[pos].tobytes()
        pending = state.revert[pos].astype(np.int64).tobytes()
        with self.ledger._write() as conn:
            self._log(conn, fresh, repeat(1, len(fresh)), digests, REVERT, pending, pending)

    def mark_done(self, keys: Sequence[str], outcomes: Sequence[str] | str) -> None:
        """After an answer: the final outcome of rows (one entry per row; keys may repeat).

        Parameters
        ----------
        keys : sequence of str
            The user of each row that reached a final outcome.
        outcomes : sequence of str, or str
            Each row's outcome (``"acknowledged"``, ``"failed"`` or ``"unknown"``; result
            statuses are accepted too, see :data:`OUTCOME_OF_STATUS`), or one for all.

        Users whose rows are all final are written in one transaction: ``acknowledged`` if
        every row was, ``failed`` if every row was, else ``unknown`` (partly applied).
        """
        self._check()
        if isinstance(outcomes, str):
            outcomes = [outcomes] * len(keys)
        flag_of = {}
        for name in set(outcomes):
            code = _OUTCOME_CODE.get(OUTCOME_OF_STATUS.get(name, name))
            if code is None or code == IN_FLIGHT:
                raise ValueError(f"mark_done: {name!r} is not a final outcome")
            flag_of[name] = _FLAG[code]
        final: dict[int, bytearray] = {}
        opened = self._open
        sizes = self._sizes
        for key, name in zip(keys, outcomes, strict=True):
            entry = opened.get(key)
            if entry is None:
                raise ValueError(f"mark_done: user {key!r} is not in flight in this run")
            left, flags, send, place = entry
            flags |= flag_of[name]
            if left > 1:
                opened[key] = (left - 1, flags, send, place)
                continue
            code = ACKNOWLEDGED if flags == 1 else FAILED if flags == 2 else UNKNOWN
            codes = final.get(send)
            if codes is None:
                codes = final[send] = bytearray(sizes[send])
            codes[place] = code
            del opened[key]
        if not final:
            return
        # one row per send answered (a request answered as a whole: one row)
        with self.ledger._write() as conn:
            conn.executemany("INSERT INTO answers (job, send, codes) VALUES (?, ?, ?)",
                             [(self._job_id, send, bytes(codes))
                              for send, codes in sorted(final.items())])  # fmt: skip

    def mark_request_done(self, codes: Mapping[int, bytes]) -> None:
        """After an answer, for the sends of :meth:`mark_request_in_flight`: per send, one
        outcome code (:data:`OUTCOMES`) per user of the send, ``in_flight`` (0) where the user
        is not final yet. Written in one transaction."""
        self._check()
        rows = []
        for send, got in sorted(codes.items()):
            if self._sizes.get(send) != len(got):
                raise ValueError(f"mark_request_done: send {send} is not this run's, or has "
                                 f"{self._sizes.get(send)} users")  # fmt: skip
            rows.append((self._job_id, send, bytes(got)))
        if rows:
            with self.ledger._write() as conn:
                conn.executemany("INSERT INTO answers (job, send, codes) VALUES (?, ?, ?)", rows)

    def mark_left(self, keys: Iterable[str]) -> None:
        """Removed users let go without a request (``removed="keep"``, or nothing to undo):
        no longer members; what they hold stays."""
        self._check()
        state = self.state()
        keys = list(keys)
        if keys and self._sent:  # what this run sent stays as sent
            flown = set().union(*self._sent)
            keys = [k for k in keys if k not in flown]
        pos = state.positions(keys) if keys else np.empty(0, dtype=np.intp)
        pos = pos[pos >= 0]
        pos = pos[state.member_mask()[pos]] if len(pos) else pos
        if not len(pos):
            return
        left = state.keys[pos].tolist()
        outcome = state.outcome[pos].astype(np.int8)
        outcome[outcome == IN_FLIGHT] = UNKNOWN
        reverts = state.revert[pos].astype(np.int64).tobytes()
        with self.ledger._write() as conn:
            text, lengths = _pack_keys(left)
            send = conn.execute(
                "INSERT INTO sends (job, run, action, n, keys, lengths, digests, pending, "
                "previous, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self._job_id, self.id, KEPT, len(left), text, lengths,
                 state.digest[pos].tobytes(), reverts, reverts, time.time()),
            ).lastrowid  # fmt: skip
            conn.execute("INSERT INTO answers (job, send, codes) VALUES (?, ?, ?)",
                         (self._job_id, send, outcome.tobytes()))  # fmt: skip

    def finish(self, *, interrupted: bool = False) -> None:
        """End the run: fold its log into the users (those still in flight become
        ``unknown``) and release the job's lock."""
        if self.finished:
            return
        with self.ledger._write() as conn:
            _fold(conn, self.id)
            folded = _log_due(conn, self._job_id)
            if folded:
                _fold_log(conn, self._job_id)
            conn.execute(
                "UPDATE runs SET finished = ?, state = ? WHERE id = ?",
                (time.time(), "interrupted" if interrupted else "finished", self.id),
            )
            conn.execute("DELETE FROM locks WHERE job = ? AND run = ?", (self._job_id, self.id))
            if self._revert_ids and (folded or not conn.execute(
                "SELECT 1 FROM sends WHERE job = ? LIMIT 1", (self._job_id,)
            ).fetchone()):  # drop revert infos no user refers to any more (once all are folded)
                conn.execute(
                    "DELETE FROM reverts WHERE job = ?1 AND id NOT IN (SELECT revert FROM users "
                    "WHERE job = ?1 AND revert IS NOT NULL)", (self._job_id,),
                )
        self.finished = True
        self._open.clear()
        self._sizes.clear()
        self._sent.clear()
        _OPEN_RUNS.pop((self.ledger._where, self.id), None)
