"""The sandbox's pytest plugin (through pytester), ``serve()`` and the throughput benchmark."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pandas  # noqa: F401  (imported before pytester's in-process runs: numpy loads once)
import pytest
import requests

import amp_pandas.sandbox.pytest_plugin  # noqa: F401  (idem)
from amp_pandas.sandbox import Sandbox

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "amp_pandas.sandbox.pytest_plugin"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
        check=False,
    )


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester that loads the plugin by name (whether or not amp_pandas is installed)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def test_fixture_gives_a_started_sandbox_per_test_and_stops_it(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        import requests

        seen = []

        def test_sends(amplitude_sandbox):
            seen.append(amplitude_sandbox)
            assert amplitude_sandbox.running
            response = requests.post(amplitude_sandbox.url, timeout=10, data={
                "api_key": amplitude_sandbox.api_key,
                "identification": '{"user_id": "user-1", "user_properties": {"plan": "pro"}}',
            })
            assert (response.status_code, response.text) == (200, "success")
            assert amplitude_sandbox.applied_counts().to_dict() == {"user-1": 1}

        @pytest.mark.amplitude_sandbox(api_key="marker-key-123", rate_503=1.0)
        def test_marker_options(amplitude_sandbox):
            seen.append(amplitude_sandbox)
            response = requests.post(amplitude_sandbox.url, timeout=10, data={
                "api_key": "marker-key-123", "identification": '{"user_id": "user-1"}'})
            assert response.status_code == 503

        def test_fresh_each_time(amplitude_sandbox):
            assert amplitude_sandbox.profiles().empty
            assert amplitude_sandbox not in seen
            assert not any(sandbox.running for sandbox in seen)
        """
    )
    result = inner.runpytest("-p", PLUGIN, "--strict-markers")
    result.assert_outcomes(passed=3)


def test_marker_is_registered_for_strict_markers(inner: pytest.Pytester) -> None:
    result = inner.runpytest("-p", PLUGIN, "--markers")
    result.stdout.fnmatch_lines(["*@pytest.mark.amplitude_sandbox(**options)*"])


def test_fixture_fails_cleanly_on_bad_options(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.amplitude_sandbox(rate_503=7)
        def test_bad(amplitude_sandbox):
            pass
        """
    )
    result = inner.runpytest("-p", PLUGIN)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*SandboxError: rate_503 must be a probability*"])


def test_plugin_is_registered_in_pyproject_and_imports_light() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["pytest11"]["amp_pandas"] == PLUGIN
    completed = run_python(
        "import sys, amp_pandas.sandbox.pytest_plugin as p; "
        "print(hasattr(p, 'amplitude_sandbox'), "
        "[m for m in ('amp_pandas.sandbox._server', 'amp_pandas.sandbox._sandbox', "
        "'amp_pandas.sandbox._group_identify', 'http.server') if m in sys.modules])"
    )
    assert completed.stdout.strip() == "True []", completed.stderr


def _start_serve(code: str) -> tuple[subprocess.Popen[str], list[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    lines: list[str] = []
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "Ctrl-C" in line:
            return process, lines
    process.kill()
    _, err = process.communicate()
    raise AssertionError(f"serve() did not start: {lines} {err}")


def _interrupt(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err


def test_serve_runs_until_ctrl_c_and_prints_how_to_use_it() -> None:
    process, lines = _start_serve("from amp_pandas.sandbox import serve; serve()")
    try:
        text = "\n".join(lines)
        url = next(line.split()[-1] for line in lines if "Identify endpoint" in line)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/identify")
        assert url.replace("/identify", "/2/httpapi") in text
        assert url.replace("/identify", "/groupidentify") in text
        assert "sandbox-key" in text and "curl" in text
        response = requests.post(
            url,
            timeout=10,
            data={
                "api_key": "sandbox-key",
                "identification": '{"user_id": "user-1", "user_properties": {"plan": "pro"}}',
            },
        )
        assert response.status_code == 200
    finally:
        code, out, err = _interrupt(process)
    assert code == 0, err
    assert "Traceback" not in err
    assert "Sandbox stopped: 1 requests, 1 identifications applied to 1 profiles." in out


def test_serve_does_not_echo_a_given_key_and_uses_the_port() -> None:
    with socket_port() as port:
        pass
    process, lines = _start_serve(
        f"from amp_pandas.sandbox import serve; serve(port={port}, api_key='my-own-key-42')"
    )
    try:
        text = "\n".join(lines)
        assert f"http://127.0.0.1:{port}/identify" in text
        assert "my-own-key-42" not in text and "sandbox-key" not in text
        response = requests.post(
            f"http://127.0.0.1:{port}/identify",
            timeout=10,
            data={"api_key": "my-own-key-42", "identification": '{"user_id": "user-1"}'},
        )
        assert response.status_code == 200
    finally:
        code, out, err = _interrupt(process)
    assert code == 0 and "my-own-key-42" not in out + err


def test_serve_on_a_busy_port_raises_sandbox_error() -> None:
    from amp_pandas.errors import SandboxError
    from amp_pandas.sandbox import serve

    with Sandbox() as busy, pytest.raises(SandboxError):
        serve(port=busy.port)


class socket_port:
    """A free port number (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])

    def __exit__(self, *exc_info: object) -> None:
        return None


def _benchmark_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "sandbox_throughput", ROOT / "benchmarks" / "sandbox_throughput.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    benchmark = _benchmark_module()
    figures = benchmark.measure(6, batch=200, workers=2, client="thread")
    assert figures["identifications"] == 1200 and figures["identifications_per_s"] > 0
    assert (
        benchmark.main(["--requests", "2", "--batch", "50", "--workers", "1", "--client", "thread"])
        == 0
    )
    assert "identifications/s" in capsys.readouterr().out
    body = benchmark.build_body("k", 0, 3)
    assert json.loads(body.split(b"\r\n\r\n")[2].split(b"\r\n")[0])[2]["user_id"] == "user-000002"
