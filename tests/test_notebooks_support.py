"""What nbval cannot check about the example notebooks: that they are committed executed, with
their widget state, without a key, and that their data file is the one its script generates."""

from __future__ import annotations

import importlib.util
import io
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))


def test_the_three_notebooks_are_there() -> None:
    assert [p.name for p in PATHS] == [
        "01-quickstart.ipynb",
        "02-cohort-tagging.ipynb",
        "03-failures-and-throttling.ipynb",
        "04-weekly-cohort-sync.ipynb",
        "06-large-exports.ipynb",
    ]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_committed_executed_in_order(path: Path) -> None:
    # nbval does not compare the outputs of a cell that was never run: every code cell must be.
    nb = json.loads(path.read_text(encoding="utf-8"))
    counts = [c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"]
    assert counts == list(range(1, len(counts) + 1)), "run notebooks/execute.py"
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_no_key_and_widget_state_saved(path: Path) -> None:
    from amp_pandas.sandbox import DEFAULT_API_KEY

    text = path.read_text(encoding="utf-8")
    assert DEFAULT_API_KEY not in text
    assert not re.search(r"AMPLITUDE_API_KEY\s*=\s*['\"]\w", text)
    nb = json.loads(text)
    state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert state  # the preview widget (and progress bars) render on GitHub and nbviewer


def test_users_csv_is_what_its_script_makes() -> None:
    script = NOTEBOOKS / "data" / "make_users.py"
    spec = importlib.util.spec_from_file_location("make_users", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    buffer = io.StringIO()
    module.make_users().to_csv(buffer, index=False)
    committed = (NOTEBOOKS / "data" / "users.csv").read_text(encoding="utf-8")
    assert buffer.getvalue() == committed
