"""A frame whose every row carries a unique marker, and the checks that compare a send's result
with what the sandbox applied, row by row.

Row ``i`` belongs to user ``user-{i % n_users}`` and always sets ``marker = "r<i>"``; by ``i % 4``
it also holds one more operation:

====  =====================================  ===========
kind  operation                              idempotent
====  =====================================  ===========
0     ``$set plan`` + ``$postInsert tags``   yes
1     ``$add logins 1``                      no
2     ``$append applied_rows "r<i>"``        no
3     ``$prepend prepended_rows "r<i>"``     no
====  =====================================  ===========

The sandbox's ``applied`` log lists every identification it applied, so counting the markers
there says how often each row was applied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

STATUSES = ("success", "invalid", "skipped", "failed", "throttled", "unknown", "not_sent")
#: Statuses that promise the row was not applied.
NOT_APPLIED = ("invalid", "skipped", "failed", "throttled", "not_sent")
MAPPING: dict[str, Any] = {
    "user_id": "uid",
    "set": {"marker": "marker", "plan": "plan"},
    "post_insert": {"tags": "tag"},
    "add": {"logins": "logins"},
    "append": {"applied_rows": "app"},
    "prepend": {"prepended_rows": "pre"},
}


def mixed_frame(n: int = 5000, n_users: int | None = None, *, start: int = 0) -> pd.DataFrame:
    """``n`` rows (markers ``r<start>`` ...), two rows per user by default, index ``row<i>``."""
    n_users = n_users or max(1, n // 2)
    i = np.arange(start, start + n)
    kind = i % 4
    marker = np.array([f"r{k}" for k in i], dtype=object)

    def only(k: int, values: np.ndarray) -> np.ndarray:
        out = np.full(n, None, dtype=object)
        out[kind == k] = values[kind == k]
        return out

    return pd.DataFrame(
        {
            "uid": [f"user-{k % n_users:06d}" for k in i],
            "marker": marker,
            "plan": only(0, np.array(["pro", "free"], dtype=object)[i % 2]),
            "tag": only(0, np.array([f"t{k % 7}" for k in i], dtype=object)),
            "logins": pd.array(np.where(kind == 1, 1, None), dtype="Int64"),
            "app": only(2, marker),
            "pre": only(3, marker),
        },
        index=pd.Index([f"row{k}" for k in i], name="row"),
    )


def non_idempotent(df: pd.DataFrame) -> np.ndarray:
    """Rows holding ``$add``, ``$append`` or ``$prepend``."""
    return df["plan"].isna().to_numpy()


def marker_of(identification: dict[str, Any]) -> str | None:
    props = identification.get("user_properties") or {}
    return (props.get("$set") or {}).get("marker")


def applied_counts(df: pd.DataFrame, applied: Iterable[dict[str, Any]]) -> np.ndarray:
    """How many times the sandbox applied each row of ``df`` (by marker)."""
    counts = Counter(marker_of(i) for i in applied)
    return np.array([counts.get(m, 0) for m in df["marker"].tolist()], dtype=np.int64)


def markers_in(records: Iterable[Any], statuses: Iterable[int | None]) -> set[str]:
    """Markers of the identifications in requests the sandbox answered with ``statuses``."""
    wanted = set(statuses)
    out: set[str] = set()
    for record in records:
        if record.status in wanted and record.identifications:
            out.update(m for m in map(marker_of, record.identifications) if m is not None)
    return out


def not_last_of_user(records: Iterable[Any], statuses: Iterable[int | None]) -> set[str]:
    """Markers of rows that, in a request answered with ``statuses``, have a later row of the
    same user in that request: the rows the per-user order rule never retries after it."""
    wanted = set(statuses)
    out: set[str] = set()
    for record in records:
        if record.status not in wanted or not record.identifications:
            continue
        last: dict[Any, int] = {}
        for position, identification in enumerate(record.identifications):
            last[identification.get("user_id") or identification.get("device_id")] = position
        for position, identification in enumerate(record.identifications):
            key = identification.get("user_id") or identification.get("device_id")
            marker = marker_of(identification)
            if position < last[key] and marker is not None:
                out.add(marker)
    return out


@dataclass
class Check:
    """What a comparison found; ``problems`` is empty when the result is honest."""

    counts: np.ndarray
    problems: list[str]

    def __bool__(self) -> bool:  # truthy when all is well
        return not self.problems


def check_result(
    result: pd.DataFrame,
    df: pd.DataFrame,
    counts: np.ndarray,
    *,
    retry_ambiguous: bool = False,
    ambiguity: bool = True,
    max_examples: int = 5,
) -> list[str]:
    """Every promise of the send that can be checked from the result and the applied counts.

    Returns one line per broken promise (with example rows), empty when all hold.

    * the result has the frame's index, and each row exactly one of the seven statuses;
    * every ``success`` row was applied at least once, and exactly once when it was carried by
      one request only, when it holds ``$add/$append/$prepend`` (without ``retry_ambiguous``),
      or when the faults had no ambiguous outcome (``ambiguity=False``);
    * no row was applied more often than requests carried it (``attempts``);
    * rows ``failed``, ``throttled``, ``not_sent`` (and ``invalid``, ``skipped``) were not applied;
    * no ``$add/$append/$prepend`` row was applied twice without ``retry_ambiguous``;
    * ``unknown`` only when the faults could make an outcome ambiguous.
    """
    problems: list[str] = []

    def expect(mask: np.ndarray, what: str) -> None:
        if mask.any():
            rows = np.flatnonzero(mask)[:max_examples]
            detail = ", ".join(
                f"{df.index[p]} (status {status[p]}, applied {counts[p]}, attempts "
                f"{attempts[p]}, error {result['error'].iloc[p]!r})"
                for p in rows
            )
            problems.append(f"{int(mask.sum())} rows {what}: {detail}")

    if not result.index.equals(df.index):
        return ["the result's index is not the frame's index"]
    status = result["status"].to_numpy(dtype=object)
    attempts = result["attempts"].to_numpy(dtype=np.int64)
    expect(~np.isin(status, STATUSES), "without one of the seven statuses")
    success = status == "success"
    once_required = attempts == 1
    risky = non_idempotent(df)
    if not retry_ambiguous:
        once_required = once_required | risky
    if not ambiguity:
        once_required = np.ones(len(df), dtype=bool)
    expect(success & (counts < 1), "'success' but never applied")
    expect(success & once_required & (counts != 1), "'success' but not applied exactly once")
    expect(counts > attempts, "applied more often than requests carried them")
    expect(np.isin(status, NOT_APPLIED) & (counts > 0), "reported as not applied, but applied")
    if not retry_ambiguous:
        expect(risky & (counts > 1), "holding $add/$append/$prepend applied twice")
    if not ambiguity:
        expect(status == "unknown", "'unknown' although no outcome was ambiguous")
    return problems


def summary(result: pd.DataFrame) -> dict[str, int]:
    return {k: int(v) for k, v in result["status"].value_counts().items()}
