"""A sync run's cost end to end: the reference frame sent to a sandbox in another process.

- **plain send**: ``df.amplitude.identify(...)`` without ``sync=`` (the baseline);
- **first sync run**: the same send with ``sync="bench"`` and a fresh ledger (every user new:
  digests, revert infos, the ledger written around each request);
- **re-run, all unchanged**: the same frame again (the ledger read back, every user
  ``unchanged``, no request: the sandbox's request count is checked);
- **ledger size**: bytes per user after the runs (file + WAL, checkpointed).

The three runs are repeated in rounds (default 5), interleaved, so that the machine's drift
affects them alike; the table gives medians (and ranges), and each first run is compared with
the plain send of its own round.

Usage::

    python benchmarks/bench_sync.py              # 1,000,000 rows, 5 rounds
    python benchmarks/bench_sync.py --quick      # 20,000 rows, one round, a few seconds
    python benchmarks/bench_sync.py --rows 200000 --rounds 3
    python benchmarks/bench_sync.py --latency 100 --rounds 3   # a network's latency
"""

from __future__ import annotations

import argparse
import functools
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _reference import BATCH_SIZE, MAX_WORKERS, amp_pandas_mapping, reference_frame  # noqa: E402
from _sandbox_process import SandboxProcess  # noqa: E402

import amp_pandas  # noqa: E402,F401


def timed(fn):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20,000 rows, one round")
    parser.add_argument("--latency", type=float, default=0.0, metavar="MS",
                        help="latency the sandbox adds to each request (default 0: the sandbox "
                        "is the bottleneck)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of the three runs, interleaved (default 5; 1 with --quick)")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else args.rows
    rounds = args.rounds or (1 if args.quick else 5)
    df = reference_frame(n)
    sandbox = SandboxProcess()

    def send(**sync: object) -> object:
        result = df.amplitude.identify(**amp_pandas_mapping(), server_url=sandbox.url,
                                       api_key=sandbox.api_key, batch_size=BATCH_SIZE,
                                       max_workers=MAX_WORKERS, progress=False,
                                       **sync)  # type: ignore[arg-type]  # fmt: skip
        return result

    plain_t, first_t, again_t = [], [], []
    try:
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as tmp:
                ledger = Path(tmp) / "ledger.sqlite3"
                sandbox.reset(latency=args.latency / 1000)
                plain, *times = timed(lambda: send())
                plain_t.append(times)
                assert (plain.status == "success").all()  # type: ignore[attr-defined]
                sandbox.reset(latency=args.latency / 1000)
                first, *times = timed(functools.partial(send, sync="bench", ledger=ledger))
                first_t.append(times)
                assert (first.status == "success").all()  # type: ignore[attr-defined]
                before = sandbox.stats()["requests"]
                again, *times = timed(functools.partial(send, sync="bench", ledger=ledger))
                again_t.append(times)
                assert (again.status == "unchanged").all()  # type: ignore[attr-defined]
                assert sandbox.stats()["requests"] == before, "an unchanged re-run sent requests"
                conn = sqlite3.connect(ledger)
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.close()
                size = sum(os.path.getsize(p) for p in Path(tmp).iterdir())
    finally:
        sandbox.close()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{n:,} rows, requests of {BATCH_SIZE}, {MAX_WORKERS} in flight, "
          f"{args.latency:g} ms added latency; "
          f"{rounds} round{'s' if rounds > 1 else ''}, medians; load {load:.1f}")  # fmt: skip
    # each first run against the plain send of its own round: the machine's drift between
    # rounds cancels out
    ratios = [f[0] / p[0] - 1 for f, p in zip(first_t, plain_t, strict=True)]

    def cell(times: list[list[float]], k: int) -> str:
        values = [t[k] for t in times]
        middle = f"{statistics.median(values):.2f}"
        return middle if len(values) == 1 else f"{middle} ({min(values):.2f}-{max(values):.2f})"

    print("| run | wall s | client CPU s | vs plain |")
    print("|---|---|---|---|")
    print(f"| plain send (no sync) | {cell(plain_t, 0)} | {cell(plain_t, 1)} | |")
    spread = "" if rounds == 1 else f" ({min(ratios):+.0%} to {max(ratios):+.0%})"
    print(f"| first sync run | {cell(first_t, 0)} | {cell(first_t, 1)} | "
          f"{statistics.median(ratios):+.0%}{spread} |")  # fmt: skip
    print(f"| re-run, all unchanged (0 requests) | {cell(again_t, 0)} | {cell(again_t, 1)} | |")
    print(f"| ledger size | {size / 1e6:.1f} MB | | {size / n:.0f} bytes/user |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
