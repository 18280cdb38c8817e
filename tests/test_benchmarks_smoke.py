"""The benchmarks still run: ``benchmarks/run.py --quick`` in a subprocess, offline, in seconds.

No figure is asserted (the machine is shared and noisy): only that every section was measured
and written between the README markers, with the prose around them kept, and that the
repository's ``benchmarks/README.md`` was left alone.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"
HEADINGS = (
    "### Run",
    "### Build + encode (no network)",
    "### End to end (sandbox in another process)",
    "### Request body encoding",
    "### Memory",
    "### Throttling",
    "### The official SDK and pandas values",
    "### Targets",
)
START = "<!-- benchmark-results:start"
END = "<!-- benchmark-results:end -->"
HAVE_SDK = importlib.util.find_spec("amplitude") is not None


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, str(RUN), "--quick", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


@pytest.fixture
def readme(tmp_path: Path) -> Path:
    path = tmp_path / "README.md"
    path.write_text(f"# Prose before\n\n{START} -->\nstale table\n{END}\n\nProse after.\n")
    return path


def test_quick_run_writes_every_section_between_the_markers(readme: Path) -> None:
    repo_readme = ROOT / "benchmarks" / "README.md"
    before = repo_readme.read_bytes() if repo_readme.exists() else None

    completed = _run("--readme", str(readme))

    text = readme.read_text()
    assert text.startswith("# Prose before\n") and text.endswith("\nProse after.\n")
    assert "stale table" not in text
    assert text.count(START) == 1 and text.count(END) == 1
    table = text[text.index(START):text.index(END)]
    for heading in HEADINGS:
        assert heading in table, heading
        assert heading in completed.stdout, heading
    assert "not run (`--sections" not in table
    for label in ("amp_pandas", "iterrows loop", "floor: json.dumps only", "multipart/form-data",
                  "application/x-www-form-urlencoded", "ru_maxrss", "overhead / pause",
                  "`throttle_pause=0`", "amp_pandas → no-op server",
                  "peak RSS ≤ frame + 300 MB", "throttling overhead ≤ one pause + 10%"):
        assert label in table, label
    if HAVE_SDK:
        assert "| official SDK |" in table and "dropped silently" in table
    else:
        assert "`amplitude-analytics` not installed" in table  # says so rather than failing
    # every end-to-end run was checked against what the sandbox applied
    assert "| all |" in table
    # the repository's README is only rewritten by a full run
    after = repo_readme.read_bytes() if repo_readme.exists() else None
    assert after == before


def test_without_the_sdk_the_sdk_columns_say_so(tmp_path: Path) -> None:
    completed = _run("--no-sdk", "--sections", "build", "--no-write")
    out = completed.stdout
    assert "official SDK | not installed (pip install -r benchmarks/requirements.txt)" in out
    assert "`amplitude-analytics` not installed" in out
    assert "not run (`--sections`)" in out  # the other sections are named, not silently missing
