"""Stopping a send (rejected key, Ctrl-C), and what a send shows: logs, progress, warnings.

Everything that crosses HTTP goes to the real sandbox; the key never shows anywhere.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import responses

from amp_pandas._amplitude import KEY_REJECTED
from amp_pandas._config import SendSettings, resolve_settings
from amp_pandas._plan import Plan
from amp_pandas._send import send_plan
from amp_pandas.errors import (
    AuthenticationError,
    InterruptedSendWarning,
    RowsNotSucceededWarning,
)
from amp_pandas.sandbox import Sandbox

KEY = "amp-KEY-7f3e9c1d5b2a4e6f8a0c"
KEY_PART = "7f3e9c1d5b2a"  # a distinctive piece that a mask never shows


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(api_key=KEY, seed=0) as sandbox:
        yield sandbox


def settings(sb: Sandbox, key: str = KEY, **options: Any) -> SendSettings:
    options = {"progress": False, "backoff": 0.001, "backoff_max": 0.01, **options}
    return resolve_settings(api_key=key, server_url=sb.url, **options)


def one_per_user(n: int, op: str = "$add", prefix: str = "user") -> Plan:
    value: Any = 1 if op == "$add" else "pro"
    return Plan.from_identifications(
        [{"user_id": f"{prefix}-{i:04d}", "user_properties": {op: {"p": value}}} for i in range(n)]
    )


def applied_positions(sb: Sandbox, prefix: str = "user") -> set[int]:
    return {int(k.split("-")[1]) for k in sb.applied_counts().index if k.startswith(prefix)}


def positions(result: pd.DataFrame, status: str) -> set[int]:
    return set(result.index[result.status == status].tolist())


# ---------------------------------------------------------------- rejected key
@pytest.mark.parametrize(
    "body",
    [
        "Invalid API key",
        "invalid_api_key",
        "Missing api_key",
        "missing API KEY",
        "API key is invalid",
        "api_key missing from request",
        "INVALIDAPIKEY",
    ],
)
def test_key_rejection_is_recognised(body: str) -> None:
    assert KEY_REJECTED.search(body)


@pytest.mark.parametrize("body", ["invalid id 'user-1'", "missing_event", "api keys rotate"])
def test_other_400s_are_not_key_rejections(body: str) -> None:
    assert not KEY_REJECTED.search(body)


def test_rejected_key_stops_the_send_at_once(sb: Sandbox) -> None:
    sb.set_faults(latency=0.05)
    wrong = "wrong-KEY-0a1b2c3d4e5f6a7b"
    with pytest.raises(AuthenticationError) as info:
        send_plan(one_per_user(500), settings(sb, key=wrong, batch_size=10, max_workers=3))
    err = info.value
    assert err.status_code == 400
    made = sb.requests
    assert 1 <= len(made) <= 3  # only what was in flight; no bisection, no retry
    result = err.result
    assert result is not None and len(result) == 500
    failed = result[result.status == "failed"]
    assert len(failed) == 10 * len(made)
    assert failed.error.eq("Amplitude rejected the API key (HTTP 400)").all()
    assert (failed.attempts == 1).all() and (failed.http_status == 400).all()
    rest = result[result.status != "failed"]
    assert (rest.status == "not_sent").all() and (rest.attempts == 0).all()
    assert rest.error.eq("not sent: the send stopped because Amplitude rejected the API key").all()
    assert "Invalid API key" in str(err) and ".result" in str(err)
    for text in (str(err), repr(err), repr(result), result.to_string()):
        assert wrong not in text and "0a1b2c3d" not in text


@responses.activate
def test_an_echoed_key_is_redacted_from_reasons() -> None:
    url = "https://api2.amplitude.com/identify"
    responses.add(responses.POST, url, status=418, body=f"I refuse {KEY}, teapot")
    s = resolve_settings(api_key=KEY, progress=False)
    with pytest.warns(RowsNotSucceededWarning):
        result = send_plan(one_per_user(1), s)
    assert result.error[0] == "HTTP 418: I refuse ••••, teapot"


# ---------------------------------------------------------------- interrupt
@pytest.fixture
def python_sigint() -> Iterator[None]:
    """SIGINT raises ``KeyboardInterrupt`` during the test, as in an interactive session.

    Under ``nohup`` or in a background job SIGINT is inherited as ignored, and
    ``_thread.interrupt_main()`` then does nothing: the tests that deliver a real SIGINT install
    Python's default handler for their duration and put back what was there.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_after(successes: int) -> Any:
    fired = []

    def callback(counts: dict[str, int], waiting: str | None) -> None:
        if counts["success"] >= successes and not fired:
            fired.append(True)
            # The callback runs right after the loop has handed the next requests to the
            # workers. Give them a moment to start (well under the sandbox's latency): when every
            # request in flight was answered at once, Ctrl-C would otherwise land before any
            # worker took the new ones, which then count as never sent, never as in flight.
            time.sleep(0.03)
            raise KeyboardInterrupt

    return callback


def test_interrupt_returns_a_partial_result_that_matches_the_server(sb: Sandbox) -> None:
    sb.set_faults(latency=0.15)
    with pytest.warns(InterruptedSendWarning, match="interrupted"):
        result = send_plan(
            one_per_user(400),
            settings(sb, batch_size=10, max_workers=4, interrupt_grace=0),
            progress_callback=_interrupt_after(40),
        )
    snapshot = result.copy()
    success, unknown, not_sent = (positions(result, s) for s in ("success", "unknown", "not_sent"))
    assert len(success) >= 40 and unknown and not_sent
    assert success | unknown | not_sent == set(range(400))
    assert (result.loc[list(unknown), "attempts"] == 1).all()
    assert (result.loc[list(not_sent), "attempts"] == 0).all()
    assert result.error[min(unknown)] == (
        "sent, but no answer before the send was interrupted: it may have been applied"
    )
    assert result.error[min(not_sent)] == "not sent: the send was interrupted"

    time.sleep(0.4)  # the requests that were in flight reach the server meanwhile
    applied = applied_positions(sb)
    assert success <= applied  # everything reported sent was applied
    assert not (not_sent & applied)  # nothing reported not_sent was applied
    assert applied <= success | unknown
    assert (sb.applied_counts() == 1).all()
    pd.testing.assert_frame_equal(result, snapshot)  # late answers changed nothing


def test_interrupt_grace_lets_requests_in_flight_finish(sb: Sandbox) -> None:
    sb.set_faults(latency=0.15)
    with pytest.warns(InterruptedSendWarning):
        result = send_plan(
            one_per_user(400),
            settings(sb, batch_size=10, max_workers=4, interrupt_grace=5),
            progress_callback=_interrupt_after(40),
        )
    assert set(result.status) == {"success", "not_sent"}
    assert positions(result, "success") == applied_positions(sb)
    assert len(sb.requests) * 10 == len(positions(result, "success"))


@pytest.mark.usefixtures("python_sigint")
def test_a_real_ctrl_c_during_a_send(sb: Sandbox) -> None:
    """SIGINT delivered to the main thread while it waits for answers (not from a callback)."""
    sb.set_faults(latency=0.2)
    stop = threading.Event()

    def interrupt_once_some_rows_landed() -> None:
        # wait for real progress (a loaded machine may be slow to start), then Ctrl-C
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            if sum(1 for r in sb.requests if r.status == 200) >= 2:
                _thread.interrupt_main()
                return
            time.sleep(0.01)

    timer = threading.Thread(target=interrupt_once_some_rows_landed, daemon=True)
    timer.start()
    try:
        with pytest.warns(InterruptedSendWarning):
            result = send_plan(
                one_per_user(300), settings(sb, batch_size=10, max_workers=3, interrupt_grace=0)
            )
    finally:
        stop.set()
        timer.join()
    time.sleep(0.3)
    success, not_sent = positions(result, "success"), positions(result, "not_sent")
    applied = applied_positions(sb)
    assert success and not_sent
    assert success <= applied and not (not_sent & applied)


@pytest.mark.parametrize(
    "fault, status, reason",
    [
        (
            {"rate_503": 1.0},
            "not_sent",
            "not sent: the send was interrupted (last attempt: HTTP 503 (not applied))",
        ),
        ({"rate_500_after_apply": 1.0}, "unknown", None),
    ],
)
@pytest.mark.usefixtures("python_sigint")
def test_interrupt_after_retryable_outcomes(
    sb: Sandbox, fault: dict, status: str, reason: str | None
) -> None:
    """Rows that only saw 'not applied' are not_sent; rows that saw 500 are unknown."""
    sb.set_faults(**fault)
    timer = threading.Timer(0.3, _thread.interrupt_main)  # Ctrl-C while the rows are retried
    timer.start()
    try:
        with pytest.warns(InterruptedSendWarning):
            result = send_plan(
                one_per_user(20, op="$set"),
                settings(
                    sb,
                    batch_size=5,
                    max_retries=100,
                    backoff=0.05,
                    backoff_max=0.05,
                    interrupt_grace=1,
                ),
            )
    finally:
        timer.cancel()
    assert (result.status == status).all()
    assert (result.attempts >= 1).all()
    if reason is not None:
        assert result.error.eq(reason).all()
    else:
        assert result.error.str.startswith("may have been applied (HTTP 500)").all()
        assert result.error.str.endswith("not retried: the send was interrupted").any()


def test_interrupt_while_ids_are_throttled(sb: Sandbox) -> None:
    sb.throttle(user_ids=["user-0003"])
    seen: list[str] = []

    def callback(counts: dict[str, int], waiting: str | None) -> None:
        if waiting and counts["success"] == 19:
            seen.append(waiting)
            raise KeyboardInterrupt

    with pytest.warns(InterruptedSendWarning):
        result = send_plan(
            one_per_user(20),
            settings(sb, batch_size=5, throttle_pause=30),
            progress_callback=callback,
        )
    assert seen and seen[0].startswith("waiting 30s for 1 throttled id")
    assert result.status[3] == "not_sent" and result.http_status[3] == 429
    assert result.error[3] == (
        "not sent: the send was interrupted (last attempt: throttled by Amplitude (HTTP 429))"
    )
    assert (result.drop(index=3).status == "success").all()


# ---------------------------------------------------------------- the key never shows
def test_the_key_never_shows(
    sb: Sandbox, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    sb.set_faults(rate_503=0.3, rate_500_after_apply=0.1, reject_ids={"user-0007"})
    sb.throttle(user_ids=["user-0011"], requests=2)
    caplog.set_level(logging.DEBUG, logger="amp_pandas")
    s = settings(sb, progress=True, batch_size=8, throttle_pause=0.05, max_retries=20)
    with pytest.warns(RowsNotSucceededWarning) as warned:
        result = send_plan(one_per_user(64, op="$set"), s)
    captured = capsys.readouterr()
    assert "succeeded" in captured.err  # the progress bar was captured
    assert "POST" in caplog.text  # and the request log
    texts = [
        caplog.text,
        captured.out,
        captured.err,
        repr(result),
        result._repr_html_(),
        result.to_string(),
        repr(s),
        str(s),
        repr(s.api_key),
        str(s.api_key),
        *(str(w.message) for w in warned),
    ]
    for text in texts:
        assert KEY not in text and KEY_PART not in text

    caplog.clear()
    with pytest.raises(AuthenticationError) as info:
        send_plan(one_per_user(3), settings(sb, key=KEY + "-old"))
    for text in (str(info.value), repr(info.value), repr(info.value.result), caplog.text):
        assert KEY_PART not in text


# ---------------------------------------------------------------- logs, progress, warnings
def test_each_request_is_logged_at_debug(sb: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    sb.set_faults(rate_503=0.3)
    caplog.set_level(logging.DEBUG, logger="amp_pandas")
    send_plan(one_per_user(40), settings(sb, batch_size=10, max_retries=30))
    lines = [
        r
        for r in caplog.records
        if r.name == "amp_pandas"
        and r.levelno == logging.DEBUG
        and r.getMessage().startswith("POST ")
    ]
    assert len(lines) == len(sb.requests)
    message = lines[0].getMessage()
    assert message.startswith(f"POST {sb.url}: 10 rows, ")
    assert " bytes, attempt 1 -> HTTP " in message and message.endswith(" ms")
    assert any("attempt 2 -> " in r.getMessage() for r in lines)  # the retried ones
    summary = [r for r in caplog.records if r.levelno == logging.INFO]
    assert summary and "40 success" in summary[-1].getMessage()


def test_progress_bar_and_callback(sb: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    reports: list[tuple[dict[str, int], str | None]] = []
    send_plan(
        one_per_user(30),
        settings(sb, batch_size=10, progress=True),
        progress_callback=lambda counts, waiting: reports.append((counts, waiting)),
    )
    err = capsys.readouterr().err
    assert "Amplitude identify" in err and "30/30" in err
    assert "succeeded 30 · failed 0 · throttled 0" in err
    done = [c["success"] for c, _ in reports]
    assert done == sorted(done) and done[-1] == 30
    assert reports[-1][0] == {
        "success": 30,
        "invalid": 0,
        "skipped": 0,
        "failed": 0,
        "throttled": 0,
        "unknown": 0,
        "not_sent": 0,
        "unchanged": 0,
        "pending": 0,
        "rows": 30,
    }


def test_progress_off_prints_nothing(sb: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    send_plan(one_per_user(10), settings(sb, progress=False))
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_warning_points_at_the_caller(sb: Sandbox) -> None:
    sb.set_faults(reject_ids={"user-0001"})
    with pytest.warns(RowsNotSucceededWarning) as warned:
        send_plan(one_per_user(3), settings(sb))
    assert len(warned) == 1 and warned[0].filename == __file__
    assert str(warned[0].message).startswith("1 of 3 rows did not succeed (1 failed)")


def test_a_broken_callback_does_not_break_the_send(
    sb: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def callback(counts: dict[str, int], waiting: str | None) -> None:
        calls.append(counts)
        raise ValueError("widget closed")

    result = send_plan(one_per_user(30), settings(sb, batch_size=5), progress_callback=callback)
    assert (result.status == "success").all()
    assert len(calls) == 1  # not called again
    assert "progress callback failed" in caplog.text


# ---------------------------------------------------------------- SIGINT handlers
@pytest.mark.parametrize(
    "handler",
    [signal.SIG_IGN, signal.SIG_DFL, signal.default_int_handler, lambda signum, frame: None],
    ids=["ignored", "os-default", "python-default", "custom"],
)
def test_a_send_leaves_the_sigint_handler_as_it_found_it(sb: Sandbox, handler: Any) -> None:
    previous = signal.signal(signal.SIGINT, handler)
    seen: list[Any] = []
    try:
        result = send_plan(
            one_per_user(20),
            settings(sb, batch_size=5),
            progress_callback=lambda counts, waiting: seen.append(signal.getsignal(signal.SIGINT)),
        )
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (result.status == "success").all()
    assert after is handler
    if handler is signal.default_int_handler:  # deferred to safe points while sending
        assert seen and all(h is not handler for h in seen)
    else:  # anything else is not touched
        assert seen and all(h is handler for h in seen)


@pytest.mark.timeout(300)
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signal dispositions")
def test_these_tests_pass_with_sigint_ignored(tmp_path: Any) -> None:
    """As under ``nohup pytest &``: SIGINT ignored in the whole pytest process."""
    code = (
        "import signal, sys, pytest\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "sys.exit(pytest.main(sys.argv[1:]))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [
            sys.executable, "-c", code, "-p", "no:nbval", "-p", "no:cacheprovider",
            "-o", "addopts=-ra --strict-markers", "-q", "-k", "not sigint_ignored",
            os.path.abspath(__file__),
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
