"""Datetimes are sent as UTC ISO 8601 text whatever holds them; Arrow nested cells are exact.

The class: a tz-aware instant held by a pandas ``datetime64[unit, zone]`` column, an Arrow
``timestamp[unit, tz=zone]`` column (what Parquet files and polars give), an object column of
``Timestamp``s or ``datetime``s, or a list inside a cell, is sent as the same text: the instant in
UTC, ``YYYY-MM-DDTHH:MM:SS`` with the fraction of a second only when it is not zero. The oracle
is Python's own ``datetime.astimezone(UTC)``, written here from the integer instant.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import amp_pandas  # noqa: F401  (registers df.amplitude)
from amp_pandas._arrow import to_pandas

PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
ZONES = ["UTC", "Europe/Paris", "Asia/Tokyo", "America/St_Johns", "Asia/Kathmandu",
         "Pacific/Chatham", "America/Los_Angeles", "Australia/Lord_Howe"]  # fmt: skip
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def oracle(instant: int, unit: str, zone: str) -> str:
    """The text for ``instant`` (units since the epoch), seen first in ``zone``."""
    per = PER_SECOND[unit]
    seconds, fraction = divmod(instant, per)
    local = (EPOCH + dt.timedelta(seconds=seconds)).astimezone(zoneinfo.ZoneInfo(zone))
    text = local.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    if fraction:
        text += "." + f"{fraction * (10**9 // per):09d}".rstrip("0")
    return text


def instant_range(unit: str) -> tuple[int, int]:
    """Instants whose year is 1..9999 in every zone (and that ``datetime64[ns]`` holds)."""
    per = PER_SECOND[unit]
    lo = int((dt.datetime(1, 1, 3, tzinfo=dt.UTC) - EPOCH).total_seconds()) * per
    hi = int((dt.datetime(9999, 12, 29, tzinfo=dt.UTC) - EPOCH).total_seconds()) * per
    if unit == "ns":
        lo, hi = -(2**63) + 10**18, 2**63 - 10**18
    return lo, hi


@st.composite
def columns(draw: Any) -> tuple[str, str, list[int]]:
    unit = draw(st.sampled_from(sorted(PER_SECOND)))
    zone = draw(st.sampled_from(ZONES))
    lo, hi = instant_range(unit)
    near = st.integers(-(10**6), 10**6).map(lambda k: k * PER_SECOND[unit] // 7)  # 1970 ± days
    values = draw(st.lists(st.one_of(st.integers(lo, hi), near), min_size=1, max_size=5))
    return unit, zone, values


def sent(df: pd.DataFrame, **mapping: Any) -> list[dict[str, Any]]:
    preview = df.amplitude.identify(user_id="uid", dry_run=True, **mapping)
    assert preview.problems.empty, preview.problems
    return list(preview.payloads)


@settings(max_examples=150, deadline=None)
@given(columns())
def test_every_holder_of_an_instant_sends_its_utc_text(case: tuple[str, str, list[int]]) -> None:
    unit, zone, values = case
    want = [oracle(v, unit, zone) for v in values]
    uid = [f"user-{i:03d}" for i in range(len(values))]
    arrow = pa.array(values, pa.timestamp(unit, tz=zone))
    aware = pd.Series(np.array(values, dtype=f"datetime64[{unit}]")).dt.tz_localize("UTC")
    aware = aware.dt.tz_convert(zone)
    holders = {
        "datetime64[unit, zone]": aware,
        "ArrowDtype timestamp[unit, tz]": pd.Series(pd.arrays.ArrowExtensionArray(arrow)),
        "Arrow table through to_pandas": to_pandas(pa.table({"t": arrow}))["t"],
    }
    # Python-level Timestamps of such a column: pandas 2.2 builds them through nanoseconds and
    # crashes past datetime64[ns]'s years (1677-2262), so that holder is taken only within them
    in_ns = all(abs(v) // PER_SECOND[unit] < 9_223_372_036 for v in values)
    if in_ns:
        holders["object Timestamps"] = pd.Series(list(aware), dtype=object)
    for name, column in holders.items():
        df = pd.DataFrame({"uid": uid, "t": column.to_numpy() if name == "object Timestamps"
                           else column.array})
        got = [p["user_properties"]["$set"]["t"] for p in sent(df, set=["t"])]
        assert got == want, (name, unit, zone, values)
        fields = [p["platform"] for p in sent(df, fields={"platform": "t"})]
        assert fields == want, (name, "field", unit, zone, values)
    if in_ns:
        listed = pd.DataFrame({"uid": uid, "t": pd.Series([[x] for x in aware], dtype=object)})
        assert [p["user_properties"]["$set"]["t"] for p in sent(listed, set=["t"])] == [
            [w] for w in want
        ]
    if unit != "ns":  # datetime holds microseconds: the stdlib's own aware datetimes
        pydt = [(EPOCH + dt.timedelta(microseconds=v * 10**6 // PER_SECOND[unit]))
                .astimezone(zoneinfo.ZoneInfo(zone)) for v in values]  # fmt: skip
        df = pd.DataFrame({"uid": uid, "t": pd.Series(pydt, dtype=object)})
        got = [p["user_properties"]["$set"]["t"] for p in sent(df, set=["t"])]
        assert got == want, ("datetime", unit, zone, values)


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_instants_beyond_pythons_datetime_are_sent_not_crashed_on(unit: str) -> None:
    per = PER_SECOND[unit]
    values = [253402300800 * per, -62167219200 * per]  # 10000-01-01 and 0000-01-01, UTC
    want = ["10000-01-01T00:00:00", "0000-01-01T00:00:00"]
    arrow = pa.array(values, pa.timestamp(unit, tz="Asia/Tokyo"))
    naive = pd.Series(np.array(values, dtype=f"datetime64[{unit}]"))
    holders = {
        "arrow": pd.Series(pd.arrays.ArrowExtensionArray(arrow)),
        "aware": naive.dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo"),
        "naive": naive,
        "object": naive.astype(object),
    }
    for name, column in holders.items():
        df = pd.DataFrame({"uid": ["user-1", "user-2"], "t": column.array})
        got = [p["user_properties"]["$set"]["t"] for p in sent(df, set=["t"])]
        assert got == want, name
        preview = df.amplitude.identify(user_id="uid", set=["t"], dry_run=True)
        assert '"10000-01-01T00:00:00"' in preview.operations["examples"].iloc[1], name


# --- Arrow list / struct / map columns -----------------------------------------------------------


def arrow_column(values: list[Any], arrow_type: pa.DataType | None = None) -> pd.Series:
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.array(values, arrow_type)))


def test_arrow_nested_columns_are_previewed_and_sent_exactly() -> None:
    df = pd.DataFrame({
        "uid": ["user-1", "user-2", "user-3"],
        "tags": arrow_column([["a", "b"], None, []]),
        "nums": arrow_column([[1, 2], [3], [1, 2]]),
        "info": arrow_column([{"n": 1, "s": "x"}, {"n": None, "s": "y"}, None]),
        "attrs": arrow_column([[("k", 1)], [], None], pa.map_(pa.string(), pa.int64())),
        "orgs": arrow_column([["org-1"], ["org-2", "org-3"], None]),
    })  # fmt: skip
    preview = df.amplitude.identify(user_id="uid", set=["tags", "nums", "info", "attrs"],
                                    groups={"org": "orgs"}, dry_run=True)
    assert list(preview.payloads) == [
        {"user_id": "user-1",
         "user_properties": {"$set": {"tags": ["a", "b"], "nums": [1, 2],
                                      "info": {"n": 1, "s": "x"}, "attrs": {"k": 1}}},
         "groups": {"org": ["org-1"]}},
        {"user_id": "user-2",
         "user_properties": {"$set": {"nums": [3], "info": {"n": None, "s": "y"}, "attrs": {}}},
         "groups": {"org": ["org-2", "org-3"]}},
        {"user_id": "user-3", "user_properties": {"$set": {"tags": [], "nums": [1, 2]}}},
    ]  # fmt: skip
    first = preview.payloads[0]["user_properties"]["$set"]["info"]["n"]
    assert type(first) is int  # never 1.0
    ops = preview.operations.set_index("property")["examples"]
    assert ops["tags"] == '["a","b"], []'
    assert ops["nums"] == "[1,2], [3]"  # distinct by the text sent
    assert ops["info"] == '{"n":1,"s":"x"}, {"n":null,"s":"y"}'
    assert ops["attrs"] == '{"k":1}, {}'


def _civil_text(seconds: int) -> str:
    """An instant (seconds since 1970, UTC) as ISO 8601 text, from H. Hinnant's civil-from-days
    algorithm (proleptic Gregorian), independent of numpy and datetime: four-digit years,
    five past 9999, a minus sign and at least four digits before year 0."""
    days, rem = divmod(seconds, 86_400)
    z = days + 719_468
    era = z // 146_097  # floor division (the C original emulates it for negative days)
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    sign = "-" if year < 0 else ""
    hh, rest = divmod(rem, 3600)
    return (f"{sign}{abs(year):04d}-{month:02d}-{day:02d}"
            f"T{hh:02d}:{rest // 60:02d}:{rest % 60:02d}")  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(-400_000_000_000, 400_000_000_000), min_size=1, max_size=6),
       st.sampled_from(["s", "ms"]))  # fmt: skip
def test_any_instant_of_years_minus_10000_to_14000_is_written_as_iso_8601(
    seconds: list[int], unit: str
) -> None:
    """Dates before year 0000 (numpy writes -001), after 9999, and between, alone or mixed:
    each as the oracle writes it, in a column and inside a list."""
    per = PER_SECOND[unit]
    column = np.array([s * per for s in seconds], dtype=f"datetime64[{unit}]")
    uid = [f"user-{i}" for i in range(len(seconds))]
    want = [_civil_text(s) for s in seconds]
    df = pd.DataFrame({"uid": uid, "t": column})
    assert [p["user_properties"]["$set"]["t"] for p in sent(df, set=["t"])] == want
    stamps = pd.DataFrame({"uid": uid, "t": pd.Series([[pd.Timestamp(v)] for v in column],
                                                      dtype=object)})  # fmt: skip
    assert [p["user_properties"]["$set"]["t"] for p in sent(stamps, set=["t"])] == [
        [w] for w in want
    ]
