"""The package's layout as the README describes it: every module named, each with its concern."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import amp_pandas

PACKAGE = Path(amp_pandas.__file__).parent
README = PACKAGE.parent / "README.md"


def _modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))


def test_every_module_opens_with_a_docstring_that_names_its_concern() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc, f"{path.relative_to(PACKAGE.parent)} has no opening docstring"
        assert len(doc.split("\n")[0]) >= 20, f"{path.name}: the first line names the concern"


def test_the_readme_map_names_every_module() -> None:
    text = README.read_text()
    section = text.split("### The modules, and the path a row takes", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(_?\w+)`", section))
    missing = [m for m in _modules() if m not in named]
    assert not missing, f"README's module map does not name {missing}"
