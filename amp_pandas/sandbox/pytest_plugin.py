"""pytest plugin: the ``amplitude_sandbox`` fixture (registered as a ``pytest11`` entry point).

Importing this module stays light: the sandbox itself is imported only when the fixture is used.

Use it in a test::

    def test_identify(amplitude_sandbox):
        ...  # send to amplitude_sandbox.url with amplitude_sandbox.api_key
        assert amplitude_sandbox.applied_counts().sum() == 3

Options for one test go in the ``amplitude_sandbox`` marker, which takes the keyword arguments of
:class:`amp_pandas.sandbox.Sandbox`::

    @pytest.mark.amplitude_sandbox(rate_503=0.5, seed=1)
    def test_retries(amplitude_sandbox): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from amp_pandas.sandbox import Sandbox

__all__ = ["amplitude_sandbox", "pytest_configure"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``amplitude_sandbox`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        "amplitude_sandbox(**options): keyword arguments for the amplitude_sandbox fixture's "
        "Sandbox (api_key, seed, latency, rate_503, reject_ids, ...)",
    )


@pytest.fixture
def amplitude_sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A started local Amplitude sandbox, stopped after the test.

    Its ``url`` is the Identify endpoint, ``group_url`` the Group Identify endpoint and
    ``api_key`` the key it accepts; read results with ``profiles()``, ``profile(key)``,
    ``applied_counts()``, ``group_profiles()``, ``group_profile(group_type, group_value)``,
    ``requests`` and ``applied``.
    """
    from amp_pandas.sandbox import Sandbox

    marker = request.node.get_closest_marker("amplitude_sandbox")
    options = dict(marker.kwargs) if marker is not None else {}
    sandbox = Sandbox(**options)
    with sandbox:
        yield sandbox
