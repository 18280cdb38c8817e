"""Sending over real HTTP to the bundled sandbox: every response path, order, retries.

Waits are shortened through the settings (``backoff``, ``throttle_pause``...), never skipped.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from amp_pandas._config import SendSettings, resolve_settings
from amp_pandas._payloads import Ids, TextPayloads
from amp_pandas._plan import INVALID, SKIPPED, VALID, Plan, empty_problems
from amp_pandas._send import send_plan
from amp_pandas.errors import MissingApiKeyError, RowsNotSucceededWarning
from amp_pandas.sandbox import Sandbox

KEY = "sandbox-key-0123456789"


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(api_key=KEY, seed=0) as sandbox:
        yield sandbox


def settings(sb: Sandbox | None = None, url: str | None = None, **options: Any) -> SendSettings:
    options = {"progress": False, "backoff": 0.001, "backoff_max": 0.01, **options}
    return resolve_settings(api_key=KEY, server_url=url or sb.url, **options)  # type: ignore[union-attr]


def sets(users: list[str], **extra: Any) -> list[dict[str, Any]]:
    return [
        {"user_id": u, "user_properties": {"$set": {"n": i}}, **extra} for i, u in enumerate(users)
    ]


def applied_rows(sb: Sandbox, key: str = "row") -> list[int]:
    """Row numbers (carried in a ``row`` property) of the identifications the sandbox applied."""
    out = []
    for ident in sb.applied:
        props = ident["user_properties"]
        for op in props.values():
            if key in op:
                out.append(op[key] if not isinstance(op[key], list) else op[key][0])
    return out


# ---------------------------------------------------------------- 200
def test_every_row_posted_as_multipart_and_succeeds(sb: Sandbox) -> None:
    users = [f"user-{i % 50:03d}" for i in range(250)]
    ids = [{"user_id": u, "user_properties": {"$set": {"row": i}}} for i, u in enumerate(users)]
    index = pd.Index([f"r{i}" for i in range(250)], name="label")
    result = send_plan(
        Plan.from_identifications(ids, index=index), settings(sb, batch_size=40, max_workers=4)
    )

    assert result.index.equals(index)
    assert (result.status == "success").all()
    assert result.http_status.tolist() == [200] * 250
    assert result.attempts.tolist() == [1] * 250
    assert result.error.isna().all()
    records = sb.requests
    assert {r.method for r in records} == {"POST"}
    assert {r.path for r in records} == {"/identify"}
    assert all(r.content_type.startswith("multipart/form-data; boundary=") for r in records)
    assert sum(r.count for r in records) == 250 and max(r.count for r in records) <= 40
    assert sb.profiles().loc["user-007", "row"] == 207  # the last row of that user wins


def test_empty_and_all_invalid_plans_send_nothing(sb: Sandbox) -> None:
    plan = Plan.from_identifications([])
    assert len(send_plan(plan, settings(sb))) == 0
    assert sb.requests == []


# ---------------------------------------------------------------- order per lane
def test_lane_order_holds_under_concurrency_retries_and_splits(sb: Sandbox) -> None:
    # 30 users x 20 rows, interleaved: every lane spans several requests of 16; 503s force
    # retries and a limit of 12 identifications forces 413 splits. $append keeps the history.
    sb.set_faults(rate_503=0.3, max_identifications=12, latency=0.002)
    n_users, per_user = 30, 20
    ids = [
        {"user_id": f"user-{i % n_users:03d}", "user_properties": {"$append": {"seq": i}}}
        for i in range(n_users * per_user)
    ]
    result = send_plan(
        Plan.from_identifications(ids), settings(sb, batch_size=16, max_workers=6, max_retries=50)
    )

    assert (result.status == "success").all()
    assert (result.attempts > 1).any()  # retries and splits did happen
    assert any(r.status == 413 for r in sb.requests) and any(r.status == 503 for r in sb.requests)
    profiles = sb.profiles()
    for u in range(n_users):
        expected = list(range(u, n_users * per_user, n_users))
        assert profiles.loc[f"user-{u:03d}", "seq"] == expected


def test_rows_linked_by_device_id_share_a_lane(sb: Sandbox) -> None:
    # user-a's rows and device-x's rows are one lane (row 1 links them): order holds across both.
    sb.set_faults(rate_503=0.4)
    ids = []
    for i in range(60):
        ident: dict[str, Any] = {"user_properties": {"$append": {"seq": i}}}
        if i % 3 == 0:
            ident["user_id"] = "user-aaa"
        elif i % 3 == 1:
            ident.update(user_id="user-aaa", device_id="device-xxx")
        else:
            ident["device_id"] = "device-xxx"
        ids.append(ident)
    plan = Plan.from_identifications(ids)
    assert len(set(plan.lane.tolist())) == 1
    result = send_plan(plan, settings(sb, batch_size=7, max_workers=6, max_retries=50))
    assert (result.status == "success").all()
    assert sb.profile("user-aaa")["seq"] == list(range(60))


# ---------------------------------------------------------------- 413
def test_413_splits_until_requests_fit(sb: Sandbox) -> None:
    sb.set_faults(max_body_bytes=3_000)
    ids = [
        {"user_id": f"user-{i:04d}", "user_properties": {"$set": {"row": i, "pad": "x" * 60}}}
        for i in range(120)
    ]
    result = send_plan(Plan.from_identifications(ids), settings(sb, batch_size=60))
    assert (result.status == "success").all()
    assert any(r.status == 413 for r in sb.requests)
    assert sorted(applied_rows(sb)) == list(range(120))  # each applied once
    assert all(r.bytes <= 3_000 for r in sb.requests if r.status == 200)


def test_identification_too_large_alone_fails(sb: Sandbox) -> None:
    sb.set_faults(max_body_bytes=3_000)
    ids = sets([f"user-{i:04d}" for i in range(10)])
    ids[4]["user_properties"]["$set"]["blob"] = "y" * 5_000
    with pytest.warns(RowsNotSucceededWarning, match="1 failed"):
        result = send_plan(Plan.from_identifications(ids), settings(sb))
    assert result.status.tolist() == ["success"] * 4 + ["failed"] + ["success"] * 5
    assert result.http_status[4] == 413
    assert result.error[4].startswith("too large for Amplitude (HTTP 413) even alone")
    assert "user-0004" not in sb.applied_counts().index


# ---------------------------------------------------------------- 400
def test_400_bisection_isolates_the_bad_rows(sb: Sandbox) -> None:
    sb.set_faults(reject_ids={"user-poison"})
    users = [f"user-{i:04d}" for i in range(128)]
    users[5] = users[77] = "user-poison"
    ids = [{"user_id": u, "user_properties": {"$set": {"row": i}}} for i, u in enumerate(users)]
    with pytest.warns(RowsNotSucceededWarning, match="2 failed"):
        result = send_plan(Plan.from_identifications(ids), settings(sb, batch_size=64))

    bad = result[result.status != "success"]
    assert bad.index.tolist() == [5, 77]
    assert (bad.status == "failed").all() and (bad.http_status == 400).all()
    for reason in bad.error:
        assert reason.startswith("rejected by Amplitude (HTTP 400): ")
        assert "user-poison" in reason  # Amplitude's own message
    good = sorted(set(range(128)) - {5, 77})
    assert sorted(applied_rows(sb)) == good  # each good row applied exactly once
    # bisection, not one request per row: ~2 * log2(64) requests per bad row, plus the rest
    assert len(sb.requests) <= 2 + 2 * 2 * 6


# ---------------------------------------------------------------- 429
def test_throttled_ids_pause_while_the_others_finish(sb: Sandbox) -> None:
    sb.throttle(user_ids=["user-hot"], seconds=0.6)
    users = [f"user-{i % 30:03d}" for i in range(300)]
    for i in range(0, 300, 30):
        users[i] = "user-hot"  # 10 hot rows, spread over the requests
    ids = [{"user_id": u, "user_properties": {"$append": {"row": i}}} for i, u in enumerate(users)]
    hot = [i for i, u in enumerate(users) if u == "user-hot"]
    others = len(users) - len(hot)
    events: list[tuple[float, dict[str, int], str | None]] = []
    start = time.monotonic()

    def callback(counts: dict[str, int], waiting: str | None) -> None:
        events.append((time.monotonic() - start, counts, waiting))

    pause = 1.0
    result = send_plan(
        Plan.from_identifications(ids),
        settings(sb, batch_size=20, max_workers=4, throttle_pause=pause),
        progress_callback=callback,
    )

    assert (result.status == "success").all()
    assert (result.attempts[hot] == 2).all()  # one 429, then accepted
    others_done = next(t for t, c, _ in events if c["success"] >= others)
    all_done = events[-1][0]
    assert others_done < pause  # the others did not wait for the pause
    assert all_done >= pause  # the hot id did
    assert any(w == "waiting 1s for 1 throttled id" for _, _, w in events)
    order = [ident["user_id"] for ident in sb.applied]
    assert set(order[:others]) == set(users) - {"user-hot"}  # every other row first
    assert sb.profile("user-hot")["row"] == hot  # and the hot user's rows in row order
    # a 429 applies nothing; the other rows of those requests were resent at once
    throttled_requests = [r for r in sb.requests if r.status == 429]
    assert throttled_requests and not any(r.applied for r in throttled_requests)


def test_rows_resumed_after_a_pause_go_out_together(sb: Sandbox) -> None:
    """Ids throttled in many requests resume in as few requests as fit, not one apiece."""
    users = [f"user-{i:04d}" for i in range(400)]
    hot = list(range(7, 400, 20))  # one throttled id in each request of 20
    for i in hot:
        sb.throttle(user_ids=[users[i]], requests=1)
    ids = [{"user_id": u, "user_properties": {"$set": {"row": i}}} for i, u in enumerate(users)]
    result = send_plan(
        Plan.from_identifications(ids),
        settings(sb, batch_size=20, max_workers=2, throttle_pause=1.0),
    )

    assert (result.status == "success").all()
    assert result.attempts[hot].tolist() == [2] * len(hot)
    assert sorted(applied_rows(sb)) == list(range(400))
    resumed = [
        r for r in sb.requests
        if r.status == 200 and {i["user_id"] for i in r.identifications} & {users[i] for i in hot}
    ]
    # 20 hot rows, paused by 20 different 429s, come back in a few requests, not 20: those
    # resuming within 0.1 s (RESUME_GATHER of the pause) of each other go together
    assert 1 <= len(resumed) <= 5
    assert sum(r.count for r in resumed) == len(hot)
    assert len(sb.requests) == 20 + 20 + len(resumed)  # originals, their resent others, resumed


def test_coalesced_rows_respect_the_batch_size_and_lane_order(sb: Sandbox) -> None:
    """A hot user's rows stay in row order across pauses, and no request exceeds batch_size."""
    users = [f"user-{i % 40:03d}" for i in range(240)]  # every user in 6 requests of 40
    sb.throttle(user_ids=["user-003", "user-017", "user-029"], requests=4)
    ids = [{"user_id": u, "user_properties": {"$append": {"row": i}}} for i, u in enumerate(users)]
    result = send_plan(
        Plan.from_identifications(ids),
        settings(sb, batch_size=8, max_workers=3, throttle_pause=0.05),
    )

    assert (result.status == "success").all()
    assert max(r.count for r in sb.requests) <= 8
    for u in ("user-003", "user-017", "user-029", "user-000"):
        assert sb.profile(u)["row"] == [i for i, x in enumerate(users) if x == u]


def test_throttle_budget_ends_rows_throttled(sb: Sandbox) -> None:
    sb.throttle(user_ids=["user-hot"])  # until cleared
    users = ["user-hot" if i % 5 == 0 else f"user-{i:03d}" for i in range(50)]
    start = time.monotonic()
    with pytest.warns(RowsNotSucceededWarning, match="10 throttled"):
        result = send_plan(
            Plan.from_identifications(sets(users)),
            settings(sb, batch_size=10, throttle_pause=0.1, throttle_budget=0.35),
        )
    assert time.monotonic() - start < 2
    hot = result.iloc[::5]
    assert (hot.status == "throttled").all() and (hot.http_status == 429).all()
    assert hot.error.str.contains("throttle_budget=0.35 s").all()
    assert hot.attempts.between(3, 5).all()  # paused 0.1 s a few times within 0.35 s
    assert (result.drop(hot.index).status == "success").all()
    assert "user-hot" not in sb.applied_counts().index


def test_a_long_list_of_throttled_ids_is_read_whole(sb: Sandbox) -> None:
    """A 429 naming 400 ids has a body of ~15 KB: only those ids pause, the others go at once."""
    users = [f"user-with-a-rather-long-id-{i:05d}" for i in range(1000)]
    hot = [u for i, u in enumerate(users) if i % 5 < 2]
    sb.throttle(user_ids=hot, requests=1)
    result = send_plan(
        Plan.from_identifications(sets(users)),
        settings(sb, batch_size=1000, max_workers=1, throttle_pause=0.2),
    )
    assert (result.status == "success").all()
    records = sb.requests
    assert [(r.status, r.count) for r in records] == [(429, 1000), (200, 600), (200, 400)]
    assert {i["user_id"] for i in records[2].identifications} == set(hot)


def test_429_without_a_list_of_ids_pauses_the_whole_request(sb: Sandbox) -> None:
    sb.throttle(user_ids=["user-hot"], requests=1, json_body=False)
    users = ["user-hot"] + [f"user-{i:03d}" for i in range(1, 30)]
    result = send_plan(
        Plan.from_identifications(sets(users)), settings(sb, batch_size=10, throttle_pause=0.05)
    )
    assert (result.status == "success").all()
    (throttled,) = [r for r in sb.requests if r.status == 429]
    in_it = {ident["user_id"] for ident in throttled.identifications}
    assert "user-hot" in in_it and len(in_it) == 10
    assert result.attempts.tolist() == [2 if u in in_it else 1 for u in users]


# ---------------------------------------------------------------- ambiguous: 500, dropped
AMBIGUOUS_FAULTS = [
    ("rate_500_after_apply", "HTTP 500"),
    ("rate_drop_after_apply", "connection closed before an answer arrived"),
]


def _mixed_rows(n: int = 60) -> list[dict[str, Any]]:
    """One row per user; even rows $add (not idempotent), odd rows $set."""
    return [
        {"user_id": f"user-add-{i:03d}", "user_properties": {"$add": {"logins": 1}}}
        if i % 2 == 0
        else {"user_id": f"user-set-{i:03d}", "user_properties": {"$set": {"plan": "pro"}}}
        for i in range(n)
    ]


@pytest.mark.parametrize("fault, why", AMBIGUOUS_FAULTS)
def test_ambiguous_outcomes_retry_only_idempotent_rows(sb: Sandbox, fault: str, why: str) -> None:
    sb.set_faults(**{fault: 0.4})
    ids = _mixed_rows()
    with pytest.warns(RowsNotSucceededWarning, match="unknown"):
        result = send_plan(
            Plan.from_identifications(ids),
            settings(sb, batch_size=6, max_workers=3, max_retries=30),
        )
    adds, set_rows = result.iloc[::2], result.iloc[1::2]
    assert (set_rows.status == "success").all()
    assert (set_rows.attempts > 1).any()  # some $set rows were retried to success
    assert set(adds.status) == {"success", "unknown"}
    unknown = adds[adds.status == "unknown"]
    assert (unknown.attempts == 1).all()  # never retried
    assert unknown.error.eq(
        f"may have been applied ({why}); not retried because it holds "
        "$add/$append/$prepend — pass retry_ambiguous=True to retry"
    ).all()
    counts = sb.applied_counts()
    add_counts = counts[counts.index.str.startswith("user-add")]
    assert (add_counts == 1).all() and len(add_counts) == 30  # applied once: never twice
    assert (sb.profiles().filter(like="user-add", axis=0)["logins"] == 1).all()


def test_retry_ambiguous_true_retries_every_row(sb: Sandbox) -> None:
    sb.set_faults(rate_500_after_apply=0.4)
    result = send_plan(
        Plan.from_identifications(_mixed_rows()),
        settings(sb, batch_size=6, retry_ambiguous=True, max_retries=30),
    )
    assert (result.status == "success").all()
    counts = sb.applied_counts()
    # ... which is why it is off by default: some $add rows were applied twice
    assert counts[counts.index.str.startswith("user-add")].max() >= 2


def test_ambiguous_until_retries_run_out_is_unknown(sb: Sandbox) -> None:
    sb.set_faults(rate_500_after_apply=1.0)
    with pytest.warns(RowsNotSucceededWarning, match="4 unknown"):
        result = send_plan(
            Plan.from_identifications(sets([f"user-{i:03d}" for i in range(4)])),
            settings(sb, max_retries=2),
        )
    assert (result.status == "unknown").all()
    assert result.attempts.tolist() == [3] * 4 and result.http_status.tolist() == [500] * 4
    assert (
        result.error[0] == "may have been applied (HTTP 500); still no clear answer after 2 retries"
    )


# ---------------------------------------------------------------- 503, no server
def test_503_retried_with_backoff_until_success(sb: Sandbox) -> None:
    sb.set_faults(rate_503=0.5)
    result = send_plan(
        Plan.from_identifications(sets([f"user-{i:03d}" for i in range(100)])),
        settings(sb, batch_size=5, max_retries=40),
    )
    assert (result.status == "success").all() and (result.http_status == 200).all()
    assert (result.attempts > 1).any()
    assert (sb.applied_counts() == 1).all() and len(sb.applied_counts()) == 100


def test_503_until_retries_run_out_fails(sb: Sandbox) -> None:
    sb.set_faults(rate_503=1.0)
    with pytest.warns(RowsNotSucceededWarning, match="5 failed"):
        result = send_plan(
            Plan.from_identifications(sets([f"user-{i:03d}" for i in range(5)])),
            settings(sb, max_retries=2),
        )
    assert (result.status == "failed").all() and (result.http_status == 503).all()
    assert result.attempts.tolist() == [3] * 5
    assert result.error[0] == "HTTP 503 (not applied); gave up after 2 retries"
    assert len(sb.requests) == 3 and sb.applied == []


def test_backoff_grows_with_full_jitter() -> None:
    # no server: connection refused each time; the delays add up to roughly the backoff sum
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/identify"
    sock.close()
    start = time.monotonic()
    with pytest.warns(RowsNotSucceededWarning):
        result = send_plan(
            Plan.from_identifications(sets(["user-001"])),
            settings(url=url, max_retries=4, backoff=0.05, backoff_max=0.1),
        )
    elapsed = time.monotonic() - start
    # full jitter: each delay uniform in [0, min(0.1, 0.05 * 2**n)] -> at most 0.05+0.1*3
    assert elapsed < 0.35 + 0.5
    assert result.attempts[0] == 5


def test_server_not_running_fails_with_connection_refused(sb: Sandbox) -> None:
    url = sb.url
    sb.stop()
    with pytest.warns(RowsNotSucceededWarning, match="3 failed"):
        result = send_plan(
            Plan.from_identifications(sets(["user-001", "user-002", "user-003"])),
            settings(url=url, max_retries=1),
        )
    assert (result.status == "failed").all()
    assert result.http_status.isna().all()
    assert result.attempts.tolist() == [2, 2, 2]
    assert result.error[0] == "connection refused; gave up after 1 retry"


# ---------------------------------------------------------------- other answers
def test_other_statuses_fail_with_an_excerpt(sb: Sandbox) -> None:
    with pytest.warns(RowsNotSucceededWarning):
        result = send_plan(
            Plan.from_identifications(sets(["user-001"])),
            settings(url=sb.url.replace("/identify", "/nowhere")),
        )
    assert result.status[0] == "failed" and result.http_status[0] == 404
    assert result.error[0].startswith("HTTP 404: no such endpoint '/nowhere'")
    assert result.attempts[0] == 1


# ---------------------------------------------------------------- before any request
def test_missing_key_raises_before_any_request(sb: Sandbox, monkeypatch) -> None:
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)
    s = resolve_settings(server_url=sb.url, progress=False)
    with pytest.raises(MissingApiKeyError, match="api_key="):
        send_plan(Plan.from_identifications(sets(["user-001"])), s)
    assert sb.requests == []


def test_invalid_and_skipped_rows_keep_their_reasons(sb: Sandbox) -> None:
    payload = np.array(
        ['{"user_id":"user-001","user_properties":{"$set":{"a":1}}}', None, None], dtype=object
    )
    plan = Plan.from_parts(
        index=pd.Index(["x", "y", "z"]),
        state=np.array([VALID, INVALID, SKIPPED], dtype=np.int8),
        payload=TextPayloads(payload),
        user_id=Ids.from_strings(np.array(["user-001", None, None], dtype=object)),
        device_id=Ids.none(3),
        idempotent=np.ones(3, dtype=bool),
        reason=np.array(
            [None, "user_id: 'null' is not a valid id", "nothing to send"], dtype=object
        ),
        problems=empty_problems(),
    )
    with pytest.warns(RowsNotSucceededWarning, match=r"1 of 3 rows did not succeed \(1 invalid\)"):
        result = send_plan(plan, settings(sb))
    assert result.status.tolist() == ["success", "invalid", "skipped"]
    assert result.error.tolist()[1:] == ["user_id: 'null' is not a valid id", "nothing to send"]
    assert result.attempts.tolist() == [1, 0, 0]
    assert sum(r.count for r in sb.requests) == 1


# ---------------------------------------------------------------- the session
class CountingSession:
    """A real ``requests.Session`` that remembers how it was used."""

    def __new__(cls):  # type: ignore[misc]
        import requests

        class _S(requests.Session):
            def __init__(self) -> None:
                super().__init__()
                self.calls: list[dict[str, Any]] = []
                self.closed = False

            def post(self, url, **kwargs):  # type: ignore[override]
                self.calls.append(
                    {"url": url, **{k: kwargs[k] for k in ("timeout", "verify", "allow_redirects")}}
                )
                return super().post(url, **kwargs)

            def close(self) -> None:
                self.closed = True
                super().close()

        return _S()


def test_a_passed_session_is_used_kept_open_and_verifies_tls(sb: Sandbox) -> None:
    session = CountingSession()
    session.verify = False  # amp_pandas never sends with TLS verification off
    result = send_plan(
        Plan.from_identifications(sets([f"user-{i:03d}" for i in range(30)])),
        settings(sb, session=session, batch_size=10, timeout=7),
    )
    assert (result.status == "success").all()
    assert len(session.calls) == 3 and not session.closed
    assert all(
        c == {"url": sb.url, "timeout": 7.0, "verify": True, "allow_redirects": False}
        for c in session.calls
    )


def test_rows_that_may_have_been_applied_never_end_failed(sb: Sandbox) -> None:
    """500 (applied) first, then only 503s: the rows end unknown, not failed."""
    import requests

    class FlipSession(requests.Session):
        def post(self, url, **kwargs):  # type: ignore[no-untyped-def, override]
            answer = super().post(url, **kwargs)
            sb.set_faults(rate_500_after_apply=0.0, rate_503=1.0)  # from now on: 503
            return answer

    sb.set_faults(rate_500_after_apply=1.0)
    with pytest.warns(RowsNotSucceededWarning, match="2 unknown"):
        result = send_plan(
            Plan.from_identifications(sets(["user-001", "user-002"])),
            settings(sb, session=FlipSession(), max_retries=2),
        )
    assert (result.status == "unknown").all() and (result.http_status == 503).all()
    assert result.error[0] == (
        "an earlier attempt may have been applied; then HTTP 503 (not applied); "
        "gave up after 2 retries"
    )
    assert [r.status for r in sb.requests] == [500, 503, 503]
    assert (sb.applied_counts() == 1).all()


# ---------------------------------------------------------------- request bodies
def test_a_boundary_found_in_the_body_is_replaced_in_body_and_header_alike() -> None:
    from amp_pandas._encode import encode_request
    from amp_pandas.sandbox._parse import parse_multipart

    array = b'[{"user_id":"user-b0undary-1","user_properties":{"$set":{"a":1}}}]'
    body, kind = encode_request(KEY, array, b"b0undary")
    assert kind.startswith("multipart/form-data; boundary=") and "b0undary" not in kind
    boundary = kind.split("boundary=", 1)[1].encode()
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"--" + boundary + b"--\r\n")
    params, problem = parse_multipart(body, kind)  # what a server makes of it
    assert problem is None and params == {"api_key": KEY, "identification": array.decode()}


# ---------------------------------------------------------------- the 1 MB request budget
@pytest.mark.parametrize("batch_size", [1000, 2000])
def test_requests_stay_under_the_1_mb_body_limit(sb: Sandbox, batch_size: int) -> None:
    """Rows of ~2.5 KB: a request of ``batch_size`` rows would be 2.5-5 MB. Batching must cut
    by bytes, so that Amplitude's 413 never happens (the sandbox holds the real 1 MB limit)."""
    from amp_pandas._amplitude import MAX_BODY_BYTES

    assert sb.faults["max_body_bytes"] == MAX_BODY_BYTES == 1_000_000
    n, pad = 2000, "x" * 2500
    ids = [
        {"user_id": f"user-{i % 700:04d}", "user_properties": {"$set": {"row": i, "pad": pad}}}
        for i in range(n)
    ]
    total = sum(len(str(i)) for i in ids)  # a rough lower bound of the JSON bytes
    assert total > 4 * MAX_BODY_BYTES
    result = send_plan(Plan.from_identifications(ids), settings(sb, batch_size=batch_size))
    assert (result.status == "success").all()
    records = sb.requests
    assert [r.status for r in records] == [200] * len(records)  # no 413, nothing retried
    assert max(r.bytes for r in records) < MAX_BODY_BYTES
    assert sum(r.count for r in records) == n
    # ... and the requests are full, not cut needlessly small: at most one more than needed
    body = sum(r.bytes for r in records)
    assert len(records) <= body // MAX_BODY_BYTES + 2
    assert sorted(applied_rows(sb)) == list(range(n))
