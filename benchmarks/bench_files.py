"""Files in bounded memory and Dask: a large Parquet file of the reference shape, sent by the CLI
and by Dask with 1 and 2 worker processes, against the sandbox in another process.

Run from the repository root::

    python benchmarks/bench_files.py                 # 5M rows through the CLI; Dask on 1M rows
    python benchmarks/bench_files.py --rows 2000000 --dask-rows 500000
    python benchmarks/bench_files.py --quick         # 20k rows, seconds: checks it all works

What is measured:

* **CLI** (``amp-pandas identify FILE``, a process of its own): the dry run (``--dry-run``, every
  row checked) and the send (``--out result.parquet``: checked, then sent chunk by chunk),
  each with its wall time, rows/s and the process's own peak resident memory, ``VmHWM`` from
  ``/proc/<pid>/status`` read by the CLI process itself at exit (a tiny wrapper registers the
  read with ``atexit``; ``ru_maxrss`` of a child would carry the parent's size). The sandbox
  must have applied every row, and the result file must hold one ``success`` per row.
* **Dask** (``ddf.amplitude.identify``) on ``dask.distributed`` local clusters of 1 and 2
  worker processes (one thread each) reading the same kind of Parquet file: the dry run and the
  send, rows/s, the sandbox checked after each send.

The file has the reference frame's columns (``_reference.py``): ``uid`` (unique), ``plan``,
``country``, ``signup`` (a timestamp, ``$setOnce first_seen``), ``logins`` (``$add``); it is
written a million rows at a time, the ids shuffled within each million. The constant
``$postInsert tags`` of the reference mapping has no flag on the command line (``--literal`` is
a ``$set``), so every run here sends ``--literal tags=spring-promo`` as a ``$set`` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from _reference import API_KEY, TAG, machine  # noqa: E402
from _sandbox_process import SandboxProcess  # noqa: E402

import amp_pandas  # noqa: E402, F401  (registers the accessors)
from amp_pandas import literal  # noqa: E402

ROOT = _HERE.parent
PIECE = 1_000_000

#: The CLI flags of the reference mapping (see the module docstring for ``tags``).
CLI_MAPPING = ["--user-id", "uid", "--set", "plan", "--set", "country",
               "--set-once", "first_seen=signup", "--add", "logins",
               "--literal", f"tags={TAG}"]  # fmt: skip
#: The same mapping for ``ddf.amplitude.identify``.
MAPPING: dict[str, Any] = {
    "user_id": "uid",
    "set": {"plan": "plan", "country": "country", "tags": literal(TAG)},
    "set_once": {"first_seen": "signup"},
    "add": {"logins": "logins"},
}

#: Run as the CLI process: report this process's VmHWM to $BENCH_HWM at exit, then be the CLI.
_WRAPPER = """
import atexit, os, runpy, sys
def _report():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(os.environ["BENCH_HWM"], "w").write(str(int(line.split()[1]) * 1024))
atexit.register(_report)
sys.argv = ["amp-pandas"] + sys.argv[1:]
runpy.run_module("amp_pandas", run_name="__main__")
"""


def write_file(path: Path, rows: int, seed: int = 0) -> int:
    """The reference shape as Parquet, written a million rows at a time; returns its bytes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    plans = np.array(["free", "pro", "team"])
    countries = np.array(["FR", "DE", "US", "GB", "JP", "BR", "IN", "ES", "IT", "NL"])
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, PIECE):
        n = min(PIECE, rows - start)
        numbers = (start + rng.permutation(n)).astype("U")
        signup = np.datetime64("2023-01-01T00:00:00") + rng.integers(
            0, 2 * 365 * 86_400, n
        ).astype("timedelta64[s]")
        table = pa.table({
            "uid": pa.array(np.char.add("user-", np.char.zfill(numbers, 8)), pa.string()),
            "plan": pa.array(plans[rng.integers(0, 3, n)], pa.string()),
            "country": pa.array(countries[rng.integers(0, 10, n)], pa.string()),
            "signup": pa.array(signup.astype("datetime64[us]"), pa.timestamp("us")),
            "logins": pa.array(rng.integers(0, 50, n), pa.int64()),
        })  # fmt: skip
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=100_000)
    assert writer is not None
    writer.close()
    return path.stat().st_size


def run_cli(path: Path, sandbox: SandboxProcess, *extra: str) -> dict[str, Any]:
    """One CLI run in a process of its own: wall time, exit status, peak RSS, last lines."""
    with tempfile.TemporaryDirectory() as folder:
        hwm = Path(folder) / "hwm"
        env = dict(os.environ, AMPLITUDE_API_KEY=sandbox.api_key, BENCH_HWM=str(hwm),
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        argv = [sys.executable, "-c", _WRAPPER, "identify", str(path), *CLI_MAPPING,
                "--server-url", sandbox.url, "--no-progress", *extra]  # fmt: skip
        start = time.perf_counter()
        completed = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        seconds = time.perf_counter() - start
        peak = int(hwm.read_text()) if hwm.exists() else 0
    if completed.returncode != 0:
        raise RuntimeError(
            f"the CLI exited {completed.returncode}:\n{completed.stdout[-2000:]}"
            f"{completed.stderr[-2000:]}"
        )
    return {"seconds": seconds, "peak_rss": peak, "stdout": completed.stdout.strip()}


def bench_cli(rows: int, chunk_rows: int, folder: Path, sandbox: SandboxProcess) -> dict[str, Any]:
    import pyarrow.parquet as pq

    path = folder / f"reference-{rows}.parquet"
    t0 = time.perf_counter()
    size = write_file(path, rows)
    written = time.perf_counter() - t0
    chunk = ["--chunk-rows", str(chunk_rows)]
    sandbox.reset(latency=0.0)
    dry = run_cli(path, sandbox, "--dry-run", *chunk)
    if not re.search(rf"rows {rows:,}\s+valid {rows:,}\s+invalid 0\b", dry["stdout"]):
        raise RuntimeError(f"unexpected dry run:\n{dry['stdout'][:2000]}")
    if sandbox.stats()["requests"] != 0:
        raise RuntimeError("the dry run sent requests")
    out = folder / "result.parquet"
    sandbox.reset(latency=0.0)
    send = run_cli(path, sandbox, "--out", str(out), *chunk)
    applied = sandbox.stats()["applied"]
    result = pq.read_table(out, columns=["row", "status"]).to_pandas()
    ok = (
        applied == rows
        and len(result) == rows
        and bool((result["row"].to_numpy() == range(rows)).all())
        and bool((result["status"] == "success").all())
    )
    if not ok:
        raise RuntimeError(f"send not checked: applied {applied:,} of {rows:,}")
    return {
        "rows": rows,
        "chunk_rows": chunk_rows,
        "file_bytes": size,
        "write_seconds": written,
        "dry_run": {k: v for k, v in dry.items() if k != "stdout"},
        "send": {k: v for k, v in send.items() if k != "stdout"},
        "applied": applied,
    }


def bench_dask(rows: int, folder: Path, sandbox: SandboxProcess, workers: int,
               partitions: int) -> dict[str, Any]:  # fmt: skip
    import dask.dataframe as dd
    import distributed

    path = folder / f"dask-{rows}.parquet"
    if not path.exists():
        write_file(path, rows, seed=1)
    with distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster):
        ddf = dd.read_parquet(path).repartition(npartitions=partitions)
        target = {"server_url": sandbox.url, "api_key": sandbox.api_key, "progress": False}
        sandbox.reset(latency=0.0)
        start = time.perf_counter()
        preview = ddf.amplitude.identify(**MAPPING, dry_run=True, **target)
        dry = time.perf_counter() - start
        if int(preview.summary["valid"]) != rows:
            raise RuntimeError(f"dask dry run: {preview.summary.to_dict()}")
        start = time.perf_counter()
        result = ddf.amplitude.identify(**MAPPING, **target)
        send = time.perf_counter() - start
    applied = sandbox.stats()["applied"]
    if applied != rows or not (result["status"] == "success").all():
        raise RuntimeError(f"dask send not checked: applied {applied:,} of {rows:,}")
    return {"workers": workers, "rows": rows, "partitions": partitions,
            "dry_run_seconds": dry, "send_seconds": send}  # fmt: skip


def table(cli: dict[str, Any] | None, dask_runs: list[dict[str, Any]]) -> str:
    lines = []
    if cli is not None:
        rows = cli["rows"]
        lines += [
            f"CLI, {rows:,}-row Parquet file ({cli['file_bytes'] / 1e6:,.0f} MB), "
            f"--chunk-rows {cli['chunk_rows']:,}:",
            "",
            "| run | wall time | rows/s | peak RSS of the CLI process (VmHWM) |",
            "|---|---|---|---|",
        ]
        for name, key in (("--dry-run (check every row)", "dry_run"),
                          ("send (check, then send; --out result.parquet)", "send")):
            run = cli[key]
            lines.append(f"| {name} | {run['seconds']:,.1f} s | {rows / run['seconds']:,.0f} | "
                         f"{run['peak_rss'] / 2**20:,.0f} MiB |")  # fmt: skip
        lines.append("")
    if dask_runs:
        first = dask_runs[0]
        lines += [
            f"Dask, {first['rows']:,}-row Parquet file, {first['partitions']} partitions, "
            "dask.distributed local cluster (1 thread per worker process):",
            "",
            "| worker processes | dry run rows/s | send rows/s |",
            "|---|---|---|",
        ]
        for run in dask_runs:
            lines.append(f"| {run['workers']} | {run['rows'] / run['dry_run_seconds']:,.0f} | "
                         f"{run['rows'] / run['send_seconds']:,.0f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--dask-rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="20k rows, checks only")
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.chunk_rows, args.dask_rows, args.partitions = 20_000, 5_000, 20_000, 4
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    info = {**machine(), "load average before": " ".join(f"{x:.2f}" for x in load)}
    dask_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, SandboxProcess(API_KEY) as sandbox:
        folder = Path(tmp)
        cli = bench_cli(args.rows, args.chunk_rows, folder, sandbox) if args.rows else None
        if not args.no_dask:
            for workers in (1, 2):
                dask_runs.append(
                    bench_dask(args.dask_rows, folder, sandbox, workers, args.partitions)
                )
    try:
        info["load average after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    print("\n".join(f"- {k}: {v}" for k, v in info.items()))
    print()
    print(table(cli, dask_runs))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "cli": cli, "dask": dask_runs},
                                              indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
