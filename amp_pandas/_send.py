"""Sending a plan: requests in flight, per-lane order, retries, throttling, interrupts.

How it works
------------
The valid rows, in send order (grouped by lane, row order within a lane), are cut into requests
by :func:`~amp_pandas._encode.chunk_rows`. Each request is a work *item*: an array of row
positions plus a ``not_before`` time and, optionally, ``deps``: rows that must all be final
before the item may start. Only the main thread touches the per-row state and dispatches items,
and only when a worker of the ``ThreadPoolExecutor`` is free; workers encode one body, POST it
and return an :class:`~amp_pandas._transport.Outcome` without touching any shared state.

Per-lane order: a lane (rows sharing a user id or a device id) may span two consecutive requests;
the second then waits on the first one's rows of that lane. When an item is split (413, or
bisection after a 400) the second half waits on the first half's rows of the lanes they share;
halves with no lane in common fly concurrently. Retried rows are re-queued as a new item; later
rows of their lanes keep waiting because those rows are not final yet. So the rows of one lane
are sent in row order and never in two requests at once.

Per-row work is done on numpy arrays of positions: resolving a request of 1000 rows is a handful
of fancy-index assignments.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import random
import signal
import sys
import threading
import time
import warnings
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import requests

from ._amplitude import AMBIGUOUS_STATUSES, KEY_REJECTED
from ._config import SendSettings, require_key
from ._encode import MAX_BODY_BYTES, body_overhead, chunk_rows, encode_request, new_boundary
from ._plan import INVALID as PLAN_INVALID
from ._plan import SKIPPED as PLAN_SKIPPED
from ._plan import VALID, Plan
from ._progress import ProgressCallback, SendProgress, waiting_text
from ._result import (
    FAILED,
    INVALID,
    NOT_SENT,
    SKIPPED,
    STATUSES,
    SUCCESS,
    THROTTLED,
    UNKNOWN,
    build_result,
    not_succeeded_message,
)
from ._transport import AMBIGUOUS, RESPONSE, Outcome, new_session, post
from ._transport import NOT_SENT as OUTCOME_NOT_SENT
from .errors import AuthenticationError, InterruptedSendWarning, RowsNotSucceededWarning

__all__ = ["send_plan"]

log = logging.getLogger("amp_pandas")

KEY_REJECTED_REASON = "Amplitude rejected the API key"
_POLL = 0.05
#: Rows resumed after a throttle pause wait up to this fraction of the pause (at most 1 s) for
#: others resuming just after them, so that they go out in one request rather than several.
RESUME_GATHER = 0.1
_EXCERPT = 200


@dataclass(eq=False)
class _Item:
    """Rows (positions, in send order) that go in one request."""

    rows: np.ndarray
    seq: float  # dispatch priority: send order of the original request
    not_before: float = 0.0
    deps: np.ndarray | None = None  # rows that must be final first
    retries: int = 0  # retries used after 503 / refused / ambiguous outcomes
    attempt: int = 1  # the how-many-th request for these rows (for the log)
    paused_ids: int = 0  # ids paused by a 429 (for the waiting text)


def send_plan(
    plan: Plan,
    settings: SendSettings,
    *,
    progress_callback: ProgressCallback | None = None,
) -> pd.DataFrame:
    """Send the valid rows of ``plan`` and say what became of every row.

    Parameters
    ----------
    plan : Plan
        The built identifications.
    settings : SendSettings
        Endpoint, key and sending options (see :func:`~amp_pandas._config.resolve_settings`).
    progress_callback : callable, optional
        ``callback(done_counts, waiting)``, called from this thread as rows resolve (see
        :mod:`amp_pandas._progress`). Independent of ``settings.progress``, which controls the
        ``tqdm`` bar; a notebook widget passes ``progress=False`` and a callback.

    Returns
    -------
    pandas.DataFrame
        The result (see :mod:`amp_pandas._result`): ``status``, ``http_status``, ``error``,
        ``attempts``, indexed like the input.

    Raises
    ------
    amp_pandas.errors.MissingApiKeyError
        Before any request, when there is no key.
    amp_pandas.errors.AuthenticationError
        Amplitude rejected the key; ``.result`` holds the partial result.

    Warns
    -----
    RowsNotSucceededWarning
        Some rows ended ``invalid``, ``failed``, ``throttled``, ``unknown`` or ``not_sent``.
    InterruptedSendWarning
        The send was interrupted (Ctrl-C); the result is partial.
    """
    key = require_key(settings)
    sender = _Sender(plan, settings, key, progress_callback)
    result = sender.run()
    level = _user_stacklevel()
    if sender.auth_failure is not None:
        status, excerpt = sender.auth_failure
        masked = settings.api_key.masked if settings.api_key is not None else "••••"
        raise AuthenticationError(
            f"{KEY_REJECTED_REASON} (key {masked}; HTTP {status}: {excerpt}). The send stopped: "
            "check api_key= or the AMPLITUDE_API_KEY environment variable, and the region. "
            "The partial result is in .result (rows never sent are 'not_sent').",
            status_code=status,
            result=result,
        )
    if sender.interrupted:
        warnings.warn(_interrupted_message(result), InterruptedSendWarning, stacklevel=level)
    else:
        message = not_succeeded_message(result)
        if message is not None:
            warnings.warn(message, RowsNotSucceededWarning, stacklevel=level)
    return result


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside amp_pandas."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("amp_pandas"):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _interrupted_message(result: pd.DataFrame) -> str:
    counts = result["status"].value_counts()
    parts = ", ".join(f"{int(counts[s]):,} {s}" for s in STATUSES if counts.get(s, 0))
    return (
        f"The send was interrupted; the result is partial ({parts}). Rows 'not_sent' were "
        'not applied: send them with df[result.status == "not_sent"].amplitude.identify(...). '
        "Rows 'unknown' were sent without a clear answer and may have been applied."
    )


class _DeferredInterrupt:
    """Turn Ctrl-C into a flag that the send loop checks at safe points.

    A ``KeyboardInterrupt`` raised at an arbitrary bytecode could land between receiving an
    answer and recording it, and that answer would be lost (its rows called ``unknown``
    although they succeeded). While a send runs in the main thread with Python's default
    SIGINT handler, the first Ctrl-C only sets :attr:`requested`; the loop then stops at the
    next safe point. A second Ctrl-C raises at once (the user wants out). Elsewhere (another
    thread, a custom handler) nothing changes.
    """

    def __init__(self) -> None:
        self.count = 0
        self._previous: Any = None

    @property
    def requested(self) -> bool:
        return self.count > 0

    def _handler(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt

    def __enter__(self) -> "_DeferredInterrupt":
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class _Sender:
    """The state of one send. Only the thread that called ``run`` touches it."""

    def __init__(
        self,
        plan: Plan,
        settings: SendSettings,
        key: str,
        callback: ProgressCallback | None,
    ) -> None:
        self.plan = plan
        self.settings = settings
        self._key = key
        n = len(plan)
        valid = plan.state == VALID
        self.status = np.full(n, NOT_SENT, dtype=np.int8)
        self.status[plan.state == PLAN_INVALID] = INVALID
        self.status[plan.state == PLAN_SKIPPED] = SKIPPED
        self.done = ~valid  # final rows
        self.http = np.zeros(n, dtype=np.int64)
        self.error = plan.reason.copy()
        self.attempts = np.zeros(n, dtype=np.int64)
        self.sent_unanswered = np.zeros(n, dtype=bool)  # in a request not yet answered
        self.maybe_applied = np.zeros(n, dtype=bool)  # saw an ambiguous outcome
        self.throttled_since = np.full(n, np.nan)
        self.counts = np.zeros(len(STATUSES), dtype=np.int64)
        self.counts[INVALID] = np.count_nonzero(plan.state == PLAN_INVALID)
        self.counts[SKIPPED] = np.count_nonzero(plan.state == PLAN_SKIPPED)
        self.pending = int(np.count_nonzero(valid))

        self.fresh: deque[_Item] = deque()
        self.held: list[_Item] = []  # sorted by seq
        self.inflight: dict[Future, _Item] = {}
        self.abandoned: list[Future] = []
        self.auth_failure: tuple[int, str] | None = None
        self.interrupted = False
        self.rng = random.Random()
        self.boundary = new_boundary()
        self.requests_made = 0
        self.callback = callback

    # ------------------------------------------------------------------ run
    def run(self) -> pd.DataFrame:
        s = self.settings
        plan = self.plan
        overhead = body_overhead(len(self._key.encode()), len(self.boundary))
        self._budget = MAX_BODY_BYTES - overhead
        chunks = chunk_rows(plan, batch_size=s.batch_size, overhead=overhead)
        self._n_chunks = len(chunks)
        lane = plan.lane
        for i, rows in enumerate(chunks):
            deps = None
            if i and lane[rows[0]] == lane[chunks[i - 1][-1]]:
                prev = chunks[i - 1]
                deps = prev[lane[prev] == lane[rows[0]]]
            self.fresh.append(_Item(rows, seq=float(i), deps=deps))

        own_session = s.session is None
        self.session: requests.Session = (
            new_session(s.max_workers) if s.session is None else s.session
        )
        self.verify = getattr(self.session, "verify", True)
        if self.verify is False or self.verify is None:
            # TLS verification is never turned off: a key must not travel to an unverified host.
            log.warning("The session has verify=False; amp_pandas sends with TLS verification on.")
            self.verify = True
        self.proxies: dict[str, str] | None = None
        if own_session:
            # What the environment says (proxy variables, REQUESTS_CA_BUNDLE), read once per
            # send: requests would re-read it on every POST (~0.3 ms each, 0.3 µs per row).
            env = self.session.merge_environment_settings(s.endpoint, {}, None, self.verify, None)
            self.proxies, self.verify = env["proxies"], env["verify"]
            self.session.trust_env = False
        executor = (
            ThreadPoolExecutor(max_workers=s.max_workers, thread_name_prefix="amp_pandas-send")
            if chunks
            else None
        )
        started = time.monotonic()
        self.progress = SendProgress(
            len(plan), self.pending, bar=s.progress and self.pending > 0, callback=self.callback
        )
        self._ctrl_c = _DeferredInterrupt()
        try:
            with self._ctrl_c:
                try:
                    if executor is not None:
                        self._loop(executor)
                    self._report()
                except KeyboardInterrupt:
                    self.interrupted = True
                    self._drain_after_interrupt()
            self._finalize()
            try:
                self._report()
            except KeyboardInterrupt:  # the send is over; the result is complete
                self.interrupted = True
        finally:
            self.progress.close()
            if executor is not None:
                for fut in list(self.inflight):
                    fut.cancel()
                executor.shutdown(wait=False, cancel_futures=True)
            if own_session:
                self._close_session_later()
        if log.isEnabledFor(logging.INFO):
            counts = ", ".join(f"{int(c):,} {name}" for name, c in zip(STATUSES, self.counts) if c)
            log.info(
                "identify: %d rows in %d requests to %s in %.1f s: %s%s",
                len(plan),
                self.requests_made,
                s.endpoint,
                time.monotonic() - started,
                counts or "nothing",
                " (interrupted)" if self.interrupted else "",
            )
        return build_result(plan.index, self.status, self.http, self.error, self.attempts)

    def _loop(self, executor: ThreadPoolExecutor) -> None:
        while True:
            if self._ctrl_c.requested:  # a safe point: nothing is half-recorded
                raise KeyboardInterrupt
            self._harvest()
            now = time.monotonic()
            next_time = math.inf
            if self.auth_failure is None:
                next_time = self._dispatch(executor, now)
            if not self.inflight:
                if self.auth_failure is not None or not (self.fresh or self.held):
                    return
                if next_time == math.inf:
                    self._deadlock()
                    return
            self._report(now)
            timeout = max(0.0, min(_POLL, next_time - now))
            if self.inflight:
                wait(list(self.inflight), timeout=timeout, return_when=FIRST_COMPLETED)
            else:
                time.sleep(timeout)

    # ------------------------------------------------------------------ dispatch
    def _ready(self, item: _Item, now: float) -> bool:
        if item.not_before > now:
            return False
        if item.deps is not None:
            if not self.done[item.deps].all():
                return False
            item.deps = None
        return True

    def _dispatch(self, executor: ThreadPoolExecutor, now: float) -> float:
        """Start ready items while workers are free, lowest ``seq`` first; return the next
        ``not_before`` ahead."""
        free = self.settings.max_workers - len(self.inflight)
        next_time = math.inf
        i = 0
        held, fresh = self.held, self.fresh
        while free > 0 and (i < len(held) or fresh):
            if i < len(held) and (not fresh or held[i].seq <= fresh[0].seq):
                item = held[i]
                if not self._ready(item, now):
                    i += 1
                    continue
                if item.paused_ids:
                    later = self._more_resuming_soon(item, now)
                    if later is not None:  # wait a moment for them: one request, not several
                        next_time = min(next_time, later)
                        i += 1
                        continue
                del held[i]
                if item.paused_ids:
                    item = self._coalesce(item, now)
            else:
                item = fresh.popleft()
                if not self._ready(item, now):
                    at = bisect.bisect_right(held, item.seq, key=lambda it: it.seq)
                    held.insert(at, item)
                    i += at <= i
                    continue
            self._submit(executor, item)
            free -= 1
        for item in held:
            if item.not_before > now:
                next_time = min(next_time, item.not_before)
        return next_time

    def _more_resuming_soon(self, item: _Item, now: float) -> float | None:
        """When ``item`` (resumed after a pause) should wait for others about to resume: the
        time the next of them does, else None.

        Waits at most ``RESUME_GATHER`` of the pause (and at most a second) past the item's own
        pause, and only while the rows ready to resume do not fill a request already.
        """
        limit = item.not_before + min(RESUME_GATHER * self.settings.throttle_pause, 1.0)
        if now >= limit:
            return None
        upcoming = math.inf
        ready_rows = 0
        for other in self.held:
            if not other.paused_ids:
                continue
            if other.not_before <= now:
                ready_rows += len(other.rows)
            elif other.not_before <= limit:
                upcoming = min(upcoming, other.not_before)
        if upcoming == math.inf or ready_rows >= self.settings.batch_size:
            return None
        return upcoming

    def _coalesce(self, item: _Item, now: float) -> _Item:
        """Rows whose throttle pause is over go out together, as many as fit in one request.

        A 429 pauses a few ids from each of many requests; resending each request's few rows
        on their own would cost a round trip apiece. Only items resumed after a pause are
        joined (never the halves of a split), and only items ready now whose lanes differ, so
        per-lane order holds.
        """
        s = self.settings
        size, nbytes = len(item.rows), int(self.plan.nbytes[item.rows].sum()) + len(item.rows)
        if size >= s.batch_size:
            return item
        joined, lanes = [item], set(self.plan.lane[item.rows].tolist())
        held, i = self.held, 0
        while i < len(held) and size < s.batch_size:
            other = held[i]
            if other.paused_ids and other.not_before <= now and self._ready(other, now):
                more = int(self.plan.nbytes[other.rows].sum()) + len(other.rows)
                other_lanes = set(self.plan.lane[other.rows].tolist())
                if (
                    size + len(other.rows) <= s.batch_size
                    and nbytes + more <= self._budget
                    and lanes.isdisjoint(other_lanes)
                ):
                    del held[i]
                    joined.append(other)
                    size, nbytes = size + len(other.rows), nbytes + more
                    lanes |= other_lanes
                    continue
            i += 1
        if len(joined) == 1:
            return item
        return _Item(
            np.concatenate([it.rows for it in joined]),
            seq=item.seq,
            retries=max(it.retries for it in joined),
            attempt=max(it.attempt for it in joined),
        )

    def _submit(self, executor: ThreadPoolExecutor, item: _Item) -> None:
        # Mark first: if Ctrl-C lands between these lines, the rows count as sent and end
        # 'unknown' rather than 'not_sent' -- pessimistic, never wrong.
        self.sent_unanswered[item.rows] = True
        future = executor.submit(self._request, item.rows)
        self.inflight[future] = item
        self.requests_made += 1

    def _request(self, rows: np.ndarray) -> tuple[Outcome, int]:
        """Runs in a worker: encode one body, POST it. Touches no shared state."""
        body, kind = encode_request(self._key, self.plan.payload.json_array(rows), self.boundary)
        outcome = post(
            self.session,
            self.settings.endpoint,
            body,
            content_type=kind,
            timeout=self.settings.timeout,
            verify=self.verify,
            proxies=self.proxies,
        )
        return outcome, len(body)

    def _requeue(
        self,
        parent: _Item,
        rows: np.ndarray,
        *,
        seq: float | None = None,
        not_before: float = 0.0,
        deps: np.ndarray | None = None,
        retries: int | None = None,
        paused_ids: int = 0,
    ) -> None:
        item = _Item(
            rows,
            seq=parent.seq if seq is None else seq,
            not_before=not_before,
            deps=deps,
            retries=parent.retries if retries is None else retries,
            attempt=parent.attempt + 1,
            paused_ids=paused_ids,
        )
        bisect.insort(self.held, item, key=lambda it: it.seq)

    # ------------------------------------------------------------------ answers
    def _harvest(self) -> None:
        for future in [f for f in self.inflight if f.done()]:
            # Pop first: should Ctrl-C land inside _handle, the rows stay marked as sent and
            # unanswered (so 'unknown' at worst) and are never handled twice.
            item = self.inflight.pop(future)
            try:
                outcome, nbytes = future.result()
            except Exception as exc:  # a bug, not a network problem (those are Outcomes)
                log.error("unexpected error while sending a request", exc_info=exc)
                outcome, nbytes = Outcome(AMBIGUOUS, detail=f"unexpected {type(exc).__name__}"), 0
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "POST %s: %d rows, %d bytes, attempt %d -> %s in %.0f ms",
                    self.settings.endpoint,
                    len(item.rows),
                    nbytes,
                    item.attempt,
                    outcome.detail,
                    outcome.latency * 1000,
                )
            self._handle(item, outcome)
            self.sent_unanswered[item.rows] = False

    def _handle(self, item: _Item, outcome: Outcome) -> None:
        rows = item.rows
        self.attempts[rows] += 1
        now = time.monotonic()
        if outcome.kind == RESPONSE:
            code = int(outcome.status or 0)
            self.http[rows] = code
            if 200 <= code < 300:
                self._resolve(rows, SUCCESS, None)
            elif code in (400, 401, 403) and KEY_REJECTED.search(self._text(outcome.body)):
                self._give_up(rows, FAILED, f"{KEY_REJECTED_REASON} (HTTP {code})")
                if self.auth_failure is None:
                    self.auth_failure = (code, self._excerpt(outcome.body))
            elif code == 400:
                # Amplitude applied nothing: isolate the bad rows by bisection.
                if len(rows) == 1:
                    self._give_up(
                        rows,
                        FAILED,
                        f"rejected by Amplitude (HTTP 400): {self._excerpt(outcome.body)}",
                    )
                else:
                    self._split(item)
            elif code == 413:
                if len(rows) == 1:
                    self._give_up(
                        rows,
                        FAILED,
                        f"too large for Amplitude (HTTP 413) even alone ("
                        f"{int(self.plan.nbytes[rows[0]]):,} bytes): {self._excerpt(outcome.body)}",
                    )
                else:
                    self._split(item)
            elif code == 429:
                self._throttle(item, outcome, now)
            elif code == 503:
                self._retry(item, rows, "HTTP 503 (not applied)", now)
            elif code in AMBIGUOUS_STATUSES:
                self._ambiguous(item, f"HTTP {code}", now)
            else:
                self._give_up(rows, FAILED, f"HTTP {code}: {self._excerpt(outcome.body)}")
        elif outcome.kind == OUTCOME_NOT_SENT:
            if outcome.retryable:
                self._retry(item, rows, outcome.detail, now)
            else:
                self._give_up(rows, FAILED, f"not sent: {outcome.detail}")
        else:
            self._ambiguous(item, outcome.detail, now)

    def _give_up(self, rows: np.ndarray, code: int, reason: str) -> None:
        """End rows ``failed``/``throttled`` -- or ``unknown`` if an earlier try was ambiguous."""
        maybe = self.maybe_applied[rows]
        if maybe.any():
            self._resolve(
                rows[maybe], UNKNOWN, f"an earlier attempt may have been applied; then {reason}"
            )
            rows = rows[~maybe]
        self._resolve(rows, code, reason)

    def _resolve(self, rows: np.ndarray, code: int, reason: str | None) -> None:
        if not len(rows):
            return
        self.status[rows] = code
        self.error[rows] = reason
        self.done[rows] = True
        self.counts[code] += len(rows)
        self.pending -= len(rows)

    def _split(self, item: _Item) -> None:
        """Two halves, cut at the lane boundary nearest the middle when there is one."""
        rows = item.rows
        lanes = self.plan.lane[rows]
        mid = len(rows) // 2
        starts = np.flatnonzero(lanes[1:] != lanes[:-1]) + 1
        if len(starts):
            mid = int(starts[np.argmin(np.abs(starts - mid))])
        first, second = rows[:mid], rows[mid:]
        shared = np.intersect1d(lanes[:mid], lanes[mid:])
        deps = first[np.isin(lanes[:mid], shared)] if len(shared) else None
        self._requeue(item, first)
        self._requeue(item, second, deps=deps)

    def _backoff(self, retries: int) -> float:
        """Full jitter: uniform in [0, min(backoff_max, backoff * 2**retries)]."""
        s = self.settings
        return self.rng.uniform(0.0, min(s.backoff_max, s.backoff * 2.0**retries))

    def _retry(self, item: _Item, rows: np.ndarray, why: str, now: float) -> None:
        """The request was certainly not applied (503, refused...): retry after a backoff."""
        n = self.settings.max_retries
        if item.retries >= n:
            self._give_up(rows, FAILED, f"{why}; gave up after {_retries(n)}")
            return
        self.error[rows] = why
        self._requeue(
            item, rows, not_before=now + self._backoff(item.retries), retries=item.retries + 1
        )

    def _ambiguous(self, item: _Item, why: str, now: float) -> None:
        """No clear answer: the rows may have been applied. Retry only what is idempotent."""
        rows = item.rows
        self.maybe_applied[rows] = True
        retry = (
            np.ones(len(rows), dtype=bool)
            if self.settings.retry_ambiguous
            else (self.plan.idempotent[rows])
        )
        self._resolve(
            rows[~retry],
            UNKNOWN,
            f"may have been applied ({why}); not retried because it holds "
            "$add/$append/$prepend — pass retry_ambiguous=True to retry",
        )
        again = rows[retry]
        if not len(again):
            return
        n = self.settings.max_retries
        if item.retries >= n:
            self._resolve(
                again,
                UNKNOWN,
                f"may have been applied ({why}); still no clear answer after {_retries(n)}",
            )
            return
        self.error[again] = f"may have been applied ({why})"
        self._requeue(
            item, again, not_before=now + self._backoff(item.retries), retries=item.retries + 1
        )

    def _throttle(self, item: _Item, outcome: Outcome, now: float) -> None:
        """HTTP 429: pause the throttled ids' lanes; resend the other rows at once."""
        s = self.settings
        rows = item.rows
        plan = self.plan
        users, devices = _throttled_ids(outcome.body)
        paused_mask = None
        if users or devices:
            hit = np.zeros(len(rows), dtype=bool)
            if users:
                hit |= pd.Series(plan.user_id[rows], dtype=object).isin(users).to_numpy()
            if devices:
                hit |= pd.Series(plan.device_id[rows], dtype=object).isin(devices).to_numpy()
            if hit.any():
                lanes = plan.lane[rows]
                paused_mask = np.isin(lanes, np.unique(lanes[hit]))
        if paused_mask is None:  # no usable list of ids: the whole request is throttled
            paused_mask = np.ones(len(rows), dtype=bool)
        others = rows[~paused_mask]
        if len(others):
            # A 429 applies none of the request: Amplitude's own SDKs resend the rows whose
            # ids were not throttled, so do we (they were not applied) -- after the requests
            # not sent yet, so that every throttled id is found, and its pause runs, as early as
            # possible: the pauses then overlap the rest of the send instead of following it.
            self.error[others] = None
            self._requeue(item, others, seq=item.seq + self._n_chunks)
        paused = rows[paused_mask]
        first = self.throttled_since[paused]
        first = np.where(np.isnan(first), now, first)
        self.throttled_since[paused] = first
        elapsed = now - first
        give_up = (elapsed + s.throttle_pause > s.throttle_budget) | (
            (elapsed > 0) & (elapsed >= s.throttle_budget)
        )
        if give_up.any():
            self._give_up(
                paused[give_up],
                THROTTLED,
                f"throttled by Amplitude (HTTP 429) for {_seconds(float(elapsed[give_up].max()))}; "
                f"waiting longer would exceed throttle_budget={s.throttle_budget:g} s",
            )
        keep = paused[~give_up]
        if len(keep):
            ids = {*plan.user_id[keep].tolist(), *plan.device_id[keep].tolist()} - {None}
            self.error[keep] = "throttled by Amplitude (HTTP 429)"
            self._requeue(item, keep, not_before=now + s.throttle_pause, paused_ids=len(ids))
            log.debug(
                "HTTP 429: pausing %d rows (%d ids) for %g s", len(keep), len(ids), s.throttle_pause
            )

    # ------------------------------------------------------------------ stop, interrupt
    def _drain_after_interrupt(self) -> None:
        """Cancel what has not started; give requests in flight ``interrupt_grace`` seconds."""
        for future in list(self.inflight):
            if future.cancel():  # never started: its rows were not sent
                item = self.inflight.pop(future)
                self.sent_unanswered[item.rows] = False
        deadline = time.monotonic() + self.settings.interrupt_grace
        try:
            while self.inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                wait(
                    list(self.inflight), timeout=min(_POLL, remaining), return_when=FIRST_COMPLETED
                )
                self._harvest()
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting now
            pass
        # Still running: the body may have arrived. These rows end 'unknown'; whatever the
        # workers return later is never looked at.
        for future, item in self.inflight.items():
            self.attempts[item.rows] += 1
            self.abandoned.append(future)
        self.inflight.clear()

    def _finalize(self) -> None:
        """Give every row that is not final yet its status: ``unknown`` or ``not_sent``."""
        open_rows = np.flatnonzero(~self.done)
        if not len(open_rows):
            return
        if self.auth_failure is not None:
            why = "the send stopped because Amplitude rejected the API key"
        elif self.interrupted:
            why = "the send was interrupted"
        else:
            why = "the send stopped"
        unanswered = open_rows[self.sent_unanswered[open_rows]]
        self._resolve(
            unanswered, UNKNOWN, f"sent, but no answer before {why}: it may have been applied"
        )
        rest = open_rows[~self.sent_unanswered[open_rows]]
        maybe = rest[self.maybe_applied[rest]]
        if len(maybe):
            previous = self.error[maybe]
            self._resolve(maybe, UNKNOWN, None)
            earlier = "an earlier attempt may have been applied"
            self.error[maybe] = [
                f"{p if str(p).startswith('may have') else earlier}; not retried: {why}"
                for p in previous.tolist()
            ]
        never = rest[~self.maybe_applied[rest]]
        if len(never):
            previous = self.error[never]
            self._resolve(never, NOT_SENT, None)
            self.error[never] = _with_prefix(previous, f"not sent: {why}")

    def _deadlock(self) -> None:
        # Cannot happen (dependencies always point to earlier rows); never hang if it does.
        log.error("amp_pandas: internal scheduling error; rows left are reported as not_sent")
        for item in [*self.held, *self.fresh]:
            self.error[item.rows] = "internal scheduling error (please report)"
        self.held.clear()
        self.fresh.clear()

    def _close_session_later(self) -> None:
        if not self.abandoned:
            self.session.close()
            return
        # Close once the abandoned requests are over; closing under them would only turn
        # their (ignored) answers into errors.
        futures, session = list(self.abandoned), self.session

        def close() -> None:
            wait(futures)
            session.close()

        threading.Thread(target=close, name="amp_pandas-close", daemon=True).start()

    # ------------------------------------------------------------------ progress, text
    def _report(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        waiting = None
        paused = [it for it in self.held if it.paused_ids and it.not_before > now]
        if paused:
            waiting = waiting_text(
                max(it.not_before for it in paused) - now, sum(it.paused_ids for it in paused)
            )
        counts = dict(zip(STATUSES, self.counts.tolist()))
        self.progress.update(counts, self.pending, waiting)

    def _text(self, body: bytes) -> str:
        return body[:4096].decode("utf-8", "replace")

    def _excerpt(self, body: bytes) -> str:
        """A short, key-free excerpt of an answer body (``error`` of a JSON body if any)."""
        text = self._text(body)
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            extra = {k: v for k, v in data.items() if k not in ("code", "error")}
            text = data["error"] + (" " + json.dumps(extra) if extra else "")
        text = redact(" ".join(text.split()), self._key) or "(empty body)"
        return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


def redact(text: str, key: str) -> str:
    """``text`` with the key removed in every form a server might echo it.

    The key as is, URL-encoded (``%2B``/``+``), JSON-escaped (``\\/``), and any run of 8 or
    more of its characters (a truncated echo); redacted *before* an excerpt is cut, so a cut
    can never leave a piece of it.
    """
    if not key:
        return text
    from urllib.parse import quote, quote_plus

    forms = {key, quote(key, safe=""), quote_plus(key, safe=""), json.dumps(key)[1:-1]}
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, "••••")
    if len(key) >= 8:
        lowered = text
        for width in range(len(key) - 1, 7, -1):
            for start in range(0, len(key) - width + 1):
                piece = key[start : start + width]
                if piece in lowered:
                    lowered = lowered.replace(piece, "••••")
        text = lowered
    return text


def _retries(n: int) -> str:
    return f"{n} retr{'y' if n == 1 else 'ies'}"


def _seconds(x: float) -> str:
    return f"{x:.1f} s" if x < 10 else f"{x:,.0f} s"


def _throttled_ids(body: bytes) -> tuple[set[str], set[str]]:
    """The ``throttled_users`` / ``throttled_devices`` of a JSON 429 body (empty when absent)."""
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


def _with_prefix(previous: np.ndarray, prefix: str) -> np.ndarray:
    """``prefix`` per row, followed by ``(last attempt: ...)`` where the row had a reason."""
    out = np.full(len(previous), prefix, dtype=object)
    had = np.flatnonzero(pd.notna(previous))
    if len(had):
        out[had] = [f"{prefix} (last attempt: {p})" for p in previous[had].tolist()]
    return out
