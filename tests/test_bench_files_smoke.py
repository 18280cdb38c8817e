"""``benchmarks/bench_files.py --quick`` still runs: the CLI on a Parquet file and Dask with 1 and
2 worker processes against the sandbox in another process, every send checked by the script.

No figure is asserted (the machine is shared and noisy); only that each table was produced.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_files.py"


def test_quick_run_checks_the_cli_and_dask_and_prints_both_tables() -> None:
    args = [] if importlib.util.find_spec("distributed") else ["--no-dask"]
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    assert "| --dry-run (check every row) |" in out
    assert "| send (check, then send; --out result.parquet) |" in out
    assert "MiB |" in out and "load average before" in out
    if not args:
        assert "| 1 |" in out and "| 2 |" in out

