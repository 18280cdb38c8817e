"""Execute the example notebooks in place, keeping their outputs and widget state.

The committed outputs are what ``pytest`` (nbval) compares against, and what GitHub shows.
Re-run this after changing anything a notebook displays::

    python notebooks/execute.py                       # all of them
    python notebooks/execute.py notebooks/01-quickstart.ipynb

amp_pandas must be importable by the kernel (``pip install -e .``, or ``PYTHONPATH=.``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(HERE)}},
        record_timing=False,
        store_widget_state=True,
    )
    client.execute()
    nbformat.write(nb, path)
    print(f"executed {path.name}")


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or sorted(HERE.glob("[0-9][0-9]-*.ipynb"))
    for p in paths:
        execute(p)
