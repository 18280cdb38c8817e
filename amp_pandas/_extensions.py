"""Registering ``ddf.amplitude`` (Dask) and ``pl_df.amplitude`` (polars) without importing them.

``import amp_pandas`` must stay light, and Dask or polars may be imported before or after it.
:func:`install` registers at once for a library already imported, and otherwise leaves a
post-import hook on :data:`sys.meta_path`: when ``dask.dataframe`` (or ``polars``) has just
finished importing, the hook imports :mod:`amp_pandas._dask` (or :mod:`amp_pandas._polars`),
whose import registers the accessor, then removes itself once nothing is left to watch.

The hook never changes what is imported: it asks the other finders for the module's spec and
wraps only that spec's loader so that registration runs after the module's own code.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["WATCHED", "install"]

#: Library module -> the amp_pandas module whose import registers the accessor on it.
WATCHED = {"dask.dataframe": "amp_pandas._dask", "polars": "amp_pandas._polars"}

_lock = threading.Lock()
_pending: set[str] = set()


def _register(library: str) -> None:
    with _lock:
        if library not in _pending:
            return
        _pending.discard(library)
        if not _pending:
            _remove_finder()
    try:
        importlib.import_module(WATCHED[library])
    except Exception as exc:  # a broken optional library must not break the user's import
        from .errors import AmpPandasWarning

        warnings.warn(
            f"amp_pandas could not register its {library} accessor: {exc!r}",
            AmpPandasWarning,
            stacklevel=2,
        )


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader, then registers the accessor for the module it loaded."""

    def __init__(self, loader: Any, library: str) -> None:
        self._loader = loader
        self._library = library

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # the module's own spec keeps the real loader, as if we had never been there
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        module.__loader__ = self._loader
        self._loader.exec_module(module)
        _register(self._library)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of a watched module found by the others."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _pending:
            return None
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return None  # let the normal machinery handle what we cannot wrap
            spec.loader = _RegisteringLoader(spec.loader, fullname)
            return spec
        return None


_finder = _Finder()


def _remove_finder() -> None:
    try:
        sys.meta_path.remove(_finder)
    except ValueError:
        pass


def install() -> None:
    """Register now for libraries already imported; watch for the others."""
    now = []
    with _lock:
        for library in WATCHED:
            if library in sys.modules:
                now.append(library)
            _pending.add(library)
        if any(lib not in sys.modules for lib in WATCHED) and _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
    for library in now:
        _register(library)
