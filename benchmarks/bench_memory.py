"""Memory: the peak resident memory of sending the reference frame, in a fresh process.

The child process imports everything, builds the frame, then sends it with
``df.amplitude.identify`` to the sandbox (another process): first the build
(``dry_run=True``), then ``preview.send()``, exactly what ``identify`` does without a dry run,
so that the peak can be attributed to one or the other. It reports its resident memory after
the imports, with the frame built, and its peak after the build and after the send, next to the
frame's own ``memory_usage(deep=True)``.

The peak is the process's own high-water mark, ``VmHWM`` from ``/proc/self/status`` (Linux).
``resource.getrusage(...).ru_maxrss`` is reported too, but on Linux a child inherits in it its
parent's resident size at spawn time: spawned from a benchmark process holding 3 GB it says 3 GB
whatever the child does. ``run.py`` therefore runs this section first, while it is small, so
that both agree.

Run alone (it needs a running sandbox)::

    python benchmarks/bench_memory.py --rows 1000000 --url http://127.0.0.1:PORT/identify --key KEY
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent


def measure(sandbox: Any, rows: int, repeats: int = 1) -> dict[str, Any]:
    """Run the child ``repeats`` times (each a fresh process); the run with the median peak."""
    runs = []
    for _ in range(repeats):
        sandbox.reset(latency=0.0)
        completed = subprocess.run(
            [sys.executable, str(_HERE / "bench_memory.py"), "--rows", str(rows),
             "--url", sandbox.url, "--key", sandbox.api_key],
            capture_output=True, text=True, check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"the memory child failed:\n{completed.stderr[-2000:]}")
        run = json.loads(completed.stdout.strip().splitlines()[-1])
        applied = sandbox.stats()["applied"]
        if applied != rows:
            raise RuntimeError(f"memory run: the sandbox applied {applied:,} of {rows:,} rows")
        runs.append(run)
    runs.sort(key=lambda run: run["peak_rss"])
    chosen = dict(runs[len(runs) // 2])
    chosen["peak_rss_runs"] = [run["peak_rss"] for run in runs]
    return chosen


def _child(rows: int, url: str, key: str) -> dict[str, Any]:
    sys.path.insert(0, str(_HERE))
    import gc

    import pyarrow.compute  # noqa: F401  (the build's string kernels)
    from _reference import (
        BATCH_SIZE,
        MAX_WORKERS,
        amp_pandas_mapping,
        peak_rss_bytes,
        reference_frame,
        rss_bytes,
        ru_maxrss_bytes,
    )

    import amp_pandas._send  # noqa: F401  (everything a send imports, before measuring)

    gc.collect()
    after_imports = rss_bytes()
    df = reference_frame(rows)
    gc.collect()
    frame_bytes = int(df.memory_usage(deep=True).sum())
    with_frame = rss_bytes()
    peak_before_send = peak_rss_bytes()
    # What ``identify`` does without dry_run, in two steps so that the peak can be attributed.
    preview = df.amplitude.identify(
        **amp_pandas_mapping(), server_url=url, api_key=key, batch_size=BATCH_SIZE,
        max_workers=MAX_WORKERS, progress=False, dry_run=True,
    )
    peak_after_build = peak_rss_bytes()
    result = preview.send()
    peak = peak_rss_bytes()
    ru_maxrss = ru_maxrss_bytes()
    if not (result.status == "success").all():
        raise RuntimeError("memory run: some rows did not succeed")
    return {
        "rows": rows,
        "frame_bytes": frame_bytes,
        "rss_after_imports": after_imports,
        "rss_with_frame": with_frame,
        "peak_rss_before_send": peak_before_send,
        "peak_rss_after_build": peak_after_build,
        "peak_rss": peak,
        "ru_maxrss": ru_maxrss,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    print(json.dumps(_child(args.rows, args.url, args.key)))
