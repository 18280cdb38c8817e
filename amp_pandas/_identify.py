"""``identify``: the one function behind ``df.amplitude.identify``."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd
import requests

from ._build import build_plan
from ._config import resolve_settings
from ._preview import IdentifyPreview, operations_table
from ._amplitude import OPERATIONS
from ._spec import parse_mapping

__all__ = ["identify"]

Columns = Sequence[Any] | Mapping[str, Any] | str | None


def identify(
    df: pd.DataFrame,
    *,
    user_id: Any = None,
    device_id: Any = None,
    set: Columns = None,
    set_once: Columns = None,
    add: Columns = None,
    append: Columns = None,
    prepend: Columns = None,
    pre_insert: Columns = None,
    post_insert: Columns = None,
    remove: Columns = None,
    unset: Sequence[str] | str | None = None,
    groups: Mapping[str, Any] | None = None,
    fields: Mapping[str, Any] | None = None,
    nulls: str = "skip",
    dry_run: bool = False,
    api_key: str | None = None,
    region: str = "standard",
    server_url: str | None = None,
    session: requests.Session | None = None,
    **options: Any,
) -> IdentifyPreview | pd.DataFrame:
    """Build (and unless ``dry_run``, send) one identification per row of ``df``.

    See :meth:`amp_pandas.AmplitudeAccessor.identify` for the full description.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"identify() needs a pandas DataFrame, got {type(df).__name__}")
    settings = resolve_settings(
        api_key=api_key, region=region, server_url=server_url, session=session, **options
    )
    ops = dict(
        zip(
            OPERATIONS,
            (set, set_once, add, append, prepend, pre_insert, post_insert, remove),
        )
    )
    spec = parse_mapping(
        df,
        user_id=user_id,
        device_id=device_id,
        operations=ops,
        unset=unset,
        groups=groups,
        fields=fields,
        nulls=nulls,
    )
    plan = build_plan(df, spec)
    preview = IdentifyPreview(plan, spec, settings, operations_table(df, spec))
    if dry_run:
        return preview
    return preview.send()
