"""The group identify benchmark runs (``--quick``): it must not rot. No timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_group_quick() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_group.py"), "--quick"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "20,000 rows, build + encode (best of 1)"
    rows = [line.strip("|").split(" | ") for line in lines[3:]]
    assert [r[0].strip() for r in rows] == ["group_identify", "identify"]
    # six group properties per row: 170 rows per request (1020 properties), never 1024 rows
    assert rows[0][1] == "118"  # ceil(20,000 / 170)
    assert rows[1][1] == "20"  # identify: 1000 rows per request
