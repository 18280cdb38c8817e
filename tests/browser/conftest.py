"""Fixtures of the browser test: a JupyterLab server and a headless Chromium driven by Playwright.

The server runs ``python -m jupyterlab`` on a free loopback port, with a token, in a temporary root
directory holding a copy of ``widget.ipynb``, with its configuration, data, runtime, settings and
workspace directories also temporary (nothing of the user's Jupyter setup takes part) and the
source tree under test first on the kernel's ``PYTHONPATH``. The browser is the distribution's
Chromium (Playwright's own browser download is not used); ``.ci/browser-setup`` installs it.

When Chromium, Playwright or JupyterLab is missing the test is skipped with the reason, except
under CI (``CI`` set to a true value), where it fails: CI must run it. Both processes are always
stopped, the server with everything it started (the kernel included), even when the test fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# The notebook is a fixture the browser opens, not a notebook for nbval to check.
collect_ignore_glob = ["*.ipynb"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NOTEBOOKS = (HERE / "widget.ipynb", HERE / "sync.ipynb")
SETUP_HINT = (
    "run .ci/browser-setup (installs the distribution's Chromium with apt-get) and "
    'python -m pip install -e ".[test]" (installs JupyterLab and Playwright)'
)
#: Chromium's flags: headless, no sandbox (CI runs as root), and none of its background traffic
#: (on a closed network it stalls waiting for it).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SERVER_START_TIMEOUT = 90.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(what: str) -> None:
    """Skip the test (fail it under CI) because ``what`` is missing."""
    message = f"browser test cannot run: {what}; {SETUP_HINT}"
    if in_ci():
        pytest.fail(f"{message} (CI is set: the browser test must run in CI)", pytrace=False)
    pytest.skip(message)


def chromium_path() -> str:
    """The Chromium to drive: ``$AMP_PANDAS_CHROMIUM``, else ``chromium`` on the ``PATH``."""
    given = os.environ.get("AMP_PANDAS_CHROMIUM")
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            unavailable(f"AMP_PANDAS_CHROMIUM={given!r} is not an executable file")
        return given
    found = shutil.which("chromium")
    if found is None:
        unavailable("no chromium executable on the PATH")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the server's log and a failed test's screenshot go; pytest keeps its last runs'."""
    return tmp_path_factory.mktemp("browser")


# ---------------------------------------------------------------------- JupyterLab
@dataclass
class Lab:
    """A running JupyterLab server."""

    port: int
    token: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes]
    headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.headers = {"Authorization": f"token {self.token}"}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str) -> str:
        """The URL of ``path`` on the server, with the token (for the browser's first visit)."""
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0) -> Any:
        request = urllib.request.Request(
            self.base + path, method=method, headers=self.headers, data=b"" if method != "GET"
            else None,
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """The ids of every process below ``pid`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _stop_lab(lab: Lab) -> None:
    """Shut the server down (kernels first), then make sure it and its children are gone."""
    process = lab.process
    started = [process.pid, *_descendants(process.pid)]
    if process.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            for kernel in lab.api("api/kernels"):
                lab.api(f"api/kernels/{kernel['id']}", method="DELETE", timeout=10)
        with contextlib.suppress(OSError, ValueError):
            lab.api("api/shutdown", method="POST")
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _kill([process.pid], signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill([process.pid], signal.SIGKILL)
                process.wait(timeout=5)
    # whatever it started and left (a kernel runs in its own session): by id, only those
    _kill([pid for pid in started[1:] if Path(f"/proc/{pid}").exists()], signal.SIGKILL)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable, once everything the browser test needs is known to be there.

    Checked before the server starts, so that a skip (or, in CI, the failure) comes at once.
    """
    for module in ("playwright", "jupyterlab", "ipywidgets", "jupyterlab_widgets", "ipykernel"):
        if importlib.util.find_spec(module) is None:
            unavailable(f"the Python package {module!r} is not installed")
    return chromium_path()


@pytest.fixture(scope="module")
def lab(chromium: str, artifacts: Path) -> Iterator[Lab]:
    """A JupyterLab server on 127.0.0.1 serving temporary copies of the test notebooks."""
    home = Path(tempfile.mkdtemp(prefix="amp-pandas-lab-"))
    root = home / "root"
    root.mkdir()
    for notebook in NOTEBOOKS:
        shutil.copy(notebook, root / notebook.name)
    # no "Would you like to get notified about official Jupyter news?" toast over the notebook
    notification = home / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    # every cell stays in the page (no windowing), so a test can read any cell's output
    notebook_settings = home / "settings" / "@jupyterlab" / "notebook-extension"
    notebook_settings.mkdir(parents=True)
    (notebook_settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env = dict(os.environ)
    for name, sub in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTERLAB_SETTINGS_DIR", "settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
        ("IPYTHONDIR", "ipython"),
    ):
        env[name] = str(home / sub)
    # the kernel imports amp_pandas from the tree under test, wherever the package is installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("JUPYTER_TOKEN", None)
    env.pop("JUPYTER_PORT", None)
    port = _free_port()
    token = secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.allow_root=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        # no update check, no news feed: nothing leaves the machine
        "--LabApp.news_url=None",
    ]
    log = artifacts / "jupyterlab.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = Lab(port=port, token=token, root=root, log=log, process=process)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited with {process.returncode} before serving; "
                    f"its log ({log}):\n{server.log_tail()}"
                )
            try:
                server.api("api/status", timeout=2)
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"jupyter lab did not answer on port {port} within "
                        f"{SERVER_START_TIMEOUT:.0f} s; its log ({log}):\n{server.log_tail()}"
                    ) from None
                time.sleep(0.25)
        yield server
    finally:
        _stop_lab(server)
        shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------------- Chromium
_BROWSER = pytest.StashKey[tuple[Any, list[str], Path]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failed test, while its page is still open: a screenshot, console errors, server log."""
    report = yield
    if report.when == "call" and report.failed and _BROWSER in item.stash:
        tab, errors, folder = item.stash[_BROWSER]
        shot = folder / f"{item.name}.png"
        try:
            tab.screenshot(path=str(shot), full_page=True)
            lines = [f"screenshot: {shot}"]
        except Exception as exc:  # the page may be gone (the browser crashed)
            lines = [f"no screenshot ({type(exc).__name__}: {exc})"]
        lines += [f"page url: {tab.url}"]
        lines += ["browser console errors:", *(errors[-20:] or ["(none)"])]
        lab = getattr(item, "funcargs", {}).get("lab")
        if isinstance(lab, Lab):
            lines += [f"jupyter lab log ({lab.log}), last lines:", lab.log_tail()]
        text = "\n".join(lines)
        report.sections.append(("browser", text))
        print(f"\n{text}", file=sys.stderr)
    return report


@pytest.fixture
def page(chromium: str, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A Playwright page in a headless Chromium with a fresh profile directory.

    The page's console errors are kept; when the test fails, a screenshot of the page, those
    errors and the server's log are added to the failure report.
    """
    executable = chromium
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="amp-pandas-chromium-")
    try:
        with sync_playwright() as pw:
            try:
                context = pw.chromium.launch_persistent_context(
                    profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
                    timeout=60_000, viewport={"width": 1400, "height": 1000},
                )
            except Exception as exc:  # installed but not working: a real failure, not a skip
                raise RuntimeError(
                    f"{executable} did not start under Playwright: {exc}"
                ) from exc
            try:
                context.set_default_timeout(30_000)
                tab = context.pages[0] if context.pages else context.new_page()
                errors: list[str] = []
                tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                tab.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
                request.node.stash[_BROWSER] = (tab, errors, artifacts)
                yield tab
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
