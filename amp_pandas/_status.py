"""The statuses a row can end a send with: their names, codes, and the count per status.

The vocabulary shared by the result (:mod:`amp_pandas._result`), the sender that fills it and the
display that renders it. It imports nothing from the package, so every module can read it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "FAILED",
    "INVALID",
    "NOT_SENT",
    "SKIPPED",
    "STATUSES",
    "SUCCESS",
    "THROTTLED",
    "UNCHANGED",
    "UNKNOWN",
    "WARN_STATUSES",
    "summarize",
]

STATUSES = (
    "success", "invalid", "skipped", "failed", "throttled", "unknown", "not_sent", "unchanged"
)
SUCCESS, INVALID, SKIPPED, FAILED, THROTTLED, UNKNOWN, NOT_SENT, UNCHANGED = range(len(STATUSES))
#: Statuses that make a send warn (``skipped`` rows had nothing to send; ``unchanged`` rows of a
#: sync run were acknowledged before, byte for byte, and are not sent again).
WARN_STATUSES = ("invalid", "failed", "throttled", "unknown", "not_sent")


def summarize(result: pd.DataFrame) -> pd.Series:
    """Rows per status, in the order of :data:`STATUSES` (zeros included).

    Examples
    --------
    >>> summarize(pd.DataFrame({"status": ["success", "failed", "success"]})).to_dict()
    {'success': 2, 'invalid': 0, 'skipped': 0, 'failed': 1, 'throttled': 0, 'unknown': 0, \
'not_sent': 0, 'unchanged': 0}
    """
    counts = result["status"].value_counts().reindex(list(STATUSES), fill_value=0)
    return pd.Series(
        counts.to_numpy(dtype=np.int64), index=pd.Index(STATUSES, name="status"), name="rows"
    )
