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
    ============  ==========================================================================

``http_status``
    The last HTTP status seen for the row (nullable ``Int64``).
``error``
    Why the row did not succeed, or ``<NA>``.
``attempts``
    How many requests carried the row.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "STATUSES",
    "SendResult",
    "build_result",
    "not_succeeded_message",
    "result_html",
    "result_text",
    "summarize",
]

STATUSES = ("success", "invalid", "skipped", "failed", "throttled", "unknown", "not_sent")
SUCCESS, INVALID, SKIPPED, FAILED, THROTTLED, UNKNOWN, NOT_SENT = range(len(STATUSES))
#: Statuses that make a send warn (``skipped`` rows had nothing to send).
WARN_STATUSES = ("invalid", "failed", "throttled", "unknown", "not_sent")
RERUN_HINT = 'df[result.status != "success"].amplitude.identify(...)'

_COLORS = {
    "success": "#1a7f37",
    "invalid": "#bc4c00",
    "skipped": "#6e7781",
    "failed": "#cf222e",
    "throttled": "#8250df",
    "unknown": "#9a6700",
    "not_sent": "#57606a",
}
_MAX_REASON_GROUPS = 10
_MAX_REASON_CHARS = 160


class SendResult(pd.DataFrame):
    """The per-row result of a send: a DataFrame that displays its counts first.

    Anything derived from it (filtering, selecting, copying) is a plain ``pandas.DataFrame``.
    Its text and HTML views lead with the count of rows per status, then the reasons and the
    rows that did not succeed, then the rest.
    """

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame

    def __repr__(self) -> str:
        return result_text(self)

    def _repr_html_(self) -> str:
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


def summarize(result: pd.DataFrame) -> pd.Series:
    """Rows per status, in the order of :data:`STATUSES` (zeros included).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> r = build_result(pd.RangeIndex(3), np.array([0, 0, 3]), np.array([200, 200, 400]),
    ...                  np.array([None, None, "bad"], dtype=object), np.ones(3, dtype=int))
    >>> summarize(r).to_dict()
    {'success': 2, 'invalid': 0, 'skipped': 0, 'failed': 1, 'throttled': 0, 'unknown': 0, \
'not_sent': 0}
    """
    counts = result["status"].value_counts().reindex(list(STATUSES), fill_value=0)
    return pd.Series(
        counts.to_numpy(dtype=np.int64), index=pd.Index(STATUSES, name="status"), name="rows"
    )


def _counts_text(counts: pd.Series) -> str:
    shown = [f"{n:,} {s}" for s, n in counts.items() if n]
    return " · ".join(shown) if shown else "no rows"


def _reason_groups(result: pd.DataFrame) -> pd.DataFrame:
    """Rows that did not succeed, grouped by (status, error): count and first row labels."""
    bad = result.loc[result["status"] != "success", ["status", "error"]]
    if bad.empty:
        return pd.DataFrame(columns=["status", "error", "count", "rows"])
    positions = pd.Series(np.arange(len(bad)), index=bad.index)
    labels = bad.index.tolist()  # Python scalars: repr 17, not np.int64(17)
    grouped = (
        pd.DataFrame(
            {
                "status": bad["status"].to_numpy(),
                "error": bad["error"].fillna("").to_numpy(dtype=object),
                "pos": positions.to_numpy(),
            }
        )
        .groupby(["status", "error"], sort=False)["pos"]
        .agg(count="size", first=lambda p: list(p[:5]))
        .reset_index()
    )
    order = grouped["status"].map({s: i for i, s in enumerate(STATUSES)})
    grouped = grouped.assign(_o=order).sort_values(
        ["_o", "count"], ascending=[True, False], kind="stable"
    )
    grouped["rows"] = [
        ", ".join(repr(labels[p]) for p in first) + (" …" if n > len(first) else "")
        for first, n in zip(grouped["first"], grouped["count"])
    ]
    return grouped[["status", "error", "count", "rows"]].reset_index(drop=True)


def _clip(text: Any, limit: int = _MAX_REASON_CHARS) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _display_frame(result: pd.DataFrame) -> pd.DataFrame:
    """The rows that did not succeed first (in row order), then the rest."""
    frame = pd.DataFrame(result)
    ok = (frame["status"] == "success").to_numpy()
    if not ok.any() or ok.all():
        return frame
    return frame.iloc[np.argsort(ok, kind="stable")]


def result_text(result: pd.DataFrame) -> str:
    """The text view: counts by status, reasons, then the rows (failures first)."""
    counts = summarize(result)
    lines = [f"Amplitude identify result — {len(result):,} rows: {_counts_text(counts)}"]
    groups = _reason_groups(result)
    if not groups.empty:
        lines.append("Not succeeded, by reason:")
        for r in groups.head(_MAX_REASON_GROUPS).itertuples(index=False):
            lines.append(f"  {r.status:<9} {r.count:>7,}  {_clip(r.error) or '-'}  (rows {r.rows})")
        if len(groups) > _MAX_REASON_GROUPS:
            lines.append(f"  … {len(groups) - _MAX_REASON_GROUPS:,} more reasons")
    lines += ["", pd.DataFrame.__repr__(_display_frame(result))]
    return "\n".join(lines)


def status_badges(result: pd.DataFrame) -> list[str]:
    """One colored ``<span>`` per status present: ``4 success``, ``1 invalid`` ..."""
    return [
        f'<span class="amp-pandas-status amp-pandas-{s}" style="color:{_COLORS[s]};'
        f'font-weight:bold">{n:,} {html.escape(s)}</span>'
        for s, n in summarize(result).items()
        if n
    ]


def result_html(result: pd.DataFrame) -> str:
    """The HTML view: a colored count per status, reasons, then the rows (failures first)."""
    badges = status_badges(result)
    parts = [
        '<div class="amp-pandas-result">',
        f"<p><strong>Amplitude identify result</strong> — {len(result):,} rows: "
        + (" · ".join(badges) or "no rows")
        + "</p>",
    ]
    groups = _reason_groups(result)
    if not groups.empty:
        shown = groups.head(_MAX_REASON_GROUPS).assign(error=lambda g: g["error"].map(_clip))
        parts += ["<h4>Not succeeded, by reason</h4>", shown.to_html(index=False, escape=True)]
    frame = _display_frame(result)
    table = pd.DataFrame._repr_html_(frame)
    if table is None:  # display.notebook_repr_html is off
        table = frame.to_html(max_rows=pd.get_option("display.max_rows"), escape=True)
    parts += [table, "</div>"]
    return "\n".join(parts)


def not_succeeded_message(result: pd.DataFrame) -> str | None:
    """The warning text when rows did not succeed, or ``None`` when there is nothing to say."""
    counts = summarize(result)
    bad = counts[list(WARN_STATUSES)]
    total = int(bad.sum())
    if not total:
        return None
    detail = ", ".join(f"{n:,} {s}" for s, n in bad.items() if n)
    message = (
        f"{total:,} of {len(result):,} rows did not succeed ({detail}); the reasons are in "
        f"result.error. To re-run them once the cause is fixed: {RERUN_HINT}"
    )
    if counts["unknown"]:
        message += (
            ". Rows with status 'unknown' may already have been applied: re-running rows that "
            "hold $add, $append or $prepend can apply them twice"
        )
    return message + "."
