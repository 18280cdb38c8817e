"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amp_pandas.sandbox import Sandbox


@pytest.fixture(scope="module")
def _running() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def sb(_running: Sandbox) -> Sandbox:
    """One sandbox per test module, reset before each test (faults, profiles and records).

    Modules that need a differently configured sandbox define their own ``sb``.
    """
    _running.reset()
    return _running
