"""The sender's decision table, answer by answer, without HTTP.

Every answer the send path handles is one row of a table; the expected steps are written by hand
from the README's "What happens to each answer" and "Guarantees", never computed by the code
under test.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amp_pandas._decide import Decision, Policy, RequestRows, decide, excerpt, throttled_ids
from amp_pandas._transport import Outcome

POLICY = Policy(
    max_retries=3, backoff=0.5, backoff_max=30.0, throttle_pause=15.0, throttle_budget=600.0
)
NOW = 1000.0
JITTER = 0.5  # the backoff draw: half of min(backoff_max, backoff * 2**retries)


def http(status: int, body: bytes | str = b"") -> Outcome:
    raw = body.encode() if isinstance(body, str) else body
    return Outcome("response", status=status, body=raw, detail=f"HTTP {status}")


def failure(kind: str, detail: str, retryable: bool = True) -> Outcome:
    return Outcome(kind, detail=detail, retryable=retryable)


def steps(decision: Decision) -> list[tuple[Any, ...]]:
    """The decision as plain tuples: (action, rows, status, reason, delay, retries)."""
    out = []
    for s in decision.steps:
        out.append((s.action, s.rows.tolist(), s.status, s.reason, s.delay, s.retries))
    return out


def run(answer: Outcome, rows: RequestRows, policy: Policy = POLICY) -> Decision:
    return decide(answer, rows, policy, now=NOW, jitter=JITTER)


TWO = RequestRows.of(2)  # two rows, two users, idempotent, never tried before
ONE = RequestRows.of(1, nbytes=1_234_567)
MAYBE = RequestRows.of(2, maybe_applied=[True, False])  # row 0: an earlier attempt may have landed
RETRIED = RequestRows.of(2, retries=3)  # max_retries used up
NOT_APPLIED = "HTTP 503 (not applied)"
UNKNOWN_ADD = (
    "not retried because it holds $add/$append/$prepend — pass retry_ambiguous=True to retry"
)
LATER = (
    "not retried: a later row of the same user or device may have been applied, and a retry "
    "of this row would land after it"
)

# (id, answer, rows, expected steps, maybe_applied, stop)
TABLE: list[tuple[str, Outcome, RequestRows, list[tuple[Any, ...]], bool, Any]] = [
    ("200", http(200, "success"), TWO, [("final", [0, 1], "success", None, 0.0, 0)], False, None),
    ("204", http(204), TWO, [("final", [0, 1], "success", None, 0.0, 0)], False, None),
    (
        "400 key rejected, plain body",
        http(400, "Invalid API key"),
        TWO,
        [("final", [0, 1], "failed", "Amplitude rejected the API key (HTTP 400)", 0.0, 0)],
        False,
        (400, "Invalid API key"),
    ),
    (
        "400 key rejected, JSON body",
        http(400, '{"code": 400, "error": "invalid_api_key"}'),
        TWO,
        [("final", [0, 1], "failed", "Amplitude rejected the API key (HTTP 400)", 0.0, 0)],
        False,
        (400, "invalid_api_key"),
    ),
    (
        "401 key rejected",
        http(401, "missing api_key"),
        ONE,
        [("final", [0], "failed", "Amplitude rejected the API key (HTTP 401)", 0.0, 0)],
        False,
        (401, "missing api_key"),
    ),
    (
        "403 key rejected after an ambiguous attempt",
        http(403, "API key is invalid"),
        MAYBE,
        [
            (
                "final",
                [0],
                "unknown",
                "an earlier attempt may have been applied; then Amplitude rejected the API key "
                "(HTTP 403)",
                0.0,
                0,
            ),
            ("final", [1], "failed", "Amplitude rejected the API key (HTTP 403)", 0.0, 0),
        ],
        False,
        (403, "API key is invalid"),
    ),
    (
        "401 without a key message",
        http(401, "Unauthorized"),
        ONE,
        [("final", [0], "failed", "HTTP 401: Unauthorized", 0.0, 0)],
        False,
        None,
    ),
    (
        "403 without a key message",
        http(403, '{"code": 403, "error": "forbidden"}'),
        ONE,
        [("final", [0], "failed", "HTTP 403: forbidden", 0.0, 0)],
        False,
        None,
    ),
    ("400, several rows: bisect", http(400, '{"error": "invalid id"}'), TWO,
     [("split", [0, 1], None, None, 0.0, 0)], False, None),
    (
        "400, one row",
        http(400, '{"code": 400, "error": "invalid id", "missing_field": "user_id"}'),
        ONE,
        [(
            "final", [0], "failed",
            'rejected by Amplitude (HTTP 400): invalid id {"missing_field": "user_id"}', 0.0, 0,
        )],
        False,
        None,
    ),
    (
        "400, one row that may have landed before",
        http(400, "bad"),
        RequestRows.of(1, maybe_applied=True),
        [(
            "final", [0], "unknown",
            "an earlier attempt may have been applied; then rejected by Amplitude (HTTP 400): bad",
            0.0, 0,
        )],
        False,
        None,
    ),
    ("413, several rows: split", http(413, "too large"), TWO,
     [("split", [0, 1], None, None, 0.0, 0)], False, None),
    (
        "413, one row",
        http(413, '{"code": 413, "error": "Payload too large"}'),
        ONE,
        [(
            "final", [0], "failed",
            "too large for Amplitude (HTTP 413) even alone (1,234,567 bytes): Payload too large",
            0.0, 0,
        )],
        False,
        None,
    ),
    ("414", http(414, "URI too long"), ONE,
     [("final", [0], "failed", "HTTP 414: URI too long", 0.0, 0)], False, None),
    ("418, empty body", http(418), ONE,
     [("final", [0], "failed", "HTTP 418: (empty body)", 0.0, 0)], False, None),
    ("501", http(501, "not implemented"), ONE,
     [("final", [0], "failed", "HTTP 501: not implemented", 0.0, 0)], False, None),
    (
        "429 without a body: every row paused",
        http(429, "Too many requests"),
        TWO,
        [("pause", [0, 1], None, "throttled by Amplitude (HTTP 429)", 15.0, 0)],
        False,
        None,
    ),
    (
        "429 naming one user: its lane paused, the rest resent",
        http(429, '{"code": 429, "throttled_users": {"user-0001": 31}}'),
        RequestRows.of(3, lane=[0, 1, 1], user_id=["user-0000", "user-0001", None],
                       device_id=[None, "dev-0001", "dev-0001"]),
        [
            ("resend", [0], None, None, 0.0, 0),
            ("pause", [1, 2], None, "throttled by Amplitude (HTTP 429)", 15.0, 0),
        ],
        False,
        None,
    ),
    (
        "429 naming a device",
        http(429, '{"throttled_devices": ["dev-0000"], "throttled_users": {}}'),
        RequestRows.of(2, user_id=[None, "user-0001"], device_id=["dev-0000", None]),
        [
            ("resend", [1], None, None, 0.0, 0),
            ("pause", [0], None, "throttled by Amplitude (HTTP 429)", 15.0, 0),
        ],
        False,
        None,
    ),
    (
        "429 naming ids not in the request: every row paused",
        http(429, '{"throttled_users": {"someone-else": 1}}'),
        TWO,
        [("pause", [0, 1], None, "throttled by Amplitude (HTTP 429)", 15.0, 0)],
        False,
        None,
    ),
    (
        "429 past the throttle budget",
        http(429, "slow down"),
        RequestRows.of(2, throttled_since=[NOW - 590.0, NOW - 10.0], maybe_applied=[False, True]),
        [
            (
                "final", [0], "throttled",
                "throttled by Amplitude (HTTP 429) for 590 s; waiting longer would exceed "
                "throttle_budget=600 s",
                0.0, 0,
            ),
            ("pause", [1], None, "throttled by Amplitude (HTTP 429)", 15.0, 0),
        ],
        False,
        None,
    ),
    ("503: retried after a backoff", http(503, "unavailable"), TWO,
     [("retry", [0, 1], None, NOT_APPLIED, 0.25, 1)], False, None),
    (
        "503 after retries ran out",
        http(503),
        RequestRows.of(2, retries=3, maybe_applied=[False, True]),
        [
            ("final", [1], "unknown", "an earlier attempt may have been applied; then HTTP 503 "
             "(not applied); gave up after 3 retries", 0.0, 0),
            ("final", [0], "failed", "HTTP 503 (not applied); gave up after 3 retries", 0.0, 0),
        ],
        False,
        None,
    ),
    ("connection refused", failure("not_sent", "connection refused"), TWO,
     [("retry", [0, 1], None, "connection refused", 0.25, 1)], False, None),
    (
        "connect timeout, second retry",
        failure("not_sent", "connect timeout after 3 s"),
        RequestRows.of(1, retries=2),
        [("retry", [0], None, "connect timeout after 3 s", 1.0, 3)],  # 0.5 * 0.5 * 2**2
        False,
        None,
    ),
    (
        "TLS error: not sent, no retry",
        failure("not_sent", "TLS error: certificate verify failed", retryable=False),
        ONE,
        [("final", [0], "failed", "not sent: TLS error: certificate verify failed", 0.0, 0)],
        False,
        None,
    ),
    (
        "500, idempotent rows: retried",
        http(500, "oops"),
        TWO,
        [("retry", [0, 1], None, "may have been applied (HTTP 500)", 0.25, 1)],
        True,
        None,
    ),
    (
        "502, one $add row: unknown, never retried",
        http(502),
        RequestRows.of(2, idempotent=[False, True]),
        [
            ("final", [0], "unknown", f"may have been applied (HTTP 502); {UNKNOWN_ADD}", 0.0, 0),
            ("retry", [1], None, "may have been applied (HTTP 502)", 0.25, 1),
        ],
        True,
        None,
    ),
    (
        "504 after retries ran out",
        http(504),
        RETRIED,
        [("final", [0, 1], "unknown", "may have been applied (HTTP 504); still no clear answer "
          "after 3 retries", 0.0, 0)],
        True,
        None,
    ),
    (
        "read timeout",
        failure("ambiguous", "no answer within 30 s (read timeout)"),
        ONE,
        [("retry", [0], None, "may have been applied (no answer within 30 s (read timeout))",
          0.25, 1)],
        True,
        None,
    ),
    (
        "dropped connection, $add row",
        failure("ambiguous", "connection closed before an answer arrived"),
        RequestRows.of(1, idempotent=False),
        [("final", [0], "unknown", "may have been applied (connection closed before an answer "
          f"arrived); {UNKNOWN_ADD}", 0.0, 0)],
        True,
        None,
    ),
    # ---- per-lane order after an ambiguous answer
    (
        "one user: $set, then $add -- the $set must not land after the $add",
        http(500),
        RequestRows.of(2, lane=[7, 7], idempotent=[True, False], user_id=["u-1", "u-1"]),
        [
            ("final", [1], "unknown", f"may have been applied (HTTP 500); {UNKNOWN_ADD}", 0.0, 0),
            ("final", [0], "unknown", f"may have been applied (HTTP 500); {LATER}", 0.0, 0),
        ],
        True,
        None,
    ),
    (
        "one user: $add, then $set -- the $set is retried (it lands after the $add anyway)",
        http(502),
        RequestRows.of(2, lane=[7, 7], idempotent=[False, True], user_id=["u-1", "u-1"]),
        [
            ("final", [0], "unknown", f"may have been applied (HTTP 502); {UNKNOWN_ADD}", 0.0, 0),
            ("retry", [1], None, "may have been applied (HTTP 502)", 0.25, 1),
        ],
        True,
        None,
    ),
    (
        "one user: $set, $set -- only the last is retried; the first may land after it",
        failure("ambiguous", "connection closed before an answer arrived"),
        RequestRows.of(2, lane=[7, 7], user_id=["u-1", "u-1"]),
        [("final", [0], "unknown", "may have been applied (connection closed before an answer "
          f"arrived); {LATER}", 0.0, 0),
         ("retry", [1], None, "may have been applied (connection closed before an answer "
          "arrived)", 0.25, 1)],
        True,
        None,
    ),
    (
        "two users interleaved with a $add in the middle of one",
        http(504),
        RequestRows.of(
            5, lane=[1, 1, 1, 2, 2], idempotent=[True, False, True, True, True],
            user_id=["a", "a", "a", "b", "b"],
        ),
        [
            ("final", [1], "unknown", f"may have been applied (HTTP 504); {UNKNOWN_ADD}", 0.0, 0),
            ("final", [0, 3], "unknown", f"may have been applied (HTTP 504); {LATER}", 0.0, 0),
            ("retry", [2, 4], None, "may have been applied (HTTP 504)", 0.25, 1),
        ],
        True,
        None,
    ),
    (
        "a later row of the lane outside the request may have landed: nothing retried",
        http(500),
        RequestRows.of(3, lane=[1, 1, 2], later_applied=[True, True, False],
                       user_id=["a", "a", "b"]),
        [
            ("final", [0, 1], "unknown", f"may have been applied (HTTP 500); {LATER}", 0.0, 0),
            ("retry", [2], None, "may have been applied (HTTP 500)", 0.25, 1),
        ],
        True,
        None,
    ),
    (
        "retry_ambiguous retries the $add, not the $set before it",
        http(500),
        RequestRows.of(2, lane=[7, 7], idempotent=[True, False], user_id=["u-1", "u-1"]),
        [("final", [0], "unknown", f"may have been applied (HTTP 500); {LATER}", 0.0, 0),
         ("retry", [1], None, "may have been applied (HTTP 500)", 0.25, 1)],
        True,
        None,
    ),
]


@pytest.mark.parametrize(
    "answer, rows, expected, maybe_applied, stop",
    [t[1:] for t in TABLE],
    ids=[t[0] for t in TABLE],
)
def test_decision_table(
    answer: Outcome,
    rows: RequestRows,
    expected: list[tuple[Any, ...]],
    maybe_applied: bool,
    stop: Any,
    request: pytest.FixtureRequest,
) -> None:
    policy = POLICY
    if "retry_ambiguous" in request.node.callspec.id:
        policy = Policy(**{**POLICY.__dict__, "retry_ambiguous": True})
    decision = run(answer, rows, policy)
    assert steps(decision) == expected
    assert decision.maybe_applied is maybe_applied
    assert decision.stop == stop


@pytest.mark.parametrize("answer, rows", [(t[1], t[2]) for t in TABLE], ids=[t[0] for t in TABLE])
def test_every_row_gets_exactly_one_step(answer: Outcome, rows: RequestRows) -> None:
    decision = run(answer, rows)
    covered = np.concatenate([s.rows for s in decision.steps])
    assert sorted(covered.tolist()) == list(range(len(rows)))


def test_backoff_is_full_jitter_capped_at_backoff_max() -> None:
    policy = Policy(backoff=0.5, backoff_max=3.0, max_retries=10)
    delays = [
        decide(http(503), RequestRows.of(1, retries=r), policy, now=0.0, jitter=1.0).steps[0].delay
        for r in range(5)
    ]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert decide(http(503), ONE, policy, now=0.0, jitter=0.0).steps[0].delay == 0.0


def test_throttle_budget_counts_from_the_first_429() -> None:
    policy = Policy(throttle_pause=15.0, throttle_budget=40.0)
    fresh = decide(http(429), RequestRows.of(1), policy, now=NOW)
    assert [s.action for s in fresh.steps] == ["pause"]  # 0 + 15 <= 40
    second = decide(http(429), RequestRows.of(1, throttled_since=NOW - 26.0), policy, now=NOW)
    assert [s.action for s in second.steps] == ["final"]  # 26 + 15 > 40
    assert second.steps[0].status == "throttled"
    never = Policy(throttle_pause=15.0, throttle_budget=math.inf)
    old = decide(http(429), RequestRows.of(1, throttled_since=NOW - 1e6), never, now=NOW)
    assert [s.action for s in old.steps] == ["pause"]


def test_a_zero_budget_gives_up_at_the_first_429() -> None:
    policy = Policy(throttle_pause=15.0, throttle_budget=0.0)
    decision = decide(http(429), RequestRows.of(1), policy, now=NOW)
    assert [(s.action, s.status) for s in decision.steps] == [("final", "throttled")]


@pytest.mark.parametrize(
    "body, expected",
    [
        (b'{"code": 400, "error": "bad"}', "bad"),
        (b'{"error": "bad", "events_with_invalid_fields": {"user_id": [0]}}',
         'bad {"events_with_invalid_fields": {"user_id": [0]}}'),
        (b"line one\n\n  line two", "line one line two"),
        (b"x" * 500, "x" * 199 + "…"),
        (b"[1, 2]", "[1, 2]"),
        (b"\xff\xfe broken", "\ufffd\ufffd broken"),
    ],
)
def test_excerpt(body: bytes, expected: str) -> None:
    assert excerpt(body) == expected


@pytest.mark.parametrize(
    "body, users, devices",
    [
        (b'{"throttled_users": {"u1": 3, "u2": 1}}', {"u1", "u2"}, set()),
        (b'{"throttled_devices": ["d1"], "throttled_users": []}', set(), {"d1"}),
        (b'{"throttled_users": "u1"}', set(), set()),
        (b"[]", set(), set()),
        (b"not json", set(), set()),
    ],
)
def test_throttled_ids(body: bytes, users: set[str], devices: set[str]) -> None:
    assert throttled_ids(body) == (users, devices)


# ---------------------------------------------------------------- per-lane order, as a class
@st.composite
def ambiguous_requests(draw: st.DrawFn) -> tuple[RequestRows, bool]:
    """A request of 1-12 rows over 1-4 lanes (each lane's rows together, as chunk_rows cuts
    them), random idempotency, random later rows outside the request, random prior attempts."""
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    lane = [k for k, size in enumerate(sizes) for _ in range(size)]
    n = len(lane)
    later_lanes = draw(st.sets(st.integers(0, len(sizes) - 1)))
    rows = RequestRows.of(
        n,
        lane=lane,
        idempotent=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        maybe_applied=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        later_applied=[k in later_lanes for k in lane],
        user_id=[f"user-{k}" for k in lane],
        retries=draw(st.integers(0, 3)),
    )
    return rows, draw(st.booleans())


@settings(derandomize=True, max_examples=300, deadline=None)
@given(ambiguous_requests(), st.sampled_from([http(500), http(502), http(504), failure(
    "ambiguous", "no answer within 30 s (read timeout)")]))
def test_ambiguous_answers_keep_per_lane_order(case: tuple[RequestRows, bool], answer: Outcome
                                              ) -> None:
    rows, retry_ambiguous = case
    policy = Policy(**{**POLICY.__dict__, "retry_ambiguous": retry_ambiguous})
    decision = run(answer, rows, policy)
    n = len(rows)
    # The reference: per lane, only its last row in the request can be retried (every earlier
    # row may have landed before a later one), when retries are left, it may be retried at all,
    # and no later row of the lane outside the request may have landed.
    expected = set()
    if rows.retries < policy.max_retries:
        for lane in set(rows.lane.tolist()):
            last = max(p for p in range(n) if rows.lane[p] == lane)
            allowed = retry_ambiguous or bool(rows.idempotent[last])
            if allowed and not rows.later_applied[last]:
                expected.add(last)
    retried = [s for s in decision.steps if s.action == "retry"]
    assert len(retried) <= 1  # the retried rows go again together, in one request
    got = set(retried[0].rows.tolist()) if retried else set()
    assert got == expected
    if retried:
        assert retried[0].rows.tolist() == sorted(got)  # in the request's (row) order
    finals = [s for s in decision.steps if s.action == "final"]
    assert all(s.status == "unknown" for s in finals)
    ended = sorted(p for s in finals for p in s.rows.tolist())
    assert ended == sorted(set(range(n)) - expected)
    assert decision.maybe_applied and decision.stop is None
