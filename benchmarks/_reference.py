"""The reference frame, the three ways of turning it into identifications, and small helpers.

Every benchmark uses the same frame and the same mapping:

=============  ==========================  ===========================================
column         dtype                       sent as
=============  ==========================  ===========================================
``uid``        ``str`` (unique per row)    ``user_id``
``plan``       ``str``                     ``$set``
``country``    ``str``                     ``$set``
``signup``     ``datetime64``              ``$setOnce`` ``first_seen``
``logins``     ``int64``                   ``$add``
(constant)     ``"spring-promo"``          ``$postInsert`` ``tags``
=============  ==========================  ===========================================

The hand-written loop and the official SDK build exactly the identifications amp_pandas builds
(:func:`check_same_identifications` checks it), so the three are compared doing the same work.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import amp_pandas  # noqa: E402  (registers df.amplitude)
from amp_pandas import literal  # noqa: E402

TAG = "spring-promo"
BATCH_SIZE = 1000  # identifications per request, for every client
MAX_WORKERS = 6  # amp_pandas' default requests in flight
#: The key the benchmark sandboxes accept (32 characters, like an Amplitude project key).
API_KEY = "benchmark-sandbox-key-0123456789"

_PLANS = np.array(["free", "pro", "team"])
_COUNTRIES = np.array(["FR", "DE", "US", "GB", "JP", "BR", "IN", "ES", "IT", "NL"])


def reference_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """The reference frame: ``rows`` users, one identification each, in shuffled order.

    Examples
    --------
    >>> df = reference_frame(3)
    >>> list(df.columns), len(df)
    (['uid', 'plan', 'country', 'signup', 'logins'], 3)
    """
    rng = np.random.default_rng(seed)
    numbers = rng.permutation(rows).astype("U")
    return pd.DataFrame(
        {
            "uid": pd.array(np.char.add("user-", np.char.zfill(numbers, 7)), dtype="str"),
            "plan": pd.array(_PLANS[rng.integers(0, len(_PLANS), rows)], dtype="str"),
            "country": pd.array(_COUNTRIES[rng.integers(0, len(_COUNTRIES), rows)], dtype="str"),
            "signup": pd.Timestamp("2023-01-01")
            + pd.to_timedelta(rng.integers(0, 2 * 365 * 86_400, rows), unit="s"),
            "logins": rng.integers(0, 50, rows),
        }
    )


def amp_pandas_mapping() -> dict[str, Any]:
    """The ``df.amplitude.identify`` arguments for the reference frame."""
    return {
        "user_id": "uid",
        "set": ["plan", "country"],
        "set_once": {"first_seen": "signup"},
        "add": {"logins": "logins"},
        "post_insert": {"tags": literal(TAG)},
    }


# -- the hand-written loop ------------------------------------------------------------------


def iterrows_identifications(df: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """What one writes by hand: ``iterrows`` and a dict per row."""
    for _, row in df.iterrows():
        yield {
            "user_id": row["uid"],
            "user_properties": {
                "$set": {"plan": row["plan"], "country": row["country"]},
                "$setOnce": {"first_seen": row["signup"].isoformat()},
                "$add": {"logins": int(row["logins"])},
                "$postInsert": {"tags": TAG},
            },
        }


def iterrows_batches(df: pd.DataFrame, batch_size: int = BATCH_SIZE) -> Iterator[str]:
    """The hand-written loop's request payloads: ``json.dumps`` of each batch of dicts."""
    batch: list[dict[str, Any]] = []
    for identification in iterrows_identifications(df):
        batch.append(identification)
        if len(batch) == batch_size:
            yield json.dumps(batch)
            batch = []
    if batch:
        yield json.dumps(batch)


# -- the official SDK -----------------------------------------------------------------------


def sdk_version() -> str | None:
    """The installed ``amplitude-analytics`` version, or None when it is not installed."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        import amplitude  # noqa: F401
    except ImportError:
        return None
    try:
        return version("amplitude-analytics")
    except PackageNotFoundError:
        return "unknown"


def sdk_identify(row: pd.Series) -> tuple[Any, Any]:
    """One row as the SDK's ``Identify`` and ``EventOptions``, values converted to what it keeps.

    The SDK keeps only ``bool``/``int``/``float``/``str`` (and lists/dicts of them): a
    Timestamp must become text first, or the SDK drops it without a word
    (see :func:`sdk_drops`).
    """
    from amplitude import EventOptions, Identify

    identify = (
        Identify()
        .set("plan", row["plan"])
        .set("country", row["country"])
        .set_once("first_seen", row["signup"].isoformat())
        .add("logins", int(row["logins"]))
        .post_insert("tags", TAG)
    )
    return identify, EventOptions(user_id=row["uid"])


class SdkEncoder:
    """Exactly what ``Amplitude.identify`` and its worker do to an identify, minus the threads.

    ``Amplitude.identify(identify, options)`` builds an ``IdentifyEvent`` from
    ``identify.user_properties`` (a deep copy) and ``load_event_options(options)`` (deep copies
    again); the client's ``ContextPlugin`` stamps ``time``, ``insert_id`` (a uuid4) and
    ``library``; the worker serializes a batch with ``Workers.get_payload``: ``get_event_body()``
    per event (which re-validates and truncates every value), then
    ``json.dumps(..., sort_keys=True).encode()``.
    """

    def __init__(self, api_key: str = API_KEY, batch_size: int = BATCH_SIZE) -> None:
        from amplitude import Config
        from amplitude.plugin import ContextPlugin
        from amplitude.worker import Workers

        self.config = Config(api_key=api_key, flush_queue_size=batch_size)
        self.context = ContextPlugin()
        self.context.configuration = self.config
        self.workers = Workers()
        self.workers.configuration = self.config
        self.batch_size = batch_size

    def event(self, identify: Any, options: Any) -> Any:
        from amplitude import IdentifyEvent

        event = IdentifyEvent(user_properties=identify.user_properties)
        event.load_event_options(options)
        return self.context.execute(event)

    def bodies(self, df: pd.DataFrame) -> Iterator[bytes]:
        events = []
        for _, row in df.iterrows():
            events.append(self.event(*sdk_identify(row)))
            if len(events) == self.batch_size:
                yield self.workers.get_payload(events)
                events = []
        if events:
            yield self.workers.get_payload(events)


def sdk_drops() -> list[tuple[str, str, str]]:
    """Which cell values the SDK's ``Identify`` silently drops, and what it does with NaN.

    Returns ``(value, how a pandas user gets it, what the SDK does)`` rows.
    """
    from amplitude import Identify

    cases = [
        ("numpy int64", "`df.x.iloc[i]`, `.at`, `.values`; `iterrows` on an all-numeric frame",
         np.int64(3), "set"),
        ("numpy int64 in `$add`", "as above", np.int64(3), "add"),
        ("numpy bool_", "`df.flag.iloc[i]`, `.values`", np.bool_(True), "set"),
        ("pandas Timestamp", "every access path (`iterrows`, `itertuples`, `to_dict`)",
         pd.Timestamp("2024-01-05 08:30"), "set"),
        ("datetime.date", "`df.day.dt.date`", pd.Timestamp("2024-01-05").date(), "set"),
        ("numpy float64 NaN", "every missing float", np.float64("nan"), "set"),
    ]
    out = []
    for name, where, value, op in cases:
        identify = getattr(Identify(), op)("p", value)
        kept = identify.user_properties
        if not kept:
            what = "**dropped silently** (no error, no log line)"
        else:
            text = json.dumps(kept)
            what = f"kept; serialized as `{text}`" + (
                " — **not valid JSON**" if "NaN" in text else ""
            )
        out.append((name, where, what))
    return out


def check_same_identifications(df: pd.DataFrame, *, sdk: bool = True) -> None:
    """Raise unless amp_pandas, the loop and (if installed) the SDK build the same identifications.
    """
    preview = df.amplitude.identify(**amp_pandas_mapping(), dry_run=True)
    ours = preview.payloads
    loop = list(iterrows_identifications(df))
    if ours != loop:
        raise AssertionError("the hand-written loop does not build amp_pandas' identifications")
    if not sdk or sdk_version() is None:
        return
    events = [e for body in SdkEncoder().bodies(df) for e in json.loads(body)["events"]]
    built = [{"user_id": e["user_id"], "user_properties": e["user_properties"]} for e in events]
    if ours != built:
        raise AssertionError("the SDK does not build amp_pandas' identifications")


# -- measuring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """The median of several runs, with their min and max."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "runs": list(self.values)}


@dataclass
class Timing:
    """Wall and CPU seconds of one run."""

    wall: float
    cpu: float


def timed(fn: Callable[[], Any]) -> tuple[Timing, Any]:
    """Run ``fn`` once; wall time and this process's CPU time (all threads)."""
    import gc

    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    value = fn()
    return Timing(time.perf_counter() - wall0, time.process_time() - cpu0), value


# -- the machine ------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """Date, machine, Python and library versions, and the checkout's commit."""
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "amp_pandas"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        commit += " + uncommitted changes in amp_pandas/" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    import pyarrow
    import requests

    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{os.cpu_count()} cores ({cpu}), {memory} RAM, {platform.system()} "
        f"{platform.release()}",
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "numpy": np.__version__,
        "pyarrow": pyarrow.__version__,
        "requests": requests.__version__,
        "amp_pandas": f"{amp_pandas.__version__} (commit {commit})",
        "amplitude-analytics": sdk_version() or "not installed",
    }


def rss_bytes() -> int:
    """This process's resident memory now (Linux ``/proc``; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def ru_maxrss_bytes() -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in bytes (KiB on Linux, bytes on macOS).

    Beware: on Linux a process started by ``subprocess`` inherits its parent's resident size at
    that moment in ``ru_maxrss`` (the kernel keeps the pre-``exec`` memory's high-water mark),
    so a child of a 3 GB process reports at least 3 GB. :func:`peak_rss_bytes` has no such
    carry-over.
    """
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def peak_rss_bytes() -> int:
    """This process's own peak resident memory so far: ``VmHWM`` (Linux), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return ru_maxrss_bytes()
