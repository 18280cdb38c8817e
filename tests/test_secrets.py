"""Secret scan: with one distinctive key, run every path a user can see and look for the key.

The key must never appear -- not whole, not URL-encoded, not any 8 characters of it (the mask
shows the last four on purpose) -- in: the preview's text, HTML and widget state, the result and
its views, the logs at DEBUG (every logger, urllib3 included), the progress bar's output, every
exception and warning amp_pandas raises (message, repr, chained causes, traceback), and the
command line's output and result file. A server that echoes the key back in its error answers
must not get it into the result either.
"""

from __future__ import annotations

import html
import importlib.util
import json
import logging
import re
import threading
import traceback
import urllib.parse
import warnings
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import amp_pandas  # noqa: F401
from amp_pandas import cli
from amp_pandas._config import resolve_settings
from amp_pandas.errors import (
    AmpPandasError,
    AuthenticationError,
    ConfigurationError,
    InsecureEndpointError,
    InterruptedSendWarning,
    MissingApiKeyError,
    RowsNotSucceededWarning,
)
from amp_pandas.sandbox import Sandbox

# Distinctive, and with characters that URL-encoding changes.
KEY = "Zq8+SeCrEt/Key=7f3e&9c1d%5b2a"
WINDOW = 8


def forms(key: str = KEY) -> list[str]:
    """What a leak could look like: the key, encoded, and every 8-character piece of it
    except those inside the last four characters the mask shows."""
    out = {key, urllib.parse.quote(key, safe=""), urllib.parse.quote_plus(key),
           json.dumps(key)[1:-1], html.escape(key)}
    out |= {key[i:i + WINDOW] for i in range(len(key) - WINDOW + 1)}
    return sorted(out)


def assert_no_key(texts: Iterable[Any], where: str) -> None:
    for text in texts:
        text = text if isinstance(text, str) else str(text)
        for form in forms():
            assert form not in text, f"{where}: {form!r} found in {text[:300]!r}"


def error_texts(exc: BaseException) -> list[str]:
    """An exception as a user can see it: message, repr, its causes, the whole traceback."""
    out = ["".join(traceback.format_exception(exc)), repr(exc), *map(str, exc.args)]
    for name, value in vars(exc).items():
        out.append(f"{name}={value!r}")
        if isinstance(value, pd.DataFrame):
            out.append(value.to_string())
    return out


def frame(n: int = 30) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "uid": [f"user-{i:04d}" if i % 10 else "null" for i in range(n)],
            "plan": [("pro", "free", None)[i % 3] for i in range(n)],
            "logins": range(n),
        },
        index=[f"r{i}" for i in range(n)],
    )


MAPPING = {"user_id": "uid", "set": ["plan"], "add": {"logins": "logins"}}


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(api_key=KEY) as sandbox:
        yield sandbox


@pytest.fixture
def other_sb() -> Iterator[Sandbox]:
    """A sandbox that accepts another key: KEY is rejected there."""
    with Sandbox(api_key="another-sandbox-key-000") as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # every logger: amp_pandas, urllib3, requests
    return caplog


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    out = [caplog.text]
    for record in caplog.records:
        out += [record.getMessage(), repr(record.args)]
        if record.exc_info:
            out.append("".join(traceback.format_exception(*record.exc_info)))
    return out


# ------------------------------------------------------------------------------------ preview
@pytest.mark.timeout(30)
def test_preview_text_html_and_settings(sb: Sandbox) -> None:
    preview = frame().amplitude.identify(**MAPPING, dry_run=True, api_key=KEY, server_url=sb.url)
    texts = [
        repr(preview), preview._repr_html_(), *preview._repr_mimebundle_().values(),
        repr(preview.settings), str(preview.settings.api_key), f"{preview.settings.api_key}",
        preview.key_status, preview.summary.to_string(), preview.problems.to_string(),
        preview.operations.to_string(), json.dumps(list(preview.payloads)),
    ]
    assert_no_key(texts, "preview")
    assert preview.key_status.endswith(KEY[-4:])  # the mask shows the last four, by design


@pytest.mark.timeout(60)
def test_widget_state_before_and_after_a_send(sb: Sandbox, other_sb: Sandbox) -> None:
    if importlib.util.find_spec("amp_pandas._widget") is None:
        pytest.skip("no amp_pandas._widget")
    widgets = pytest.importorskip("ipywidgets")
    from amp_pandas._widget import PreviewWidget

    def walk(w: Any) -> Iterator[Any]:
        yield w
        for child in getattr(w, "children", ()):
            yield from walk(child)

    def states(root: Any) -> list[str]:
        out = [repr(root), *map(str, root._repr_mimebundle_().values())]
        for w in walk(root):
            out.append(json.dumps(w.get_state(), default=str))
        return out

    try:
        for server, ok in ((sb, True), (other_sb, False)):
            preview = frame().amplitude.identify(**MAPPING, dry_run=True, api_key=KEY,
                                                 server_url=server.url)
            widget = PreviewWidget(preview)
            assert_no_key(states(widget), "widget before the send")
            widget.row_picker.value = 3
            widget._on_send()
            assert widget.state == ("sent" if ok else "failed")
            assert_no_key(states(widget), f"widget after a send ({widget.state})")
    finally:
        widgets.Widget.close_all()


# ------------------------------------------------------------------------------------ send
@pytest.mark.timeout(60)
def test_result_logs_and_progress_of_a_send(
    sb: Sandbox, debug_logs: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    sb.set_faults(rate_503=0.3, rate_500_after_apply=0.2, reject_ids={"user-0003"})
    with pytest.warns(RowsNotSucceededWarning) as caught:
        result = frame(300).amplitude.identify(
            **MAPPING, api_key=KEY, server_url=sb.url, batch_size=20, progress=True,
            backoff=0.001, backoff_max=0.01,
        )
    out, err = capsys.readouterr()
    assert "Amplitude identify" in err  # the bar was drawn
    assert set(result["status"]) >= {"success", "invalid", "failed"}
    assert any(r.levelno == logging.DEBUG for r in debug_logs.records)
    assert_no_key(
        [repr(result), result._repr_html_(), result.to_string(), result.to_csv(),
         *result["error"].dropna(), out, err, *(str(w.message) for w in caught),
         *log_texts(debug_logs)],
        "send",
    )


@pytest.mark.timeout(60)
def test_rejected_key_error_and_its_partial_result(
    other_sb: Sandbox, debug_logs: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AuthenticationError) as info:
        frame(200).amplitude.identify(**MAPPING, api_key=KEY, server_url=other_sb.url,
                                      batch_size=10, progress=True)
    out, err = capsys.readouterr()
    assert info.value.result is not None
    assert_no_key([*error_texts(info.value), out, err, *log_texts(debug_logs)], "rejected key")


@pytest.mark.timeout(60)
def test_interrupted_send_warning(sb: Sandbox, debug_logs: pytest.LogCaptureFixture) -> None:
    from amp_pandas._send import send_plan

    sb.set_faults(latency=0.05)
    preview = frame(300).amplitude.identify(**MAPPING, dry_run=True, api_key=KEY,
                                            server_url=sb.url)

    def ctrl_c(counts: dict[str, int], waiting: str | None) -> None:
        if counts["success"]:
            raise KeyboardInterrupt

    settings = resolve_settings(api_key=KEY, server_url=sb.url, progress=False, batch_size=10,
                                interrupt_grace=0)
    with pytest.warns(InterruptedSendWarning) as caught:
        result = send_plan(preview.plan, settings, progress_callback=ctrl_c)
    assert (result["status"] == "not_sent").any()
    assert_no_key([*(str(w.message) for w in caught), result.to_string(),
                   *log_texts(debug_logs)], "interrupt")


# ------------------------------------------------------------------------------------ errors
BAD_CALLS = {
    "insecure endpoint": ({"server_url": "http://example.com/identify"}, InsecureEndpointError),
    "insecure endpoint, CLI-like host": (
        {"server_url": "http://amplitude.internal:8080/identify"}, InsecureEndpointError),
    "malformed endpoint": ({"server_url": "ftp://example.com/identify"}, ConfigurationError),
    "bad port": ({"server_url": "https://example.com:99999/identify"}, ConfigurationError),
    "unknown region": ({"region": "mars"}, ConfigurationError),
    "bad option value": ({"timeout": -1}, ConfigurationError),
    "bad session": ({"session": object()}, ConfigurationError),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_configuration_errors(case: str) -> None:
    options, error = BAD_CALLS[case]
    with pytest.raises(error) as info:
        frame().amplitude.identify(**MAPPING, api_key=KEY, **options)
    assert isinstance(info.value, AmpPandasError)
    assert_no_key(error_texts(info.value), case)


@pytest.mark.timeout(30)
def test_missing_key_and_sending_a_preview_elsewhere(sb: Sandbox) -> None:
    with pytest.raises(MissingApiKeyError) as missing:
        frame().amplitude.identify(**MAPPING, server_url=sb.url, progress=False)
    assert_no_key(error_texts(missing.value), "missing key")
    preview = frame().amplitude.identify(**MAPPING, dry_run=True, api_key=KEY)
    with pytest.raises(InsecureEndpointError) as insecure:
        preview.send(server_url="http://example.com/identify")
    assert_no_key(error_texts(insecure.value), "preview.send to http://")


# ------------------------------------------------------------------------------------ echo
class EchoHandler(BaseHTTPRequestHandler):
    """A server that answers with the request's key in its error body, in some form."""

    protocol_version = "HTTP/1.1"
    form = "verbatim"
    status = 400

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        match = re.search(rb'name="api_key"\r\n\r\n(.*?)\r\n', body, re.DOTALL)
        key = match.group(1).decode() if match else ""
        echoed = {
            "verbatim": key,
            "url-encoded": urllib.parse.quote_plus(key),
            "first 12 characters": key[:12] + "...",
            "json": json.dumps({"api_key": key}),
        }[self.form]
        answer = json.dumps({"code": self.status, "error": f"bad request for key {echoed}"})
        data = answer.encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def echo_server(request: pytest.FixtureRequest) -> Iterator[str]:
    form, status = request.param
    handler = type("Handler", (EchoHandler,), {"form": form, "status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/identify"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "echo_server",
    [(form, status) for form in ("verbatim", "url-encoded", "first 12 characters", "json")
     for status in (400, 418)],
    indirect=True,
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def test_a_server_echoing_the_key_does_not_get_it_into_the_result(
    echo_server: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    with pytest.warns(RowsNotSucceededWarning) as caught:
        result = frame(4).amplitude.identify(**MAPPING, api_key=KEY, server_url=echo_server,
                                             progress=False, max_retries=0)
    assert (result["status"].isin(["failed", "invalid"])).all()
    assert result["error"].str.contains("bad request for key").any()  # the reason is kept
    assert_no_key([*result["error"].dropna(), result.to_string(),
                   *(str(w.message) for w in caught), *log_texts(debug_logs)], "echo")


# ------------------------------------------------------------------------------------ CLI
@pytest.fixture
def users_csv(tmp_path: Path) -> Path:
    path = tmp_path / "users.csv"
    frame(60).to_csv(path, index=False)
    return path


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.timeout(60)
def test_cli_output_and_result_file(
    sb: Sandbox, other_sb: Sandbox, users_csv: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("AMPLITUDE_API_KEY", KEY)
    base = ["identify", str(users_csv), "--user-id", "uid", "--set", "plan", "--add",
            "logins"]
    out_csv = tmp_path / "result.csv"
    texts = []
    for argv, expected in (
        (base + ["--dry-run"], 1),
        (base + ["--server-url", sb.url, "--out", str(out_csv)], 1),
        (base + ["--server-url", other_sb.url, "--out", str(out_csv)], 1),
        (base + ["--server-url", "http://example.com/identify"], 2),
        (base + ["--server-url", sb.url, "--batch-size", "0"], 2),
    ):
        code, text = run_cli(argv, capsys)
        assert code == expected, text
        texts.append(text)
        if out_csv.exists():
            texts.append(out_csv.read_text())
    assert_no_key([*texts, *log_texts(debug_logs)], "CLI")


@pytest.mark.timeout(30)
def test_cli_sandbox_command_does_not_echo_a_custom_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `amp-pandas sandbox --api-key KEY` runs until Ctrl-C: make its wait loop see one.
    from amp_pandas.sandbox import _serve

    main_thread = threading.main_thread()
    real_sleep = _serve.time.sleep

    class FakeTime:
        @staticmethod
        def sleep(seconds: float) -> None:
            if threading.current_thread() is main_thread:
                raise KeyboardInterrupt
            real_sleep(seconds)

    monkeypatch.setattr(_serve, "time", FakeTime)
    code, text = run_cli(["sandbox", "--api-key", KEY], capsys)
    assert code == 0 and "Identify endpoint" in text and "Sandbox stopped" in text
    assert_no_key([text], "sandbox command")


@pytest.mark.timeout(10)
def test_the_forms_checked_are_really_different() -> None:
    # The scan would be weak if encoding did not change the key.
    assert urllib.parse.quote_plus(KEY) != KEY != urllib.parse.quote(KEY, safe="")
    assert len(forms()) > 20
