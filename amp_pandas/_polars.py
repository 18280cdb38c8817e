"""The polars namespace ``pl_df.amplitude``: the pandas accessor reached through Arrow.

Imported only once polars is (see :mod:`amp_pandas._extensions`); importing it registers the
namespace with :func:`polars.api.register_dataframe_namespace`.

The frame goes to Arrow (``DataFrame.to_arrow``) and on to pandas with Arrow-backed columns
(:mod:`amp_pandas._arrow`), so scalar columns are not copied into Python objects; then the
pandas method of the same name (``identify``, ``group_identify``) builds, checks and sends.
Results come back as polars DataFrames, one row per input row in the same order.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import polars as pl

from ._arrow import to_pandas
from .errors import SendError

__all__ = ["PolarsAmplitudeNamespace", "PolarsPreview", "to_polars_removed", "to_polars_result"]


def to_polars_result(result: pd.DataFrame) -> pl.DataFrame:
    """A pandas result (``status``, ``http_status``, ``error``, ``attempts``) as polars; a sync
    run's ``result.removed`` comes along as a polars DataFrame too (see :func:`to_polars_removed`).

    Examples
    --------
    >>> import pandas as pd
    >>> r = pd.DataFrame({"status": ["success"], "http_status": pd.array([200], "Int64"),
    ...                   "error": pd.array([None], "string"), "attempts": [1]})
    >>> to_polars_result(r).dtypes
    [String, Int64, String, Int64]
    """
    frame = pd.DataFrame(result).reset_index(drop=True)
    out = pl.DataFrame(
        {
            "status": pl.Series(frame["status"].astype(object).tolist(), dtype=pl.String),
            "http_status": pl.Series(
                frame["http_status"].astype(object).where(frame["http_status"].notna(), None)
                .tolist(),
                dtype=pl.Int64,
            ),
            "error": pl.Series(
                frame["error"].astype(object).where(frame["error"].notna(), None).tolist(),
                dtype=pl.String,
            ),
            "attempts": pl.Series(frame["attempts"].to_numpy(), dtype=pl.Int64),
        }
    )
    removed = getattr(result, "removed", None)
    if isinstance(removed, pd.DataFrame):
        out.removed = to_polars_removed(removed)  # type: ignore[attr-defined]
    return out


def to_polars_removed(removed: pd.DataFrame) -> pl.DataFrame:
    """A sync run's ``result.removed`` as polars: the id columns, ``status`` and ``error`` as
    text, ``not_undone`` a list of texts, and ``identification`` (the revert sent, a dict, or
    null) kept as the Python object it is.

    Examples
    --------
    >>> import pandas as pd
    >>> removed = pd.DataFrame({"user_id": ["user-3"], "device_id": [None],
    ...     "identification": [{"user_id": "user-3", "user_properties": {"$unset": {"p": "-"}}}],
    ...     "status": ["success"], "error": [None], "not_undone": [["$add logins"]]})
    >>> out = to_polars_removed(removed)
    >>> out["identification"][0], out["not_undone"].to_list()
    ({'user_id': 'user-3', 'user_properties': {'$unset': {'p': '-'}}}, [['$add logins']])
    """
    columns: dict[str, pl.Series] = {}
    for name in removed.columns:
        values = removed[name].astype(object).where(removed[name].notna(), None).tolist()
        if name == "identification":
            columns[name] = pl.Series(name, values, dtype=pl.Object)
        elif name == "not_undone":
            columns[name] = pl.Series(name, values, dtype=pl.List(pl.String))
        else:
            columns[name] = pl.Series(name, values, dtype=pl.String)
    return pl.DataFrame(columns)


class PolarsPreview:
    """A dry run of ``pl_df.amplitude.identify``: the pandas
    :class:`~amp_pandas.IdentifyPreview` (every attribute of it, with ``row`` being the
    0-based row number), whose :meth:`send` returns a polars DataFrame."""

    def __init__(self, preview: Any) -> None:
        self._preview = preview

    def send(self, **options: Any) -> pl.DataFrame:
        """Send the valid rows as previewed; the result as a polars DataFrame."""
        return _polars_outcome(lambda: self._preview.send(**options))

    @property
    def result(self) -> pl.DataFrame | None:
        result = self._preview.result
        return None if result is None else to_polars_result(result)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._preview, name)

    def __repr__(self) -> str:
        return repr(self._preview)

    def _repr_html_(self) -> str:
        return self._preview._repr_html_()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self._preview._repr_mimebundle_(include=include, exclude=exclude)


def _polars_outcome(send: Any) -> pl.DataFrame:
    try:
        result = send()
    except SendError as exc:
        if isinstance(exc.result, pd.DataFrame):
            exc.result = to_polars_result(exc.result)
        raise
    return to_polars_result(result)


@pl.api.register_dataframe_namespace("amplitude")
class PolarsAmplitudeNamespace:
    """Amplitude operations on a polars DataFrame, available as ``pl_df.amplitude`` once both
    amp_pandas and polars are imported (in either order).

    Each method takes the arguments of the pandas method of the same name
    (:meth:`amp_pandas.AmplitudeAccessor.identify`).
    """

    def __init__(self, frame: pl.DataFrame) -> None:
        self._frame = frame

    def identify(self, **arguments: Any) -> Any:
        """Preview or send one identification per row of a polars DataFrame.

        Returns
        -------
        PolarsPreview or polars.DataFrame
            With ``dry_run=True`` the preview (problems name rows by 0-based number);
            otherwise the result: ``status``, ``http_status``, ``error``, ``attempts``, one
            row per input row in the same order.

        Examples
        --------
        >>> import polars as pl
        >>> import amp_pandas
        >>> from amp_pandas.sandbox import Sandbox
        >>> df = pl.DataFrame({"uid": ["user-1", "user-2"], "logins": [3, None]})
        >>> df.amplitude.identify(user_id="uid", add=["logins"], dry_run=True).payloads
        [{'user_id': 'user-1', 'user_properties': {'$add': {'logins': 3}}}]
        >>> with Sandbox() as sb:
        ...     result = df.amplitude.identify(user_id="uid", add=["logins"],
        ...                                    server_url=sb.url, api_key=sb.api_key,
        ...                                    progress=False)
        >>> result["status"].to_list()
        ['success', 'skipped']
        """
        return run(self._frame, "identify", arguments)

    def group_identify(self, **arguments: Any) -> Any:
        """Preview or send group identifications per row of a polars DataFrame (the
        arguments of the pandas ``df.amplitude.group_identify``)."""
        return run(self._frame, "group_identify", arguments)


def run(frame: pl.DataFrame, method: str, arguments: dict[str, Any]) -> Any:
    """Call the pandas ``method`` on ``frame`` through Arrow; results as polars."""
    pandas_frame = to_pandas(frame.to_arrow())
    call = getattr(pandas_frame.amplitude, method)
    if arguments.get("dry_run"):
        return PolarsPreview(call(**arguments))
    return _polars_outcome(lambda: call(**arguments))
