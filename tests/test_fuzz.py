"""Property-based tests: any frame and any mapping build without an internal error, and every row
is either valid (JSON that the sandbox accepts) or invalid with a reason.

Frames mix dtypes, missing values of every kind (None, NaN, NA, NaT), ±inf, unicode and emoji,
very long strings, nested lists and dicts, object columns mixing types, non-string column labels,
and duplicate or MultiIndex indexes. The sandbox's request parser is fuzzed too, with real
request bodies that were cut, flipped or spliced: it answers 4xx and keeps serving.

Example counts are modest (CI has 2 cores); failures print the smallest frame that shows them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import warnings
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import amp_pandas  # noqa: F401
from amp_pandas import FIELDS, literal
from amp_pandas._encode import content_type, encode_body
from amp_pandas.errors import ArgumentError, RowsNotSucceededWarning
from amp_pandas.sandbox import Sandbox
from tests._support import oracle

# When a test fails, hypothesis's pytest plugin imports hypothesis.extra._patching (libcst), which
# warns a DeprecationWarning from mypy_extensions; under ``filterwarnings = error`` that turns a
# plain test failure into an INTERNALERROR that stops the whole run. Import it once, quietly.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    with contextlib.suppress(ImportError):  # libcst is optional: nothing to pre-import then
        import hypothesis.extra._patching  # noqa: F401

KEY = "fuzz-key-77aa1c0d4e"
#: Derandomized: every run draws the same examples, so a failure replays (and CI is stable).
FUZZ = settings(
    max_examples=150, deadline=None, database=None, report_multiple_bugs=False,
    derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(api_key=KEY, record_identifications=False) as sandbox:
        yield sandbox


# ------------------------------------------------------------------------------------ cells
SPECIAL_TEXT = st.sampled_from([
    "", " ", "null", "NULL", "None", "n/a", "unknown", "0", "-1", "{}", "lmy47d",
    "00000000-0000-0000-0000-000000000000", "user-1", "device-xyz", "$set", "a\x00b",
    "\"quoted\" \\ back", "ümlaut ß", "日本語テキスト", "🙂🚀👩‍👩‍👧", "e\u0301", "\u200b", "\ufeff",
    "\ud800 lone surrogate", "x" * 1025, "🙂" * 1100, "line\nbreak\ttab", "%s %d {0}",
    "</script><b>", "2024-01-05T08:30:00",
])
TEXT = st.one_of(SPECIAL_TEXT, st.text(max_size=20), st.text(min_size=1000, max_size=1100))
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e20, -1e20, 2.0**53 + 2, 1e-300, 12345.0, 123456.5]),
)
INTS = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.integers(-(2**70), 2**70), st.sampled_from([0, 12345])
)
TIMESTAMPS = st.one_of(
    st.datetimes(min_value=dt.datetime(1700, 1, 1), max_value=dt.datetime(2200, 1, 1)).map(
        pd.Timestamp
    ),
    st.sampled_from([pd.Timestamp("2024-03-01 12:00", tz="Europe/Berlin"), pd.NaT]),
)
MISSING = st.sampled_from([None, np.nan, pd.NA, pd.NaT, float("nan")])
SCALARS = st.one_of(
    TEXT, INTS, FLOATS, st.booleans(), MISSING, TIMESTAMPS,
    st.sampled_from([
        np.int64(7), np.uint64(2**64 - 1), np.float32(0.5), np.bool_(True), Decimal("1.10"),
        Decimal("NaN"), b"bytes", 1j, dt.date(2024, 1, 5), dt.time(8, 30), pd.Timedelta(1),
        pd.Period("2024-01"),
    ]),
)
NESTED = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(TEXT, INTS, st.just((1, 2))), inner, max_size=3),
        st.frozensets(st.integers(0, 5), max_size=3),
    ),
    max_leaves=8,
)
DEEP = st.integers(38, 45).map(lambda depth: _nest(depth))


def _nest(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def object_array(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


@st.composite
def columns(draw: st.DrawFn, n: int) -> pd.Series | np.ndarray:
    """One column of ``n`` cells, of a random kind."""
    kind = draw(st.sampled_from([
        "int64", "uint64", "float64", "Int64", "Float64", "bool", "boolean", "str", "string",
        "category", "datetime", "datetime_tz", "timedelta", "object_text", "object_mixed",
        "object_nested", "object_deep",
    ]))
    if kind == "int64":
        return pd.Series(draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)),
                         dtype="int64")
    if kind == "uint64":
        return pd.Series(draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n)),
                         dtype="uint64")
    if kind == "float64":
        return pd.Series(draw(st.lists(FLOATS, min_size=n, max_size=n)), dtype="float64")
    if kind in ("Int64", "boolean", "Float64"):
        cell = {"Int64": st.integers(-(2**63), 2**63 - 1), "boolean": st.booleans(),
                "Float64": st.floats(allow_nan=False, allow_infinity=True)}[kind]
        cells = draw(st.lists(st.one_of(cell, st.just(pd.NA)), min_size=n, max_size=n))
        return pd.Series(pd.array(cells, dtype=kind))
    if kind == "bool":
        return pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    if kind in ("str", "string", "category"):
        texts = draw(st.lists(st.one_of(TEXT, st.none()), min_size=n, max_size=n))
        texts = [t for t in texts if t is None or "\ud800" not in t] or [None] * n
        texts = (texts * n)[:n]  # Arrow-backed strings cannot hold a lone surrogate at all
        dtype = {"str": "str", "string": "string", "category": "category"}[kind]
        return pd.Series(texts, dtype=dtype)
    if kind in ("datetime", "datetime_tz"):
        stamps = draw(st.lists(
            st.one_of(st.datetimes(min_value=dt.datetime(1800, 1, 1),
                                   max_value=dt.datetime(2200, 1, 1)), st.none()),
            min_size=n, max_size=n))
        series = pd.Series(pd.to_datetime(stamps))
        return series.dt.tz_localize("UTC").dt.tz_convert("Asia/Kolkata") if kind == "datetime_tz" \
            else series
    if kind == "timedelta":
        return pd.Series(pd.to_timedelta(draw(st.lists(st.integers(0, 10**12), min_size=n,
                                                       max_size=n))))
    cell = {"object_text": st.one_of(TEXT, MISSING), "object_mixed": SCALARS,
            "object_nested": NESTED, "object_deep": st.one_of(DEEP, SCALARS)}[kind]
    return pd.Series(object_array(draw(st.lists(cell, min_size=n, max_size=n))), dtype=object)


ID_TEXT = st.one_of(
    st.sampled_from(["user-1", "user-2", "user-3", "device-abc", "null", "0", "abc", "n/a",
                     "🙂🙂🙂🙂🙂", "user-\ud800", "x" * 1025, "  user-1  ", "UNKNOWN"]),
    st.text(min_size=5, max_size=12),
)


@st.composite
def id_columns(draw: st.DrawFn, n: int) -> pd.Series:
    kind = draw(st.sampled_from(["object", "str", "int", "float", "Int64", "mixed", "category"]))
    if kind == "int":
        return pd.Series(draw(st.lists(st.sampled_from([12345, 123456, 7, -5, 2**62, 99999]),
                                       min_size=n, max_size=n)), dtype="int64")
    if kind == "float":
        return pd.Series(draw(st.lists(st.sampled_from([12345.0, 1e20, np.nan, 123456.5, np.inf,
                                                        2.0**53 + 2, 99999.0]),
                                       min_size=n, max_size=n)), dtype="float64")
    if kind == "Int64":
        return pd.Series(pd.array(draw(st.lists(st.sampled_from([12345, pd.NA, 54321]),
                                                min_size=n, max_size=n)), dtype="Int64"))
    if kind == "mixed":
        return pd.Series(object_array(draw(st.lists(
            st.one_of(ID_TEXT, st.sampled_from([12345, 12345.0, None, np.nan, True, ["user-1"],
                                                Decimal(12345), b"user-1"])),
            min_size=n, max_size=n))), dtype=object)
    texts = draw(st.lists(st.one_of(ID_TEXT, st.none()), min_size=n, max_size=n))
    if kind in ("str", "category"):
        texts = [None if t is not None and "\ud800" in t else t for t in texts]
        return pd.Series(texts, dtype="str" if kind == "str" else "category")
    return pd.Series(object_array(texts), dtype=object)


LABELS = st.one_of(
    st.sampled_from(["plan", "score", "tags", "Ünïcødé 🙂", "with space", "$dollar", "", 0, 1, 2.5,
                     ("a", "b"), ("a", 1), True]),
    st.text(min_size=1, max_size=8),
)


@st.composite
def indexes(draw: st.DrawFn, n: int) -> pd.Index:
    kind = draw(st.sampled_from(["range", "duplicate", "multi", "text", "datetime", "float"]))
    if kind == "range":
        return pd.RangeIndex(n)
    if kind == "duplicate":
        return pd.Index([draw(st.integers(0, 2)) for _ in range(n)])
    if kind == "multi":
        return pd.MultiIndex.from_arrays([[draw(st.integers(0, 1)) for _ in range(n)],
                                          [draw(st.sampled_from(["x", "y"])) for _ in range(n)]])
    if kind == "text":
        return pd.Index([draw(st.sampled_from(["a", "b", "🙂", ""])) for _ in range(n)])
    if kind == "datetime":
        return pd.DatetimeIndex([pd.Timestamp("2024-01-01")] * n)
    return pd.Index([draw(st.sampled_from([0.5, np.nan, 1.0])) for _ in range(n)], dtype=float)


OPERATION_ARGS = ["set", "set_once", "add", "append", "prepend", "pre_insert", "post_insert",
                  "remove"]


@st.composite
def frames_and_mappings(draw: st.DrawFn) -> tuple[pd.DataFrame, dict[str, Any]]:
    n = draw(st.integers(1, 8))
    data: dict[Any, Any] = {}
    id_labels = []
    for name in draw(st.sampled_from([["uid"], ["dev"], ["uid", "dev"], [7]])):
        data[name] = draw(id_columns(n))
        id_labels.append(name)
    value_labels = []
    for _ in range(draw(st.integers(0, 4))):
        label = draw(LABELS)
        if label in data:
            continue
        data[label] = draw(columns(n))
        value_labels.append(label)
    df = pd.DataFrame(data)
    df.index = draw(indexes(n))
    if draw(st.booleans()) and len(df.columns) > 1 and draw(st.integers(0, 9)) == 0:
        df.columns = [df.columns[0]] * len(df.columns)  # duplicate labels: an ArgumentError

    mapping: dict[str, Any] = {}
    as_list = {arg: draw(st.booleans()) for arg in OPERATION_ARGS}  # list or dict form
    if "uid" in id_labels or 7 in id_labels:
        mapping["user_id"] = "uid" if "uid" in id_labels else 7
    if "dev" in id_labels:
        mapping["device_id"] = "dev"
    for label in value_labels:
        where = draw(st.sampled_from([*OPERATION_ARGS, "groups", "fields", "skip"]))
        if where == "skip":
            continue
        if where == "groups":
            mapping.setdefault("groups", {})[draw(st.sampled_from(["org", "team", "$x"]))] = label
        elif where == "fields":
            mapping.setdefault("fields", {})[draw(st.sampled_from([*FIELDS[:4], "bogus"]))] = label
        elif as_list[where]:
            mapping.setdefault(where, []).append(label)  # the property is named after the column
        else:
            name = draw(st.one_of(st.text(min_size=1, max_size=6), st.just("$x"), st.just("")))
            mapping.setdefault(where, {})[name] = label
    if draw(st.integers(0, 4)) == 0 and not as_list["set"]:
        mapping.setdefault("set", {})["const"] = literal(draw(NESTED))
    if draw(st.integers(0, 4)) == 0:
        mapping["unset"] = draw(st.lists(st.sampled_from(["gone", "plan", "x"]), max_size=2))
    if draw(st.integers(0, 9)) == 0 and not as_list["set"]:
        mapping.setdefault("set", {})["missing"] = "no such column"
    mapping["nulls"] = draw(st.sampled_from(["skip", "unset", "error"]))
    return df, mapping


def snapshot(df: pd.DataFrame) -> Any:
    """Everything about a frame that identify() must leave alone (cells by ``repr``: lists and
    dicts inside cells are compared by content, NaN equals NaN)."""
    return (
        repr(list(df.columns)), repr(df.index.tolist()), [str(t) for t in df.dtypes],
        [[repr(v) for v in df.iloc[:, i].tolist()] for i in range(df.shape[1])],
    )


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses ``NaN``/``Infinity`` (Python accepts them, JSON does not)."""
    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


# ------------------------------------------------------------------------------------ build
@FUZZ
@given(case=frames_and_mappings())
def test_any_frame_builds_and_every_row_is_valid_json_or_invalid_with_a_reason(
    case: tuple[pd.DataFrame, dict[str, Any]], sb: Sandbox
) -> None:
    df, mapping = case
    before = snapshot(df)
    try:
        preview = df.amplitude.identify(dry_run=True, server_url=sb.url, api_key=KEY, **mapping)
    except ArgumentError:
        return  # a mapping that cannot work: refused up front, by an ArgumentError subclass
    assert snapshot(df) == before, "identify() changed the caller's DataFrame"
    plan = preview.plan
    assert len(plan) == len(df) and plan.index.equals(df.index)
    state = plan.state.tolist()
    assert set(state) <= {0, 1, 2}
    valid_payloads = []
    for pos, (row_state, payload, reason) in enumerate(
        zip(state, plan.payload.tolist(), plan.reason.tolist(), strict=True)
    ):
        if row_state == 0:
            assert reason is None and isinstance(payload, str)
            decoded = strict_json(payload)  # JSON, no NaN or Infinity
            assert isinstance(decoded, dict)
            assert isinstance(decoded.get("user_id"), str) or isinstance(
                decoded.get("device_id"), str)
            assert json.loads(json.dumps(decoded)) == decoded
            payload.encode("utf-8")  # it can travel
            assert _depth(decoded.get("user_properties", {})) <= 40
            valid_payloads.append(decoded)
        else:
            assert payload is None
            assert isinstance(reason, str) and reason.strip(), f"row {pos}: no reason"
    assert preview.payloads == valid_payloads
    repr(preview), preview._repr_html_()  # the views never raise either

    # The valid rows, in one request: the sandbox accepts them all.
    sent_before = len(sb.requests)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = preview.send(batch_size=2000, max_retries=0, progress=False)
    assert [w.category for w in caught if w.category is not RowsNotSucceededWarning] == []
    expected = np.array(["success", "invalid", "skipped"], dtype=object)[plan.state]
    assert result["status"].tolist() == expected.tolist(), result["error"].tolist()
    new = sb.requests[sent_before:]
    if valid_payloads:
        assert [r.status for r in new] == [200]
    else:
        assert new == []


# Pinned cases the fuzzing found, so that they stay visible by name.
def _dry(df: pd.DataFrame, **mapping: Any) -> Any:
    return df.amplitude.identify(dry_run=True, **mapping)


BAD = "bad-\ud800-text"  # a lone surrogate ('\ud800', e.g. from decoding with 'surrogateescape')


def _surrogate_cases() -> dict[str, tuple[dict[str, Any], dict[str, Any], str]]:
    """Where a string with no UTF-8 form can hide: (row 0's cells, mapping, column at fault)."""
    return {
        "value": ({"v": BAD}, {"set": ["v"]}, "v"),
        "value in a list": ({"v": ["ok", BAD]}, {"set": ["v"]}, "v"),
        "value in a dict": ({"v": {"k": [BAD]}}, {"set": ["v"]}, "v"),
        "dict key": ({"v": {BAD: 1}}, {"set": ["v"]}, "v"),
        "ndarray cell": ({"v": object_array([BAD, "ok"])}, {"set": ["v"]}, "v"),
        "category": ({"v": BAD}, {"set": ["v"], "_category": "v"}, "v"),
        "user id": ({"uid": BAD}, {"set": ["v"]}, "uid"),
        "device id": ({"dev": BAD}, {"set": ["v"], "device_id": "dev"}, "dev"),
        "group": ({"g": BAD}, {"groups": {"team": "g"}}, "g"),
        "group list": ({"g": ["red", BAD]}, {"groups": {"team": "g"}}, "g"),
        "field": ({"f": BAD}, {"fields": {"platform": "f"}}, "f"),
        "value in a set": ({"v": frozenset({BAD, "a"})}, {"post_insert": ["v"]}, "v"),
    }


@pytest.mark.timeout(30)
@pytest.mark.parametrize("where", sorted(_surrogate_cases()))
def test_a_lone_surrogate_anywhere_makes_its_row_invalid_with_the_column_named(where: str) -> None:
    # A str holding a lone surrogate cannot be encoded as UTF-8: it can never travel, so the
    # row is invalid with a reason naming the column; the other rows are untouched.
    bad_cells, mapping, column = _surrogate_cases()[where]
    cells = {"uid": "user-00001", "dev": "device-001", "v": "ok", "g": "acme", "f": "iOS"}
    df = pd.DataFrame({
        label: pd.Series(object_array([bad_cells.get(label, ok), ok]), dtype=object)
        for label, ok in cells.items()
    })
    category = mapping.pop("_category", None)
    if category:  # object categories (pandas 3 would infer Arrow strings, which cannot hold it)
        categories = pd.Index(object_array([BAD, "ok", 1]), dtype=object)
        df[category] = pd.Categorical.from_codes([0, 1], categories=categories)
    preview = _dry(df, user_id="uid", **mapping)
    assert preview.plan.state.tolist() == [1, 0]
    problems = preview.problems
    assert problems[["row", "column", "severity"]].values.tolist() == [[0, column, "error"]]
    assert "lone surrogate" in problems["message"][0]
    assert preview.plan.reason[0].startswith(f"column {column!r}: ")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("where", ["fields", "groups", "set"])
def test_a_lone_surrogate_in_a_literal_makes_every_row_invalid(where: str) -> None:
    df = pd.DataFrame({"uid": ["user-00001", "user-00002"], "v": ["a", "b"]})
    value = [BAD] if where == "set" else BAD
    key = {"fields": "platform", "groups": "team", "set": "p"}[where]
    if where == "set":
        preview = _dry(df, user_id="uid", set={"v": "v", key: literal(value)})
    else:
        preview = _dry(df, user_id="uid", set={"v": "v"}, **{where: {key: literal(value)}})
    assert preview.plan.state.tolist() == [1, 1]
    assert set(preview.problems["column"]) == {repr(literal(value))}
    assert all("lone surrogate" in m for m in preview.problems["message"])


def test_a_lone_surrogate_in_a_property_name_is_an_argument_error() -> None:
    df = pd.DataFrame({"uid": ["user-00001"], "v": ["ok"]})
    with pytest.raises(ArgumentError, match="not valid Unicode"):
        _dry(df, user_id="uid", set={BAD: "v"})


# ------------------------------------------------------------------------- nested values
#: Values a cell may hold, nested: NaN and the other missing markers often (inside a container
#: they must be JSON null, never a bare NaN), numbers with and without a finite double form,
#: numpy scalars and arrays of any shape, Decimals, Timestamps, strings with lone surrogates.
LEAVES = st.one_of(
    st.sampled_from([np.nan, float("nan"), None, pd.NA, pd.NaT, np.float64("nan"),
                     np.datetime64("NaT"), Decimal("NaN")]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**1100), 2**1100), st.integers(-5, 5), st.booleans(),
    st.sampled_from([
        np.int64(-7), np.uint64(2**64 - 1), np.float32(0.1), np.float16(np.inf), np.bool_(False),
        Decimal("1.10"), Decimal("-0"), Decimal("1e400"), Decimal("-Infinity"), Decimal("1E+3"),
        10**400, -(10**400), 2**1023, np.str_("np-str"), b"raw",
        pd.Timestamp("2024-05-01 12:30:05.25"),
        pd.Timestamp("1969-12-31 23:59:59", tz="Asia/Kolkata"),
        np.datetime64("2024-01-01T00:00:00.000000001"), dt.date(2024, 1, 5),
        dt.datetime(2024, 1, 5, 8, 30, tzinfo=dt.UTC), pd.Timedelta(1),
        "a\ud800b", "\udfff", "quote \" back \\ nl \n", "ünï 🙂", "",
    ]),
    st.text(max_size=6),
)
ARRAYS = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=False), max_size=4).map(np.array),
    st.lists(st.integers(-9, 9), min_size=4, max_size=4).map(lambda v: np.array(v).reshape(2, 2)),
    st.lists(st.floats(allow_nan=True), min_size=6, max_size=6).map(
        lambda v: np.array(v).reshape(1, 3, 2)),
    st.floats(allow_nan=True).map(np.array),  # 0-d: its scalar
    st.lists(st.sampled_from([1, "a", None, np.nan]), max_size=3).map(object_array),
)
VALUES = st.recursive(
    st.one_of(LEAVES, ARRAYS),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(0, 9), st.just("k\ud800"),
                                  st.just(True)), inner, max_size=3),
        st.frozensets(st.integers(0, 5), max_size=3),
    ),
    max_leaves=10,
)


@settings(FUZZ, max_examples=500)
@given(values=st.lists(VALUES, min_size=1, max_size=4))
def test_nested_values_are_strict_json_equal_to_the_oracle_or_the_row_is_invalid(
    values: list[Any],
) -> None:
    df = pd.DataFrame({"uid": [f"user-{i:05d}" for i in range(len(values))],
                       "v": pd.Series(object_array(values), dtype=object)})
    preview = _dry(df, user_id="uid", set=["v"])
    plan = preview.plan
    for i, value in enumerate(values):
        if oracle.is_missing(value):
            assert plan.state[i] == 2, (value, plan.reason[i])  # skipped: nothing to send
            continue
        try:
            expected = oracle.value_json(value)
        except (oracle.Bad, RecursionError):
            assert plan.state[i] == 1, (value, plan.payload[i])
            mine = preview.problems[preview.problems["row"] == i]
            assert mine[["column", "severity"]].values.tolist() == [["v", "error"]]
            continue
        assert plan.state[i] == 0, (value, plan.reason[i])
        text = plan.payload[i]
        decoded = strict_json(text)  # no NaN, no Infinity
        assert decoded["user_properties"]["$set"]["v"] == oracle.loads(expected)
        assert text == oracle.dump(
            {"user_id": f"user-{i:05d}", "user_properties": {"$set": {"v": expected}}}
        )


@pytest.mark.parametrize(
    "value, expected",
    [
        ([np.nan, 1.5, None, pd.NaT, pd.NA], "[null,1.5,null,null,null]"),
        ({"a": float("nan"), "b": {"c": Decimal("NaN")}}, '{"a":null,"b":{"c":null}}'),
        (np.array([[1, 2], [3, 4]]), "[[1,2],[3,4]]"),
        (np.array([[np.nan, 1.0]]), "[[null,1.0]]"),
        (np.array(7), "7"),
        (np.array("text"), '"text"'),
        ((np.float32(0.5), np.int64(3)), "[0.5,3]"),
        (Decimal("1.10"), "1.10"),
        (2**70, "1180591620717411303424"),
    ],
)
def test_nested_values_pinned(value: Any, expected: str) -> None:
    df = pd.DataFrame({"uid": ["user-00001"], "v": pd.Series(object_array([value]), dtype=object)})
    payload = _dry(df, user_id="uid", set=["v"]).plan.payload[0]
    assert payload == '{"user_id":"user-00001","user_properties":{"$set":{"v":' + expected + "}}}"


@pytest.mark.parametrize(
    "value",
    [[1, float("inf")], {"k": [-np.inf]}, Decimal("1e400"), [Decimal("-Infinity")], 10**400,
     [-(10**400)], np.array([1.0, np.inf]), np.array(np.inf), {"k": np.float16(np.inf)}],
)
def test_numbers_with_no_finite_double_make_the_row_invalid(value: Any) -> None:
    df = pd.DataFrame({"uid": ["user-00001", "user-00002"],
                       "v": pd.Series(object_array([value, 1]), dtype=object)})
    preview = _dry(df, user_id="uid", set=["v"])
    assert preview.plan.state.tolist() == [1, 0]
    assert preview.problems[["row", "column"]].values.tolist() == [[0, "v"]]
    assert "not a valid JSON number" in preview.problems["message"][0]


# ------------------------------------------------------------------------------ float ids
@settings(FUZZ, max_examples=300)
@given(ids=st.lists(st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**60), 2**60).map(float),
    st.sampled_from([2.0**53, -(2.0**53), 2.0**53 - 1, 2.0**53 + 2, 1e20, 12345.0, 12345.5,
                     9007199254740993.0]),
), min_size=1, max_size=6), object_cells=st.booleans())
def test_float_ids_are_sent_only_when_a_double_holds_them_exactly(
    ids: list[float], object_cells: bool
) -> None:
    column = pd.Series(object_array(ids), dtype=object) if object_cells else pd.Series(ids)
    df = pd.DataFrame({"uid": column, "p": "x"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning leaks out of the build either
        preview = _dry(df, user_id="uid", set=["p"])
    plan = preview.plan
    for i, x in enumerate(ids):
        if x != x:
            assert plan.state[i] == 1 and "no usable id" in plan.reason[i]
        elif math.isfinite(x) and x == int(x) and abs(x) < 2**53:
            text = str(int(x))
            ok = len(text) >= 5 and text not in ("0", "-1")
            assert plan.state[i] == (0 if ok else 1), (x, plan.reason[i])
            if ok:
                assert json.loads(plan.payload[i])["user_id"] == text
        else:
            assert plan.state[i] == 1, (x, plan.payload[i])
            assert plan.reason[i].startswith("column 'uid': ")
            assert "read the column as integers or text" in plan.reason[i]


@pytest.mark.parametrize(
    "ids",
    [
        pd.Series([2**63 - 1, -(2**63), 12345], dtype="int64"),
        pd.Series([2**64 - 1, 2**53 + 1, 12345], dtype="uint64"),
        pd.Series([2**53 + 1, None, 12345], dtype="Int64"),
        pd.Series(object_array([2**70 + 1, 10**30 + 7, Decimal("123456789012345678901234567")])),
    ],
)
def test_integer_ids_of_any_width_are_exact(ids: pd.Series) -> None:
    df = pd.DataFrame({"uid": ids, "p": "x"})
    preview = _dry(df, user_id="uid", set=["p"])
    expected = [str(int(v)) for v in ids.tolist() if v is not None and v is not pd.NA]
    assert [p["user_id"] for p in preview.payloads] == expected


# ------------------------------------------------------------------------------------ parser
def real_body(n: int = 3) -> tuple[bytes, str]:
    boundary = b"f" * 32
    payloads = [json.dumps({"user_id": f"user-{i:05d}", "user_properties": {"$add": {"n": 1}}})
                for i in range(n)]
    return encode_body(KEY, payloads, boundary), content_type(boundary)


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    body, _ = real_body(draw(st.integers(1, 4)))
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.sampled_from([b"\r\n", b"--", b'"', b"{", b"]", b"\x00", b"\xff",
                                                b"ffffffff", b'name="api_key"\r\n\r\n']))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 20))]
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 60))]
    return bytes(data)


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@settings(FUZZ, max_examples=100)
@given(body=mutated_bodies(), declared=st.sampled_from(["exact", "short", "long"]))
def test_mutated_real_bodies_get_a_4xx_or_apply_whole(
    sb: Sandbox, http: requests.Session, body: bytes, declared: str
) -> None:
    _, ctype = real_body()
    before = int(sb.applied_counts().sum())
    if declared == "exact":
        response = http.post(sb.url, data=body, headers={"Content-Type": ctype}, timeout=10)
        after = int(sb.applied_counts().sum())
        if response.status_code == 200:  # the mutation left a valid request
            assert response.text == "success" and after > before
        else:
            assert 400 <= response.status_code < 500, response.status_code
            assert response.json()["code"] == response.status_code
            assert after == before
    else:
        # A Content-Length that lies: shorter (the rest is garbage on the connection) or longer
        # (the body never completes). Raw socket: the server answers 4xx, or closes, never dies.
        import socket

        length = max(0, len(body) - 7) if declared == "short" else len(body) + 50
        head = (f"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", sb.port), timeout=10) as conn:
            conn.sendall(head + body)
            conn.shutdown(socket.SHUT_WR)
            try:
                answer = conn.recv(64)
            except ConnectionError:
                answer = b""
        if answer:
            status = int(answer.split(b" ", 2)[1])
            assert status == 200 or 400 <= status < 500, answer
    alive = http.post(sb.url, timeout=10, data={
        "api_key": KEY, "identification": '{"user_id": "user-alive"}'})
    assert alive.status_code == 200
