"""Progress of a send: a ``tqdm.auto`` bar (terminal or notebook) and/or a callback.

The sender reports to one :class:`SendProgress`. It drives a ``tqdm.auto`` bar over the rows to
send (when ``settings.progress`` is on) and calls an optional callback, so that a notebook widget
can observe the send or replace the bar (pass ``progress=False`` and a callback)::

    def callback(done_counts: dict[str, int], waiting: str | None) -> None: ...

``done_counts`` maps every status of :data:`~amp_pandas._result.STATUSES` to the rows that reached
it so far, plus ``"pending"`` (rows still to send or retry) and ``"rows"`` (all rows of the frame);
``waiting`` is e.g. ``"waiting 12s for 37 throttled ids"`` while ids are paused, else ``None``.
The callback runs in the thread that called the send, between requests; it must be quick. A
``KeyboardInterrupt`` raised inside it interrupts the send like Ctrl-C; any other exception is
logged once and the callback is not called again (a broken display never breaks a send).

No text here ever holds the API key: it is built from counts only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ProgressCallback", "SendProgress", "waiting_text"]

log = logging.getLogger("amp_pandas")

ProgressCallback = Callable[[dict[str, int], "str | None"], None]


def waiting_text(seconds: float, ids: int, noun: str = "id") -> str:
    """``"waiting 12s for 37 throttled ids"`` (``noun="group"``: throttled groups).

    Examples
    --------
    >>> waiting_text(11.2, 37), waiting_text(0.4, 1), waiting_text(3, 2, "group")
    ('waiting 12s for 37 throttled ids', 'waiting 1s for 1 throttled id', \
'waiting 3s for 2 throttled groups')
    """
    plural = "s" if ids != 1 else ""
    return f"waiting {max(1, math.ceil(seconds))}s for {ids:,} throttled {noun}{plural}"


class SendProgress:
    """Reports a send's progress to a ``tqdm.auto`` bar and/or a callback.

    Parameters
    ----------
    total_rows : int
        All rows of the frame.
    to_send : int
        Rows that will be sent (the bar's total).
    bar : bool
        Show a ``tqdm.auto`` bar.
    callback : callable, optional
        Called as ``callback(done_counts, waiting)`` whenever rows resolve or the waiting
        state changes.
    """

    def __init__(
        self,
        total_rows: int,
        to_send: int,
        *,
        bar: bool = True,
        callback: ProgressCallback | None = None,
        desc: str = "Amplitude identify",
    ) -> None:
        self.total_rows = total_rows
        self.to_send = to_send
        self.callback = callback
        self._bar: Any = None
        self._last: tuple[Any, ...] | None = None
        self._n = 0
        if bar and to_send:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=to_send, desc=desc, unit="row", dynamic_ncols=True)

    @property
    def bar(self) -> Any:
        """The ``tqdm`` bar, or ``None``."""
        return self._bar

    def update(self, counts: Mapping[str, int], pending: int, waiting: str | None) -> None:
        """Report: ``counts`` per status so far, rows ``pending``, the ``waiting`` text."""
        key = (tuple(counts.values()), pending, waiting)
        if key == self._last:
            return
        self._last = key
        if self._bar is not None:
            done = self.to_send - pending
            # The postfix first, then the count: update() redraws (rate-limited by tqdm); a
            # change of the waiting text alone is drawn at once (it changes once a second).
            self._bar.set_postfix_str(self.postfix(counts, waiting), refresh=done == self._n)
            if done != self._n:
                self._bar.update(done - self._n)
                self._n = done
        if self.callback is not None:
            try:
                self.callback({**counts, "pending": pending, "rows": self.total_rows}, waiting)
            except Exception:  # a broken display must not break the send (Ctrl-C still does)
                log.warning("progress callback failed; it is not called again", exc_info=True)
                self.callback = None

    @staticmethod
    def postfix(counts: Mapping[str, int], waiting: str | None) -> str:
        """``"succeeded 950 · failed 3 · throttled 0"`` (+ unknown, + the waiting text)."""
        parts = [
            f"succeeded {counts.get('success', 0):,}",
            f"failed {counts.get('failed', 0):,}",
            f"throttled {counts.get('throttled', 0):,}",
        ]
        if counts.get("unknown"):
            parts.append(f"unknown {counts['unknown']:,}")
        if waiting:
            parts.append(waiting)
        return " · ".join(parts)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
