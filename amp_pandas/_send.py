"""Sending a plan: the loop that runs requests and applies the decisions on their answers.

The parts, one concern each:

* :func:`~amp_pandas._plan.chunk_rows` cuts the valid rows into requests;
* :class:`~amp_pandas._schedule.Scheduler` says which request may go next (per-lane order,
  not-before times, coalescing of rows resumed after a throttle pause);
* :class:`~amp_pandas._rowstate.RowState` records what became of each row;
* :func:`~amp_pandas._decide.decide` says what an answer means for a request's rows;
* :func:`~amp_pandas._transport.post` sends one request and never raises for the network;
* :class:`~amp_pandas._interrupt.DeferredInterrupt` turns Ctrl-C into a flag checked here.

Only the thread that called :func:`send_plan` touches the scheduler and the row state, and only
when a worker of the ``ThreadPoolExecutor`` is free does it dispatch a request; workers encode one
body, POST it and return an :class:`~amp_pandas._transport.Outcome` without touching any shared
state. Per-row work is done on numpy arrays of positions: resolving a request of 1000 rows is a
handful of fancy-index assignments.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Protocol

import numpy as np
import pandas as pd

from ._config import SendSettings, require_key
from ._decide import (
    FINAL,
    KEY_REJECTED_REASON,
    PAUSE,
    RESEND,
    RETRY,
    SPLIT,
    Policy,
    decide,
    may_have_been_applied,
)
from ._encode import MAX_BODY_BYTES, body_overhead, encode_request, new_boundary
from ._interrupt import DeferredInterrupt
from ._plan import Plan, chunk_rows
from ._progress import ProgressCallback, SendProgress, waiting_text
from ._result import STATUSES, build_result, not_succeeded_message
from ._rowstate import RowState
from ._schedule import Item, Scheduler
from ._secret import MASK, redact
from ._status import RESULT_API
from ._transport import AMBIGUOUS, RESPONSE, Connection, Outcome, post
from .errors import AuthenticationError, InterruptedSendWarning, RowsNotSucceededWarning

__all__ = ["SendObserver", "Settled", "send_plan", "user_stacklevel"]

log = logging.getLogger("amp_pandas")

_POLL = 0.05


class SendObserver(Protocol):
    """Hooks the send loop calls from the thread that called :func:`send_plan` (a sync run's
    ledger writes them down). An exception raised by a hook stops the send: nothing more is
    dispatched, the requests in flight are awaited, and the exception is raised at the end.

    An observer may also have a ``prepare(rows, texts)`` method, for spare time: ``rows`` are to
    leave in a later request, whose identifications are written ahead (``texts``, from
    :meth:`~amp_pandas._payloads.Payloads.request_texts`; ``None`` when the payloads hold them
    as they are). It works out now what :meth:`before_request` will need for them, so that the
    hook on the request's path only writes, and records nothing (the rows may never leave).
    The loop calls it with the requests in send order, one at a time and at most
    ``max_workers`` ahead, whenever it would otherwise wait for an answer; the texts written
    for it are the ones the request then sends (they are written once).
    """

    def before_request(self, rows: np.ndarray) -> None:
        """``rows`` (positions) are about to leave in one request (a retry too)."""

    def after_rows_final(self, rows: np.ndarray, statuses: np.ndarray) -> None:
        """``rows`` reached their final status (codes into :data:`STATUSES`): after the answer
        of a request, and for the rows still open when the send ends."""

    def send_over(self, interrupted: bool) -> None:
        """The send is over (every row final); ``interrupted`` by Ctrl-C or not."""


#: Rows given a final status before the send starts (they are never sent): positions, a
#: status code into :data:`STATUSES` and the reason (or ``None``).
Settled = tuple[np.ndarray, int, str | None]


def send_plan(
    plan: Plan,
    settings: SendSettings,
    *,
    progress_callback: ProgressCallback | None = None,
    observer: SendObserver | None = None,
    settled: Sequence[Settled] = (),
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
    observer : SendObserver, optional
        Told before each request leaves and after its rows end (a sync run's ledger).
    settled : sequence of (rows, status code, reason)
        Valid rows that are not to be sent, with the status they end with (a sync run's
        ``unchanged`` rows, and its held rows ``unknown``).

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
    sender = _Sender(plan, settings, key, progress_callback, observer, settled)
    result = sender.run()
    level = user_stacklevel()
    if sender.observer_error is not None:
        raise sender.observer_error
    if sender.auth_failure is not None:
        status, excerpt = sender.auth_failure
        masked = settings.api_key.masked if settings.api_key is not None else MASK
        raise AuthenticationError(
            f"{KEY_REJECTED_REASON} (key {masked}; HTTP {status}: {excerpt}). The send stopped: "
            "check api_key= or the AMPLITUDE_API_KEY environment variable, and the region. "
            "The partial result is in .result (rows never sent are 'not_sent').",
            status_code=status,
            result=result,
        )
    method = "identify" if plan.group is None else "group_identify"
    if sender.interrupted:
        warnings.warn(
            _interrupted_message(result, method), InterruptedSendWarning, stacklevel=level
        )
    else:
        message = not_succeeded_message(result, method)
        if message is not None:
            warnings.warn(message, RowsNotSucceededWarning, stacklevel=level)
    return result


def _observer_prepares(observer: SendObserver | None) -> bool:
    """Whether ``observer`` has work to do ahead of requests (a ``prepare`` hook)."""
    return observer is not None and callable(getattr(observer, "prepare", None))


def user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside amp_pandas."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("amp_pandas"):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _interrupted_message(result: pd.DataFrame, method: str = "identify") -> str:
    counts = result["status"].value_counts()
    parts = ", ".join(f"{int(counts[s]):,} {s}" for s in STATUSES if counts.get(s, 0))
    return (
        f"The send was interrupted; the result is partial ({parts}). Rows 'not_sent' were "
        f'not applied: send them with df[result.status == "not_sent"].amplitude.{method}(...). '
        "Rows 'unknown' were sent without a clear answer and may have been applied."
    )


class _Sender:
    """The state of one send. Only the thread that called ``run`` touches it."""

    def __init__(
        self,
        plan: Plan,
        settings: SendSettings,
        key: str,
        callback: ProgressCallback | None,
        observer: SendObserver | None = None,
        settled: Sequence[Settled] = (),
    ) -> None:
        self.plan = plan
        self.settings = settings
        self._key = key
        self.policy = Policy.from_settings(settings)
        self.rows = RowState(plan)
        for rows, code, reason in settled:
            self.rows.resolve(rows, code, reason)
        self.observer = observer
        self.observer_error: BaseException | None = None
        self.inflight: dict[Future, Item] = {}
        self.abandoned: list[Future] = []
        self.auth_failure: tuple[int, str] | None = None
        self.interrupted = False
        self.rng = random.Random()
        self.boundary = new_boundary()
        self.requests_made = 0
        self.callback = callback
        self.ahead: list[np.ndarray] = []  # requests not yet prepared (see SendObserver.prepare)
        #: requests whose texts were written ahead: their rows (as bytes) -> (rows, texts)
        self.written: dict[bytes, tuple[np.ndarray, object]] = {}

    # ------------------------------------------------------------------ run
    def run(self) -> pd.DataFrame:
        s = self.settings
        plan = self.plan
        overhead = body_overhead(len(self._key.encode()), len(self.boundary))
        order = plan.order
        if self.rows.done[order].any():  # settled rows are not sent
            order = order[~self.rows.done[order]]
        chunks = chunk_rows(plan, order, batch_size=s.batch_size, overhead=overhead)
        self.queue = Scheduler(
            plan, chunks, self.rows.done, s.batch_size, MAX_BODY_BYTES - overhead, s.throttle_pause
        )
        if _observer_prepares(self.observer):
            self.ahead = chunks[::-1]  # popped from the end: in send order
        own_session = s.session is None
        self.conn = Connection.open(s.session, s.endpoint, s.max_workers)
        executor = (
            ThreadPoolExecutor(max_workers=s.max_workers, thread_name_prefix="amp_pandas-send")
            if chunks
            else None
        )
        started = time.monotonic()
        pending = self.rows.pending
        self.progress = SendProgress(
            len(plan), pending, bar=s.progress and pending > 0, callback=self.callback
        )
        self._ctrl_c = DeferredInterrupt()
        try:
            with self._ctrl_c:
                try:
                    if executor is not None:
                        self._loop(executor)
                    self._report()
                except KeyboardInterrupt:
                    self.interrupted = True
                    self._drain_after_interrupt()
            still_open = ~self.rows.done
            self._finalize()
            self._observe_final(np.flatnonzero(still_open))
            self._observe("send_over", self.interrupted)
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
        rows = self.rows
        if log.isEnabledFor(logging.INFO):
            counts = ", ".join(
                f"{int(c):,} {name}" for name, c in zip(STATUSES, rows.counts, strict=True) if c
            )
            log.info(
                "%s: %d rows in %d requests to %s in %.1f s: %s%s",
                "identify" if plan.group is None else "group_identify",
                len(plan),
                self.requests_made,
                s.endpoint,
                time.monotonic() - started,
                counts or "nothing",
                " (interrupted)" if self.interrupted else "",
            )
        result = build_result(plan.index, rows.status, rows.http, rows.error, rows.attempts)
        if plan.group is not None:
            result.attrs[RESULT_API] = "group identify"
        return result

    def _loop(self, executor: ThreadPoolExecutor) -> None:
        while True:
            if self._ctrl_c.requested:  # a safe point: nothing is half-recorded
                raise KeyboardInterrupt
            self._harvest()
            now = time.monotonic()
            next_time = math.inf
            if self.auth_failure is None and self.observer_error is None:
                free = self.settings.max_workers - len(self.inflight)
                items, next_time = self.queue.take(free, now)
                for item in items:
                    self._submit(executor, item)
            if not self.inflight:
                if self.auth_failure is not None or self.observer_error or not self.queue:
                    return
                if next_time == math.inf:
                    self._deadlock()
                    return
            self._report(now)
            if self.inflight and self._prepare_ahead():
                continue
            timeout = max(0.0, min(_POLL, next_time - now))
            if self.inflight:
                wait(list(self.inflight), timeout=timeout, return_when=FIRST_COMPLETED)
            else:
                time.sleep(timeout)

    def _prepare_ahead(self) -> bool:
        """Spend time the loop would wait on preparing the next request ahead (one); ``False``
        when there is nothing to prepare. An answer that has come in is handled first."""
        if not self.ahead or self.observer_error is not None:
            return False
        if len(self.written) >= self.settings.max_workers:
            # texts whose rows went in another request (coalesced after a pause) are dropped
            for key in [k for k, (rows, _) in self.written.items() if self._gone(rows)]:
                del self.written[key]
            if len(self.written) >= self.settings.max_workers:
                return False
        if any(f.done() for f in self.inflight):
            return True
        rows = self.ahead.pop()
        while self._gone(rows):  # sent before its turn came: nothing to prepare
            if not self.ahead:
                return False
            rows = self.ahead.pop()
        texts = self.plan.payload.request_texts(rows)
        if texts is not None:
            self.written[rows.tobytes()] = (rows, texts)
        self._observe("prepare", rows, texts)
        # Let a worker that has an answer to read take the interpreter now, rather than after
        # the interpreter's switch interval (5 ms).
        time.sleep(0)
        return True

    def _gone(self, rows: np.ndarray) -> bool:
        """Whether a request's ``rows`` have been sent (or are final): its first row tells, as a
        request's rows first leave together."""
        state, first = self.rows, int(rows[0])
        return bool(state.sent_unanswered[first] or state.attempts[first] or state.done[first])

    # ------------------------------------------------------------------ requests
    def _submit(self, executor: ThreadPoolExecutor, item: Item) -> None:
        if self.observer_error is not None or not self._observe("before_request", item.rows):
            # the observer could not record the request: it does not leave
            self.queue.requeue(item, item.rows)
            return
        # Mark first: if Ctrl-C lands between these lines, the rows count as sent and end
        # 'unknown' rather than 'not_sent' -- pessimistic, never wrong.
        self.rows.sent_unanswered[item.rows] = True
        texts = None
        if self.written:  # texts of these rows written ahead
            _, texts = self.written.pop(item.rows.tobytes(), (None, None))
        future = executor.submit(self._request, item.rows, texts)
        self.inflight[future] = item
        self.requests_made += 1

    def _request(self, rows: np.ndarray, texts: object = None) -> tuple[Outcome, int]:
        """Runs in a worker: encode one body (from ``texts`` when they were written ahead),
        POST it. Touches no shared state."""
        array = self.plan.payload.json_array(rows, texts)
        body, kind = encode_request(self._key, array, self.boundary)
        conn = self.conn
        outcome = post(
            conn.session,
            self.settings.endpoint,
            body,
            content_type=kind,
            timeout=self.settings.timeout,
            verify=conn.verify,
            proxies=conn.proxies,
        )
        return outcome, len(body)

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
            self.rows.sent_unanswered[item.rows] = False
            self._observe_final(item.rows)

    def _observe(self, hook: str, *args: object) -> bool:
        """Call an observer hook; an error stops the send (kept, raised at the end)."""
        if self.observer is None:
            return True
        try:
            getattr(self.observer, hook)(*args)
        except Exception as exc:
            if self.observer_error is None:
                self.observer_error = exc
            return False
        return True

    def _observe_final(self, rows: np.ndarray) -> None:
        """Tell the observer which of ``rows`` are final now."""
        if self.observer is None or not len(rows):
            return
        final = rows[self.rows.done[rows]]
        if len(final):
            self._observe("after_rows_final", final, self.rows.status[final])

    # ------------------------------------------------------------------ answers
    def _handle(self, item: Item, outcome: Outcome) -> None:
        """Apply the decision on one answer."""
        rows, state = item.rows, self.rows
        state.attempts[rows] += 1
        now = time.monotonic()
        if outcome.kind == RESPONSE:
            code = int(outcome.status or 0)
            state.http[rows] = code
            if not 200 <= code < 300 and outcome.body:
                # Reasons quote the body: take the key out before anything reads it. The whole
                # body: a 429's list of throttled ids can be long.
                text = redact(outcome.body.decode("utf-8", "replace"), self._key)
                outcome = dataclasses.replace(outcome, body=text.encode())
        ambiguous = may_have_been_applied(outcome)
        decision = decide(
            outcome,
            state.request_rows(rows, item.retries, ambiguous=ambiguous),
            self.policy,
            now=now,
            jitter=self.rng.random(),
        )
        if decision.maybe_applied:
            state.maybe_applied[rows] = True
        for step in decision.steps:
            some = rows[step.rows]
            if step.action == FINAL:
                state.resolve(some, STATUSES.index(step.status or ""), step.reason)
            elif step.action == RETRY:
                state.error[some] = step.reason
                self.queue.requeue(item, some, not_before=now + step.delay, retries=step.retries)
            elif step.action == SPLIT:
                self.queue.split(item)
            elif step.action == RESEND:
                state.error[some] = None
                self.queue.resend_later(item, some)
            elif step.action == PAUSE:
                state.throttled(some, now)
                state.error[some] = step.reason
                plan = self.plan
                ids = {*plan.user_id[some].tolist(), *plan.device_id[some].tolist()} - {None}
                if plan.group is not None:
                    ids |= set(plan.group[some].tolist()) - {None}
                self.queue.requeue(item, some, not_before=now + step.delay, paused_ids=len(ids))
                log.debug("HTTP 429: pausing %d rows (%d ids) for %g s", len(some), len(ids),
                          step.delay)
        if decision.stop is not None and self.auth_failure is None:
            self.auth_failure = decision.stop

    # ------------------------------------------------------------------ stop, interrupt
    def _drain_after_interrupt(self) -> None:
        """Cancel what has not started; give requests in flight ``interrupt_grace`` seconds."""
        for future in list(self.inflight):
            if future.cancel():  # never started: its rows were not sent
                item = self.inflight.pop(future)
                self.rows.sent_unanswered[item.rows] = False
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
            self.rows.attempts[item.rows] += 1
            self.abandoned.append(future)
        self.inflight.clear()

    def _finalize(self) -> None:
        """Give every row that is not final yet its status: ``unknown`` or ``not_sent``."""
        if self.auth_failure is not None:
            why = "the send stopped because Amplitude rejected the API key"
        elif self.interrupted:
            why = "the send was interrupted"
        else:
            why = "the send stopped"
        self.rows.finalize(why)

    def _deadlock(self) -> None:
        # Cannot happen (dependencies always point to earlier rows); never hang if it does.
        log.error("amp_pandas: internal scheduling error; rows left are reported as not_sent")
        for item in self.queue.drain():
            self.rows.error[item.rows] = "internal scheduling error (please report)"

    def _close_session_later(self) -> None:
        if not self.abandoned:
            self.conn.session.close()
            return
        # Close once the abandoned requests are over; closing under them would only turn
        # their (ignored) answers into errors.
        futures, session = list(self.abandoned), self.conn.session

        def close() -> None:
            wait(futures)
            session.close()

        threading.Thread(target=close, name="amp_pandas-close", daemon=True).start()

    # ------------------------------------------------------------------ progress
    def _report(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        paused = self.queue.paused(now)
        noun = "id" if self.plan.group is None else "group"
        waiting = waiting_text(*paused, noun) if paused is not None else None
        counts = dict(zip(STATUSES, self.rows.counts.tolist(), strict=True))
        self.progress.update(counts, self.rows.pending, waiting)
