"""A local stand-in for Amplitude's Identify and Group Identify APIs: no account needed.

:class:`Sandbox` is a real HTTP server on ``127.0.0.1`` that answers ``/identify`` and
``/groupidentify`` (and the ``$identify`` and ``$groupidentify`` events of ``/2/httpapi``) by
Amplitude's rules, keeps per-user and per-group profiles you can read back as DataFrames, records
every request, and injects faults on demand (latency, 503, 500 or a dropped connection after
applying, 429 throttling, poison ids and groups, smaller limits). It plays the part moto and
LocalStack play for AWS.

Modules: :mod:`._sandbox` (the public ``Sandbox`` API), :mod:`._server` (HTTP: server,
connections, body reading, routing), :mod:`._exchange` (one request: its record and its answer),
:mod:`._state` (what a sandbox holds), :mod:`._endpoint` (steps the endpoints share), one module
per endpoint (:mod:`._identify`, :mod:`._group_identify`, :mod:`._http_v2`), :mod:`._rules`
(Amplitude's rules, the sandbox's own copy), :mod:`._parse` (bodies and parameters),
:mod:`._profiles` and :mod:`._group_profiles` (how properties change), :mod:`._faults`,
:mod:`._serve` (the foreground command) and :mod:`.pytest_plugin`.

:func:`serve` runs one in the foreground (``amp-pandas sandbox``); the pytest plugin
:mod:`amp_pandas.sandbox.pytest_plugin` provides the ``amplitude_sandbox`` fixture.

Examples
--------
>>> import requests
>>> from amp_pandas.sandbox import Sandbox
>>> with Sandbox() as sb:
...     _ = requests.post(sb.url, data={
...         "api_key": sb.api_key,
...         "identification": '[{"user_id": "user-1", "user_properties": {"$add": {"logins": 2}}}]',
...     })
...     print(sb.profiles()["logins"].to_dict(), sb.applied_counts().sum())
{'user-1': 2} 1
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ._exchange import RequestRecord
    from ._rules import KNOWN_OPERATIONS, TOP_LEVEL_FIELDS
    from ._sandbox import DEFAULT_API_KEY, Sandbox
    from ._serve import serve

__all__ = [
    "DEFAULT_API_KEY",
    "KNOWN_OPERATIONS",
    "TOP_LEVEL_FIELDS",
    "RequestRecord",
    "Sandbox",
    "serve",
]

# Imported on first use, so that importing the pytest plugin (a submodule) stays light.
_HOMES = {
    "Sandbox": "_sandbox",
    "RequestRecord": "_exchange",
    "DEFAULT_API_KEY": "_sandbox",
    "serve": "_serve",
    "KNOWN_OPERATIONS": "_rules",
    "TOP_LEVEL_FIELDS": "_rules",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
