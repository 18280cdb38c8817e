"""Group identify, build + encode (no network): from a frame of companies to every request body.

``df.amplitude.group_identify(..., dry_run=True)`` (build and check every row), then
``chunk_rows`` over ``preview.plan`` (at most 1024 group identifications and 1024 group
properties per request), then ``plan.payload.json_array`` and ``encode_body`` for every request,
exactly as the sender does before posting. Beside it, the same user identifications through
``identify`` (same columns, a user id in place of the group), so that the two builds compare.

The frame: an int group value (sent as a string), four ``$set`` properties (two strings, an int,
a Timestamp), a ``$setOnce`` literal and an int ``$add``: six group properties per row, so that
requests hold 170 group identifications (the property limit binds before the 1024 rows).

Usage::

    python benchmarks/bench_group.py            # 1,000,000 companies (about a minute)
    python benchmarks/bench_group.py --quick    # 20,000 companies, a few seconds
    python benchmarks/bench_group.py --rows 200000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

import amp_pandas  # noqa: F401  (registers df.amplitude)
from amp_pandas import literal
from amp_pandas._encode import body_overhead, encode_body, new_boundary
from amp_pandas._plan import chunk_rows

API_KEY = "0123456789abcdef0123456789abcdef"
BATCH_SIZE = 1000


def companies(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "company_id": np.arange(10_000_000, 10_000_000 + n),
            "user_id": [f"user-{i:08d}" for i in range(n)],
            "plan": rng.choice(["free", "team", "pro", "enterprise"], n),
            "industry": rng.choice(["software", "retail", "energy", "finance", "pharma"], n),
            "seats": rng.integers(1, 5000, n),
            "renewal": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 365, n), "D"),
            "logins": rng.integers(0, 100, n),
        }
    )


OPERATIONS: dict[str, Any] = {
    "set": ["plan", "industry", "seats", "renewal"],
    "set_once": {"source": literal("crm")},
    "add": {"login_count": "logins"},
}


def bodies(df: pd.DataFrame, method: str) -> tuple[int, int]:
    """Build, check and encode every request body; (requests, body bytes)."""
    keys = (
        {"group_type": "company", "group_value": "company_id"}
        if method == "group_identify"
        else {"user_id": "user_id"}
    )
    preview = getattr(df.amplitude, method)(**keys, **OPERATIONS, dry_run=True)
    plan = preview.plan
    boundary = new_boundary()
    total = requests = 0
    for rows in chunk_rows(plan, batch_size=BATCH_SIZE, overhead=body_overhead(len(API_KEY))):
        total += len(encode_body(API_KEY, plan.payload.json_array(rows), boundary))
        requests += 1
    return requests, total


def timed(fn: Any, repeats: int) -> tuple[Any, float, float]:
    """The result of the best of ``repeats`` runs, its wall and CPU seconds."""
    best: tuple[Any, float, float] | None = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best[1]:
            best = (out, wall, cpu)
    assert best is not None
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20,000 rows, one run each")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else args.rows
    repeats = 1 if args.quick else args.repeats
    df = companies(n)
    print(f"{n:,} rows, build + encode (best of {repeats})")
    print("| method | requests | rows/s | CPU µs/row | bytes/row |")
    print("|---|---|---|---|---|")
    for method in ("group_identify", "identify"):
        (requests, size), wall, cpu = timed(lambda m=method: bodies(df, m), repeats)
        print(f"| {method} | {requests:,} | {n / wall:,.0f} | {cpu / n * 1e6:.2f} | "
              f"{size / n:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
