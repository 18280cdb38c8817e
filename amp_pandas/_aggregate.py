"""Dry runs added up over parts: whole-data counts and the first problems of each kind.

Data checked a part at a time (a Dask partition, a chunk of a file) never exists as one
:class:`~amp_pandas.IdentifyPreview`. Each part's preview is reduced to a :class:`PartCheck`
(a few counts and at most ``keep`` problems per kind); a :class:`Tally` adds them up in part
order, in memory bounded by the number of problem kinds; an :class:`AggregatePreview` shows the
total and sends through a function given by the entry point that made it.
"""

from __future__ import annotations

import html
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ._result import not_succeeded_message
from .errors import RowsNotSucceededWarning

__all__ = [
    "AggregatePreview",
    "PartCheck",
    "SUMMARY_KEYS",
    "Tally",
    "check_part",
    "warn_if_not_succeeded",
]

#: The counts of a dry run, as in :attr:`amp_pandas.IdentifyPreview.summary`.
SUMMARY_KEYS = ("rows", "valid", "invalid", "skipped", "warnings", "requests", "bytes")
#: What makes two problems the same kind.
KIND = ["column", "severity"]
PROBLEM_COLUMNS = ["row", "column", "severity", "message"]
#: Problems kept per kind unless the caller says otherwise.
DEFAULT_KEEP = 5


@dataclass(frozen=True)
class PartCheck:
    """One part's dry run, reduced: counts, the first problems of each kind, counts per kind."""

    summary: dict[str, int]
    problems: pd.DataFrame
    kinds: pd.DataFrame


def _empty_kinds() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "column": pd.Series([], dtype=object),
            "severity": pd.Series([], dtype=object),
            "rows": pd.Series([], dtype="int64"),
        }
    )


def _empty_problems() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in PROBLEM_COLUMNS})


def check_part(summary: pd.Series, problems: pd.DataFrame, keep: int) -> PartCheck:
    """Reduce one part's preview (its ``summary`` and ``problems``) to a :class:`PartCheck`.

    Examples
    --------
    >>> import pandas as pd
    >>> problems = pd.DataFrame({"row": [3, 4, 9], "column": ["uid"] * 3,
    ...                          "severity": ["error"] * 3, "message": ["a", "b", "c"]})
    >>> part = check_part(pd.Series({"rows": 10, "invalid": 3}), problems, keep=2)
    >>> part.problems["row"].tolist(), part.kinds["rows"].tolist()
    ([3, 4], [3])
    """
    counts = {k: int(summary.get(k, 0)) for k in SUMMARY_KEYS}
    problems = problems.loc[:, PROBLEM_COLUMNS].astype(object)
    if problems.empty:
        return PartCheck(counts, _empty_problems(), _empty_kinds())
    kinds = problems.groupby(KIND, sort=False).size().rename("rows").reset_index()
    first = problems.groupby(KIND, sort=False).head(keep).reset_index(drop=True)
    return PartCheck(counts, first, kinds.astype({"rows": "int64"}))


class Tally:
    """Adds up :class:`PartCheck` objects in part order.

    Examples
    --------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"row": [1], "column": ["uid"], "severity": ["error"], "message": ["m"]})
    >>> tally = Tally(keep=1)
    >>> tally.add(check_part(pd.Series({"rows": 5, "invalid": 1}), p, keep=1))
    >>> tally.add(check_part(pd.Series({"rows": 5, "invalid": 1}), p.assign(row=7), keep=1))
    >>> int(tally.summary["rows"]), tally.problems["row"].tolist()
    (10, [1])
    >>> tally.problem_counts.values.tolist()
    [['uid', 'error', 2]]
    """

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        self.keep = keep
        self.parts = 0
        self._counts = dict.fromkeys(SUMMARY_KEYS, 0)
        self._problems = _empty_problems()
        self._kinds = _empty_kinds()

    def add(self, part: PartCheck) -> None:
        self.parts += 1
        for key, value in part.summary.items():
            self._counts[key] += value
        if part.kinds.empty:
            return
        problems = pd.concat([self._problems, part.problems], ignore_index=True)
        self._problems = problems.groupby(KIND, sort=False).head(self.keep).reset_index(drop=True)
        kinds = pd.concat([self._kinds, part.kinds], ignore_index=True)
        self._kinds = kinds.groupby(KIND, sort=False)["rows"].sum().reset_index()

    @property
    def summary(self) -> pd.Series:
        return pd.Series(self._counts, dtype="int64", name="summary")

    @property
    def problems(self) -> pd.DataFrame:
        return self._problems.copy()

    @property
    def problem_counts(self) -> pd.DataFrame:
        return self._kinds.astype({"rows": "int64"}).reset_index(drop=True)


class AggregatePreview:
    """A dry run over data checked a part at a time (Dask partitions, chunks of a file).

    Every row was checked, but the identifications themselves are not kept: the counts and
    problems cover all rows; :meth:`send` reads the data again and sends it.

    Attributes
    ----------
    summary : pandas.Series
        The counts of :attr:`amp_pandas.IdentifyPreview.summary`, over every row: ``rows``,
        ``valid``, ``invalid``, ``skipped``, ``warnings``, ``requests`` and ``bytes``.
        ``requests`` is the sum over parts (parts are sent apart).
    problems : pandas.DataFrame
        The first problems of each kind (a kind is a ``column`` and a ``severity``), in data
        order: ``row``, ``column``, ``severity``, ``message``.
    problem_counts : pandas.DataFrame
        How many problems of each kind there are in all: ``column``, ``severity``, ``rows``.
    parts : int
        How many parts (partitions or chunks) were checked.
    endpoint : str
        The URL the identifications would be posted to.
    result : pandas.DataFrame or None
        What the last :meth:`send` returned.
    first : dict or None
        The first valid identification, as it will be sent (when the entry point kept it).
    single : IdentifyPreview or None
        The part's own preview when the data was checked in one part (when the entry point
        kept it): everything the pandas preview shows, for data that fitted in one part.
    """

    def __init__(
        self,
        tally: Tally,
        *,
        what: str,
        endpoint: str,
        key_status: str,
        sender: Callable[..., Any],
        first: dict[str, Any] | None = None,
        single: Any = None,
    ) -> None:
        self._tally = tally
        self._first = first
        self._single = single
        self._what = what
        self._endpoint = endpoint
        self._key_status = key_status
        self._sender = sender
        self._result: Any = None

    @property
    def summary(self) -> pd.Series:
        return self._tally.summary

    @property
    def problems(self) -> pd.DataFrame:
        return self._tally.problems

    @property
    def problem_counts(self) -> pd.DataFrame:
        return self._tally.problem_counts

    @property
    def parts(self) -> int:
        return self._tally.parts

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def key_status(self) -> str:
        """``"•••• 1a2b"`` for a set key (last four characters only), else ``"no key set"``."""
        return self._key_status

    @property
    def result(self) -> Any:
        return self._result

    @property
    def first(self) -> dict[str, Any] | None:
        return self._first

    @property
    def single(self) -> Any:
        return self._single

    def send(self, **options: Any) -> Any:
        """Send the valid rows; ``options`` override the sending options of the dry run.

        Returns what the entry point's send returns (its per-row result).
        """
        self._result = self._sender(**options)
        return self._result

    # ------------------------------------------------------------------ display
    def _lines(self) -> list[str]:
        s = self.summary
        lines = [
            f"amp_pandas dry run over {self.parts:,} {self._what} — nothing sent",
            f"  endpoint  {self._endpoint}",
            f"  key       {self._key_status}",
            f"  rows {s['rows']:,}  valid {s['valid']:,}  invalid {s['invalid']:,}  "
            f"skipped {s['skipped']:,}  warnings {s['warnings']:,}",
            f"  requests {s['requests']:,}  bytes {s['bytes']:,}",
        ]
        kinds = self.problem_counts
        if kinds.empty:
            lines.append("No problems.")
        else:
            lines.append(f"Problems (first {self._tally.keep} of each kind):")
            for column, severity, rows in kinds.itertuples(index=False):
                lines.append(f"  {column}: {rows:,} {severity}{'s' if rows != 1 else ''}")
                mine = self.problems[
                    (self.problems["column"] == column) & (self.problems["severity"] == severity)
                ]
                for row, message in zip(mine["row"], mine["message"], strict=True):
                    lines.append(f"    row {row}: {message}")
        return lines

    def __repr__(self) -> str:
        return "\n".join(self._lines())

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(repr(self)) + "</pre>"


def warn_if_not_succeeded(result: pd.DataFrame) -> None:
    """The warning a pandas send gives when rows did not succeed, once for the whole data,
    pointed at the first caller outside amp_pandas."""
    message = not_succeeded_message(result)
    if message is None:
        return
    frame = sys._getframe(1)
    level = 2
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        "amp_pandas"
    ):
        frame = frame.f_back
        level += 1
    warnings.warn(message, RowsNotSucceededWarning, stacklevel=level)
