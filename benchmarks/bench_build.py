"""Build + encode, no network: from the frame to every request body, four ways.

- **amp_pandas**: ``df.amplitude.identify(..., dry_run=True)`` (build and check every row), then
  ``chunk_rows`` over ``preview.plan``, then ``plan.payload.json_array`` (the request's JSON
  text, written from the converted columns) and ``encode_body`` for every request, exactly as
  the sender does before posting.
- **iterrows loop**: a dict per row, ``json.dumps`` per batch of 1000 (no form encoding: the
  cheapest thing a hand-written loop could post).
- **official SDK**: ``Identify().set(...).set_once(...).add(...).post_insert(...)`` and
  ``EventOptions(user_id=...)`` per row, then what ``Amplitude.identify`` and its worker do to
  serialize (see :class:`_reference.SdkEncoder`).
- **floor**: only ``json.dumps`` of the already-built identification dicts, per batch of 1000.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from typing import Any

from _reference import (
    API_KEY,
    BATCH_SIZE,
    SdkEncoder,
    Spread,
    amp_pandas_mapping,
    iterrows_batches,
    reference_frame,
    sdk_version,
    timed,
)

#: At this size and above, at most BIG_REPEATS runs (each takes seconds).
BIG, BIG_REPEATS = 1_000_000, 3
METHODS = ("amp_pandas", "iterrows loop", "official SDK", "floor: json.dumps only")


def amp_pandas_bodies(df: Any) -> int:
    """Build, check and encode every request body; return the body bytes."""
    from amp_pandas._encode import body_overhead, encode_body, new_boundary
    from amp_pandas._plan import chunk_rows

    preview = df.amplitude.identify(**amp_pandas_mapping(), dry_run=True)
    plan = preview.plan
    boundary = new_boundary()
    total = 0
    for rows in chunk_rows(plan, batch_size=BATCH_SIZE, overhead=body_overhead(len(API_KEY))):
        total += len(encode_body(API_KEY, plan.payload.json_array(rows), boundary))
    return total


def _methods(df: Any, payloads: list[Any], *, with_slow: bool,
             with_sdk: bool) -> dict[str, Callable[[], Any]]:
    """The methods to time on ``df``, each a function of nothing returning the body bytes."""
    n = len(df)

    def floor() -> int:
        return sum(
            len(json.dumps(payloads[i:i + BATCH_SIZE], separators=(",", ":"), ensure_ascii=False))
            for i in range(0, n, BATCH_SIZE)
        )

    methods: dict[str, Callable[[], Any]] = {
        "amp_pandas": lambda: amp_pandas_bodies(df),
        "floor: json.dumps only": floor,
    }
    if with_slow:
        methods["iterrows loop"] = lambda: sum(len(b) for b in iterrows_batches(df))
        if with_sdk:
            encoder = SdkEncoder()
            methods["official SDK"] = lambda: sum(len(b) for b in encoder.bodies(df))
    return methods


def measure(sizes: list[int], slow_sizes: list[int], repeats: int, *, slow_repeats: int = 3,
            sdk: bool = True, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Rows per second and CPU µs per row of each method at each size.

    ``slow_sizes``: the sizes at which the iterrows loop and the SDK are measured too (they
    take minutes at a million rows), ``slow_repeats`` times. Runs are interleaved (each
    repeat runs every method once) so that a noisy neighbour slows all methods alike.
    """
    have_sdk = sdk and sdk_version() is not None
    results = []
    for n in sizes:
        df = reference_frame(n)
        payloads: list[Any] = list(
            df.amplitude.identify(**amp_pandas_mapping(), dry_run=True).payloads
        )
        # Millions of small dicts kept alive for the floor: keep them out of the cyclic GC's
        # way, so that they do not slow the other methods' collections.
        gc.freeze()
        methods = _methods(df, payloads, with_slow=n in slow_sizes, with_sdk=have_sdk)
        runs: dict[str, list[Any]] = {name: [] for name in methods}
        for r in range(min(repeats, BIG_REPEATS) if n >= BIG else repeats):
            for name, fn in methods.items():
                if r >= slow_repeats and name in ("iterrows loop", "official SDK"):
                    continue
                timing, _ = timed(fn)
                runs[name].append(timing)
                log(f"  build {n:>9,} rows  {name:<24} run {r + 1}: "
                    f"{n / timing.wall:>12,.0f} rows/s  {timing.cpu / n * 1e6:7.2f} µs CPU/row")
        for name in METHODS:
            if name not in runs:
                note = ("not installed (pip install -r benchmarks/requirements.txt)"
                        if name == "official SDK" and not have_sdk
                        else f"measured at {_sizes(slow_sizes)} rows only (minutes at 1M)")
                results.append({"rows": n, "method": name, "note": note})
                continue
            results.append({
                "rows": n,
                "method": name,
                "rows_per_s": Spread(tuple(n / t.wall for t in runs[name])),
                "cpu_us_per_row": Spread(tuple(t.cpu / n * 1e6 for t in runs[name])),
            })
        del df, payloads, methods
        gc.unfreeze()
        gc.collect()
    return results


def _sizes(sizes: list[int]) -> str:
    return " and ".join(f"{n:,}" for n in sizes)
