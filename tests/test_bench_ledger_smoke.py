"""The ledger benchmark runs (``--quick``): it must not rot. No timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_ledger_quick() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_ledger.py"), "--quick"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "10,000 users, requests of 1000"
    steps = [line.split(" | ")[0].lstrip("| ") for line in lines[3:]]
    assert steps == [
        "digest_and_idempotent per user (planning)",
        "summarize_user per user (planning + revert info)",
        "revert_infos_of_rows (revert info from columns)",
        "first run: in flight + acknowledged + finish",
        "re-run, all unchanged: state + plan",
        "ledger size",
    ]
    assert lines[-1].endswith(" bytes/user |")


def test_bench_sync_quick() -> None:
    """The sync benchmark runs (``--quick``); it checks itself that the re-run sends nothing."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_sync.py"), "--quick"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("20,000 rows, requests of 1000")
    steps = [line.split(" | ")[0].lstrip("| ") for line in lines[3:]]
    assert steps == ["plain send (no sync)", "first sync run",
                     "re-run, all unchanged (0 requests)", "ledger size"]  # fmt: skip
