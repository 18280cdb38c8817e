"""Soak: a million rows against the sandbox with 503s and throttling on, checked row by row.

One row per user, so the sandbox's per-user ``applied_counts()`` is a per-row count (it keeps
no identification log here: ``record_identifications=False`` saves the memory).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from _support.frames import MAPPING, check_result, mixed_frame, summary

import amp_pandas  # noqa: F401
from amp_pandas.sandbox import Sandbox

KEY = "soak-key-0b5c3e9a7d"
N = 1_000_000


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(api_key=KEY, seed=3, rate_503=0.05, record_identifications=False) as sandbox:
        yield sandbox


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_million_rows_with_503s_and_throttling(sb: Sandbox) -> None:
    df = mixed_frame(N, n_users=N)
    users = df["uid"].to_numpy()
    throttled = users[np.random.default_rng(1).choice(N, size=N // 100, replace=False)]
    preview = df.amplitude.identify(**MAPPING, server_url=sb.url, api_key=KEY, dry_run=True)
    sb.throttle(user_ids=throttled.tolist(), seconds=1.5)  # 1% of the ids, for 1.5 s

    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every row succeeds: no warning at all
        result = preview.send(
            progress=False, throttle_pause=0.5, backoff=0.01, backoff_max=0.2, max_retries=30
        )
    elapsed = time.monotonic() - started

    per_user = sb.applied_counts()
    counts = per_user.reindex(users, fill_value=0).to_numpy()
    assert len(per_user) == N  # no profile the frame did not ask for
    assert check_result(result, df, counts, ambiguity=False) == []
    assert summary(result) == {"success": N}
    assert (counts == 1).all()
    statuses = [r.status for r in sb.requests]
    assert statuses.count(503) > 10 and statuses.count(429) > 0
    # rows of throttled ids waited at least one pause and were sent again
    hit = df["uid"].isin(set(throttled.tolist())).to_numpy() & (result["attempts"].to_numpy() > 1)
    assert hit.any()
    print(f"soak: {N:,} rows in {elapsed:.1f} s, {len(statuses):,} requests")
