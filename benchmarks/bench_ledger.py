"""The sync ledger's own cost: writes for N users, reading the state back, planning, file size.

What a sender adds to a send when ``sync=`` is on, measured without the network:

- **first run**: for every request of 1000 users, ``mark_in_flight`` then ``mark_done``
  (every user acknowledged), then ``finish`` (which folds the run's log into the users when it is
  small; a large first run's log stays as written);
- **re-run, all unchanged**: ``Run.state()`` (read the job back under the lock), then
  ``plan_sync`` of the same digests (every user ``unchanged``, nothing to write);
- **summaries**: ``summarize_user`` of one JSON identification per user (digest, idempotency,
  revert info: parses the JSON), and ``digest_and_idempotent`` (what planning needs, without
  parsing: an all-unchanged re-run needs nothing more), and ``revert_infos_of_rows`` (the revert
  infos from the columns a build knows, without parsing);
- **size**: the ledger's bytes per user after a checkpoint (file + WAL).

Usage::

    python benchmarks/bench_ledger.py            # 1,000,000 users (about a minute)
    python benchmarks/bench_ledger.py --quick    # 10,000 users, a few seconds
    python benchmarks/bench_ledger.py --users 200000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from amp_pandas._ledger import Ledger
from amp_pandas._sync import (
    digest_and_idempotent,
    plan_sync,
    revert_infos_of_rows,
    summarize_user,
)

BATCH = 1000
URL = "https://api2.amplitude.com/identify"


def identifications(n: int, seed: int = 1) -> tuple[list[str], list[str]]:
    """One identification per user (the reference frame's shape), in shuffled order."""
    rng = random.Random(seed)
    keys = [f"user-{i:07d}" for i in range(n)]
    rng.shuffle(keys)
    plans = ("free", "team", "enterprise")
    texts = [
        json.dumps({"user_id": k, "user_properties": {
            "$set": {"plan": rng.choice(plans), "country": "JP"},
            "$setOnce": {"first_seen": "2023-11-06T19:26:56"},
            "$add": {"logins": rng.randrange(50)},
            "$postInsert": {"tags": "spring-promo"},
        }}, separators=(",", ":"))  # fmt: skip
        for k in keys
    ]
    return keys, texts


def timed(fn):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="10,000 users")
    args = parser.parse_args(argv)
    n = 10_000 if args.quick else args.users

    keys, texts = identifications(n)
    _, q_wall, q_cpu = timed(lambda: [digest_and_idempotent([t]) for t in texts])
    summaries, s_wall, s_cpu = timed(lambda: [summarize_user([t]) for t in texts])
    _, c_wall, c_cpu = timed(lambda: revert_infos_of_rows(
        n, set_properties={p: np.ones(n, dtype=bool) for p in ("plan", "country", "first_seen")},
        added={"tags": np.full(n, "spring-promo", dtype=object)},
        irreversible={"$add logins": np.ones(n, dtype=bool)},
        non_idempotent={"$add": np.ones(n, dtype=bool)},
    ))
    digests = [s.digest for s in summaries]
    idempotent = [s.idempotent for s in summaries]
    reverts = [s.revert for s in summaries]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.sqlite3"
        ledger = Ledger(path)
        job = ledger.job("bench", URL, "bench-key")

        def first_run() -> None:
            with ledger.begin_run(job) as run:
                run.state()
                for i in range(0, n, BATCH):
                    run.mark_in_flight(keys[i:i + BATCH], digests[i:i + BATCH],
                                       reverts[i:i + BATCH])  # fmt: skip
                    run.mark_done(keys[i:i + BATCH], "acknowledged")

        _, w_wall, w_cpu = timed(first_run)

        def rerun() -> dict[str, int]:
            with ledger.begin_run(job) as run:
                return plan_sync(run.state(), keys, digests, idempotent).counts()

        counts, r_wall, r_cpu = timed(rerun)
        assert counts["unchanged"] == n, counts
        ledger._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = sum(os.path.getsize(p) for p in Path(tmp).iterdir())
        ledger.close()

    rows = [
        ("digest_and_idempotent per user (planning)", q_wall, q_cpu),
        ("summarize_user per user (planning + revert info)", s_wall, s_cpu),
        ("revert_infos_of_rows (revert info from columns)", c_wall, c_cpu),
        ("first run: in flight + acknowledged + finish", w_wall, w_cpu),
        ("re-run, all unchanged: state + plan", r_wall, r_cpu),
    ]
    print(f"{n:,} users, requests of {BATCH}")
    print("| step | wall s | CPU s | CPU µs/user |")
    print("|---|---|---|---|")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {cpu / n * 1e6:.2f} |")
    print(f"| ledger size | {size / 1e6:.1f} MB | | {size / n:.0f} bytes/user |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
