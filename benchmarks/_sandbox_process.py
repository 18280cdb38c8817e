"""A sandbox in a process of its own, driven over a pipe.

The benchmarks measure the client's CPU time with ``time.process_time()``; a sandbox running in
the same process would add its own parsing and applying to that figure. So the sandbox runs in a
child process (this file run as a script) and answers one JSON command per line on stdin with one
JSON line on stdout::

    {"op": "reset", "latency": 0.1}              -> null
    {"op": "throttle_each", "user_ids": [...]}   -> null   (each id: 429 for one request)
    {"op": "stats"}                              -> {"requests", "bytes", "statuses", ...}
    {"op": "profile", "key": "user-0000001"}     -> {...}
    {"op": "noop_reset", "latency": 0.1}         -> the no-op server's URL (see below)
    {"op": "noop_stats"}                         -> {"requests", "bytes", "cpu"}
    {"op": "stop"}                               -> null, and the process ends

Next to the sandbox the child also runs a *no-op server*, a diagnostic: it reads each body,
waits the added latency and answers 200 ``success`` without parsing or applying anything, so that
the client can be measured without the sandbox's own cost.

Examples
--------
>>> with SandboxProcess() as sandbox:
...     sandbox.reset(latency=0.0)
...     sandbox.stats()["applied"]
0
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent


class SandboxProcess:
    """A :class:`~amp_pandas.sandbox.Sandbox` (``record_identifications=False``) in a child process.

    Attributes
    ----------
    url, http_v2_url : str
        The sandbox's ``/identify`` and ``/2/httpapi`` endpoints.
    api_key : str
        The key it accepts.
    """

    def __init__(self, api_key: str | None = None) -> None:
        from _reference import API_KEY

        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), api_key or API_KEY],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        info = self._read()
        self.url: str = info["url"]
        self.http_v2_url: str = info["http_v2_url"]
        self.api_key: str = info["api_key"]

    def _read(self) -> Any:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the sandbox process ended (exit status {self._process.wait()})")
        answer = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(f"the sandbox process failed: {answer['error']}")
        return answer["value"]

    def call(self, op: str, **arguments: Any) -> Any:
        """Send one command and return its answer."""
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self._process.stdin.flush()
        return self._read()

    def reset(self, latency: float = 0.0) -> None:
        """Forget profiles, records and faults; then add ``latency`` seconds to every request."""
        self.call("reset", latency=latency)

    def throttle_each(self, user_ids: list[str]) -> None:
        """Answer 429 to the first request carrying each of these ids (once per id)."""
        self.call("throttle_each", user_ids=user_ids)

    def stats(self) -> dict[str, Any]:
        """Requests, body bytes, statuses, identifications applied and the sandbox's CPU seconds."""
        return self.call("stats")

    def profile(self, key: str) -> dict[str, Any]:
        return self.call("profile", key=key)

    def noop_reset(self, latency: float = 0.0) -> str:
        """Zero the no-op server's counters, set its latency; return its URL."""
        return self.call("noop_reset", latency=latency)

    def noop_stats(self) -> dict[str, Any]:
        """Requests and body bytes the no-op server saw, and the child's CPU seconds."""
        return self.call("noop_stats")

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self.call("stop")
            except (OSError, RuntimeError):
                pass
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _NoopServer:
    """Reads each POST body, waits ``latency`` seconds, answers 200 ``success``; parses nothing."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self
        self.latency = 0.0
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner._lock:
                    owner.requests += 1
                    owner.bytes += len(body)
                if owner.latency:
                    time.sleep(owner.latency)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"success")

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/identify"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def reset(self, latency: float) -> None:
        with self._lock:
            self.latency, self.requests, self.bytes = latency, 0, 0


def _serve(api_key: str) -> None:
    """The child: run a sandbox and answer commands until ``stop`` or end of input."""
    sys.path.insert(0, str(_HERE.parent))  # run from a checkout without installing
    from amp_pandas.sandbox import Sandbox

    out = sys.stdout

    def answer(value: Any = None, error: str | None = None) -> None:
        out.write(json.dumps({"ok": error is None, "value": value, "error": error}) + "\n")
        out.flush()

    noop: _NoopServer | None = None
    with Sandbox(api_key, record_identifications=False) as sandbox:
        answer({"url": sandbox.url, "http_v2_url": sandbox.http_v2_url, "api_key": api_key})
        for line in sys.stdin:
            command = json.loads(line)
            op = command.pop("op")
            try:
                if op == "stop":
                    answer()
                    break
                if op == "reset":
                    sandbox.reset()
                    sandbox.set_faults(latency=command.get("latency", 0.0))
                    answer()
                elif op == "throttle_each":
                    for user_id in command["user_ids"]:
                        sandbox.throttle(user_ids=[user_id], requests=1)
                    answer()
                elif op == "stats":
                    records = sandbox.requests
                    statuses: dict[str, int] = {}
                    for record in records:
                        statuses[str(record.status)] = statuses.get(str(record.status), 0) + 1
                    answer(
                        {
                            "requests": len(records),
                            "bytes": sum(record.bytes for record in records),
                            "identifications": sum(record.count for record in records),
                            "statuses": statuses,
                            "applied": int(sandbox.applied_counts().sum()),
                            "cpu": time.process_time(),
                        }
                    )
                elif op == "noop_reset":
                    noop = noop or _NoopServer()
                    noop.reset(command.get("latency", 0.0))
                    answer(noop.url)
                elif op == "noop_stats":
                    assert noop is not None, "noop_reset first"
                    answer({"requests": noop.requests, "bytes": noop.bytes,
                            "cpu": time.process_time()})
                elif op == "profile":
                    answer(sandbox.profile(command["key"]))
                else:
                    answer(error=f"unknown op {op!r}")
            except Exception as exc:  # report it to the parent; the parent raises
                answer(error=f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    _serve(sys.argv[1])
