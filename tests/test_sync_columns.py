"""Revert infos read from a frame's columns agree with those parsed from the identifications
actually built (the parse, :func:`amp_pandas._sync.revert_info`, is the oracle)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import amp_pandas  # noqa: F401  (registers df.amplitude)
from amp_pandas import literal
from amp_pandas._spec import parse_mapping
from amp_pandas._sync import revert_info
from amp_pandas._syncrun import group_users, revert_columns, revert_infos

OPS = ["set", "set_once", "add", "append", "prepend", "pre_insert", "post_insert", "remove"]
TEXTS = st.one_of(st.none(), st.sampled_from(["a", "b", "é", "x y"]))
INTS = st.one_of(st.none(), st.integers(-3, 3))
LISTS = st.one_of(st.none(), st.lists(st.sampled_from(["p", "q", "r"]), max_size=2))
BOOLS = st.one_of(st.none(), st.booleans())
#: equal in Python (1 == True, 0 == False), different in JSON: revert infos keep them apart
MIXED = st.one_of(st.none(), st.sampled_from([1, True, "1", "true", 0, False]))


@st.composite
def frames(draw: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    n = draw(st.integers(1, 8))
    df = pd.DataFrame({
        "uid": draw(st.lists(st.sampled_from(["user-1", "user-2", "user-3"]), min_size=n,
                             max_size=n)),
        "text": pd.Series(draw(st.lists(TEXTS, min_size=n, max_size=n)), dtype=object),
        "num": pd.array(draw(st.lists(INTS, min_size=n, max_size=n)), dtype="Int64"),
        "items": pd.Series(draw(st.lists(LISTS, min_size=n, max_size=n)), dtype=object),
        "flag": pd.Series(draw(st.lists(BOOLS, min_size=n, max_size=n)), dtype=object),
        "mixed": pd.Series(draw(st.lists(MIXED, min_size=n, max_size=n)), dtype=object),
        "country": pd.Series(draw(st.lists(TEXTS, min_size=n, max_size=n)), dtype=object),
    })  # fmt: skip
    mapping: dict[str, Any] = {}
    used: set[str] = set()
    for i in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(OPS))
        prop = f"p{i}"
        if op == "add":
            source: Any = draw(st.sampled_from(["num", literal(2)]))
        else:
            source = draw(st.sampled_from(["text", "num", "items", "flag", "mixed", literal("tag"),
                                           literal(["t1", "t2"]), literal(7)]))  # fmt: skip
        mapping.setdefault(op, {})[prop] = source
        used.add(prop)
    if draw(st.booleans()):
        mapping["fields"] = {"country": "country"}
    if draw(st.booleans()):
        mapping["unset"] = ["gone"]
    mapping["nulls"] = draw(st.sampled_from(["skip", "unset"]))
    return df, mapping


@settings(max_examples=150, deadline=None)
@given(frames())
def test_columns_and_parsed_identifications_give_the_same_revert_infos(
    case: tuple[pd.DataFrame, dict[str, Any]],
) -> None:
    df, mapping = case
    preview = df.amplitude.identify(user_id="uid", dry_run=True, **mapping)
    plan = preview.plan
    users = group_users(plan)
    nulls = mapping.pop("nulls")
    fields = mapping.pop("fields", None)
    unset = mapping.pop("unset", None)
    spec = parse_mapping(df, user_id="uid", device_id=None, operations=mapping, unset=unset,
                         groups=None, fields=fields, nulls=nulls)  # fmt: skip
    columns = revert_columns(df, spec)
    assert columns is not None  # every value drawn here can be read from the columns
    which = np.arange(len(users))
    got = revert_infos(plan, users, which, columns)
    for u, info in zip(which.tolist(), got, strict=True):
        rows = users.rows[users.code[users.rows] == u]
        assert info == revert_info(plan.payload.texts(rows)), users.keys[u]


def test_what_only_the_json_tells_falls_back_to_parsing() -> None:
    df = pd.DataFrame({"uid": ["user-1"], "x": [1.5], "when": pd.to_datetime(["2024-01-01"]),
                       "g": ["acme"]})  # fmt: skip

    def spec(**kw: Any) -> Any:
        return parse_mapping(df, user_id="uid", device_id=None, operations=kw.pop("ops"),
                             unset=None, groups=kw.get("groups"), fields=None, nulls="skip")

    assert revert_columns(df, spec(ops={"append": {"a": "x"}})) is None  # floats
    assert revert_columns(df, spec(ops={"append": {"a": "when"}})) is None  # dates
    assert revert_columns(df, spec(ops={"set": {"a": "x"}}, groups={"org": "g"})) is None
    assert revert_columns(df, spec(ops={"set": {"a": "x"}, "append": {"b": "g"}})) is not None


def test_values_equal_in_python_but_not_in_json_keep_their_own_revert_infos() -> None:
    """1 == True == 1.0 and 0 == False in Python; as JSON they are different values, and a
    revert must remove exactly the one each user was given."""
    values = [1, True, "1", 0, False, "true", "x"]
    df = pd.DataFrame({"uid": [f"user-{i}" for i in range(len(values))],
                       "mixed": pd.Series(values, dtype=object)})  # fmt: skip
    mapping = {"append": {"p": "mixed"}, "post_insert": {"q": "mixed"}}
    plan = df.amplitude.identify(user_id="uid", dry_run=True, **mapping).plan
    users = group_users(plan)
    spec = parse_mapping(df, user_id="uid", device_id=None, operations=mapping, unset=None,
                         groups=None, fields=None, nulls="skip")  # fmt: skip
    columns = revert_columns(df, spec)
    assert columns is not None
    got = revert_infos(plan, users, np.arange(len(users)), columns)
    added = [dict(info.added).get("p") for info in got]
    assert added == [("1",), ("true",), ('"1"',), ("0",), ("false",), ('"true"',), ('"x"',)]
