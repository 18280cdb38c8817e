"""Building identifications: the mapping, the type rules, validation and the dry run."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

import amp_pandas  # noqa: F401  (registers df.amplitude)
from amp_pandas import IdentifyPreview, literal
from amp_pandas._amplitude import MAX_BODY_BYTES
from amp_pandas._encode import body_overhead, encode_body, new_boundary
from amp_pandas.errors import (
    ArgumentError,
    ColumnNotFoundError,
    DuplicatePropertyError,
    MissingIdError,
    UnknownFieldError,
)


def dry(df: pd.DataFrame, **kwargs) -> IdentifyPreview:
    kwargs.setdefault("user_id", "uid")
    preview = df.amplitude.identify(dry_run=True, **kwargs)
    assert isinstance(preview, IdentifyPreview)
    return preview


def object_column(*values) -> pd.Series:
    """An object column holding each value as one cell (lists and dicts included)."""
    cells = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        cells[i] = v
    return pd.Series(cells, dtype=object)


def one(value, op: str = "set", dtype=None) -> dict:
    """The user_properties sent for a single cell."""
    col = pd.Series([value], dtype=dtype) if dtype is not None else pd.Series([value])
    if dtype is None and isinstance(value, (list, dict, tuple, set, np.ndarray)):
        col = object_column(value)
    df = pd.DataFrame({"uid": ["user-1"], "v": col})
    preview = dry(df, **{op: ["v"]})
    assert preview.summary["valid"] == 1, preview.problems
    return preview.payloads[0]["user_properties"]


# --------------------------------------------------------------------------------------------
# operations


@pytest.mark.parametrize(
    "arg, op",
    [
        ("set", "$set"),
        ("set_once", "$setOnce"),
        ("add", "$add"),
        ("append", "$append"),
        ("prepend", "$prepend"),
        ("pre_insert", "$preInsert"),
        ("post_insert", "$postInsert"),
        ("remove", "$remove"),
    ],
)
def test_every_operation_lands_under_its_name(arg: str, op: str) -> None:
    df = pd.DataFrame({"uid": ["user-1", "user-2"], "v": [1, 2]})
    preview = dry(df, **{arg: {"prop": "v"}})
    assert preview.payloads == [
        {"user_id": "user-1", "user_properties": {op: {"prop": 1}}},
        {"user_id": "user-2", "user_properties": {op: {"prop": 2}}},
    ]


def test_list_form_names_properties_after_columns_and_ops_keep_order() -> None:
    df = pd.DataFrame(
        {"uid": ["user-1"], "plan": ["pro"], "country": ["DE"], "n": [3], "tag": ["vip"]}
    )
    preview = dry(
        df, set=["plan", "country"], add={"logins": "n"}, post_insert={"tags": "tag"},
        unset=["legacy_flag"],
    )
    payload = preview.payloads[0]
    assert payload == {
        "user_id": "user-1",
        "user_properties": {
            "$set": {"plan": "pro", "country": "DE"},
            "$add": {"logins": 3},
            "$postInsert": {"tags": "vip"},
            "$unset": {"legacy_flag": "-"},
        },
    }
    # the exact bytes: operations only, never plain keys mixed in
    raw = preview.plan.payload[0]
    assert json.loads(raw) == payload and " " not in raw


def test_unset_only_rows_are_valid() -> None:
    df = pd.DataFrame({"uid": ["user-1", "user-2"]})
    preview = dry(df, unset=["a", "b"])
    assert preview.payloads[1] == {
        "user_id": "user-2", "user_properties": {"$unset": {"a": "-", "b": "-"}}
    }


def test_groups_and_fields() -> None:
    df = pd.DataFrame(
        {
            "uid": ["user-1", "user-2"],
            "company": ["acme", None],
            "teams": [["red", "blue"], ["green"]],
            "platform": ["iOS", "Web"],
            "paying": [True, False],
            "version": [3, 4],
        }
    )
    preview = dry(
        df,
        groups={"company": "company", "team": "teams"},
        fields={"platform": "platform", "paying": "paying", "app_version": "version",
                "country": literal("DE")},
    )
    assert preview.payloads == [
        {"user_id": "user-1", "platform": "iOS", "paying": "true", "app_version": "3",
         "country": "DE", "groups": {"company": "acme", "team": ["red", "blue"]}},
        {"user_id": "user-2", "platform": "Web", "paying": "false", "app_version": "4",
         "country": "DE", "groups": {"team": ["green"]}},
    ]


def test_too_many_groups_in_a_row_is_invalid() -> None:
    df = pd.DataFrame({"uid": ["user-1", "user-2"], "g": [[f"g{i}" for i in range(11)], ["a"]]})
    preview = dry(df, groups={"team": "g"})
    assert preview.summary["invalid"] == 1
    assert "at most 10" in preview.problems.loc[0, "message"]


def test_literal_everywhere_a_column_can_stand() -> None:
    df = pd.DataFrame({"uid": ["user-1", "user-2"]})
    preview = dry(
        df,
        set={"cohort": literal("Test A"), "score": literal(np.int64(7))},
        post_insert={"tags": literal(["a", "b"])},
        groups={"org": literal("acme")},
        fields={"platform": literal("Web")},
    )
    assert preview.payloads[1] == {
        "user_id": "user-2",
        "platform": "Web",
        "user_properties": {
            "$set": {"cohort": "Test A", "score": 7},
            "$postInsert": {"tags": ["a", "b"]},
        },
        "groups": {"org": "acme"},
    }


def test_device_id_only_and_both_ids_link_without_properties() -> None:
    df = pd.DataFrame({"uid": ["user-1", None], "dev": ["device-1", "device-2"]})
    preview = dry(df, device_id="dev")
    # row 0 links a device to a user: valid with no properties; row 1 has one id, nothing else
    assert preview.payloads == [{"user_id": "user-1", "device_id": "device-1"}]
    assert preview.summary[["valid", "skipped"]].tolist() == [1, 1]


def test_rows_with_nothing_to_send_are_skipped() -> None:
    df = pd.DataFrame({"uid": ["user-1", "user-2"], "plan": [None, "pro"]})
    preview = dry(df, set=["plan"])
    assert preview.summary[["valid", "skipped", "invalid"]].tolist() == [1, 1, 0]
    assert "nothing to send" in preview.plan.reason[0]


def test_duplicate_users_keep_row_order_and_share_a_lane() -> None:
    df = pd.DataFrame({"uid": ["user-1", "user-2", "user-1"], "n": [1, 2, 3]})
    preview = dry(df, append={"seq": "n"})
    assert [p["user_properties"]["$append"]["seq"] for p in preview.payloads] == [1, 2, 3]
    plan = preview.plan
    assert plan.lane.tolist() == [0, 1, 0]
    assert plan.order.tolist() == [0, 2, 1]
    assert not plan.idempotent.any()


def test_idempotency_is_per_row() -> None:
    df = pd.DataFrame({"uid": ["user-1", "user-2"], "n": [1, None], "p": ["a", "b"]})
    plan = dry(df, add={"n": "n"}, set=["p"]).plan
    assert plan.idempotent.tolist() == [False, True]


# --------------------------------------------------------------------------------------------
# type rules


@pytest.mark.parametrize(
    "value, dtype, expected",
    [
        (np.int64(5), "int64", 5),
        (5, "Int64", 5),
        (np.uint8(200), "uint8", 200),
        (1.5, "float64", 1.5),
        (2.0, "Float64", 2.0),
        (np.float32(0.5), "float32", 0.5),
        (True, "bool", True),
        (False, "boolean", False),
        ("plain", "string", "plain"),
        ('quote " and \\ and\nnewline', None, 'quote " and \\ and\nnewline'),
        ("ünïcødé ✓ 🎉", None, "ünïcødé ✓ 🎉"),
        (pd.Timestamp("2024-05-01 12:30:05"), None, "2024-05-01T12:30:05"),
        (pd.Timestamp("2024-05-01 12:30:05.250"), None, "2024-05-01T12:30:05.25"),
        (pd.Timestamp("2024-05-01 12:30", tz="America/New_York"), None, "2024-05-01T16:30:00"),
        (dt.datetime(2024, 5, 1, 8, 0, 1), "object", "2024-05-01T08:00:01"),
        (dt.date(2024, 5, 1), "object", "2024-05-01"),
        (np.datetime64("2024-05-01T00:00:00"), None, "2024-05-01T00:00:00"),
        (Decimal("12.50"), "object", 12.5),
        ([1, "a", None], None, [1, "a", None]),
        ((np.int64(1), np.bool_(True)), None, [1, True]),
        ({"b", "a"}, None, ["a", "b"]),
        (np.array([1.5, 2.5]), None, [1.5, 2.5]),
        ({"k": {"n": np.int64(1)}}, None, {"k": {"n": 1}}),
    ],
)
def test_type_rules(value, dtype, expected) -> None:
    got = one(value, dtype=dtype)["$set"]["v"]
    assert got == expected and type(got) is type(expected)


def test_categorical_sends_category_values() -> None:
    df = pd.DataFrame(
        {"uid": ["user-1", "user-2", "user-3"],
         "c": pd.Categorical(["x", None, "y"]), "n": pd.Categorical([1, 2, 1])}
    )
    preview = dry(df, set=["c", "n"])
    assert [p["user_properties"]["$set"] for p in preview.payloads] == [
        {"c": "x", "n": 1}, {"n": 2}, {"c": "y", "n": 1},
    ]


def test_datetime_column_utc_and_fraction_only_when_nonzero() -> None:
    ts = pd.to_datetime(
        ["2024-01-01 00:00:00", "2024-01-01 10:00:00.5", None, "1969-12-31 23:59:59"],
        format="ISO8601",
    ).tz_localize("Europe/Berlin")
    df = pd.DataFrame({"uid": [f"user-{i}" for i in range(4)], "t": ts})
    preview = dry(df, set_once=["t"])
    assert [p["user_properties"]["$setOnce"]["t"] for p in preview.payloads] == [
        "2023-12-31T23:00:00", "2024-01-01T09:00:00.5", "1969-12-31T22:59:59",
    ]


@pytest.mark.parametrize(
    "ids, expected",
    [
        (pd.Series([12345, 67890]), ["12345", "67890"]),
        (pd.Series([12345.0, 67890.0]), ["12345", "67890"]),
        (pd.Series([12345, None], dtype="Int64"), ["12345"]),
        (pd.Series([12345, np.nan]), ["12345"]),
        (pd.Series(["user-a", 123456], dtype=object), ["user-a", "123456"]),
        (pd.Series(pd.Categorical(["user-a", "user-b"])), ["user-a", "user-b"]),
    ],
)
def test_integer_ids_become_strings(ids, expected) -> None:
    df = pd.DataFrame({"uid": ids, "p": "x"})
    preview = dry(df, set=["p"])
    assert [p["user_id"] for p in preview.payloads] == expected


def test_non_whole_float_id_is_invalid() -> None:
    df = pd.DataFrame({"uid": [12345.5], "p": ["x"]})
    preview = dry(df, set=["p"])
    assert preview.summary["invalid"] == 1
    assert "whole number" in preview.problems.loc[0, "message"]


@pytest.mark.parametrize(
    "value, fragment",
    [
        (np.inf, "not a valid JSON number"),
        (-np.inf, "not a valid JSON number"),
        (b"raw", "bytes have no JSON form"),
        (pd.Timedelta("1h"), "timedelta"),
        (complex(1, 2), "no JSON form"),
        (Decimal("Infinity"), "not a valid JSON number"),
        ([1, [2, float("inf")]], "not a valid JSON number"),
        ({1.5j: 1}, "dict keys must be strings"),
    ],
)
def test_values_with_no_json_form_make_the_row_invalid(value, fragment) -> None:
    col = object_column(value, "fine")
    df = pd.DataFrame({"uid": ["user-1", "user-2"], "v": col})
    preview = dry(df, set=["v"])
    assert preview.summary[["valid", "invalid"]].tolist() == [1, 1]
    problem = preview.problems.iloc[0]
    assert (problem["row"], problem["column"], problem["severity"]) == (0, "v", "error")
    assert fragment in problem["message"]
    assert preview.plan.reason[0].startswith("column 'v': ")


def test_timedelta_column_is_invalid_with_a_hint() -> None:
    df = pd.DataFrame({"uid": ["user-1"], "d": pd.to_timedelta(["1h"])})
    preview = dry(df, set=["d"])
    assert "total_seconds" in preview.problems.loc[0, "message"]


def test_nesting_deeper_than_40_is_invalid() -> None:
    deep: object = 1
    for _ in range(45):
        deep = [deep]
    ok: object = 1
    for _ in range(38):
        ok = [ok]
    col = object_column(deep, ok)
    preview = dry(pd.DataFrame({"uid": ["user-1", "user-2"], "v": col}), set=["v"])
    assert preview.summary[["valid", "invalid"]].tolist() == [1, 1]
    assert "nesting deeper" in preview.problems.loc[0, "message"]


@pytest.mark.parametrize("value", ["3", True, [1], pd.Timestamp("2024-01-01")])
def test_add_needs_numbers(value) -> None:
    col = object_column(value, 2)
    preview = dry(pd.DataFrame({"uid": ["user-1", "user-2"], "n": col}), add=["n"])
    assert preview.summary[["valid", "invalid"]].tolist() == [1, 1]
    assert "$add needs a number" in preview.problems.loc[0, "message"]


@pytest.mark.parametrize("dtype", ["string", "bool", "datetime64[ns]"])
def test_add_rejects_non_numeric_columns(dtype) -> None:
    values = {"string": ["a"], "bool": [True], "datetime64[ns]": ["2024-01-01"]}[dtype]
    df = pd.DataFrame({"uid": ["user-1"], "n": pd.Series(values).astype(dtype)})
    preview = dry(df, add=["n"])
    assert preview.summary["invalid"] == 1
    assert "pd.to_numeric" in preview.problems.loc[0, "message"]


# --------------------------------------------------------------------------------------------
# ids


@pytest.mark.parametrize(
    "uid, fragment",
    [
        ("null", "rejected ids"),
        ("NULL", "rejected ids"),
        ("Anonymous", "rejected ids"),
        ("00000000-0000-0000-0000-000000000000", "rejected ids"),
        ("-1", "rejected ids"),
        ("abcd", "shorter than 5"),
        ("x" * 1025, "longer than 1024"),
        (None, "no usable id"),
    ],
)
def test_id_rules(uid, fragment) -> None:
    df = pd.DataFrame({"uid": [uid, "user-ok"], "p": ["a", "b"]})
    preview = dry(df, set=["p"])
    assert preview.summary[["valid", "invalid"]].tolist() == [1, 1]
    assert fragment in preview.problems.loc[0, "message"]
    assert preview.problems.loc[0, "column"] == "uid"


def test_one_bad_id_is_enough_when_the_other_is_usable() -> None:
    df = pd.DataFrame({"uid": ["null", "user-1"], "dev": ["device-1", "device-2"], "p": "x"})
    preview = dry(df, device_id="dev", set=["p"])
    # a rejected id is an error even if the other id would do: the request would be refused
    assert preview.summary["invalid"] == 1


@pytest.mark.parametrize(
    "uid", ["", " ", "     ", "\t\n\r  ", "\u3000" * 6, "\x1c" * 5, "\u2028\u00a0 \u2003\u200a"]
)
def test_empty_or_whitespace_ids_are_invalid(uid: str) -> None:
    df = pd.DataFrame({"uid": object_column(uid, "user-ok"), "p": ["a", "b"]})
    preview = dry(df, set=["p"])
    assert preview.plan.state.tolist() == [1, 0]
    assert preview.problems[["row", "column", "severity"]].values.tolist() == [[0, "uid", "error"]]
    assert "empty or only whitespace" in preview.problems.loc[0, "message"]


def test_ids_with_whitespace_around_them_are_sent_with_a_warning() -> None:
    ids = [" user-1", "user-1 ", "\tuser-2\n", "user-3\u3000", "user-4", "us er-5"]
    df = pd.DataFrame({"uid": ids, "dev": [f"device-{i}" for i in range(5)] + [" device-9"],
                       "p": "x"}, index=list("abcdef"))
    preview = dry(df, device_id="dev", set=["p"])
    assert preview.summary["valid"] == 6
    assert [p["user_id"] for p in preview.payloads] == ids  # sent as they are
    problems = preview.problems
    assert problems[["row", "column", "severity"]].values.tolist() == [
        ["a", "uid", "warning"], ["b", "uid", "warning"], ["c", "uid", "warning"],
        ["d", "uid", "warning"], ["f", "dev", "warning"],
    ]
    assert problems["message"].tolist()[0].startswith("user_id ' user-1' has leading or trailing")
    assert problems["message"].tolist()[4].startswith("device_id ' device-9' has leading or")
    assert problems["kind"].nunique() == 2 and " user-1" not in problems["kind"][0]


def test_whitespace_warning_only_on_rows_that_are_sent() -> None:
    df = pd.DataFrame({"uid": [" user-1", " user-2"], "n": [1, "x"]})
    preview = dry(df, add=["n"])
    assert preview.plan.state.tolist() == [0, 1]
    assert preview.problems[["row", "severity"]].values.tolist() == [[0, "warning"], [1, "error"]]


# --------------------------------------------------------------------------------------------
# the request size limit

#: The largest identification a request can carry on its own: Amplitude's 1 MB less the
#: multipart framing (brackets included) with room for a 64-character key.
LIMIT = MAX_BODY_BYTES - body_overhead(64)


def _identification_bytes(uid: str, **props: str) -> int:
    payload = {"user_id": uid, "user_properties": {"$set": props}}
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


def test_an_identification_over_the_request_limit_is_invalid_in_the_dry_run() -> None:
    room = LIMIT - _identification_bytes("user-1", bio="")
    fits = "é" * (room // 2) + "x" * (room % 2)  # two bytes a character: bytes count, not chars
    assert _identification_bytes("user-1", bio=fits) == LIMIT
    df = pd.DataFrame({"uid": ["user-1", "user-2", "user-3"],
                       "bio": [fits, fits + "x", "short"]})
    preview = dry(df, set=["bio"])
    plan = preview.plan
    assert plan.state.tolist() == [0, 1, 0]
    assert plan.nbytes.tolist() == [LIMIT, 0, _identification_bytes("user-3", bio="short")]
    errors = preview.problems[preview.problems["severity"] == "error"].reset_index(drop=True)
    assert errors[["row", "column"]].values.tolist() == [[1, "bio"]]
    message = errors.loc[0, "message"]
    assert f"{LIMIT + 1:,} bytes" in message and "1 MB" in message
    assert plan.reason[1].startswith("column 'bio': ")
    # the row that fits does fit: its request, with a 64-character key, is within 1 MB
    body = encode_body("k" * 64, plan.payload.json_array(np.array([0])), new_boundary())
    assert len(body) == MAX_BODY_BYTES


def test_the_largest_identification_the_dry_run_accepts_lands_with_a_64_character_key() -> None:
    from amp_pandas.sandbox import Sandbox

    key = "k" * 64
    room = LIMIT - _identification_bytes("user-1", bio="")
    df = pd.DataFrame({"uid": ["user-1"], "bio": ["x" * room]})
    with Sandbox(api_key=key) as sb:
        preview = df.amplitude.identify(user_id="uid", set=["bio"], dry_run=True,
                                        server_url=sb.url, api_key=key)
        assert preview.plan.state.tolist() == [0]
        result = preview.send(progress=False, max_retries=0)
        assert result["status"].tolist() == ["success"]
        assert [r.status for r in sb.requests] == [200]


def test_the_request_limit_names_the_largest_value() -> None:
    df = pd.DataFrame({"uid": ["user-1"], "a": ["x" * 400_000], "b": ["y" * 700_000]})
    preview = dry(df, set=["a", "b"], post_insert={"tag": literal("z" * 10)})
    assert preview.plan.state.tolist() == [1]
    errors = preview.problems[preview.problems["severity"] == "error"].reset_index(drop=True)
    assert errors["column"].tolist() == ["b"]
    assert "700,0" in errors.loc[0, "message"]


# --------------------------------------------------------------------------------------------
# problems group by kind


def test_problem_kinds_are_messages_without_the_cell_value() -> None:
    df = pd.DataFrame({
        "uid": object_column("null", "NULL", "nil", 1.5, 2.5, 1e20, 2e20, "user-ok"),
        "v": object_column(1, 2, 3, 4, 5, 6, 7, float("inf")),
    })
    preview = dry(df, set=["v"])
    problems = preview.problems
    assert list(problems.columns) == ["row", "column", "severity", "message", "kind"]
    assert problems["message"].nunique() == 8
    kinds = problems.groupby("kind", sort=False)["row"].apply(list)
    assert kinds.tolist() == [[0, 1, 2], [3, 4], [5, 6], [7]]
    for kind in kinds.index:
        assert not any(v in kind for v in ("null", "NULL", "nil", "1.5", "2.5", "1e+20", "inf"))
        assert "<value>" in kind


# --------------------------------------------------------------------------------------------
# missing values


def frame_with_nulls() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "uid": ["user-1", "user-2", "user-3", "user-4"],
            "plan": ["pro", None, np.nan, "free"],
            "seen": pd.to_datetime(["2024-01-01", None, "2024-01-02", None]),
            "n": pd.array([1, None, 3, None], dtype="Int64"),
        }
    )


def test_nulls_skip_drops_the_property_for_that_row() -> None:
    preview = dry(frame_with_nulls(), set=["plan"], set_once=["seen"], add=["n"])
    assert [p["user_properties"] for p in preview.payloads] == [
        {"$set": {"plan": "pro"}, "$setOnce": {"seen": "2024-01-01T00:00:00"}, "$add": {"n": 1}},
        {"$setOnce": {"seen": "2024-01-02T00:00:00"}, "$add": {"n": 3}},
        {"$set": {"plan": "free"}},
    ]
    assert preview.summary["skipped"] == 1


def test_nulls_unset_unsets_set_and_set_once_properties() -> None:
    preview = dry(frame_with_nulls(), set=["plan"], set_once=["seen"], add=["n"], nulls="unset")
    assert [p["user_properties"] for p in preview.payloads] == [
        {"$set": {"plan": "pro"}, "$setOnce": {"seen": "2024-01-01T00:00:00"}, "$add": {"n": 1}},
        {"$unset": {"plan": "-", "seen": "-"}},
        {"$setOnce": {"seen": "2024-01-02T00:00:00"}, "$add": {"n": 3}, "$unset": {"plan": "-"}},
        {"$set": {"plan": "free"}, "$unset": {"seen": "-"}},
    ]


def test_nulls_error_makes_rows_invalid() -> None:
    preview = dry(frame_with_nulls(), set=["plan"], nulls="error")
    assert preview.summary[["valid", "invalid"]].tolist() == [2, 2]
    assert set(preview.problems["row"]) == {1, 2}
    assert "nulls='error'" in preview.problems.loc[0, "message"]


# --------------------------------------------------------------------------------------------
# argument errors


def test_unknown_column_suggests_the_closest() -> None:
    df = pd.DataFrame({"uid": ["user-1"], "country": ["DE"]})
    with pytest.raises(ColumnNotFoundError, match=r"'contry'.*Did you mean 'country'") as info:
        dry(df, set=["contry"])
    assert info.value.suggestion == "country"


def test_neither_id() -> None:
    with pytest.raises(MissingIdError, match="user_id= or device_id="):
        pd.DataFrame({"a": [1]}).amplitude.identify(set=["a"], dry_run=True)


def test_unknown_field_key() -> None:
    df = pd.DataFrame({"uid": ["user-1"], "p": ["iOS"]})
    with pytest.raises(UnknownFieldError, match="'platfrom'.*Did you mean 'platform'"):
        dry(df, fields={"platfrom": "p"})


def test_same_property_in_two_operations() -> None:
    df = pd.DataFrame({"uid": ["user-1"], "p": ["x"]})
    with pytest.raises(DuplicatePropertyError, match="'p' is in both set= and set_once="):
        dry(df, set=["p"], set_once=["p"])
    with pytest.raises(DuplicatePropertyError, match="unset"):
        dry(df, set=["p"], unset=["p"])


def test_unknown_nulls_policy() -> None:
    with pytest.raises(ArgumentError, match="nulls='drop'"):
        dry(pd.DataFrame({"uid": ["user-1"]}), nulls="drop")


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"set": 5}, "expected a list of column names or a dict"),
        ({"set": literal("x")}, "a literal needs a property name"),
        ({"set": [literal("x")]}, "a literal needs a property name"),
        ({"groups": ["g"]}, "expected a dict"),
        ({"unset": 3}, "expected a list of property names"),
        ({"set": {"$bad": "p"}}, "starts with '$'"),
        ({"groups": {f"t{i}": "p" for i in range(6)}}, "at most 5"),
    ],
)
def test_wrong_shapes(kwargs, fragment) -> None:
    with pytest.raises(ArgumentError, match=fragment.replace("$", r"\$")):
        dry(pd.DataFrame({"uid": ["user-1"], "p": ["x"]}), **kwargs)


def test_duplicate_column_labels() -> None:
    df = pd.DataFrame([["user-1", "a", "b"]], columns=["uid", "p", "p"])
    with pytest.raises(ArgumentError, match="more than once"):
        dry(df, set=["p"])


def test_argument_errors_are_value_errors_of_the_package() -> None:
    assert issubclass(ColumnNotFoundError, ValueError)
    assert issubclass(ColumnNotFoundError, amp_pandas.errors.AmpPandasError)


# --------------------------------------------------------------------------------------------
# frames


def test_the_callers_frame_is_not_modified() -> None:
    df = frame_with_nulls()
    before = df.copy(deep=True)
    dry(df, set=["plan"], set_once=["seen"], add=["n"], nulls="unset")
    pd.testing.assert_frame_equal(df, before)
    assert not hasattr(df.amplitude, "_cache")


def test_empty_frame() -> None:
    df = pd.DataFrame({"uid": pd.Series([], dtype=object), "p": pd.Series([], dtype=object)})
    preview = dry(df, set=["p"])
    assert preview.payloads == []
    assert preview.summary[["rows", "valid", "requests", "bytes"]].tolist() == [0, 0, 0, 0]
    assert list(preview.problems.columns) == ["row", "column", "severity", "message", "kind"]


def test_string_and_duplicate_index_labels_in_problems() -> None:
    df = pd.DataFrame(
        {"uid": ["user-1", "null", "abc"], "p": ["x", "y", "z"]}, index=["a", "b", "b"]
    )
    preview = dry(df, set=["p"])
    assert preview.problems["row"].tolist() == ["b", "b"]
    assert preview.payload("a") == {"user_id": "user-1", "user_properties": {"$set": {"p": "x"}}}
    assert preview.payload("b") is None


def test_non_string_column_labels() -> None:
    df = pd.DataFrame({0: ["user-1"], 1: [5]})
    preview = df.amplitude.identify(user_id=0, set=[1], dry_run=True)
    assert preview.payloads == [{"user_id": "user-1", "user_properties": {"$set": {"1": 5}}}]


def test_long_strings_and_busy_users_are_warnings_and_still_sent() -> None:
    n = 1805
    df = pd.DataFrame({"uid": ["user-busy"] * n, "bio": ["x" * 1100] + ["short"] * (n - 1)})
    preview = dry(df, set=["bio"])
    assert preview.summary["valid"] == n
    warnings = preview.problems[preview.problems.severity == "warning"]
    assert (warnings.message.str.contains("truncates")).sum() == 1
    assert (warnings.message.str.contains("1800")).sum() == 5
    assert preview.summary["warnings"] == 6


def test_problems_are_collected_for_every_row_not_just_the_first() -> None:
    df = pd.DataFrame({"uid": ["null", "abc", "user-3", None], "n": ["a", 1, "b", 2]})
    preview = dry(df, add=["n"])
    assert sorted(preview.problems["row"].tolist()) == [0, 0, 1, 2, 3]


def test_hundred_thousand_rows() -> None:
    n = 100_000
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "uid": [f"user-{i % 40_000:06d}" for i in range(n)],
            "plan": rng.choice(["free", "pro", None], n),
            "n": rng.integers(0, 5, n),
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), "s"),
        }
    )
    preview = dry(df, set=["plan"], add=["n"], set_once=["ts"])
    assert preview.summary["valid"] == n
    payloads = preview.payloads
    assert len(payloads) == n
    i = 12_345
    assert payloads[i]["user_properties"]["$add"]["n"] == df["n"].iloc[i]
    # batches of at most 1000, cut so that no user's rows straddle two requests
    from amp_pandas._plan import chunk_rows

    chunks = chunk_rows(preview.plan)
    assert preview.summary["requests"] == len(chunks) in (100, 101, 102)
    assert max(map(len, chunks)) == 1000
    lanes_per_chunk = [set(preview.plan.lane[c]) for c in chunks]
    assert all(not (a & b) for a, b in zip(lanes_per_chunk, lanes_per_chunk[1:], strict=False))
    # lanes: 40k users, each user's rows consecutive in send order and in row order
    plan = preview.plan
    assert plan.lane.max() == 40_000 - 1
    lanes_in_order = plan.lane[plan.order]
    assert (np.diff(lanes_in_order) >= 0).all()


def test_preview_text_repr_shows_counts_problems_and_no_key() -> None:
    df = pd.DataFrame({"uid": ["user-1", "null"], "p": ["x", "y"]})
    preview = df.amplitude.identify(
        user_id="uid", set=["p"], dry_run=True, api_key="SECRET-KEY-0123456789abcdef"
    )
    text = repr(preview)
    assert "valid 1" in text and "invalid 1" in text
    assert "rejected ids" in text
    assert "SECRET-KEY" not in text and "•••• cdef" in text
    assert "SECRET-KEY" not in preview._repr_html_()
    assert "https://api2.amplitude.com/identify" in text
