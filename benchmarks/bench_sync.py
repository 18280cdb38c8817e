"""A sync run's cost end to end: the reference frame sent to a sandbox in another process.

- **plain send**: ``df.amplitude.identify(...)`` without ``sync=`` (the baseline);
- **first sync run**: the same send with ``sync="bench"`` and a fresh ledger (every user new:
  digests, revert infos, the ledger written around each request);
- **re-run, all unchanged**: the same frame again (the ledger read back, every user
  ``unchanged``, no request: the sandbox's request count is checked);
- **ledger size**: bytes per user after the runs (file + WAL, checkpointed).

Usage::

    python benchmarks/bench_sync.py              # 1,000,000 rows
    python benchmarks/bench_sync.py --quick      # 20,000 rows, a few seconds
    python benchmarks/bench_sync.py --rows 200000
"""

from __future__ import annotations

import argparse
import os
import sqlite3
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
    parser.add_argument("--quick", action="store_true", help="20,000 rows")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else args.rows
    df = reference_frame(n)
    sandbox = SandboxProcess()

    def send(**sync: object) -> object:
        result = df.amplitude.identify(**amp_pandas_mapping(), server_url=sandbox.url,
                                       api_key=sandbox.api_key, batch_size=BATCH_SIZE,
                                       max_workers=MAX_WORKERS, progress=False,
                                       **sync)  # type: ignore[arg-type]  # fmt: skip
        return result

    try:
        with tempfile.TemporaryDirectory() as tmp:
            ledger = Path(tmp) / "ledger.sqlite3"
            sandbox.reset()
            plain, p_wall, p_cpu = timed(lambda: send())
            assert (plain.status == "success").all()  # type: ignore[attr-defined]
            sandbox.reset()
            first, f_wall, f_cpu = timed(lambda: send(sync="bench", ledger=ledger))
            assert (first.status == "success").all()  # type: ignore[attr-defined]
            before = sandbox.stats()["requests"]
            again, r_wall, r_cpu = timed(lambda: send(sync="bench", ledger=ledger))
            assert (again.status == "unchanged").all()  # type: ignore[attr-defined]
            assert sandbox.stats()["requests"] == before, "an unchanged re-run sent requests"
            conn = sqlite3.connect(ledger)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
            size = sum(os.path.getsize(p) for p in Path(tmp).iterdir())
    finally:
        sandbox.close()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{n:,} rows, requests of {BATCH_SIZE}, {MAX_WORKERS} in flight; load {load:.1f}")
    print("| run | wall s | client CPU s | vs plain |")
    print("|---|---|---|---|")
    print(f"| plain send (no sync) | {p_wall:.2f} | {p_cpu:.2f} | |")
    print(f"| first sync run | {f_wall:.2f} | {f_cpu:.2f} | {f_wall / p_wall - 1:+.0%} |")
    print(f"| re-run, all unchanged (0 requests) | {r_wall:.2f} | {r_cpu:.2f} | |")
    print(f"| ledger size | {size / 1e6:.1f} MB | | {size / n:.0f} bytes/user |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
