"""End to end: from the frame to identifications applied by a sandbox in another process.

- **amp_pandas**: ``df.amplitude.identify(..., server_url=sandbox.url)`` with its defaults
  (batches of 1000, 6 requests in flight, multipart bodies, one keep-alive session).
- **official SDK**: ``Amplitude(key, Config(server_url=sandbox.http_v2_url,
  flush_queue_size=1000))``, one ``client.identify(Identify()..., EventOptions(user_id=...))``
  per ``iterrows`` row, then ``client.shutdown()``, which flushes and waits for the SDK's own
  sending threads (a pool of 16; ``urllib``, a new connection per request).
- **amp_pandas → no-op server** (a diagnostic): the same call against a server that reads each
  body, waits the added latency and answers 200 without parsing or applying anything: what the
  client alone can do.
- **iterrows loop**: dicts per row, ``json.dumps`` per batch of 1000, posted one after another
  form-urlencoded (``requests`` ``data={"api_key": ..., "identification": ...}``, as Amplitude's
  docs show) over one keep-alive ``requests.Session``.

The client runs in this process and the sandbox in another (:mod:`_sandbox_process`), so
``time.process_time()`` here is the client's CPU alone. After every run the sandbox must have
applied every row, and a sample profile must hold the expected properties.
"""

from __future__ import annotations

import gc
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import requests
from _reference import (
    API_KEY,
    BATCH_SIZE,
    MAX_WORKERS,
    TAG,
    Spread,
    amp_pandas_mapping,
    iterrows_batches,
    reference_frame,
    sdk_identify,
    sdk_version,
)
from _sandbox_process import SandboxProcess

#: At this size and above, at most BIG_REPEATS runs (each takes seconds).
BIG, BIG_REPEATS = 1_000_000, 3
#: A diagnostic: amp_pandas against a server that parses and applies nothing.
NOOP = "amp_pandas → no-op server"
CLIENTS = ("amp_pandas", "official SDK", "iterrows loop", NOOP)
FAST = ("amp_pandas", NOOP)  # measured at every size


def run_amp_pandas(df: Any, url: str, api_key: str) -> None:
    result = df.amplitude.identify(
        **amp_pandas_mapping(),
        server_url=url,
        api_key=api_key,
        batch_size=BATCH_SIZE,
        max_workers=MAX_WORKERS,
        progress=False,
    )
    bad = result[result.status != "success"]
    if len(bad):
        raise RuntimeError(f"amp_pandas: {len(bad)} rows did not succeed: {bad.head(3)}")


def run_sdk(df: Any, url: str, api_key: str) -> None:
    from amplitude import Amplitude, Config

    client = Amplitude(api_key, Config(server_url=url, flush_queue_size=BATCH_SIZE))
    for _, row in df.iterrows():
        client.identify(*sdk_identify(row))
    client.shutdown()  # flushes what is buffered and waits for the sending threads


def run_loop(df: Any, url: str, api_key: str) -> None:
    with requests.Session() as session:
        for body in iterrows_batches(df):
            response = session.post(url, data={"api_key": api_key, "identification": body})
            response.raise_for_status()


RUNNERS: dict[str, Callable[[Any, str, str], None]] = {
    "amp_pandas": run_amp_pandas,
    "official SDK": run_sdk,
    "iterrows loop": run_loop,
    NOOP: run_amp_pandas,
}


def _expected_profile(df: Any, position: int) -> tuple[str, dict[str, Any]]:
    row = df.iloc[position]
    return row["uid"], {
        "plan": row["plan"],
        "country": row["country"],
        "first_seen": row["signup"].isoformat(),
        "logins": int(row["logins"]),
        "tags": [TAG],
    }


def measure(
    sandbox: SandboxProcess,
    latencies: list[float],
    sizes: list[int],
    slow_sizes: list[int],
    repeats: int,
    *,
    slow_repeats: int = 3,
    sdk: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Rows/s, client CPU µs/row, sandbox CPU µs/row, requests and body bytes per identification.

    The SDK and the loop run at ``slow_sizes`` only, ``slow_repeats`` times.
    """
    have_sdk = sdk and sdk_version() is not None
    results = []
    for latency in latencies:
        for n in sizes:
            df = reference_frame(n)
            clients = [c for c in CLIENTS
                       if c in FAST or (n in slow_sizes and (c != "official SDK" or have_sdk))]
            runs: dict[str, list[dict[str, float]]] = {c: [] for c in clients}
            for r in range(min(repeats, BIG_REPEATS) if n >= BIG else repeats):
                for client in clients:
                    if client not in FAST and r >= slow_repeats:
                        continue
                    runs[client].append(_one_run(client, df, sandbox, latency, check=r == 0))
                    last = runs[client][-1]
                    log(f"  e2e {latency * 1000:>4.0f} ms {n:>9,} rows  {client:<14} run {r + 1}: "
                        f"{last['rows_per_s']:>10,.0f} rows/s  {last['client_cpu_us']:7.2f} µs "
                        f"client CPU/row  {last['requests']:.0f} requests")
            for client in CLIENTS:
                row: dict[str, Any] = {"latency_ms": latency * 1000, "rows": n, "client": client}
                if client not in runs:
                    row["note"] = (
                        "not installed (pip install -r benchmarks/requirements.txt)"
                        if client == "official SDK" and not have_sdk
                        else f"measured at {_sizes(slow_sizes)} rows only (minutes at 1M)"
                    )
                else:
                    for key in ("rows_per_s", "client_cpu_us", "server_cpu_us", "server_busy",
                                "requests", "bytes_per_identification"):
                        row[key] = Spread(tuple(run[key] for run in runs[client]))
                    row["applied"] = "n/a (no-op)" if client == NOOP else "all"
                results.append(row)
            del df
            gc.collect()
    return results


def _one_run(client: str, df: Any, sandbox: SandboxProcess, latency: float, *,
             check: bool) -> dict[str, float]:
    n = len(df)
    if client == NOOP:
        url = sandbox.noop_reset(latency=latency)
        stats = sandbox.noop_stats
    else:
        sandbox.reset(latency=latency)
        url = sandbox.http_v2_url if client == "official SDK" else sandbox.url
        stats = sandbox.stats
    before = stats()
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    RUNNERS[client](df, url, sandbox.api_key)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    after = stats()
    if client != NOOP and after["applied"] != n:
        raise RuntimeError(f"{client}: the sandbox applied {after['applied']:,} of {n:,} rows "
                           f"(answers: {after['statuses']})")
    if check and client != NOOP:
        key, expected = _expected_profile(df, n // 2)
        profile = sandbox.profile(key)
        got = {k: profile.get(k) for k in expected}
        if got != expected:
            raise RuntimeError(f"{client}: profile {key} is {got}, expected {expected}")
    server_cpu = after["cpu"] - before["cpu"]
    return {
        "rows_per_s": n / wall,
        "client_cpu_us": cpu / n * 1e6,
        "server_cpu_us": server_cpu / n * 1e6,
        "server_busy": server_cpu / wall,
        "requests": after["requests"],
        "bytes_per_identification": after["bytes"] / n,
    }


def encoding_sizes(rows: int = 10 * BATCH_SIZE, repeats: int = 3) -> list[dict[str, Any]]:
    """Bytes and CPU per identification of one request body, multipart vs form-urlencoded.

    Both carry the same identifications (amp_pandas' JSON texts, batches of 1000) and the key.
    """
    from amp_pandas._encode import encode_body, new_boundary

    df = reference_frame(rows)
    plan = df.amplitude.identify(**amp_pandas_mapping(), dry_run=True).plan
    texts = plan.payload.tolist()
    batches = [texts[i:i + BATCH_SIZE] for i in range(0, rows, BATCH_SIZE)]
    boundary = new_boundary()

    def multipart() -> int:
        return sum(len(encode_body(API_KEY, batch, boundary)) for batch in batches)

    def urlencoded() -> int:
        return sum(
            len(urllib.parse.urlencode(
                {"api_key": API_KEY, "identification": "[" + ",".join(batch) + "]"}
            ).encode())
            for batch in batches
        )

    out: list[dict[str, Any]] = []
    for name, fn in (("multipart/form-data (amp_pandas)", multipart),
                     ("application/x-www-form-urlencoded", urlencoded)):
        cpu = []
        size = 0
        for _ in range(repeats):
            gc.collect()
            start = time.process_time()
            size = fn()
            cpu.append((time.process_time() - start) / rows * 1e6)
        out.append({"encoding": name, "bytes_per_identification": size / rows,
                    "cpu_us": Spread(tuple(cpu))})
    json_bytes = sum(len(t.encode()) for t in texts) / rows
    for row in out:
        row["overhead_pct"] = (row["bytes_per_identification"] / json_bytes - 1) * 100
    return out


def _sizes(sizes: list[int]) -> str:
    return " and ".join(f"{n:,}" for n in sizes)
