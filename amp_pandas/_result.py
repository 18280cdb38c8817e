"""The result of a send: one row per input row saying what became of it.

The result is a pandas DataFrame with the input's index and four columns:

``status``
    One of :data:`STATUSES`:

    ============  ==========================================================================
    success       Amplitude accepted the identification (HTTP 200).
    invalid       Not sent: the row failed a check before sending (see ``error``).
    skipped       Not sent: nothing to send for this row.
    failed        Not applied: Amplitude rejected it (e.g. HTTP 400 for this row, 413), or
                  it could not be delivered (503 or no connection after every retry).
    throttled     Not applied: Amplitude throttled its ids (HTTP 429) for longer than
                  ``throttle_budget``.
    unknown       Sent, but no clear answer: it may or may not have been applied.
    not_sent      Never sent, or only answered with "not applied" (the send was interrupted
                  or stopped).
    unchanged     Not sent: a sync run (``sync=``) found this user's identifications byte for
                  byte what the job last sent and Amplitude acknowledged.
    ============  ==========================================================================

``http_status``
    The last HTTP status seen for the row (nullable ``Int64``).
``error``
    Why the row did not succeed, or ``<NA>``.
``attempts``
    How many requests carried the row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._status import (
    FAILED,
    INVALID,
    NOT_SENT,
    SKIPPED,
    STATUSES,
    SUCCESS,
    THROTTLED,
    UNCHANGED,
    UNKNOWN,
    WARN_STATUSES,
    summarize,
)

__all__ = [
    "FAILED",
    "INVALID",
    "NOT_SENT",
    "RERUN_HINT",
    "SKIPPED",
    "STATUSES",
    "SUCCESS",
    "SendResult",
    "THROTTLED",
    "UNCHANGED",
    "UNKNOWN",
    "WARN_STATUSES",
    "build_result",
    "not_succeeded_message",
    "summarize",
]

RERUN_HINT = 'df[result.status != "success"].amplitude.identify(...)'


class SendResult(pd.DataFrame):
    """The per-row result of a send: a DataFrame that displays its counts first.

    It holds data only; :mod:`amp_pandas._display` renders it. Anything derived from it
    (filtering, selecting, copying) is a plain ``pandas.DataFrame``. Its text and HTML views lead
    with the count of rows per status, then the reasons and the rows that did not succeed, then
    the rest.

    Attributes
    ----------
    removed : pandas.DataFrame or None
        For a sync run (``sync=``): the users the job had sent before that are absent now, one
        row each: ``user_id``, ``device_id``, ``identification`` (the revert sent, or
        ``None``), ``status`` (a result status for a revert sent; ``kept`` with
        ``removed="keep"``; ``skipped`` when nothing the job did can be undone), ``error`` and
        ``not_undone`` (what the revert leaves in place). For ``group_identify`` the removed
        groups, with ``group_type`` and ``group_value`` in place of the two ids. ``None``
        without ``sync=``.
    """

    _metadata = ["removed"]
    removed: pd.DataFrame | None = None

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame

    def __repr__(self) -> str:
        from ._display import result_text

        return result_text(self)

    def _repr_html_(self) -> str:
        from ._display import result_html

        return result_html(self)


def build_result(
    index: pd.Index,
    status: np.ndarray,
    http_status: np.ndarray,
    error: np.ndarray,
    attempts: np.ndarray,
) -> SendResult:
    """Assemble the result from per-row arrays (copied, so later changes cannot reach it).

    Parameters
    ----------
    status : ndarray of int
        Codes into :data:`STATUSES`.
    http_status : ndarray of int
        The last HTTP status, ``<= 0`` where none was seen.
    error : ndarray of object
        Reason per row, ``None`` for none.
    attempts : ndarray of int
    """
    names = np.array(STATUSES, dtype=object)[np.asarray(status, dtype=np.intp)]
    http = np.asarray(http_status, dtype=np.int64).copy()
    http_mask = http <= 0
    http[http_mask] = 0
    return SendResult(
        {
            "status": pd.Series(names, index=index, dtype="str", copy=True),
            "http_status": pd.Series(
                pd.arrays.IntegerArray(http, http_mask.copy()), index=index, copy=True
            ),
            "error": pd.Series(
                np.array(error, dtype=object), index=index, dtype="string", copy=True
            ),
            "attempts": pd.Series(np.asarray(attempts, dtype=np.int64), index=index, copy=True),
        },
        index=index,
    )


def not_succeeded_message(result: pd.DataFrame, method: str = "identify") -> str | None:
    """The warning text when rows did not succeed, or ``None`` when there is nothing to say.

    ``method`` is the accessor method the re-run hint names (``"group_identify"``...)."""
    counts = summarize(result)
    bad = counts[list(WARN_STATUSES)]
    total = int(bad.sum())
    if not total:
        return None
    detail = ", ".join(f"{n:,} {s}" for s, n in bad.items() if n)
    message = (
        f"{total:,} of {len(result):,} rows did not succeed ({detail}); the reasons are in "
        f"result.error. To re-run them once the cause is fixed: "
        + RERUN_HINT.replace(".identify(", f".{method}(")
    )
    if counts["unknown"]:
        message += (
            ". Rows with status 'unknown' may already have been applied: re-running rows that "
            "hold $add, $append or $prepend can apply them twice"
        )
    return message + "."
