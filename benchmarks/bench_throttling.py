"""Throttling: 1% of the ids answered 429 once; what does that cost in total time?

The sandbox (no added latency) throttles each chosen ``user_id`` for exactly one request
(``Sandbox.throttle(user_ids=[id], requests=1)`` per id). The ids are spread at random, so every
request of 1000 rows carries about ten of them and is answered 429 once. amp_pandas pauses only
those ids for ``throttle_pause`` seconds (shortened from the default 15 s so that the benchmark
runs quickly; the cost scales with it) and resends the other rows at once. The ideal is the
unthrottled time plus one pause.

A third run with ``throttle_pause=0`` measures the 429 round trips alone: the throttled requests
answered 429 and sent again without their throttled ids, without any waiting.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _reference import BATCH_SIZE, MAX_WORKERS, Spread, amp_pandas_mapping, reference_frame


def measure(sandbox: Any, rows: int, pause: float, repeats: int, share: float = 0.01, *,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Unthrottled, throttled with ``throttle_pause=0`` and throttled with ``pause``, interleaved.

    The ``throttle_pause=0`` run isolates what the 429 round trips themselves cost: a 429
    applies nothing, so every throttled request is sent again without its throttled ids (the
    server receives about twice the identifications).
    """
    df = reference_frame(rows)
    rng = np.random.default_rng(1)
    throttled_ids = sorted(rng.choice(df["uid"].to_numpy(dtype=object), int(rows * share),
                                      replace=False).tolist())
    kinds = {"unthrottled": pause, "throttled, pause 0": 0.0, "throttled": pause}
    seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
    received: dict[str, list[float]] = {kind: [] for kind in kinds}
    requests: dict[str, list[float]] = {kind: [] for kind in kinds}
    answers_429: list[float] = []
    for r in range(repeats):
        for kind, kind_pause in kinds.items():
            sandbox.reset(latency=0.0)
            if kind != "unthrottled":
                sandbox.throttle_each(throttled_ids)
            gc.collect()
            start = time.perf_counter()
            result = df.amplitude.identify(
                **amp_pandas_mapping(), server_url=sandbox.url, api_key=sandbox.api_key,
                batch_size=BATCH_SIZE, max_workers=MAX_WORKERS, throttle_pause=kind_pause,
                progress=False,
            )
            took = time.perf_counter() - start
            stats = sandbox.stats()
            if not (result.status == "success").all() or stats["applied"] != rows:
                raise RuntimeError(
                    f"throttling ({kind}): {int((result.status == 'success').sum()):,} rows "
                    f"succeeded, {stats['applied']:,} applied of {rows:,}"
                )
            seconds[kind].append(took)
            received[kind].append(stats["identifications"])
            requests[kind].append(stats["requests"])
            if kind == "throttled":
                answers_429.append(stats["statuses"].get("429", 0))
            log(f"  throttling {rows:,} rows, {kind:<18} run {r + 1}: {took:6.2f} s, "
                f"{stats['requests']} requests ({stats['statuses'].get('429', 0)} answered 429)")
    plain = seconds["unthrottled"]
    overhead = [t - p for t, p in zip(seconds["throttled"], plain, strict=True)]
    resend = [t - p for t, p in zip(seconds["throttled, pause 0"], plain, strict=True)]
    return {
        "rows": rows,
        "throttled_ids": len(throttled_ids),
        "pause": pause,
        "answers_429": Spread(tuple(answers_429)),
        "requests": {kind: Spread(tuple(v)) for kind, v in requests.items()},
        "received": {kind: Spread(tuple(v)) for kind, v in received.items()},
        "unthrottled_s": Spread(tuple(plain)),
        "throttled_s": Spread(tuple(seconds["throttled"])),
        "throttled_no_pause_s": Spread(tuple(seconds["throttled, pause 0"])),
        "overhead_s": Spread(tuple(overhead)),
        "resend_overhead_s": Spread(tuple(resend)),
        "overhead_over_pause": Spread(tuple(o / pause for o in overhead)),
    }
