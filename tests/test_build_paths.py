"""The build writes exactly what an independent oracle says, row by row and byte by byte.

``tests/_support/oracle.py`` writes the README's type rules and id rules out the plain way (a
dict per row, ``json.dumps`` per scalar) and shares no code with the build. Every test here builds
a frame with ``df.amplitude.identify(dry_run=True)`` and compares everything the sender and the
preview read with the oracle: each row's state and exact JSON text, the columns at fault, the
ids, idempotency, lanes and send order, and the payloads' own contract (UTF-8 sizes, the request
array, indexing).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import warnings
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import amp_pandas  # noqa: F401  (registers df.amplitude)
from amp_pandas import literal
from amp_pandas._plan import INVALID, SKIPPED, VALID, Plan
from tests._support.oracle import expected_lanes, expected_rows

# When a test fails, hypothesis's pytest plugin imports hypothesis.extra._patching (libcst), which
# warns a DeprecationWarning from mypy_extensions; under ``filterwarnings = error`` that turns a
# plain test failure into an INTERNALERROR that stops the whole run. Import it once, quietly.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    with contextlib.suppress(ImportError):  # libcst is optional: nothing to pre-import then
        import hypothesis.extra._patching  # noqa: F401

#: pandas 3's default string dtype (Arrow-backed); pandas 2 spells it "string[pyarrow]" and its
#: "str" means object.
PANDAS_3 = int(pd.__version__.split(".")[0]) >= 3
STR = "str" if PANDAS_3 else "string[pyarrow]"
STATE = {"valid": VALID, "invalid": INVALID, "skipped": SKIPPED}


def check(df: pd.DataFrame, **mapping: Any) -> Plan:
    """Build ``df`` and compare the plan with the oracle; returns the plan."""
    mapping.setdefault("user_id", "uid")
    mapping.update(mapping.pop("operations", {}))  # set=..., add=... as identify() takes them
    plan = df.amplitude.identify(dry_run=True, **mapping).plan
    rows = expected_rows(df, mapping)
    assert plan.state.tolist() == [STATE[r.state] for r in rows], [
        (i, r.state, plan.reason[i]) for i, r in enumerate(rows) if STATE[r.state] != plan.state[i]
    ]
    texts = plan.payload.tolist()
    errors_at: dict[int, set[str]] = {}
    padded_at: dict[int, set[str]] = {}
    for problem in plan.problems.itertuples():
        if problem.severity == "error":
            errors_at.setdefault(problem.position, set()).add(problem.column)
        elif "whitespace" in problem.message:
            padded_at.setdefault(problem.position, set()).add(problem.column)
    for i, row in enumerate(rows):
        errors = errors_at.get(i, set())
        if row.state == "valid":
            assert texts[i] == row.text, (i, texts[i], row.text)
            assert plan.reason[i] is None and errors == set()
            assert padded_at.get(i, set()) == row.padded, i
        else:
            assert texts[i] is None
            assert isinstance(plan.reason[i], str)
        if row.state == "invalid":
            assert errors == row.errors, (i, errors, row.errors, plan.reason[i])
        if row.state == "skipped":
            assert errors == set() and plan.reason[i].startswith("nothing to send")
    valid = [r.state == "valid" for r in rows]
    user = [r.user_id if ok else None for r, ok in zip(rows, valid, strict=True)]
    device = [r.device_id if ok else None for r, ok in zip(rows, valid, strict=True)]
    assert plan.user_id.tolist() == user
    assert plan.device_id.tolist() == device
    assert plan.idempotent[valid].tolist() == [r.idempotent for r in rows if r.state == "valid"]
    lanes = expected_lanes(user, device)
    assert plan.lane.tolist() == lanes
    sent = [i for i in range(len(rows)) if valid[i]]
    assert plan.order.tolist() == sorted(sent, key=lambda i: lanes[i])  # stable: row order
    assert_payload_contract(plan)
    return plan


def assert_payload_contract(plan: Plan) -> None:
    """What the sender and the preview read agrees with the texts themselves."""
    valid = plan.state == VALID
    texts = plan.payload.tolist()
    assert all(isinstance(p, str) for p in np.array(texts, dtype=object)[valid])
    assert all(p is None for p in np.array(texts, dtype=object)[~valid])
    assert plan.nbytes.dtype == np.int64
    assert plan.nbytes.tolist() == [len(p.encode()) if p is not None else 0 for p in texts]
    order = plan.order
    assert plan.payload.json_array(order).decode() == "[" + ",".join(texts[r] for r in order) + "]"
    some = range(0, len(plan), max(1, len(plan) // 500))  # one at a time: a sample
    assert [plan.payload[r] for r in some] == [texts[r] for r in some]
    assert plan.payload[valid].tolist() == [t for t in texts if t is not None]
    assert plan.payload[::-1].tolist() == texts[::-1]
    assert plan.identifications() == [json.loads(t) for t in texts if t is not None]


# --------------------------------------------------------------------------------------------
# a catalogue of columns: every dtype family, with the values that need care

N = 8
UIDS = [f"user-{i}" for i in range(N)]
ESCAPES = ['plain', 'quote " here', "back\\slash", "line\nbreak\r\t", "\x00\x01\x1f\x7f", "",
           "ünïcødé ✓", "🎉 emoji \u2028"]


def cells(*values: Any) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def ts(*texts: str | None, unit: str = "ns") -> pd.Series:
    """Datetimes of one resolution from ISO texts (None for NaT), on pandas 2 and 3 alike."""
    return pd.Series(np.array(["NaT" if t is None else t for t in texts],
                              dtype=f"datetime64[{unit}]"))


COLUMNS: dict[str, Any] = {
    "int64": pd.Series([0, -1, 2**63 - 1, -(2**63), 42, 7, 10, 1_000_000], dtype="int64"),
    "uint64": pd.Series([0, 2**64 - 1, 1, 2, 3, 4, 5, 6], dtype="uint64"),
    "uint8": pd.Series([0, 255, 1, 2, 3, 4, 5, 6], dtype="uint8"),
    "Int64": pd.Series([1, None, -3, None, 5, 6, 7, 8], dtype="Int64"),
    "float64": pd.Series([1.5, np.nan, np.inf, -np.inf, 1e16, 1e-7, -0.0, 0.1]),
    "Float64": pd.Series([1.5, None, 2.0, 3.25, None, 1e300, 0.0, -2.5], dtype="Float64"),
    "float32": pd.Series([0.5, 1.1, np.nan, 3, 4, 5, 6, 7], dtype="float32"),
    "bool": pd.Series([True, False] * 4),
    "boolean": pd.Series([True, None, False, True, None, False, True, True], dtype="boolean"),
    "str": pd.Series(ESCAPES, dtype=STR),
    "str-nulls": pd.Series(["a", None, 'b"', None, "ü", None, "", "x"], dtype=STR),
    "object-str": pd.Series(cells(*ESCAPES), dtype=object),
    "object-str-nulls": pd.Series(cells("a", None, np.nan, pd.NA, "b\\", "é", None, "z"),
                                  dtype=object),
    "string-python": pd.Series(["a", None, *ESCAPES[2:]], dtype="string[python]"),
    "string-pyarrow": pd.Series(["a", None, *ESCAPES[2:]], dtype="string[pyarrow]"),
    "arrow-large-string": pd.Series(ESCAPES, dtype=pd.ArrowDtype(pa.large_string())),
    "object-surrogate": pd.Series(cells("a\ud800b", "fine", *ESCAPES[2:]), dtype=object),
    "long-string": pd.Series(["x" * 1500, "é" * 1025, "é" * 600, "y" * 1024, *ESCAPES[4:]],
                             dtype=STR),
    "datetime-ns": ts("2024-01-01T00:00:00", "2024-01-01T10:00:00.5", None,
                      "1969-12-31T23:59:59", "1969-12-31T23:59:59.999999999",
                      "1900-02-28T12:00:00.000001", "2262-04-11T23:47:16",
                      "1677-09-21T00:12:44"),
    "datetime-us": ts("2024-05-01T12:30:05", "2024-05-01T12:30:05.25", None, "1970-01-01",
                      "1969-07-20T20:17:40.1", "0999-12-31", "2024-02-29T23:59:59.999999",
                      "2000-01-01", unit="us"),
    "datetime-s-far": ts("0001-01-01T00:00:01", "9999-12-31T23:59:59", "-0100-01-01",
                         "12000-05-05", "1969-12-31T23:59:59", None, "0999-01-01",
                         "2024-01-01", unit="s"),
    "datetime-ms": ts("2024-01-01T00:00:00.123", "2024-01-01T00:00:00.1", None,
                      "1960-01-01T00:00:00.001", "2024-01-01", "2024-01-02", "2024-01-03",
                      "2024-01-04", unit="ms"),
    "datetime-tz": ts("2024-01-01T00:00:00", "2024-01-01T10:00:00.5", None,
                      "1969-12-31T23:59:59", "2024-03-31T02:30:00", "2024-07-01",
                      "2024-10-27T02:30:00", "2000-01-01")
    .dt.tz_localize("Europe/Berlin", ambiguous=True, nonexistent="shift_forward"),
    "category-str": pd.Series(pd.Categorical(["x", None, 'q"', "x", "ü", None, "x", "\n"])),
    "category-int": pd.Series(pd.Categorical([1, 2, 1, None, 3, 3, 2, 1])),
    "category-float-inf": pd.Series(pd.Categorical([1.5, np.inf, 1.5, None, 2.0, 2, 1.5, 2])),
    "category-unused": pd.Series(pd.Categorical(["a", "b", "a", "a", "b", "a", "b", "a"],
                                                categories=["z", "a", "b", "unused"])),
    "category-datetime": ts("2024-01-01", "2024-01-01T00:00:00.5", None, "1969-01-01",
                            "2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01")
    .astype("category"),
    "object-mixed": pd.Series(cells([1, "a", None], {"k": [1.5, True]}, None, 3, "s\"",
                                    dt.date(2024, 1, 2), pd.Timestamp("2024-01-01 01:02:03"),
                                    {1, 2}), dtype=object),
    "object-bad": pd.Series(cells(b"raw", 1, float("inf"), "x", None, dt.timedelta(1), 2,
                                  np.timedelta64(3, "h")), dtype=object),
    "timedelta": pd.Series(pd.to_timedelta(["1h", None, "2h", "3h", "4h", "5h", "6h", "7h"])),
    **({} if PANDAS_3 else {  # pandas 2 with future.infer_string
        "string-pyarrow-numpy": pd.Series(["a", None, *ESCAPES[2:]], dtype="string[pyarrow_numpy]")
    }),
    "all-missing": pd.Series([None] * N, dtype=object),
    "all-missing-str": pd.Series([None] * N, dtype=STR),
}


def frame(column: str) -> pd.DataFrame:
    return pd.DataFrame({"uid": pd.Series(UIDS, dtype=STR), "v": COLUMNS[column]})


@pytest.mark.parametrize("nulls", ["skip", "unset", "error"])
@pytest.mark.parametrize("op", ["set", "set_once", "add", "post_insert"])
@pytest.mark.parametrize("column", sorted(COLUMNS))
def test_every_column_kind_matches_the_oracle(column: str, op: str, nulls: str) -> None:
    check(frame(column), operations={op: {"prop": "v"}}, nulls=nulls)


@pytest.mark.parametrize("column", sorted(COLUMNS))
def test_columns_as_fields_and_groups_match_the_oracle(column: str) -> None:
    df = frame(column).assign(plan="pro")
    check(df, operations={"set": ["plan"]}, fields={"platform": "v"})
    check(df, operations={"set": ["plan"]}, groups={"team": "v"})


def test_columns_are_converted_in_arrow_without_a_python_string_per_cell() -> None:
    """Guards the speed of the build: common dtypes are converted by Arrow kernels, and a
    payload's text is written per request, not held per row."""
    from amp_pandas import _convert

    df = frame("str").assign(n=1, t=pd.Timestamp("2024-01-01"))
    for name in ("v", "n", "t"):
        assert isinstance(_convert.convert_values(df[name]).arrow, pa.Array)
    plan = check(df, operations={"set": ["v", "n", "t"]})
    assert type(plan.payload).__name__ == "ArrowPayloads"


def test_reference_shaped_frame_matches_the_oracle() -> None:
    rng = np.random.default_rng(0)
    n = 5_000
    users = np.array([f"user-{i:05d}" for i in range(n // 4)], dtype=object)
    df = pd.DataFrame({
        "uid": pd.Series(users[rng.integers(0, len(users), n)], dtype=STR),
        "plan": pd.Series(np.array(["free", "pro"], dtype=object)[rng.integers(0, 2, n)],
                          dtype=STR),
        "country": pd.Series(np.array(["DE", "FR", None], dtype=object)[rng.integers(0, 3, n)],
                             dtype=STR),
        "signup": pd.to_datetime(rng.integers(-2_000_000_000, 2_000_000_000, n), unit="s"),
        "logins": rng.integers(0, 1000, n),
        "tag": pd.Series(np.array(["vip", 'be"ta'], dtype=object)[rng.integers(0, 2, n)],
                         dtype=STR),
    })
    ops = {"set": ["plan", "country"], "set_once": {"first_seen": "signup"},
           "add": {"logins": "logins"}, "post_insert": {"tags": "tag"}}
    for nulls in ("skip", "unset", "error"):
        plan = check(df, operations=ops, nulls=nulls)
        assert plan.n_valid > 0
    # more than one block of rows: the Arrow assembler works a block at a time
    check(pd.concat([df] * 8, ignore_index=True), operations=ops)


def test_sliced_and_chunked_arrow_columns_match_the_oracle() -> None:
    """Slices of Arrow-backed columns start at an offset into shared buffers; concatenated
    frames hold several chunks. The byte-level code (escape scan, fixed-width ids) must cope."""
    base = pd.DataFrame({
        "uid": pd.Series([f"user-{i:03d}" for i in range(40)], dtype=STR),
        "dev": pd.Series([f"d{i % 7}-x\\" if i % 5 else None for i in range(40)], dtype=STR),
        "v": pd.Series([f'v"{i}' if i % 3 else None for i in range(40)], dtype=STR),
    })
    ops = {"set": ["v"]}
    check(base.iloc[7:31], operations=ops)
    check(base.iloc[7:31], device_id="dev", operations=ops)
    check(base.iloc[::3], operations=ops)
    chunked = pd.concat([base.iloc[:13], base.iloc[13:], base.iloc[5:9]], ignore_index=True)
    check(chunked, operations=ops)
    check(chunked.iloc[10:], device_id="dev", operations=ops)


# --------------------------------------------------------------------------------------------
# ids, literals, groups and fields


@pytest.mark.parametrize(
    "ids",
    [
        pd.Series(["user-1", "null", "NULL", "Unknown", "un\u212anown", "abc", "x" * 1100,
                   None, 'us"er\\1', "üser-ü", "user-1", "00000000-0000-0000-0000-000000000000",
                   "İnfo-x", "-1", ""], dtype=STR),
        pd.Series(cells("user-1", "null", None, "abc", 'us"er\\1', "user-1", np.nan, "ÜNKNOWN"),
                  dtype=object),
        pd.Series([12345, 67890, 12345, 0, -1, 1234], dtype="int64"),
        pd.Series([12345, None, 67890, 12345], dtype="Int64"),
        pd.Series([12345.0, np.nan, 1.5, 99999.0, 1e20, -(2.0**63), 2.0**63]),
        pd.Series(cells("user-a", 123456, True, None, 1.5, "user-a", np.timedelta64(5, "s"))),
        pd.Series(pd.Categorical(["user-a", "user-b", None, "user-a", "n/a"])),
        pd.Series(pd.Categorical([123456, 654321, 123456])),
        pd.Series(cells("user-\ud800", "user-2"), dtype=object),
    ],
)
def test_ids_match_the_oracle(ids: pd.Series) -> None:
    df = pd.DataFrame({"uid": ids, "p": "x"})
    check(df, operations={"set": ["p"]})
    devices = pd.Series([f"dev-{i % 3}" if i % 4 else None for i in range(len(ids))], dtype=STR)
    check(df.assign(dev=devices), device_id="dev", operations={"set": ["p"]})
    check(df.assign(dev=devices), user_id=None, device_id="uid", operations={"set": ["p"]})


def test_busy_ids_and_linked_lanes_match_the_oracle() -> None:
    n = 1_900
    df = pd.DataFrame({
        "uid": pd.Series(["user-busy"] * n + ["user-b", None, "user-c"], dtype=STR),
        "dev": pd.Series([None] * n + ["dev-1", "dev-1", "dev-2"], dtype=STR),
        "p": 1,
    })
    plan = check(df, device_id="dev", operations={"add": ["p"]})
    assert (plan.problems["severity"] == "warning").sum() == n - 1_800


@pytest.mark.parametrize("nulls", ["skip", "unset", "error"])
def test_literals_match_the_oracle(nulls: str) -> None:
    df = frame("str-nulls")
    check(
        df,
        nulls=nulls,
        operations={
            "set": {"v": "v", "cohort": literal('Test "A"'), "score": literal(np.int64(7)),
                    "none": literal(None), "when": literal(pd.Timestamp("2024-01-01 00:00:01.5"))},
            "set_once": {"bad": literal(float("inf"))},
            "post_insert": {"tags": literal(["a", "b"])},
        },
        unset=["legacy"],
        groups={"org": literal("acme"), "teams": literal(["red", "blue"])},
        fields={"platform": literal("Web"), "paying": literal(True)},
    )
    check(df, nulls=nulls, user_id=literal("user-fixed"), operations={"set": ["v"]})
    check(df, nulls=nulls, user_id=literal("nil"), operations={"set": ["v"]})
    check(df, nulls=nulls, user_id="uid", device_id=literal("dev-x"), operations={"set": ["v"]})


def test_literal_only_payloads_match_the_oracle() -> None:
    df = frame("int64")
    check(df, operations={"set": {"a": literal("x"), "b": literal(1)}})
    check(df, operations={}, unset=["a", "b"])
    check(df.iloc[:0], operations={"set": ["v"]})


def test_groups_and_fields_match_the_oracle() -> None:
    df = pd.DataFrame({
        "uid": pd.Series(UIDS[:4], dtype=STR),
        "company": pd.Series(["acme", None, 'a"c', "ü"], dtype=STR),
        "teams": pd.Series(cells(["red", "blue"], ["green"], None, [f"g{i}" for i in range(11)])),
        "n": [1, 2, 3, 4],
        "platform": pd.Series(["iOS", "Web", None, "x\ny"], dtype=STR),
        "paying": [True, False, True, False],
        "version": [3.5, 4.0, np.nan, np.inf],
        "seen": ts("2024-01-01", None, "2024-01-01T00:00:00.5", "1969-01-01"),
    })
    for nulls in ("skip", "unset", "error"):
        check(
            df,
            nulls=nulls,
            operations={"set": {"x": "n"}},
            groups={"company": "company", "team": "teams", "num": "n"},
            fields={"platform": "platform", "paying": "paying", "app_version": "version",
                    "start_version": "seen", "carrier": "n"},
        )


# --------------------------------------------------------------------------------------------
# pandas 2-style frames: object strings everywhere


@pytest.mark.parametrize("nulls", ["skip", "unset", "error"])
def test_object_string_frames_match_str_frames(nulls: str) -> None:
    values = ["pro", None, 'q"uote', "ü🎉", "", "tab\t", None, "x"]
    ops = {"set": ["plan"], "post_insert": {"tags": "tag"}}
    str_frame = pd.DataFrame({"uid": UIDS, "plan": values, "tag": values[::-1]}, dtype=STR)
    obj_frame = pd.DataFrame({"uid": UIDS, "plan": values, "tag": values[::-1]}, dtype=object)
    a = check(str_frame, operations=ops, nulls=nulls)
    b = check(obj_frame, operations=ops, nulls=nulls)
    assert a.payload.tolist() == b.payload.tolist()
    pd.testing.assert_frame_equal(a.problems, b.problems)


# --------------------------------------------------------------------------------------------
# property test: random frames


TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(
        ['"', "\\", "\n", "\x00", "\x1f", "%", "é", "🎉", "\u2028"]),
    max_size=12,
)
IDS = st.one_of(st.none(), st.sampled_from(["user-1", "user-2", "dev-x1", "null", "abc", "İ",
                                            "  user-1 ", "     ", "", "user-2\u3000", "\tuser-3"]),
                TEXT)
#: Device ids live in an object column: numbers and lone surrogates too.
DEVICE_IDS = st.one_of(IDS, st.sampled_from([12345, 2**70, 12345.0, 2.0**53, 1.5, np.nan, True,
                                             "dev-\ud800", Decimal("123456"), ["dev-1"]]))
NESTED = st.recursive(
    st.one_of(st.none(), TEXT, st.integers(-(2**70), 2**70), st.floats(), st.booleans(),
              st.sampled_from([np.nan, pd.NA, pd.NaT, Decimal("1.10"), Decimal("NaN"),
                               Decimal("1e400"), np.int64(7), np.float32(0.5), "x\ud800",
                               pd.Timestamp("2024-01-02 03:04:05.5", tz="Europe/Berlin"),
                               np.array([[1, 2], [3, 4]]), np.array(2.5), b"raw"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(st.one_of(TEXT, st.integers(0, 3)), inner,
                                            max_size=3)),
    max_leaves=6,
)


#: Nanoseconds since 1970: calendar datetimes (whole seconds or micros) across pandas' range,
#: and raw integers (any fraction).
MOMENTS = st.one_of(
    st.datetimes(min_value=dt.datetime(1678, 1, 1), max_value=dt.datetime(2261, 12, 31))
    .map(lambda d: pd.Timestamp(d).value),
    st.integers(-(2**62), 2**62),
)


def maybe(strategy: Any) -> Any:
    return st.one_of(st.none(), strategy)


@st.composite
def column(draw: Any, n: int) -> pd.Series:
    kind = draw(st.sampled_from(["int", "Int64", "float", "bool", "boolean", "str", "object-str",
                                 "datetime", "datetime-tz", "category", "object"]))
    if kind == "int":
        return pd.Series(draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n,
                                       max_size=n)), dtype="int64")
    if kind == "Int64":
        return pd.Series(draw(st.lists(maybe(st.integers(-(2**40), 2**40)), min_size=n,
                                       max_size=n)), dtype="Int64")
    if kind == "float":
        return pd.Series(draw(st.lists(st.floats(allow_nan=True, allow_infinity=True),
                                       min_size=n, max_size=n)), dtype="float64")
    if kind in ("bool", "boolean"):
        vals = draw(st.lists(maybe(st.booleans()) if kind == "boolean" else st.booleans(),
                             min_size=n, max_size=n))
        return pd.Series(vals, dtype=kind)
    if kind in ("str", "object-str", "category"):
        vals = draw(st.lists(maybe(TEXT), min_size=n, max_size=n))
        if kind == "category":
            return pd.Series(pd.Categorical(vals))
        return pd.Series(cells(*vals) if n else [], dtype=STR if kind == "str" else object)
    if kind in ("datetime", "datetime-tz"):
        nanos = draw(st.lists(maybe(MOMENTS), min_size=n, max_size=n))
        unit = draw(st.sampled_from(["ns", "us", "s"]))
        raw = np.array([np.iinfo(np.int64).min if v is None else v for v in nanos], dtype=np.int64)
        values = raw.view("datetime64[ns]")
        if unit != "ns":  # rounding keeps NaT; whole seconds/micros are the common case
            values = values.astype(f"datetime64[{unit}]")
        series = pd.Series(values)
        return series.dt.tz_localize("UTC").dt.tz_convert("Asia/Kolkata") if kind == "datetime-tz" \
            else series
    vals = draw(st.lists(NESTED, min_size=n, max_size=n))
    return pd.Series(cells(*vals) if n else [], dtype=object)


@st.composite
def frames(draw: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    n = draw(st.integers(0, 12))
    data: dict[str, Any] = {"uid": pd.Series(cells(*draw(st.lists(IDS, min_size=n, max_size=n)))
                                             if n else [], dtype=STR)}
    with_device = draw(st.booleans())
    if with_device:
        data["dev"] = pd.Series(
            cells(*draw(st.lists(DEVICE_IDS, min_size=n, max_size=n))) if n else [], dtype=object
        )
    ops: dict[str, dict[str, str]] = {}
    for i in range(draw(st.integers(1, 4))):
        name = f"c{i}"
        data[name] = draw(column(n))
        op = draw(st.sampled_from(["set", "set_once", "add", "append", "post_insert"]))
        ops.setdefault(op, {})[f"p{i}%s"] = name
    mapping: dict[str, Any] = {
        "operations": ops,
        "nulls": draw(st.sampled_from(["skip", "unset", "error"])),
        "device_id": "dev" if with_device else None,
    }
    if draw(st.booleans()):
        mapping["unset"] = ["gone"]
    if draw(st.booleans()):
        data["f"] = draw(column(n))
        mapping["fields"] = {"platform": "f", "country": literal(draw(st.sampled_from(
            ["DE", 3, 2.5, True, "x\ud800", None])))}
    if draw(st.booleans()):
        data["g"] = pd.Series(cells(*draw(st.lists(
            st.one_of(IDS, st.lists(IDS, max_size=6), st.sampled_from([12, 1.5, ["a\ud800"]])),
            min_size=n, max_size=n))) if n else [], dtype=object)
        mapping["groups"] = {"team": "g", "org": literal(draw(st.sampled_from(
            ["acme", ["a", "b"], "x\ud800"])))}
    return pd.DataFrame(data, index=pd.RangeIndex(n)), mapping


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_random_frames_match_the_oracle(case: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    df, mapping = case
    check(df, **mapping)
