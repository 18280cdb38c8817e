"""Ctrl-C during a send: turned into a flag that the send loop checks at safe points.

A ``KeyboardInterrupt`` raised at an arbitrary bytecode could land between receiving an answer
and recording it, and that answer would be lost (its rows called ``unknown`` although they
succeeded). :class:`DeferredInterrupt` defers the first Ctrl-C to the loop's next safe point; a
second Ctrl-C raises at once (the user wants out).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["DeferredInterrupt"]


class DeferredInterrupt:
    """While active, the first SIGINT only sets :attr:`requested`; the second raises.

    It takes over SIGINT only when it runs in the main thread and Python's default handler is
    installed. Otherwise (another thread, a custom handler, or SIGINT ignored, as in a
    ``nohup`` job) it changes nothing, and on exit it restores exactly what it replaced.

    Examples
    --------
    >>> with DeferredInterrupt() as ctrl_c:
    ...     ctrl_c.requested
    False
    """

    def __init__(self) -> None:
        self.count = 0
        self._previous: Any = None
        self._installed = False

    @property
    def requested(self) -> bool:
        return self.count > 0

    def _handler(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt

    def __enter__(self) -> DeferredInterrupt:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            self._installed = False
            # Restore only our own handler: one installed meanwhile by someone else stays.
            if signal.getsignal(signal.SIGINT) == self._handler:
                signal.signal(signal.SIGINT, self._previous)
            self._previous = None
