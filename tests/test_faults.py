"""The fault matrix: whatever the network and the sandbox do, every row ends with one honest status.

Each test sends a frame of 5,000 rows (a unique ``marker`` per row; a quarter only idempotent
operations, the rest ``$add``, ``$append`` or ``$prepend``, see :mod:`_support.frames`) to the
sandbox over real HTTP with one fault switched on, then compares the result with the sandbox's
``applied`` log row by row (:func:`_support.frames.check_result`):

* every row has exactly one of the seven statuses;
* every ``success`` row was applied, exactly once unless it was idempotent and carried by more
  than one request;
* ``failed``, ``throttled`` and ``not_sent`` rows were not applied; no row was applied more often
  than requests carried it;
* no ``$add``/``$append``/``$prepend`` row was applied twice with default settings;
* ``unknown`` only where the outcome was really ambiguous;
* with ``retry_ambiguous=True`` every row ends applied at least once.

Waits are shortened through the settings (``backoff``, ``throttle_pause``, ``timeout`` ...),
never skipped.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _support.frames import (
    MAPPING,
    applied_counts,
    check_result,
    markers_in,
    mixed_frame,
    non_idempotent,
    not_last_of_user,
    summary,
)

import amp_pandas  # noqa: F401  (registers df.amplitude)
from amp_pandas.errors import AuthenticationError, RowsNotSucceededWarning
from amp_pandas.sandbox import Sandbox

KEY = "fault-matrix-key-5e1f0a9b"
N = 5000


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(api_key=KEY, seed=7) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return mixed_frame(N)


def send(
    frame: pd.DataFrame, url: str, *, key: str = KEY, mapping: dict[str, Any] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Send ``frame`` and check the warning: ``RowsNotSucceededWarning`` exactly when some row
    did not succeed (or was not even sent)."""
    options = {
        "progress": False, "backoff": 0.002, "backoff_max": 0.05, "batch_size": 100,
        "max_workers": 4, "timeout": 10, **options,
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = frame.amplitude.identify(
            **(mapping or MAPPING), server_url=url, api_key=key, **options
        )
    categories = [w.category for w in caught]
    bad = (result["status"] != "success").any()
    expected = [RowsNotSucceededWarning] if bad else []
    assert categories == expected, [str(w.message) for w in caught]
    return result


def rows(df: pd.DataFrame, mask: np.ndarray) -> set[str]:
    return set(df.index[mask])


def by_marker(df: pd.DataFrame, markers: set[str]) -> np.ndarray:
    return df["marker"].isin(markers).to_numpy()


# ------------------------------------------------------------------------------------ 503
@pytest.mark.timeout(60)
def test_20_percent_503_all_rows_succeed_exactly_once(sb: Sandbox, df: pd.DataFrame) -> None:
    sb.set_faults(rate_503=0.2)
    result = send(df, sb.url, max_retries=30)

    counts = applied_counts(df, sb.applied)
    assert check_result(result, df, counts, ambiguity=False) == []
    assert summary(result) == {"success": N}
    assert (counts == 1).all()
    assert sum(r.status == 503 for r in sb.requests) >= 5
    assert (result["attempts"] > 1).any()


# ------------------------------------------------------------------------------------ 500 / drop
AMBIGUOUS_FAULTS = {
    "500-after-apply": ({"rate_500_after_apply": 0.1}, 500),
    "dropped-after-apply": ({"rate_drop_after_apply": 0.1}, None),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", list(AMBIGUOUS_FAULTS))
def test_applied_then_no_clear_answer_is_unknown_only_for_non_idempotent_rows(
    sb: Sandbox, df: pd.DataFrame, fault: str
) -> None:
    faults, answered = AMBIGUOUS_FAULTS[fault]
    sb.set_faults(**faults)
    result = send(df, sb.url, max_retries=30)

    counts = applied_counts(df, sb.applied)
    assert check_result(result, df, counts) == []
    status = result["status"].to_numpy(dtype=object)
    unknown = status == "unknown"
    ambiguous = by_marker(df, markers_in(sb.requests, {answered}))
    held = by_marker(df, not_last_of_user(sb.requests, {answered}))
    assert unknown.any() and ambiguous.any() and held.any()
    # 'unknown' exactly where a request got no clear answer and the row is a $add/$append/
    # $prepend, or a later row of its user was in that request (a retry would land after it);
    # the sandbox did apply each of them (once): the status is honest, not pessimistic noise.
    assert rows(df, unknown) == rows(df, ambiguous & (non_idempotent(df) | held))
    assert (counts[unknown] == 1).all()
    # every other idempotent row was retried to success; nothing failed
    assert set(np.unique(status)) <= {"success", "unknown"}
    assert (status[~non_idempotent(df) & ~held] == "success").all()
    assert result["error"][unknown].str.contains("may have been applied").all()
    assert result["error"][held & ~non_idempotent(df)].str.contains("a later row").all()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", list(AMBIGUOUS_FAULTS))
def test_retry_ambiguous_applies_every_row_at_least_once(
    sb: Sandbox, df: pd.DataFrame, fault: str
) -> None:
    faults, answered = AMBIGUOUS_FAULTS[fault]
    sb.set_faults(**faults)
    result = send(df, sb.url, max_retries=30, retry_ambiguous=True)

    counts = applied_counts(df, sb.applied)
    assert check_result(result, df, counts, retry_ambiguous=True) == []
    # every row is retried but those that a later row of their user may have overtaken
    held = by_marker(df, not_last_of_user(sb.requests, {answered}))
    status = result["status"].to_numpy(dtype=object)
    assert held.any()
    assert rows(df, status == "unknown") == rows(df, held)
    assert (status[~held] == "success").all()
    assert (counts >= 1).all()
    twice = counts > 1  # what the user asked for: some non-idempotent rows applied twice
    ambiguous = by_marker(df, markers_in(sb.requests, {answered}))
    assert twice.any() and rows(df, twice) <= rows(df, ambiguous)


# ------------------------------------------------------------------------------------ timeouts
def lower_latency_later(sb: Sandbox, after: float) -> threading.Timer:
    timer = threading.Timer(after, lambda: sb.set_faults(latency=0.0))
    timer.start()
    return timer


@pytest.mark.timeout(60)
@pytest.mark.parametrize("retry_ambiguous", [False, True], ids=["default", "retry_ambiguous"])
def test_read_timeouts(sb: Sandbox, df: pd.DataFrame, retry_ambiguous: bool) -> None:
    # The sandbox answers after 0.6 s (and applies then); the client waits 0.2 s. After 1 s the
    # sandbox is fast again: the requests sent by then timed out, later ones succeed.
    sb.set_faults(latency=0.6)
    timer = lower_latency_later(sb, 1.0)
    try:
        result = send(df, sb.url, timeout=0.2, max_retries=30, retry_ambiguous=retry_ambiguous)
    finally:
        timer.join()
    time.sleep(0.7)  # let the requests the client gave up on finish applying

    counts = applied_counts(df, sb.applied)
    assert check_result(result, df, counts, retry_ambiguous=retry_ambiguous) == []
    status = result["status"].to_numpy(dtype=object)
    timed_out = result["attempts"].to_numpy() > 1
    assert timed_out.any()
    unknown = status == "unknown"
    # An idempotent row ends unknown only when a later row of its user shared its request (a
    # retry would land after that row); every unknown row was applied once, by the sandbox,
    # after the client gave up.
    shared = by_marker(df, not_last_of_user(sb.requests, {200}))
    assert (counts[unknown] == 1).all()
    assert result["error"][unknown].str.contains("read timeout").all()
    assert not (unknown & ~non_idempotent(df) & ~shared).any()
    assert set(np.unique(status)) <= {"success", "unknown"}
    if retry_ambiguous:
        assert (counts >= 1).all()
    else:
        assert unknown.any()


# ------------------------------------------------------------------------------------ 429
@pytest.mark.timeout(60)
def test_429_on_1_percent_of_ids_pauses_them_several_times(sb: Sandbox, df: pd.DataFrame) -> None:
    users = df["uid"].drop_duplicates().tolist()
    rng = np.random.default_rng(3)
    picked = rng.choice(len(users), size=len(users) // 100, replace=False)
    transient = [users[i] for i in picked[:-5]]  # three 429s each, then accepted
    persistent = [users[i] for i in picked[-5:]]  # throttled for good
    for user in transient:
        sb.throttle(user_ids=user, requests=3)
    sb.throttle(user_ids=persistent)
    pause = 0.2
    started = time.monotonic()
    result = send(df, sb.url, throttle_pause=pause, throttle_budget=1.0, batch_size=250)
    elapsed = time.monotonic() - started

    counts = applied_counts(df, sb.applied)
    assert check_result(result, df, counts, ambiguity=False) == []
    status = result["status"]
    in_transient = df["uid"].isin(transient).to_numpy()
    in_persistent = df["uid"].isin(persistent).to_numpy()
    assert (status[in_persistent] == "throttled").all()
    assert (counts[in_persistent] == 0).all()
    assert result["error"][in_persistent].str.contains("throttle_budget").all()
    assert (status[~in_persistent] == "success").all()
    # three 429s and three pauses at least (a row that shared its requests with a persistently
    # throttled id is sent once more, at once, when the 429 stops naming its own id)
    assert (result["attempts"][in_transient] >= 4).all()
    assert (result["attempts"][in_transient] <= 5).all()
    assert elapsed >= 3 * pause
    assert sum(r.status == 429 for r in sb.requests) >= 3


# ------------------------------------------------------------------------------------ 413
@pytest.mark.timeout(60)
def test_413_splits_and_fails_only_rows_too_large_alone(sb: Sandbox, df: pd.DataFrame) -> None:
    frame = df.copy()
    big = np.zeros(N, dtype=bool)
    big[np.random.default_rng(5).choice(N, size=20, replace=False)] = True
    for name in ("bio1", "bio2", "bio3"):
        frame[name] = np.where(big, "x" * 1000, None)
    mapping = {**MAPPING, "set": {**MAPPING["set"], "bio1": "bio1", "bio2": "bio2", "bio3": "bio3"}}
    sb.set_faults(max_body_bytes=3_000)
    result = send(frame, sb.url, mapping=mapping, batch_size=500)

    counts = applied_counts(frame, sb.applied)
    assert check_result(result, frame, counts, ambiguity=False) == []
    status = result["status"]
    assert (status[big] == "failed").all() and (counts[big] == 0).all()
    assert result["error"][big].str.contains("413").all()
    assert (result["http_status"][big] == 413).all()
    assert (status[~big] == "success").all()
    assert all(r.bytes <= 3_000 for r in sb.requests if r.status == 200)


# ------------------------------------------------------------------------------------ 400
@pytest.mark.timeout(60)
def test_400_poison_rows_in_large_chunks_fail_alone(sb: Sandbox, df: pd.DataFrame) -> None:
    users = df["uid"].drop_duplicates().to_numpy()
    poison = set(np.random.default_rng(11).choice(users, size=30, replace=False).tolist())
    sb.set_faults(reject_ids=poison)
    result = send(df, sb.url, batch_size=1000)

    counts = applied_counts(df, sb.applied)
    assert check_result(result, df, counts, ambiguity=False) == []
    bad = df["uid"].isin(poison).to_numpy()
    status = result["status"]
    assert (status[bad] == "failed").all() and (counts[bad] == 0).all()
    assert result["error"][bad].str.contains("reject_ids").all()
    assert (result["http_status"][bad] == 400).all()
    assert (status[~bad] == "success").all()
    # bisection, not one request per row: about 2 * log2(1000) requests per poison id at most
    assert len(sb.requests) <= 5 + 30 * 2 * 11


# ------------------------------------------------------------------------------------ bad key
@pytest.mark.timeout(60)
def test_invalid_key_stops_at_once_and_applies_nothing(sb: Sandbox, df: pd.DataFrame) -> None:
    with pytest.raises(AuthenticationError) as info:
        send(df, sb.url, key="not-the-sandbox-key-0000")
    result = info.value.result
    assert result is not None

    counts = applied_counts(df, sb.applied)
    assert check_result(result, df, counts, ambiguity=False) == []
    assert (counts == 0).all()
    status = result["status"].to_numpy(dtype=object)
    assert set(np.unique(status)) <= {"failed", "not_sent"}
    # 'failed' for the rows of the requests the sandbox refused (100 each); the rest never left
    refused = [r for r in sb.requests if r.status == 400]
    assert len(refused) == len(sb.requests) <= 4  # what was in flight: no retry, no bisection
    assert (status == "failed").sum() == 100 * len(refused)
    assert (result["attempts"][status == "not_sent"] == 0).all()


# ------------------------------------------------------------------------------------ down
def stopped_sandbox() -> Sandbox:
    sandbox = Sandbox(api_key=KEY, seed=7).start()
    sandbox.stop()  # the port is known and nothing listens on it
    return sandbox


@pytest.mark.timeout(60)
def test_sandbox_not_running_at_start(df: pd.DataFrame) -> None:
    down = stopped_sandbox()
    result = send(df, down.url, max_retries=2)

    counts = applied_counts(df, down.applied)
    assert check_result(result, df, counts, ambiguity=False) == []
    assert summary(result) == {"failed": N}
    assert result["error"].str.contains("connection refused").all()
    assert (result["attempts"] == 3).all()


@pytest.mark.timeout(60)
def test_sandbox_starting_during_the_retries(df: pd.DataFrame) -> None:
    down = stopped_sandbox()
    timer = threading.Timer(0.3, down.start)
    timer.start()
    try:
        result = send(df, down.url, max_retries=30, backoff=0.02, backoff_max=0.2)
    finally:
        timer.join()
        down.stop()

    counts = applied_counts(df, down.applied)
    assert check_result(result, df, counts, ambiguity=False) == []
    assert summary(result) == {"success": N}
    assert (counts == 1).all()


@pytest.mark.timeout(60)
def test_sandbox_stopped_mid_run_then_resumed(df: pd.DataFrame) -> None:
    sb = Sandbox(api_key=KEY, seed=7, latency=0.02).start()
    batch, workers = 50, 4

    def stop_after_some_requests() -> None:
        while len(sb.requests) < 20:
            time.sleep(0.005)
        sb.stop()

    stopper = threading.Thread(target=stop_after_some_requests)
    stopper.start()
    try:
        result = send(df, sb.url, max_retries=2, batch_size=batch, max_workers=workers)
    finally:
        stopper.join()

    counts = applied_counts(df, sb.applied)
    assert check_result(result, df, counts) == []
    status = result["status"].to_numpy(dtype=object)
    assert set(np.unique(status)) <= {"success", "failed", "unknown"}
    assert (status == "failed").any() and (status == "success").any()
    # Only requests in flight when the sandbox stopped (or written to a connection it had just
    # closed, one per worker) can be ambiguous.
    unknown = status == "unknown"
    assert unknown.sum() <= 2 * batch * workers
    assert (counts[unknown] <= 1).all()
    assert result["error"][unknown].str.contains("may have been applied").all()

    # Nothing is lost: re-send what certainly was not applied; 'unknown' rows are left alone.
    again = df[status == "failed"]
    with sb:
        second = send(again, sb.url, max_retries=2, batch_size=batch, max_workers=workers)
    assert summary(second) == {"success": len(again)}
    counts = applied_counts(df, sb.applied)
    final = pd.Series(status, index=df.index)
    final[again.index] = second["status"]
    assert ((final == "success") | (final == "unknown")).all()
    assert (counts[final.to_numpy() == "success"] == 1).all()
    assert (counts[final.to_numpy() == "unknown"] <= 1).all()


# ------------------------------------------------------------------------------------ honesty
# A row whose earlier request was applied but answered 500 is retried (it is idempotent). If the
# retry is then refused (400 for the row alone, 413 even alone, the key rejected), the row must
# not end 'failed' ("not applied"): it was applied. 'unknown' is the honest status.
def switch_after_first_request(sb: Sandbox, change: str) -> tuple[threading.Thread, list[Sandbox]]:
    replacement: list[Sandbox] = []

    def watch() -> None:
        while not sb.requests:
            time.sleep(0.001)
        if change == "400 for the row alone":
            sb.set_faults(rate_500_after_apply=0.0, reject_ids={"user-000001"})
        elif change == "413 even alone":
            sb.set_faults(rate_500_after_apply=0.0, max_body_bytes=200)
        else:  # the key is revoked: the same port now answers 400 Invalid API key
            port = sb.port
            sb.stop()
            replacement.append(Sandbox(api_key="another-key-000000000", port=port).start())

    thread = threading.Thread(target=watch)
    thread.start()
    return thread, replacement


@pytest.mark.timeout(30)
@pytest.mark.parametrize("change", ["400 for the row alone", "413 even alone", "key rejected"])
def test_a_row_applied_by_an_earlier_attempt_never_ends_failed(change: str) -> None:
    frame = pd.DataFrame({"uid": ["user-000001"], "plan": ["pro"]}, index=["only"])
    sb = Sandbox(api_key=KEY, rate_500_after_apply=1.0).start()
    watcher, replacement = switch_after_first_request(sb, change)
    try:
        # backoff up to 0.3 s (full jitter): the retries go on until the watcher made its change
        options: dict[str, Any] = {
            "mapping": {"user_id": "uid", "set": ["plan"]}, "backoff": 0.3, "backoff_max": 0.3,
        }
        if change == "key rejected":
            with pytest.raises(AuthenticationError) as info:
                send(frame, sb.url, **options)
            result = info.value.result
        else:
            result = send(frame, sb.url, **options)
    finally:
        watcher.join()
        sb.stop()
        for other in replacement:
            other.stop()
    # the first attempt applied it (a retry that left before the change did too: idempotent)
    assert sb.applied_counts().to_dict().get("user-000001", 0) >= 1
    assert result["attempts"].tolist()[0] >= 2
    assert result["status"].tolist() == ["unknown"], result["error"].tolist()
