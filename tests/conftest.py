"""Fixtures shared by the sandbox tests, and the suite's hypothesis profiles.

Hypothesis runs derandomized under CI (``CI`` set): every run draws the same examples, so a
failure in CI replays anywhere with the same command. Elsewhere it draws new examples each run and
keeps failing ones in its example database (``.hypothesis/``), which replays them first next time;
``HYPOTHESIS_PROFILE=ci`` gives the CI behaviour locally. Either way a failure prints the
``@reproduce_failure`` blob that replays it exactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from amp_pandas.sandbox import Sandbox

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


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
