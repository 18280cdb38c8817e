"""How many identifications per second the local sandbox applies.

The client side is made as cheap as possible (multipart bodies built once, then re-sent over
keep-alive ``http.client`` connections from a few threads) so that the figure measures the
sandbox. By
default the client runs in a child process (the sandbox's capacity); ``--client thread`` runs it
in threads of the sandbox's own process, sharing its GIL, as a test suite does (a lower figure).

Run it::

    python benchmarks/sandbox_throughput.py           # 1000 requests of 1000 identifications
    python benchmarks/sandbox_throughput.py --quick   # 100 requests
    python benchmarks/sandbox_throughput.py --client thread
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

try:
    from amp_pandas.sandbox import Sandbox
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from amp_pandas.sandbox import Sandbox

_BOUNDARY = "ampPandasBenchmarkBoundary7MA4YWxkTrZu0gW"
_USERS = 50_000


def _identification(number: int) -> dict[str, Any]:
    """A typical identification, like the ones amp_pandas sends for a DataFrame row."""
    return {
        "user_id": f"user-{number % _USERS:06d}",
        "user_properties": {
            "$set": {
                "plan": ("free", "pro", "team")[number % 3],
                "country": "FR",
                "score": round(number * 0.37, 2),
                "signup_date": "2024-01-31T10:00:00",
            },
            "$add": {"logins": 1},
        },
    }


def build_body(api_key: str, first: int, batch: int) -> bytes:
    """One multipart/form-data body holding ``batch`` identifications."""
    identification = json.dumps(
        [_identification(number) for number in range(first, first + batch)],
        separators=(",", ":"),
    )
    parts = [
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="api_key"\r\n\r\n{api_key}\r\n',
        (
            f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="identification"\r\n\r\n'
            f"{identification}\r\n"
        ),
        f"--{_BOUNDARY}--\r\n",
    ]
    return "".join(parts).encode("utf-8")


def _send_all(url: str, bodies: list[bytes], n_requests: int, workers: int) -> tuple[float, int]:
    """Send ``n_requests`` bodies from ``workers`` threads; return (seconds, failed requests).

    Each thread keeps one ``http.client`` connection alive: a lighter client than ``requests``,
    so that the figure is the sandbox's, not the client's.
    """
    parts = urlsplit(url)
    headers = {"Content-Type": f"multipart/form-data; boundary={_BOUNDARY}"}
    shares = [range(w, n_requests, workers) for w in range(workers)]

    def send(share: range) -> int:
        failed = 0
        connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=600
        )
        try:
            for number in share:
                connection.request("POST", parts.path, bodies[number % len(bodies)], headers)
                response = connection.getresponse()
                response.read()
                failed += response.status != 200
        finally:
            connection.close()
        return failed

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        failed = sum(pool.map(send, shares))
    return time.perf_counter() - started, failed


def _bodies(api_key: str, n_requests: int, batch: int) -> list[bytes]:
    return [build_body(api_key, i * batch, batch) for i in range(min(n_requests, 16))]


def measure(
    n_requests: int,
    batch: int = 1000,
    workers: int = 4,
    *,
    client: str = "process",
    record_identifications: bool = False,
) -> dict[str, Any]:
    """Send ``n_requests`` multipart requests of ``batch`` identifications; time them.

    Parameters
    ----------
    n_requests : int
        Requests to send (spread over ``workers`` threads, one keep-alive connection each).
    batch : int, default 1000
        Identifications per request.
    workers : int, default 4
        Concurrent client threads.
    client : {"process", "thread"}, default "process"
        ``"process"``: the client runs in a child process, so the figure is the sandbox's own
        capacity. ``"thread"``: the client threads share the sandbox's process and GIL, as in a
        test suite; the figure is lower and includes the client's own cost.
    record_identifications : bool, default False
        Passed to the :class:`~amp_pandas.sandbox.Sandbox`.

    Returns
    -------
    dict
        ``identifications_per_s`` (applied per second of sending), ``requests_per_s``,
        ``seconds``, ``identifications``, ``requests``, ``batch``, ``workers``, ``client``;
        ``cpu_seconds`` and ``cpu_us_per_identification``: CPU time of this process while
        sending (with ``client="process"``, the sandbox's own cost; on a shared, busy machine
        the wall-clock figure swings widely, this one less).

    Examples
    --------
    >>> figures = measure(4, batch=100, workers=2, client="thread")
    >>> figures["identifications"]
    400
    """
    if client not in ("process", "thread"):
        raise ValueError(f"client must be 'process' or 'thread', not {client!r}")
    with Sandbox(record_identifications=record_identifications) as sandbox:
        sandbox.applied_counts()  # import pandas now, not inside the measured CPU time
        bodies = _bodies(sandbox.api_key, n_requests, batch) if client == "thread" else []
        cpu_before = time.process_time()
        if client == "thread":
            seconds, failed = _send_all(sandbox.url, bodies, n_requests, workers)
        else:
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--send-to",
                sandbox.url,
                "--requests",
                str(n_requests),
                "--batch",
                str(batch),
                "--workers",
                str(workers),
            ]
            child = subprocess.run(
                command,
                input=sandbox.api_key,
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            answer = json.loads(child.stdout.strip().splitlines()[-1])
            seconds, failed = answer["seconds"], answer["failed"]
        cpu_seconds = time.process_time() - cpu_before
        applied = int(sandbox.applied_counts().sum())
    if failed or applied != n_requests * batch:
        raise RuntimeError(f"{failed} requests failed; {applied} identifications applied")
    return {
        "requests": n_requests,
        "batch": batch,
        "workers": workers,
        "client": client,
        "identifications": applied,
        "seconds": seconds,
        "identifications_per_s": applied / seconds,
        "requests_per_s": n_requests / seconds,
        "cpu_seconds": cpu_seconds,
        "cpu_us_per_identification": cpu_seconds / applied * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 requests instead of 1000")
    parser.add_argument("--requests", type=int, default=None, help="number of requests")
    parser.add_argument("--batch", type=int, default=1000, help="identifications per request")
    parser.add_argument("--workers", type=int, default=4, help="client threads")
    parser.add_argument(
        "--client",
        choices=["process", "thread"],
        default="process",
        help="run the client in a child process (default) or in threads of the sandbox's process",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="keep the parsed identifications (record_identifications=True)",
    )
    parser.add_argument("--send-to", metavar="URL", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    n_requests = args.requests or (100 if args.quick else 1000)
    if args.send_to:  # the child process of client="process": the key comes on stdin
        api_key = sys.stdin.read().strip()
        seconds, failed = _send_all(
            args.send_to, _bodies(api_key, n_requests, args.batch), n_requests, args.workers
        )
        print(json.dumps({"seconds": seconds, "failed": failed}))
        return 0
    figures = measure(
        n_requests,
        batch=args.batch,
        workers=args.workers,
        client=args.client,
        record_identifications=args.record,
    )
    where = "child process" if figures["client"] == "process" else "thread of the sandbox process"
    print(
        f"{figures['identifications']:,} identifications in {figures['requests']:,} requests "
        f"of {figures['batch']:,} ({figures['workers']} client threads in a "
        f"{where}): "
        f"{figures['seconds']:.2f} s, {figures['identifications_per_s']:,.0f} identifications/s, "
        f"{figures['requests_per_s']:,.1f} requests/s; "
        f"{figures['cpu_us_per_identification']:.1f} µs CPU per identification in the "
        f"{'sandbox' if figures['client'] == 'process' else 'process'} "
        f"(= {1e6 / figures['cpu_us_per_identification']:,.0f}/s on one free core)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
