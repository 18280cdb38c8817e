"""What the sender does with an answer: a pure function from (answer, rows' state) to steps.

:func:`decide` reads one request's answer (an :class:`~amp_pandas._transport.Outcome`: an HTTP
status and body, or a transport failure that was ``not_sent`` or ``ambiguous``) and the state of
the request's rows (:class:`RequestRows`), and returns a :class:`Decision`: which rows end with
which status and reason, which are retried (and after how long), whether the request is split,
which rows are paused for throttling or resent at once, and whether the whole send stops. It
touches no clock, no randomness, no network and no shared state: the send loop passes ``now`` and
a ``jitter`` draw in, applies the steps, and can be tested without it, answer by answer.

The table (Amplitude's rules come from :mod:`amp_pandas._amplitude`):

=========================================  =====================================================
answer                                     what happens
=========================================  =====================================================
2xx                                        every row ``success``
400/401/403 whose body rejects the key     every row ``failed``; the send stops
400, several rows                          split in two (bisection isolates the bad rows)
400, one row                               ``failed`` with the server's reason
413, several rows / one row                split / ``failed`` (too large even alone)
429                                        rows of throttled ids paused ``throttle_pause`` s
                                           (``throttled`` once past ``throttle_budget``); the
                                           other rows resent at once. No list of ids: all paused
503, connection refused, connect timeout   not applied: retried after a backoff, ``failed``
                                           once ``max_retries`` are used
not sent and retrying cannot help (TLS)    ``failed``
500/502/504, read timeout, dropped         may have been applied: see below
connection
any other status                           ``failed`` with the status and the server's reason
=========================================  =====================================================

A row that an earlier attempt may have applied never ends ``failed`` or ``throttled``: it ends
``unknown``.

After an answer that may have been applied, a row is retried only when

* it is idempotent (or ``retry_ambiguous`` is on), retries are left, and
* no later row of its lane (same user or device) may have been applied: it is its lane's last
  row in this request, and no later row of its lane outside this request was sent or may have
  landed.

So no row is ever applied after a later row of the same user or device. Every other row ends
``unknown``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._amplitude import AMBIGUOUS_STATUSES, KEY_REJECTED, RETRYABLE_STATUSES, THROTTLE_PAUSE
from ._transport import AMBIGUOUS, NOT_SENT, RESPONSE, Outcome

if TYPE_CHECKING:
    from ._config import SendSettings

__all__ = [
    "FAILED",
    "FINAL",
    "PAUSE",
    "RESEND",
    "RETRY",
    "SPLIT",
    "SUCCESS",
    "THROTTLED",
    "UNKNOWN",
    "Decision",
    "Policy",
    "RequestRows",
    "Step",
    "decide",
    "excerpt",
    "may_have_been_applied",
    "throttled_ids",
]

# Final statuses a decision can give (the names of amp_pandas._result.STATUSES).
SUCCESS = "success"
FAILED = "failed"
THROTTLED = "throttled"
UNKNOWN = "unknown"

# Step actions.
FINAL = "final"  # the rows end with ``status`` and ``reason``
RETRY = "retry"  # the rows go again after ``delay`` s, as one request; ``retries`` used then
SPLIT = "split"  # the request is cut in two halves, sent one after the other where lanes meet
PAUSE = "pause"  # throttled: the rows wait ``delay`` s (their ids are paused)
RESEND = "resend"  # not applied and not at fault (a 429 for other ids): sent again at once

KEY_REJECTED_REASON = "Amplitude rejected the API key"
NOT_IDEMPOTENT = (
    "not retried because it holds $add/$append/$prepend — pass retry_ambiguous=True to retry"
)
LATER_ROW = (
    "not retried: a later row of the same user or device may have been applied, and a retry "
    "of this row would land after it"
)
EARLIER = "an earlier attempt may have been applied"
EXCERPT_LENGTH = 200


@dataclass(frozen=True)
class Policy:
    """The sending options a decision reads (see :class:`~amp_pandas._config.SendSettings`)."""

    max_retries: int = 6
    retry_ambiguous: bool = False
    backoff: float = 0.5
    backoff_max: float = 30.0
    throttle_pause: float = THROTTLE_PAUSE
    throttle_budget: float = 600.0

    @classmethod
    def from_settings(cls, settings: SendSettings) -> Policy:
        return cls(
            max_retries=settings.max_retries,
            retry_ambiguous=settings.retry_ambiguous,
            backoff=settings.backoff,
            backoff_max=settings.backoff_max,
            throttle_pause=settings.throttle_pause,
            throttle_budget=settings.throttle_budget,
        )

    def backoff_delay(self, retries: int, jitter: float) -> float:
        """Full jitter: ``jitter`` (in [0, 1]) of ``min(backoff_max, backoff * 2**retries)``."""
        return jitter * min(self.backoff_max, self.backoff * 2.0**retries)


@dataclass(frozen=True, eq=False)
class RequestRows:
    """The state of one request's rows, in the request's order (all arrays of one length).

    Attributes
    ----------
    lane : ndarray of int
        Lane per row (rows sharing a user or device id share a lane).
    idempotent : ndarray of bool
        False for rows holding ``$add``, ``$append`` or ``$prepend``.
    maybe_applied : ndarray of bool
        An earlier attempt of the row may have been applied.
    later_applied : ndarray of bool
        A later row of the row's lane, outside this request, was sent or may have been applied.
    throttled_since : ndarray of float
        When the row was first throttled (``now``'s clock), NaN if never.
    user_id, device_id : ndarray of object
        The ids (``str`` or ``None``), matched against the ids a 429 names.
    nbytes : ndarray of int
        Bytes of each row's identification (for the 413 reason).
    retries : int
        Retries the request has used so far.
    """

    lane: np.ndarray
    idempotent: np.ndarray
    maybe_applied: np.ndarray
    later_applied: np.ndarray
    throttled_since: np.ndarray
    user_id: np.ndarray
    device_id: np.ndarray
    nbytes: np.ndarray
    retries: int = 0

    def __len__(self) -> int:
        return len(self.lane)

    @classmethod
    def of(
        cls,
        n: int = 1,
        *,
        lane: Any = None,
        idempotent: Any = True,
        maybe_applied: Any = False,
        later_applied: Any = False,
        throttled_since: Any = math.nan,
        user_id: Any = None,
        device_id: Any = None,
        nbytes: Any = 100,
        retries: int = 0,
    ) -> RequestRows:
        """Rows from scalars or sequences (for tests and tools); one lane per row by default.

        Examples
        --------
        >>> rows = RequestRows.of(2, idempotent=[True, False])
        >>> len(rows), rows.lane.tolist(), rows.idempotent.tolist()
        (2, [0, 1], [True, False])
        """

        def arr(value: Any, dtype: Any) -> np.ndarray:
            if isinstance(value, (list, tuple, np.ndarray)):
                out = np.empty(len(value), dtype=dtype)
                out[:] = list(value)
                return out
            return np.full(n, value, dtype=dtype)

        if user_id is None:
            user_id = [f"user-{i:04d}" for i in range(n)]
        return cls(
            lane=np.arange(n) if lane is None else arr(lane, np.int64),
            idempotent=arr(idempotent, bool),
            maybe_applied=arr(maybe_applied, bool),
            later_applied=arr(later_applied, bool),
            throttled_since=arr(throttled_since, float),
            user_id=arr(user_id, object),
            device_id=arr(device_id, object),
            nbytes=arr(nbytes, np.int64),
            retries=retries,
        )


@dataclass(frozen=True, eq=False)
class Step:
    """One thing to do with some of the request's rows (positions within the request)."""

    action: str
    rows: np.ndarray
    status: str | None = None  # FINAL
    reason: str | None = None  # FINAL: the row's error; RETRY/PAUSE: the error meanwhile
    delay: float = 0.0  # RETRY, PAUSE
    retries: int = 0  # RETRY: retries used once this one is sent

    def __repr__(self) -> str:
        extra = f" {self.status}" if self.status else ""
        return f"Step({self.action}{extra}, rows={self.rows.tolist()}, reason={self.reason!r})"


@dataclass(frozen=True, eq=False)
class Decision:
    """What to do after one answer.

    Attributes
    ----------
    steps : tuple of Step
        Every row of the request is in exactly one step, except for ``SPLIT`` (all rows).
    maybe_applied : bool
        The answer leaves open whether the request was applied: every row is marked so.
    stop : tuple of (int, str) or None
        The key was rejected: the HTTP status and an excerpt of the answer; stop the send.
    """

    steps: tuple[Step, ...]
    maybe_applied: bool = False
    stop: tuple[int, str] | None = None


def may_have_been_applied(answer: Outcome) -> bool:
    """Whether an answer leaves open that the request was applied (500/502/504, no answer)."""
    if answer.kind == RESPONSE:
        return int(answer.status or 0) in AMBIGUOUS_STATUSES
    return answer.kind == AMBIGUOUS


def decide(
    answer: Outcome, rows: RequestRows, policy: Policy, *, now: float, jitter: float = 1.0
) -> Decision:
    """What happens to a request's rows after ``answer``.

    Parameters
    ----------
    answer : Outcome
        The request's answer. Its body must already be free of the key (the send loop redacts
        it) because reasons quote it.
    rows : RequestRows
        The rows' state before this answer.
    policy : Policy
        Retries, backoff and throttling options.
    now : float
        The current time, on the clock of ``rows.throttled_since``.
    jitter : float
        A draw in [0, 1] that scales the backoff (full jitter).

    Examples
    --------
    >>> from amp_pandas._transport import Outcome
    >>> d = decide(Outcome("response", status=200), RequestRows.of(2), Policy(), now=0.0)
    >>> d.steps
    (Step(final success, rows=[0, 1], reason=None),)
    >>> d = decide(Outcome("response", status=503), RequestRows.of(1), Policy(), now=0.0)
    >>> d.steps[0].action, d.steps[0].delay, d.steps[0].retries
    ('retry', 0.5, 1)
    """
    everything = np.arange(len(rows))
    if answer.kind == RESPONSE:
        code = int(answer.status or 0)
        if 200 <= code < 300:
            return Decision((Step(FINAL, everything, SUCCESS),))
        if code in (400, 401, 403) and KEY_REJECTED.search(_text(answer.body)):
            steps = _give_up(rows, everything, FAILED, f"{KEY_REJECTED_REASON} (HTTP {code})")
            return Decision(steps, stop=(code, excerpt(answer.body)))
        if code == 400:
            if len(rows) > 1:  # Amplitude applied nothing: isolate the bad rows
                return Decision((Step(SPLIT, everything),))
            why = f"rejected by Amplitude (HTTP 400): {excerpt(answer.body)}"
            return Decision(_give_up(rows, everything, FAILED, why))
        if code == 413:
            if len(rows) > 1:
                return Decision((Step(SPLIT, everything),))
            why = (
                f"too large for Amplitude (HTTP 413) even alone ({int(rows.nbytes[0]):,} bytes): "
                f"{excerpt(answer.body)}"
            )
            return Decision(_give_up(rows, everything, FAILED, why))
        if code == 429:
            return Decision(_throttle(answer, rows, policy, now))
        if code in RETRYABLE_STATUSES:
            return Decision(_retry(rows, f"HTTP {code} (not applied)", policy, jitter))
        if code in AMBIGUOUS_STATUSES:
            return _ambiguous(rows, f"HTTP {code}", policy, jitter)
        return Decision(
            _give_up(rows, everything, FAILED, f"HTTP {code}: {excerpt(answer.body)}")
        )
    if answer.kind == NOT_SENT:
        if answer.retryable:
            return Decision(_retry(rows, answer.detail, policy, jitter))
        return Decision(_give_up(rows, everything, FAILED, f"not sent: {answer.detail}"))
    return _ambiguous(rows, answer.detail, policy, jitter)


def _give_up(rows: RequestRows, which: np.ndarray, status: str, reason: str) -> tuple[Step, ...]:
    """End rows with ``status`` -- or ``unknown`` where an earlier attempt may have landed."""
    maybe = rows.maybe_applied[which]
    steps = []
    if maybe.any():
        steps.append(Step(FINAL, which[maybe], UNKNOWN, f"{EARLIER}; then {reason}"))
    if not maybe.all():
        steps.append(Step(FINAL, which[~maybe], status, reason))
    return tuple(steps)


def _retries(n: int) -> str:
    return f"{n} retr{'y' if n == 1 else 'ies'}"


def _retry(rows: RequestRows, why: str, policy: Policy, jitter: float) -> tuple[Step, ...]:
    """Certainly not applied (503, refused...): retry after a backoff while retries are left."""
    everything = np.arange(len(rows))
    n = policy.max_retries
    if rows.retries >= n:
        return _give_up(rows, everything, FAILED, f"{why}; gave up after {_retries(n)}")
    delay = policy.backoff_delay(rows.retries, jitter)
    return (Step(RETRY, everything, reason=why, delay=delay, retries=rows.retries + 1),)


def _ambiguous(rows: RequestRows, why: str, policy: Policy, jitter: float) -> Decision:
    """No clear answer: every row may have been applied. Retry only what keeps per-lane order."""
    n = len(rows)
    positions = np.arange(n)
    retry = np.ones(n, dtype=bool) if policy.retry_ambiguous else rows.idempotent.copy()
    steps: list[Step] = []
    not_idempotent = ~retry
    if not_idempotent.any():
        steps.append(
            Step(FINAL, positions[not_idempotent], UNKNOWN, f"may have been applied ({why}); "
                 f"{NOT_IDEMPOTENT}")
        )
    exhausted = rows.retries >= policy.max_retries
    if exhausted and retry.any():
        steps.append(
            Step(FINAL, positions[retry], UNKNOWN, f"may have been applied ({why}); still no "
                 f"clear answer after {_retries(policy.max_retries)}")
        )
        return Decision(tuple(steps), maybe_applied=True)
    # Per lane, the position before which no row may be retried: the lane's last row in this
    # request (every row after the first may have landed, so a retried earlier row would land
    # after it), or the whole lane when a later row of it, outside this request, may have landed.
    lanes, inverse = np.unique(rows.lane, return_inverse=True)
    block = np.full(len(lanes), -1, dtype=np.int64)
    np.maximum.at(block, inverse, positions)
    block[np.unique(inverse[rows.later_applied])] = n
    behind = retry & (positions < block[inverse])
    if behind.any():
        steps.append(
            Step(FINAL, positions[behind], UNKNOWN, f"may have been applied ({why}); {LATER_ROW}")
        )
    again = positions[retry & ~behind]
    if len(again):
        delay = policy.backoff_delay(rows.retries, jitter)
        steps.append(
            Step(RETRY, again, reason=f"may have been applied ({why})", delay=delay,
                 retries=rows.retries + 1)
        )
    return Decision(tuple(steps), maybe_applied=True)


def _throttle(answer: Outcome, rows: RequestRows, policy: Policy, now: float) -> tuple[Step, ...]:
    """HTTP 429: pause the throttled ids' lanes; resend the other rows at once."""
    n = len(rows)
    positions = np.arange(n)
    users, devices = throttled_ids(answer.body)
    paused = np.ones(n, dtype=bool)  # no usable list of ids: the whole request is throttled
    if users or devices:
        hit = np.zeros(n, dtype=bool)
        if users:
            hit |= pd.Series(rows.user_id, dtype=object).isin(users).to_numpy()
        if devices:
            hit |= pd.Series(rows.device_id, dtype=object).isin(devices).to_numpy()
        if hit.any():
            paused = np.isin(rows.lane, np.unique(rows.lane[hit]))
    steps: list[Step] = []
    if not paused.all():
        # A 429 applies none of the request: Amplitude's own SDKs resend the rows whose ids
        # were not throttled, and so does the sender.
        steps.append(Step(RESEND, positions[~paused]))
    since = rows.throttled_since[paused]
    elapsed = now - np.where(np.isnan(since), now, since)
    give_up = (elapsed + policy.throttle_pause > policy.throttle_budget) | (
        (elapsed > 0) & (elapsed >= policy.throttle_budget)
    )
    if give_up.any():
        reason = (
            f"throttled by Amplitude (HTTP 429) for {_seconds(float(elapsed[give_up].max()))}; "
            f"waiting longer would exceed throttle_budget={policy.throttle_budget:g} s"
        )
        steps.extend(_give_up(rows, positions[paused][give_up], THROTTLED, reason))
    keep = positions[paused][~give_up]
    if len(keep):
        steps.append(
            Step(PAUSE, keep, reason="throttled by Amplitude (HTTP 429)",
                 delay=policy.throttle_pause)
        )
    return tuple(steps)


def _seconds(x: float) -> str:
    return f"{x:.1f} s" if x < 10 else f"{x:,.0f} s"


def _text(body: bytes) -> str:
    return body[:4096].decode("utf-8", "replace")


def excerpt(body: bytes) -> str:
    """A short excerpt of an answer body: its JSON ``error`` (plus other fields) if any.

    Examples
    --------
    >>> excerpt(b'{"code": 400, "error": "invalid id", "missing_field": "user_id"}')
    'invalid id {"missing_field": "user_id"}'
    >>> excerpt(b"  ")
    '(empty body)'
    """
    text = _text(body)
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        extra = {k: v for k, v in data.items() if k not in ("code", "error")}
        text = data["error"] + (" " + json.dumps(extra) if extra else "")
    text = " ".join(text.split()) or "(empty body)"
    return text if len(text) <= EXCERPT_LENGTH else text[: EXCERPT_LENGTH - 1] + "…"


def throttled_ids(body: bytes) -> tuple[set[str], set[str]]:
    """The ``throttled_users`` / ``throttled_devices`` of a JSON 429 body (empty when absent).

    Examples
    --------
    >>> throttled_ids(b'{"throttled_users": {"user-1": 12}, "throttled_devices": ["d-1"]}')
    ({'user-1'}, {'d-1'})
    >>> throttled_ids(b"Too many requests")
    (set(), set())
    """
    try:
        data = json.loads(body)
    except ValueError:
        return set(), set()
    if not isinstance(data, dict):
        return set(), set()

    def ids(value: Any) -> set[str]:
        if isinstance(value, (dict, list)):
            return {str(v) for v in value}
        return set()

    return ids(data.get("throttled_users")), ids(data.get("throttled_devices"))
