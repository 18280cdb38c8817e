"""``identify``: the one function behind ``df.amplitude.identify``: check, build, preview, send."""

from __future__ import annotations

import os
import typing
from collections.abc import Hashable, Mapping, Sequence
from typing import overload

import numpy as np
import pandas as pd
import requests

from ._build import build_plan
from ._config import resolve_settings
from ._preview import IdentifyPreview, operations_table
from ._result import SendResult
from ._spec import NullPolicy, parse_mapping
from ._syncrun import revert_columns, sync_options
from .errors import ArgumentError

__all__ = ["Columns", "IdColumn", "RemovedMode", "identify"]

#: A column label, or a :func:`~amp_pandas.literal` (which is hashable too).
IdColumn = Hashable | None
#: What an operation takes: a list of column labels (each property named after its column), a
#: dict ``{property: column label or literal}``, or one column label.
Columns = Sequence[Hashable] | Mapping[str, Hashable] | Hashable | None
#: What a sync run does with the users its job sent before that are absent now.
RemovedMode = typing.Literal["keep", "revert"]


@overload
def identify(
    df: pd.DataFrame,
    *,
    user_id: IdColumn = ...,
    device_id: IdColumn = ...,
    set: Columns = ...,
    set_once: Columns = ...,
    add: Columns = ...,
    append: Columns = ...,
    prepend: Columns = ...,
    pre_insert: Columns = ...,
    post_insert: Columns = ...,
    remove: Columns = ...,
    unset: str | Sequence[str] | None = ...,
    groups: Mapping[str, Hashable] | None = ...,
    fields: Mapping[str, Hashable] | None = ...,
    nulls: NullPolicy = ...,
    dry_run: typing.Literal[True],
    api_key: str | None = ...,
    region: str = ...,
    server_url: str | None = ...,
    session: requests.Session | None = ...,
    batch_size: int = ...,
    max_workers: int = ...,
    timeout: float = ...,
    throttle_pause: float = ...,
    throttle_budget: float = ...,
    retry_ambiguous: bool = ...,
    max_retries: int = ...,
    backoff: float = ...,
    backoff_max: float = ...,
    interrupt_grace: float = ...,
    progress: bool = ...,
    sync: str | None = ...,
    ledger: str | os.PathLike[str] | None = ...,
    removed: RemovedMode = ...,
) -> IdentifyPreview: ...


@overload
def identify(
    df: pd.DataFrame,
    *,
    user_id: IdColumn = ...,
    device_id: IdColumn = ...,
    set: Columns = ...,
    set_once: Columns = ...,
    add: Columns = ...,
    append: Columns = ...,
    prepend: Columns = ...,
    pre_insert: Columns = ...,
    post_insert: Columns = ...,
    remove: Columns = ...,
    unset: str | Sequence[str] | None = ...,
    groups: Mapping[str, Hashable] | None = ...,
    fields: Mapping[str, Hashable] | None = ...,
    nulls: NullPolicy = ...,
    dry_run: typing.Literal[False] = ...,
    api_key: str | None = ...,
    region: str = ...,
    server_url: str | None = ...,
    session: requests.Session | None = ...,
    batch_size: int = ...,
    max_workers: int = ...,
    timeout: float = ...,
    throttle_pause: float = ...,
    throttle_budget: float = ...,
    retry_ambiguous: bool = ...,
    max_retries: int = ...,
    backoff: float = ...,
    backoff_max: float = ...,
    interrupt_grace: float = ...,
    progress: bool = ...,
    sync: str | None = ...,
    ledger: str | os.PathLike[str] | None = ...,
    removed: RemovedMode = ...,
) -> SendResult: ...


@overload
def identify(
    df: pd.DataFrame,
    *,
    user_id: IdColumn = ...,
    device_id: IdColumn = ...,
    set: Columns = ...,
    set_once: Columns = ...,
    add: Columns = ...,
    append: Columns = ...,
    prepend: Columns = ...,
    pre_insert: Columns = ...,
    post_insert: Columns = ...,
    remove: Columns = ...,
    unset: str | Sequence[str] | None = ...,
    groups: Mapping[str, Hashable] | None = ...,
    fields: Mapping[str, Hashable] | None = ...,
    nulls: NullPolicy = ...,
    dry_run: bool = ...,
    api_key: str | None = ...,
    region: str = ...,
    server_url: str | None = ...,
    session: requests.Session | None = ...,
    batch_size: int = ...,
    max_workers: int = ...,
    timeout: float = ...,
    throttle_pause: float = ...,
    throttle_budget: float = ...,
    retry_ambiguous: bool = ...,
    max_retries: int = ...,
    backoff: float = ...,
    backoff_max: float = ...,
    interrupt_grace: float = ...,
    progress: bool = ...,
    sync: str | None = ...,
    ledger: str | os.PathLike[str] | None = ...,
    removed: RemovedMode = ...,
) -> IdentifyPreview | SendResult: ...


def identify(
    df: pd.DataFrame,
    *,
    user_id: IdColumn = None,
    device_id: IdColumn = None,
    set: Columns = None,
    set_once: Columns = None,
    add: Columns = None,
    append: Columns = None,
    prepend: Columns = None,
    pre_insert: Columns = None,
    post_insert: Columns = None,
    remove: Columns = None,
    unset: str | Sequence[str] | None = None,
    groups: Mapping[str, Hashable] | None = None,
    fields: Mapping[str, Hashable] | None = None,
    nulls: NullPolicy = "skip",
    dry_run: bool = False,
    api_key: str | None = None,
    region: str = "standard",
    server_url: str | None = None,
    session: requests.Session | None = None,
    batch_size: int = 1000,
    max_workers: int = 6,
    timeout: float = 30.0,
    throttle_pause: float = 15.0,
    throttle_budget: float = 600.0,
    retry_ambiguous: bool = False,
    max_retries: int = 6,
    backoff: float = 0.5,
    backoff_max: float = 30.0,
    interrupt_grace: float = 5.0,
    progress: bool = True,
    sync: str | None = None,
    ledger: str | os.PathLike[str] | None = None,
    removed: RemovedMode = "keep",
) -> IdentifyPreview | SendResult:
    """Build (and unless ``dry_run``, send) one identification per row of ``df``.

    See :meth:`amp_pandas.AmplitudeAccessor.identify` for the full description; the two take
    the same arguments.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"identify() needs a pandas DataFrame, got {type(df).__name__}")
    if not isinstance(dry_run, (bool, np.bool_)):
        raise ArgumentError(
            f"dry_run must be True or False; got {type(dry_run).__name__} {dry_run!r}"
        )
    settings = resolve_settings(
        api_key=api_key,
        region=region,
        server_url=server_url,
        session=session,
        batch_size=batch_size,
        max_workers=max_workers,
        timeout=timeout,
        throttle_pause=throttle_pause,
        throttle_budget=throttle_budget,
        retry_ambiguous=retry_ambiguous,
        max_retries=max_retries,
        backoff=backoff,
        backoff_max=backoff_max,
        interrupt_grace=interrupt_grace,
        progress=progress,
    )
    # -- sync: checked before anything is built; without sync= no ledger is touched
    sync_job = sync_options(sync, ledger, removed)
    operations = {
        "set": set,
        "set_once": set_once,
        "add": add,
        "append": append,
        "prepend": prepend,
        "pre_insert": pre_insert,
        "post_insert": post_insert,
        "remove": remove,
    }
    spec = parse_mapping(
        df,
        user_id=user_id,
        device_id=device_id,
        operations=operations,
        unset=unset,
        groups=groups,
        fields=fields,
        nulls=nulls,
    )
    plan = build_plan(df, spec)
    preview = IdentifyPreview(
        plan, spec, settings, operations_table(df, spec), sync=sync_job,
        sync_columns=revert_columns(df, spec) if sync_job is not None else None,
    )
    if dry_run:
        preview.sync  # noqa: B018  (read the ledger now: a bad ledger is an error here)
        return preview
    result = preview.send()
    if not isinstance(result, SendResult):  # pragma: no cover - the sender always builds one
        result = SendResult(result)
    return result
