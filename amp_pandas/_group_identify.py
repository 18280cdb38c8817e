"""``group_identify``: the one function behind ``df.amplitude.group_identify``: check, build,
preview, send, over Amplitude's Group Identify API."""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
import requests

from ._amplitude import GROUP_IDENTIFY_PATH, MAX_GROUP_IDENTIFICATIONS
from ._build import build_group_plan
from ._config import resolve_settings
from ._identify import Columns, RemovedMode
from ._preview import GroupIdentifyPreview, group_operations_table
from ._result import SendResult
from ._spec import NullPolicy, parse_group_mapping
from ._syncrun import group_revert_columns, sync_options
from .errors import ArgumentError, ConfigurationError

__all__ = ["group_identify"]


def group_identify(
    df: pd.DataFrame,
    *,
    group_type: Hashable = None,
    group_value: Hashable = None,
    set: Columns = None,
    set_once: Columns = None,
    add: Columns = None,
    append: Columns = None,
    prepend: Columns = None,
    unset: str | Sequence[str] | None = None,
    nulls: NullPolicy = "skip",
    dry_run: bool = False,
    sync: str | None = None,
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
    pre_insert: Columns = None,
    post_insert: Columns = None,
    remove: Columns = None,
    ledger: str | os.PathLike[str] | None = None,
    removed: RemovedMode = "keep",
) -> GroupIdentifyPreview | SendResult:
    """Build (and unless ``dry_run``, send) one group identification per row of ``df``.

    See :meth:`amp_pandas.AmplitudeAccessor.group_identify` for the full description; the two
    take the same arguments. ``pre_insert``, ``post_insert`` and ``remove`` are accepted only to
    be refused with an :class:`~amp_pandas.errors.ArgumentError` that says why: Amplitude's
    Group Identify API does not document them.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"group_identify() needs a pandas DataFrame, got {type(df).__name__}")
    if not isinstance(dry_run, (bool, np.bool_)):
        raise ArgumentError(
            f"dry_run must be True or False; got {type(dry_run).__name__} {dry_run!r}"
        )
    if (
        isinstance(batch_size, int)
        and not isinstance(batch_size, bool)
        and batch_size > MAX_GROUP_IDENTIFICATIONS
    ):
        raise ConfigurationError(
            f"batch_size (group identifications per request) must be an integer from 1 to "
            f"{MAX_GROUP_IDENTIFICATIONS}, Amplitude's limit for group identify; got {batch_size}"
        )
    settings = resolve_settings(
        api_key=api_key,
        region=region,
        server_url=server_url,
        session=session,
        path=GROUP_IDENTIFY_PATH,
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
    spec = parse_group_mapping(
        df,
        group_type=group_type,
        group_value=group_value,
        operations=operations,
        unset=unset,
        nulls=nulls,
    )
    plan = build_group_plan(df, spec)
    preview = GroupIdentifyPreview(
        plan, spec, settings, group_operations_table(df, spec), sync=sync_job,
        sync_columns=group_revert_columns(df, spec) if sync_job is not None else None,
    )
    if dry_run:
        preview.sync  # noqa: B018  (read the ledger now: a bad ledger is an error here)
        return preview
    result = preview.send()
    if not isinstance(result, SendResult):  # pragma: no cover - the sender always builds one
        result = SendResult(result)
    return result
