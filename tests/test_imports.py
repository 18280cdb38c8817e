"""The package's layout: no import cycle among its modules, lazy (function-level) imports
included, and no module importing another module's private (underscore) names.

The import graph is read from the source (AST), so an import inside a function counts as much as
one at the top. Imports under ``if TYPE_CHECKING:`` never run and name types only: they are left
out of the cycle check, but still may not name private names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "amp_pandas"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, anywhere (functions, methods, branches), with whether it sits
    under ``if TYPE_CHECKING:``."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, typing_only))
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(tree, False)
    return found


def analyse(root: Path) -> tuple[dict[str, set[str]], list[str]]:
    """``(graph, violations)`` for the package at ``root``: module -> modules it imports at run
    time, and every import of a private name from another module."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    top = root.name
    packages = {name for name, p in files.items() if p.name == "__init__.py"}
    graph: dict[str, set[str]] = {name: set() for name in files}
    violations: list[str] = []
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        here = name if name in packages else name.rpartition(".")[0]
        aliases: dict[str, str] = {}  # local name -> module it is bound to
        for node, typing_only in _imports(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == top or alias.name.startswith(top + "."):
                        if not typing_only:
                            graph[name].add(alias.name)
                        if alias.asname:
                            aliases[alias.asname] = alias.name
                continue
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not (source == top or source.startswith(top + ".")):
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                if target in files:  # a submodule
                    if not typing_only:
                        graph[name].add(target)
                    aliases[alias.asname or alias.name] = target
                    continue
                if not typing_only:
                    graph[name].add(source)
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    violations.append(f"{name}: from {source} import {alias.name}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and f"{aliases[node.value.id]}.{node.attr}" not in files
            ):
                violations.append(f"{name}: {aliases[node.value.id]}.{node.attr}")
    graph = {m: {t for t in targets if t in files and t != m} for m, targets in graph.items()}
    return graph, violations


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_lazy_imports_included() -> None:
    graph, _ = analyse(PACKAGE)
    assert "amp_pandas._display" in graph  # the walk found the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_no_module_imports_a_private_name_from_another() -> None:
    _, violations = analyse(PACKAGE)
    assert violations == []


def test_display_flows_one_way() -> None:
    graph, _ = analyse(PACKAGE)
    assert graph["amp_pandas._display"] == {"amp_pandas._plan", "amp_pandas._status"}
    assert "amp_pandas._display" in graph["amp_pandas._widget"]
    assert "amp_pandas._send" not in graph["amp_pandas._widget"]  # sends through the preview
    assert graph["amp_pandas._status"] == set()


# ----------------------------------------------------------------- the checker itself
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_the_checker_sees_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "_a.py": "from ._b import thing\n",
            "_b.py": "def f():\n    from . import _a\n    return _a\nthing = 1\n",
        },
    )
    graph, _ = analyse(root)
    assert graph["pkg._a"] == {"pkg._b"} and graph["pkg._b"] == {"pkg._a"}
    assert find_cycle(graph) == ["pkg._a", "pkg._b", "pkg._a"]


def test_the_checker_leaves_type_checking_imports_out_of_the_graph(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "_a.py": "from ._b import thing\n",
            "_b.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from ._a import Thing\nthing = 1\n"
            ),
        },
    )
    graph, _ = analyse(root)
    assert find_cycle(graph) is None


@pytest.mark.parametrize(
    ("source", "violation"),
    [
        ("from ._b import _hidden\n", "pkg._a: from pkg._b import _hidden"),
        ("def f():\n    from ._b import _hidden\n", "pkg._a: from pkg._b import _hidden"),
        ("from . import _b\nx = _b._hidden\n", "pkg._a: pkg._b._hidden"),
        ("import pkg._b as b\nx = b._hidden\n", "pkg._a: pkg._b._hidden"),
    ],
)
def test_the_checker_sees_private_names(tmp_path: Path, source: str, violation: str) -> None:
    root = _package(tmp_path, {"_a.py": source, "_b.py": "_hidden = 1\n"})
    assert analyse(root)[1] == [violation]


def test_the_checker_allows_submodules_and_public_names(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "_a.py": "from . import _b\nfrom ._b import shown\nx = _b.shown\n",
            "_b.py": "shown = 1\n",
        },
    )
    graph, violations = analyse(root)
    assert violations == [] and graph["pkg._a"] == {"pkg._b"}
