"""What a type checker infers from the public API; checked by mypy in ``tests/test_api.py``.

Nothing here runs: ``typing.assert_type`` is a no-op at run time, and the functions are never
called. mypy fails on this file when an inferred type differs from the one asserted, and (with
``warn_unused_ignores``) when a line marked ``type: ignore`` stops being an error.
"""

from __future__ import annotations

from typing import assert_type

import pandas as pd

import amp_pandas
from amp_pandas import IdentifyPreview, SendResult


def dry_run_true_is_a_preview(df: pd.DataFrame) -> None:
    # ``df.amplitude`` is typed only where pandas is (pandas-stubs); the accessor class is ours.
    accessor = amp_pandas.AmplitudeAccessor(df)
    assert_type(accessor.identify(user_id="uid", set=["plan"], dry_run=True), IdentifyPreview)


def dry_run_false_or_absent_is_a_result(df: pd.DataFrame) -> None:
    accessor = amp_pandas.AmplitudeAccessor(df)
    assert_type(accessor.identify(user_id="uid", set=["plan"]), SendResult)
    assert_type(accessor.identify(user_id="uid", dry_run=False, batch_size=10), SendResult)


def dry_run_unknown_is_either(df: pd.DataFrame, flag: bool) -> None:
    accessor = amp_pandas.AmplitudeAccessor(df)
    assert_type(accessor.identify(user_id="uid", dry_run=flag), IdentifyPreview | SendResult)


def typed_options(df: pd.DataFrame) -> None:
    accessor = amp_pandas.AmplitudeAccessor(df)
    accessor.identify(
        user_id=("ids", "uid"),
        set={"plan": ("profile", "plan")},
        nulls="unset",
        dry_run=True,
        timeout=2.5,
        max_workers=2,
        retry_ambiguous=True,
        progress=False,
    )
    accessor.identify(user_id="uid", dry_run=True, batchsize=10)  # type: ignore[call-overload]
    accessor.identify(user_id="uid", dry_run=True, nulls="drop")  # type: ignore[call-overload]
