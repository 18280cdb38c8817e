"""``df.amplitude.group_identify``: building, checking, previewing and sending group properties.

Every expected group profile and payload is written by hand; sends go to the bundled sandbox's
``/groupidentify`` (fixture ``sb``), whose recorded requests are the oracle for the limits.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
import responses
from hypothesis import given
from hypothesis import strategies as st

import amp_pandas  # noqa: F401  (registers df.amplitude)
from amp_pandas import GroupIdentifyPreview, literal
from amp_pandas.errors import (
    ArgumentError,
    AuthenticationError,
    ColumnNotFoundError,
    ConfigurationError,
    InterruptedSendWarning,
    MissingIdError,
    RowsNotSucceededWarning,
)
from amp_pandas.sandbox import Sandbox

QUICK = {"progress": False, "backoff": 0.001, "backoff_max": 0.01}


def send(df: pd.DataFrame, sb: Sandbox, **kwargs: Any) -> pd.DataFrame:
    options = {**QUICK, "server_url": sb.group_url, "api_key": sb.api_key, **kwargs}
    return df.amplitude.group_identify(**options)


def preview(df: pd.DataFrame, **kwargs: Any) -> GroupIdentifyPreview:
    return df.amplitude.group_identify(dry_run=True, **kwargs)


def group_requests(sb: Sandbox) -> list[Any]:
    return [r for r in sb.requests if r.path == "/groupidentify"]


@pytest.fixture
def companies() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "company_id": [17, 42, 99],
            "plan": ["pro", "free", "team"],
            "seats": [40, 3, 12],
            "tags": [["b2b"], ["smb", "trial"], ["b2b"]],
        },
        index=pd.Index(["acme", "globex", "initech"], name="name"),
    )


# ---------------------------------------------------------------- the operations
def test_set_builds_the_documented_group_identification(companies) -> None:
    p = preview(companies, group_type="company", group_value="company_id", set=["plan", "seats"])
    assert list(p.payloads) == [
        {"group_type": "company", "group_value": "17",
         "group_properties": {"$set": {"plan": "pro", "seats": 40}}},
        {"group_type": "company", "group_value": "42",
         "group_properties": {"$set": {"plan": "free", "seats": 3}}},
        {"group_type": "company", "group_value": "99",
         "group_properties": {"$set": {"plan": "team", "seats": 12}}},
    ]
    assert p.endpoint == "https://api2.amplitude.com/groupidentify"


def test_every_group_operation_lands_in_the_group_profiles(sb, companies) -> None:
    first = companies.assign(joined=["2024-01-05", "2023-02-01", "2022-03-04"], legacy=1)
    result = send(first, sb, group_type="company", group_value="company_id",
                  set=["plan", "legacy"], set_once={"first_plan": "plan", "joined": "joined"},
                  add=["seats"], append={"tags": "tags"})
    assert result.status.tolist() == ["success"] * 3
    second = companies.assign(plan=["enterprise", "pro", "team"], seats=[5, -1, 0],
                              tags=[["vip"], ["paid"], []])
    result = send(second, sb, group_type="company", group_value="company_id",
                  set=["plan"], set_once={"first_plan": "plan"}, add=["seats"],
                  prepend={"tags": "tags"}, unset=["legacy"])
    assert result.status.tolist() == ["success"] * 3
    assert sb.group_profile("company", "17") == {
        "plan": "enterprise", "first_plan": "pro", "joined": "2024-01-05", "seats": 45,
        "tags": ["vip", "b2b"],
    }
    assert sb.group_profile("company", "42") == {
        "plan": "pro", "first_plan": "free", "joined": "2023-02-01", "seats": 2,
        "tags": ["paid", "smb", "trial"],
    }
    assert sb.group_profile("company", "99") == {
        "plan": "team", "first_plan": "team", "joined": "2022-03-04", "seats": 12,
        "tags": ["b2b"],
    }
    frame = sb.group_profiles()
    assert list(frame.index) == [("company", "17"), ("company", "42"), ("company", "99")]


def test_group_type_from_a_column_and_literals(sb) -> None:
    df = pd.DataFrame({"kind": ["company", "team"], "id": ["acme", "red"], "n": [1, 2]})
    result = send(df, sb, group_type="kind", group_value="id",
                  set={"n": "n", "source": literal("crm")})
    assert result.status.tolist() == ["success", "success"]
    assert sb.group_profile("company", "acme") == {"n": 1, "source": "crm"}
    assert sb.group_profile("team", "red") == {"n": 2, "source": "crm"}
    df2 = pd.DataFrame({"id": ["acme"], "kind": ["team"]})
    p = preview(df2, group_type=literal("kind"), group_value="id", set={"x": literal(1)})
    assert p.payloads[0]["group_type"] == "kind"  # literal(): the text, not the column


def test_nulls_skip_unset_and_error(sb) -> None:
    df = pd.DataFrame({"id": ["acme", "globex"], "plan": ["pro", None], "seats": [1, 2]})
    send(df.assign(plan=["pro", "free"]), sb, group_type="company", group_value="id",
         set=["plan"])
    p = preview(df, group_type="company", group_value="id", set=["plan", "seats"])
    assert p.payloads[1]["group_properties"] == {"$set": {"seats": 2}}
    send(df, sb, group_type="company", group_value="id", set=["plan"], nulls="unset")
    assert sb.group_profile("company", "acme") == {"plan": "pro"}
    assert sb.group_profile("company", "globex") == {}
    p = preview(df, group_type="company", group_value="id", set=["plan"], nulls="error")
    assert p.summary["invalid"] == 1
    assert p.problems["row"].tolist() == [1]


def test_a_row_with_no_property_value_is_skipped() -> None:
    df = pd.DataFrame({"id": ["acme", "globex"], "plan": ["pro", None]})
    p = preview(df, group_type="company", group_value="id", set=["plan"])
    assert p.summary[["valid", "skipped"]].tolist() == [1, 1]
    assert p.plan.reason[1] == "nothing to send: no group property value in this row"


@pytest.mark.parametrize("arg, op", [("pre_insert", "$preInsert"),
                                     ("post_insert", "$postInsert"), ("remove", "$remove")])
def test_operations_not_documented_for_groups_are_refused(companies, arg, op) -> None:
    with pytest.raises(ArgumentError) as info:
        preview(companies, group_type="company", group_value="company_id", **{arg: ["tags"]})
    message = str(info.value)
    assert f"{arg} ({op})" in message
    assert "not documented for group properties" in message
    assert "Group Identify API" in message


def test_mapping_errors_name_the_argument(companies) -> None:
    with pytest.raises(MissingIdError, match="group_value="):
        preview(companies, group_type="company", set=["plan"])
    with pytest.raises(MissingIdError, match="group_type="):
        preview(companies, group_value="company_id", set=["plan"])
    with pytest.raises(ColumnNotFoundError, match="compnay_id"):
        preview(companies, group_type="company", group_value="compnay_id", set=["plan"])
    with pytest.raises(ArgumentError, match="sync= takes a job name"):
        preview(companies, group_type="company", group_value="company_id", set=["plan"],
                sync=5)
    with pytest.raises(ArgumentError, match='removed="revert" needs a sync job'):
        preview(companies, group_type="company", group_value="company_id", set=["plan"],
                removed="revert")
    with pytest.raises(ArgumentError, match="in both set= and add="):
        preview(companies, group_type="company", group_value="company_id", set=["seats"],
                add=["seats"])
    with pytest.raises(ArgumentError, match="group type"):
        preview(companies, group_type="$company", group_value="company_id", set=["plan"])
    with pytest.raises(TypeError, match="unexpected keyword"):
        preview(companies, group_type="company", group_value="company_id", groups={"a": "b"})


# ---------------------------------------------------------------- validation
def test_group_type_and_value_rules_checked_on_every_row() -> None:
    long = "x" * 1025
    df = pd.DataFrame(
        {"kind": ["company", "company", None, "  ", long, "company", "company"],
         "id": ["acme", None, "globex", "a", "b", "", " padded "],
         "plan": ["pro"] * 7},
    )
    p = preview(df, group_type="kind", group_value="id", set=["plan"])
    problems = p.problems
    errors = problems[problems.severity == "error"]
    assert errors["row"].tolist() == [1, 2, 3, 4, 5]
    by_row = dict(zip(errors["row"], errors["message"], strict=True))
    assert by_row[1] == "group_value is missing in this row; fill it or drop the row"
    assert by_row[2] == "group_type is missing in this row; fill it or drop the row"
    assert by_row[3].startswith("group_type is empty or only whitespace")
    assert by_row[4] == (
        "group_type is longer than 1024 characters (1025), which Amplitude rejects; "
        "shorten or drop it"
    )
    assert by_row[5].startswith("group_value is empty or only whitespace")
    warnings_ = problems[problems.severity == "warning"]
    assert warnings_["row"].tolist() == [6]
    assert "leading or trailing whitespace" in warnings_["message"].iloc[0]
    assert p.summary[["valid", "invalid"]].tolist() == [2, 5]
    assert [x["group_value"] for x in p.payloads] == ["acme", " padded "]


def test_a_value_of_1024_characters_is_valid() -> None:
    df = pd.DataFrame({"id": ["v" * 1024], "plan": ["pro"]})
    p = preview(df, group_type="t" * 1024, group_value="id", set=["plan"])
    assert p.summary["valid"] == 1


def test_ids_are_sent_as_strings_and_inexact_floats_are_invalid() -> None:
    df = pd.DataFrame({"id": [17.0, 2.0**53, 1.5, 3.0], "plan": ["a", "b", "c", "d"]})
    p = preview(df, group_type="company", group_value="id", set=["plan"])
    assert [x["group_value"] for x in p.payloads] == ["17", "3"]
    assert p.problems["row"].tolist() == [1, 2]
    ints = pd.DataFrame({"id": pd.array([12345678901234567, None], dtype="Int64"), "p": [1, 2]})
    p = preview(ints, group_type="company", group_value="id", set=["p"])
    assert p.payloads[0]["group_value"] == "12345678901234567"
    assert p.problems["message"].tolist() == [
        "group_value is missing in this row; fill it or drop the row"
    ]


def test_bad_property_values_follow_identifys_type_rules() -> None:
    df = pd.DataFrame({"id": ["a", "b", "c"], "n": [1, "x", 2], "v": [1.0, 2.0, math.inf]})
    p = preview(df, group_type="company", group_value="id", add=["n"], set=["v"])
    assert p.problems[p.problems.severity == "error"]["row"].tolist() == [1, 2]
    assert p.payloads[0] == {"group_type": "company", "group_value": "a",
                             "group_properties": {"$set": {"v": 1.0}, "$add": {"n": 1}}}


def test_a_row_touching_more_than_1024_group_properties_is_invalid() -> None:
    wide = pd.DataFrame({f"p{i}": [i, i] for i in range(1025)})
    wide["id"] = ["acme", "globex"]
    wide.loc[1, "p0"] = None  # 1024 properties in the second row: fine
    cols = [f"p{i}" for i in range(1025)]
    p = preview(wide, group_type="company", group_value="id", set=cols)
    assert p.problems[p.problems.severity == "error"]["row"].tolist() == [0]
    assert p.problems["message"].iloc[0].startswith("1025 group properties in one row")
    assert p.summary["valid"] == 1


# ---------------------------------------------------------------- request limits
def test_1024_identifications_per_request(sb) -> None:
    df = pd.DataFrame({"id": [f"c{i}" for i in range(2100)], "n": 1})
    result = send(df, sb, group_type="company", group_value="id", set=["n"], batch_size=1024,
                  max_workers=2)
    assert (result.status == "success").all()
    made = group_requests(sb)
    assert sorted(r.count for r in made) == [52, 1024, 1024]
    assert all(r.status == 200 for r in made)
    with pytest.raises(ConfigurationError, match="from 1 to 1024"):
        preview(df, group_type="company", group_value="id", set=["n"], batch_size=1025)


def test_1024_group_properties_per_request(sb) -> None:
    # 300 rows of 10 properties: 102 rows (1020 properties) at most per request. A chunker
    # that counted rows only would put all 300 rows (3000 properties) in one request: 413.
    df = pd.DataFrame({f"p{i}": range(300) for i in range(10)})
    df["id"] = [f"c{i}" for i in range(300)]
    result = send(df, sb, group_type="company", group_value="id",
                  set=[f"p{i}" for i in range(10)])
    assert (result.status == "success").all()
    made = group_requests(sb)
    assert [r.status for r in made] == [200, 200, 200]
    assert sorted(r.count for r in made) == [96, 102, 102]
    assert (result.attempts == 1).all()
    assert sb.group_profile("company", "c299") == {f"p{i}": 299 for i in range(10)}


@given(st.lists(st.integers(min_value=0, max_value=1024), min_size=1, max_size=60),
       st.integers(min_value=1, max_value=1024))
def test_chunks_never_exceed_either_limit(sizes: list[int], batch_size: int) -> None:
    import dataclasses

    from amp_pandas._plan import Plan, chunk_rows

    base = Plan.from_identifications([{"user_id": f"group-{j % 7}"} for j in range(len(sizes))])
    plan = dataclasses.replace(base, properties=np.array(sizes, dtype=np.int64),
                               max_rows=1024, max_properties=1024)
    chunks = chunk_rows(plan, batch_size=batch_size)
    sent = np.concatenate(chunks)
    assert sorted(sent.tolist()) == list(range(len(sizes)))
    for chunk in chunks:
        assert len(chunk) <= batch_size
        assert sum(sizes[j] for j in chunk) <= 1024
    # within one group (lane), rows keep their order across requests
    for lane in set(plan.lane.tolist()):
        rows = [j for j in sent.tolist() if plan.lane[j] == lane]
        assert rows == sorted(rows)


def test_413_splits_when_the_server_limit_is_lower(sb) -> None:
    sb.set_faults(max_group_properties=25)
    df = pd.DataFrame({"id": [f"c{i}" for i in range(40)], "a": 1, "b": 2})
    result = send(df, sb, group_type="company", group_value="id", set=["a", "b"])
    assert (result.status == "success").all()
    statuses = [r.status for r in group_requests(sb)]
    assert statuses[0] == 413 and statuses.count(200) >= 4
    assert all(r.count * 2 <= 25 for r in group_requests(sb) if r.status == 200)
    assert (sb.group_applied_counts() == 1).all() and len(sb.group_applied_counts()) == 40


# ---------------------------------------------------------------- status paths
def test_400_bisection_isolates_the_poison_group(sb) -> None:
    sb.set_faults(reject_groups={"company": "c13"})
    df = pd.DataFrame({"id": [f"c{i}" for i in range(32)], "n": range(32)})
    with pytest.warns(RowsNotSucceededWarning):
        result = send(df, sb, group_type="company", group_value="id", set=["n"])
    assert result.status[result.status != "success"].index.tolist() == [13]
    assert result.error[13].startswith("rejected by Amplitude (HTTP 400)")
    assert "c13" in result.error[13]
    assert result.http_status[13] == 400
    assert len(sb.group_applied_counts()) == 31


def test_429_pauses_only_the_throttled_group(sb) -> None:
    sb.throttle(groups={"company": "c3"}, requests=2)
    df = pd.DataFrame({"id": [f"c{i % 6}" for i in range(30)], "row": range(30)})
    waiting: list[str] = []

    def callback(counts: dict[str, int], text: str | None) -> None:
        if text:
            waiting.append(text)

    p = preview(df, group_type="company", group_value="id", set=["row"], batch_size=5,
                throttle_pause=0.2, server_url=sb.group_url, api_key=sb.api_key, **QUICK)
    result = p.send(progress_callback=callback)
    assert (result.status == "success").all()
    throttled_rows = df.index[df.id == "c3"]
    assert (result.attempts[throttled_rows] == 3).all()
    assert (result.attempts.drop(throttled_rows) <= 2).all()
    assert waiting and all(w.endswith("for 1 throttled group") for w in waiting)
    answered = [r.status for r in group_requests(sb)]
    assert answered.count(429) == 2
    # per-group order held: the last row of each group won
    for v in range(6):
        assert sb.group_profile("company", f"c{v}") == {"row": 24 + v}


def test_throttle_budget_ends_rows_throttled(sb) -> None:
    sb.throttle(groups={"company": "c1"})
    df = pd.DataFrame({"id": ["c0", "c1"], "n": [1, 2]})
    with pytest.warns(RowsNotSucceededWarning):
        result = send(df, sb, group_type="company", group_value="id", set=["n"],
                      throttle_pause=0.05, throttle_budget=0.2)
    assert result.status.tolist() == ["success", "throttled"]
    assert result.error[1].startswith("throttled by Amplitude (HTTP 429)")


@pytest.mark.parametrize("fault, why", [("rate_500_after_apply", "HTTP 500"),
                                        ("rate_drop_after_apply", "connection closed")])
def test_ambiguous_answers_hold_add_and_retry_set(sb, fault, why) -> None:
    sb.set_faults(**{fault: 0.4})
    n = 40
    add_rows = pd.DataFrame({"id": [f"a{i}" for i in range(n)], "seats": 1})
    set_rows = pd.DataFrame({"id": [f"s{i}" for i in range(n)], "plan": "pro"})
    with pytest.warns(RowsNotSucceededWarning, match="unknown"):
        added = send(add_rows, sb, group_type="company", group_value="id", add=["seats"],
                     batch_size=4, max_retries=30)
    unknown = added[added.status == "unknown"]
    assert len(unknown) and (unknown.attempts == 1).all()
    assert unknown.error.str.contains(why).all()
    assert unknown.error.str.contains("not retried because it holds").all()
    counts = sb.group_applied_counts()
    assert (counts == 1).all()  # $add applied once at most, never twice
    set_result = send(set_rows, sb, group_type="company", group_value="id", set=["plan"],
                      batch_size=4, max_retries=30)
    assert (set_result.status == "success").all()
    assert (set_result.attempts > 1).any()


@pytest.mark.parametrize("status", [502, 504])
def test_other_ambiguous_statuses_never_retry_add(status) -> None:
    url = "https://api2.amplitude.com/groupidentify"
    df = pd.DataFrame({"id": ["acme", "globex"], "seats": [1, 2], "plan": ["a", "b"]})
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, url, status=status, body="bad gateway")
        mock.add(responses.POST, url, status=200, body="success")
        with pytest.warns(RowsNotSucceededWarning):
            result = df.amplitude.group_identify(
                group_type="company", group_value="id", add={"seats": "seats"},
                api_key="k" * 32, **QUICK)
        assert result.status.tolist() == ["unknown", "unknown"]
        assert len(mock.calls) == 1
        result = df.amplitude.group_identify(
            group_type="company", group_value="id", set=["plan"], api_key="k" * 32,
            max_workers=1, **QUICK)
    assert result.status.tolist() == ["success", "success"]


def test_503_is_retried(sb) -> None:
    sb.set_faults(rate_503=0.5)
    df = pd.DataFrame({"id": [f"c{i}" for i in range(20)], "n": range(20)})
    result = send(df, sb, group_type="company", group_value="id", add=["n"], batch_size=2,
                  max_retries=40)
    assert (result.status == "success").all()
    assert (result.attempts > 1).any()
    assert 503 in [r.status for r in group_requests(sb)]
    assert (sb.group_applied_counts() == 1).all()


def test_a_rejected_key_stops_and_is_never_shown(sb) -> None:
    wrong = "wrong-KEY-0a1b2c3d4e5f6a7b"
    df = pd.DataFrame({"id": [f"c{i}" for i in range(30)], "n": 1})
    with pytest.raises(AuthenticationError) as info:
        send(df, sb, group_type="company", group_value="id", set=["n"], api_key=wrong,
             batch_size=10, max_workers=1)
    result = info.value.result
    assert result is not None and len(group_requests(sb)) == 1
    assert result.status.tolist() == ["failed"] * 10 + ["not_sent"] * 20
    for text in (str(info.value), repr(result), result.to_string()):
        assert wrong not in text and "0a1b2c3d" not in text


def test_connection_refused_fails_after_retries() -> None:
    with Sandbox() as gone:
        url = gone.group_url
    df = pd.DataFrame({"id": ["acme"], "n": [1]})
    with pytest.warns(RowsNotSucceededWarning):
        result = df.amplitude.group_identify(group_type="company", group_value="id",
                                             set=["n"], server_url=url, api_key="k" * 32,
                                             max_retries=2, **QUICK)
    assert result.status.tolist() == ["failed"]
    assert result.attempts.tolist() == [3]


# ---------------------------------------------------------------- result, order, progress
def test_result_is_aligned_to_the_input_index(sb) -> None:
    df = pd.DataFrame({"id": ["c1", None, "c2", "c1"], "n": [1, 2, None, 4]},
                      index=pd.Index([30, 10, 20, 40], name="row"))
    with pytest.warns(RowsNotSucceededWarning):
        result = send(df, sb, group_type="company", group_value="id", set=["n"])
    assert result.index.equals(df.index)
    assert result.status.tolist() == ["success", "invalid", "skipped", "success"]
    assert sb.group_profile("company", "c1") == {"n": 4}


def test_rows_of_one_group_keep_their_order_under_concurrency(sb) -> None:
    sb.set_faults(latency=0.002)
    df = pd.DataFrame({"id": [f"c{i % 5}" for i in range(200)], "row": range(200)})
    result = send(df, sb, group_type="company", group_value="id", set=["row"],
                  append={"seen": "row"}, batch_size=7, max_workers=6)
    assert (result.status == "success").all()
    for v in range(5):
        profile = sb.group_profile("company", f"c{v}")
        assert profile["seen"] == list(range(v, 200, 5))
        assert profile["row"] == 195 + v


def test_lanes_are_groups_type_and_value_together() -> None:
    df = pd.DataFrame({"kind": ["a:b", "a", "a", "t"], "id": ["c", "b:c", "b:c", "x"],
                       "n": 1})
    plan = preview(df, group_type="kind", group_value="id", set=["n"]).plan
    assert plan.lane.tolist() == [0, 1, 1, 2]
    assert plan.group.tolist() == ["a:b:c", "a:b:c", "a:b:c", "t:x"]


def test_interrupt_returns_a_partial_result(sb) -> None:
    sb.set_faults(latency=0.1)
    df = pd.DataFrame({"id": [f"c{i}" for i in range(200)], "n": 1})
    fired: list[bool] = []

    def callback(counts: dict[str, int], waiting: str | None) -> None:
        if counts["success"] >= 20 and not fired:
            fired.append(True)
            raise KeyboardInterrupt

    p = preview(df, group_type="company", group_value="id", set=["n"], batch_size=10,
                max_workers=2, interrupt_grace=0, server_url=sb.group_url,
                api_key=sb.api_key, **QUICK)
    with pytest.warns(InterruptedSendWarning):
        result = p.send(progress_callback=callback)
    statuses = set(result.status)
    assert "success" in statuses and "not_sent" in statuses
    assert statuses <= {"success", "unknown", "not_sent"}
    time.sleep(0.3)
    applied = {v for _, v in sb.group_applied_counts().index}
    sent = {f"c{i}" for i in np.flatnonzero(result.status == "success")}
    not_sent = {f"c{i}" for i in np.flatnonzero(result.status == "not_sent")}
    assert sent <= applied and not (not_sent & applied)


def test_progress_callback_counts_every_row(sb) -> None:
    seen: list[dict[str, int]] = []
    df = pd.DataFrame({"id": [f"c{i}" for i in range(50)], "n": 1})
    p = preview(df, group_type="company", group_value="id", set=["n"], batch_size=10,
                server_url=sb.group_url, api_key=sb.api_key, **QUICK)
    p.send(progress_callback=lambda counts, waiting: seen.append(dict(counts)))
    assert seen[-1]["success"] == 50


# ---------------------------------------------------------------- preview, routing, redaction
def test_preview_views_say_group_identify(companies) -> None:
    key = "0123456789abcdef0123456789ab1a2b"
    p = preview(companies, group_type="company", group_value="company_id", set=["plan"],
                api_key=key)
    text, html_ = repr(p), p._repr_html_()
    for view in (text, html_):
        assert "Amplitude group identify preview" in view
        assert "/groupidentify" in view
        assert key not in view and key[:-4] not in view
    assert "First group identification" in text
    ops = p.operations
    assert ops[["operation", "property", "source"]].values.tolist()[:2] == [
        ["group", "group_type", "literal('company')"],
        ["group", "group_value", "column 'company_id'"],
    ]


def test_widget_sends_to_the_group_endpoint_and_never_shows_the_key(companies) -> None:
    pytest.importorskip("ipywidgets")
    from amp_pandas._widget import widget_for

    secret = "group-widget-KEY-0a1b2c3d4e5f9f8e"
    with Sandbox(api_key=secret) as sandbox:
        p = preview(companies, group_type="company", group_value="company_id", set=["plan"],
                    server_url=sandbox.group_url, api_key=secret, **QUICK)
        widget = widget_for(p)
        assert "Amplitude group identify preview" in widget.header.value
        assert "/groupidentify" in widget.header.value
        widget.send_button.click()
        deadline = time.monotonic() + 10
        while p.result is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert p.result is not None and (p.result.status == "success").all()
        assert sandbox.group_profile("company", "42") == {"plan": "free"}
        seen = []
        stack = [widget]
        while stack:
            w = stack.pop()
            seen.append(json.dumps(w.get_state(), default=str, ensure_ascii=False))
            stack.extend(getattr(w, "children", ()))
        assert not any(secret in text or "0a1b2c3d" in text for text in seen)
        assert any("•••• 9f8e" in text for text in seen)


@pytest.mark.parametrize("region, url", [
    ("standard", "https://api2.amplitude.com/groupidentify"),
    ("eu", "https://api.eu.amplitude.com/groupidentify"),
    ("EU", "https://api.eu.amplitude.com/groupidentify"),
])
def test_region_routes_to_its_group_identify_url(region, url) -> None:
    df = pd.DataFrame({"id": ["acme"], "n": [1]})
    assert preview(df, group_type="company", group_value="id", set=["n"],
                   region=region).endpoint == url
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, url, status=200, body="success")
        result = df.amplitude.group_identify(group_type="company", group_value="id", set=["n"],
                                             region=region, api_key="k" * 32, **QUICK)
        assert result.status.tolist() == ["success"]
        body = mock.calls[0].request.body
        assert b'"group_type":"company"' in body and mock.calls[0].request.url == url


def test_send_with_a_region_override_keeps_the_group_path() -> None:
    df = pd.DataFrame({"id": ["acme"], "n": [1]})
    p = preview(df, group_type="company", group_value="id", set=["n"], api_key="k" * 32)
    url = "https://api.eu.amplitude.com/groupidentify"
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, url, status=200, body="success")
        result = p.send(region="eu", progress=False)
        assert [c.request.url for c in mock.calls] == [url]
    assert result.status.tolist() == ["success"]


def test_the_key_never_appears_in_the_log_or_the_result(sb, caplog) -> None:
    sb.set_faults(rate_503=0.3)
    df = pd.DataFrame({"id": [f"c{i}" for i in range(20)], "n": 1})
    with caplog.at_level(logging.DEBUG, logger="amp_pandas"):
        result = send(df, sb, group_type="company", group_value="id", set=["n"], batch_size=3,
                      max_retries=30)
    assert sb.api_key not in caplog.text and "/groupidentify" in caplog.text
    assert sb.api_key not in result.to_string()


# ---------------------------------------------------------------- Dask and polars
def test_polars_group_identify(sb) -> None:
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({"id": ["acme", "globex"], "plan": ["pro", "free"]})
    result = frame.amplitude.group_identify(group_type="company", group_value="id",
                                            set=["plan"], server_url=sb.group_url,
                                            api_key=sb.api_key, **QUICK)
    assert result["status"].to_list() == ["success", "success"]
    assert sb.group_profile("company", "globex") == {"plan": "free"}


def test_dask_group_identify_keeps_each_group_in_one_partition(sb) -> None:
    dd = pytest.importorskip("dask.dataframe")
    df = pd.DataFrame({"id": [f"c{i % 3}" for i in range(30)], "row": range(30)})
    ddf = dd.from_pandas(df, npartitions=4)
    result = ddf.amplitude.group_identify(group_type="company", group_value="id",
                                          set=["row"], append={"seen": "row"},
                                          server_url=sb.group_url, api_key=sb.api_key,
                                          **QUICK)
    result = result.compute() if hasattr(result, "compute") else result
    assert (result.status == "success").all() and len(result) == 30
    for v in range(3):
        assert sb.group_profile("company", f"c{v}")["seen"] == list(range(v, 30, 3))


def test_payload_bytes_are_exact_json() -> None:
    df = pd.DataFrame({"id": ["é"], "note": ['quote " and \\ back']})
    p = preview(df, group_type="company", group_value="id", set=["note"])
    text = p.plan.payload[0]
    assert json.loads(text) == {"group_type": "company", "group_value": "é",
                                "group_properties": {"$set": {"note": 'quote " and \\ back'}}}
    assert p.plan.nbytes[0] == len(text.encode())


def test_a_429_naming_groups_pauses_those_groups_only() -> None:
    from amp_pandas._decide import PAUSE, RESEND, Policy, RequestRows, decide
    from amp_pandas._transport import Outcome

    rows = RequestRows.of(4, lane=[0, 1, 0, 2], group=["company:a", "company:b", "company:a",
                                                        "team:a"])
    body = b'{"code": 429, "throttled_groups": {"company:a": 2}}'
    decision = decide(Outcome("response", status=429, body=body), rows, Policy(), now=0.0)
    steps = {step.action: step.rows.tolist() for step in decision.steps}
    assert steps == {RESEND: [1, 3], PAUSE: [0, 2]}
    # an identify request (no groups) ignores throttled_groups: the whole request waits
    plain = RequestRows.of(2)
    decision = decide(Outcome("response", status=429, body=body), plain, Policy(), now=0.0)
    assert [(s.action, s.rows.tolist()) for s in decision.steps] == [(PAUSE, [0, 1])]


def test_warnings_name_group_identify_for_the_rerun(sb) -> None:
    df = pd.DataFrame({"id": ["acme", None], "n": [1, 2]})
    with pytest.warns(RowsNotSucceededWarning) as caught:
        send(df, sb, group_type="company", group_value="id", set=["n"])
    assert '.amplitude.group_identify(...)' in str(caught[0].message)


def test_accessor_and_function_take_exactly_the_same_arguments() -> None:
    import inspect

    from amp_pandas import AmplitudeAccessor
    from amp_pandas._group_identify import group_identify

    accessor = list(inspect.signature(AmplitudeAccessor.group_identify).parameters.values())[1:]
    function = list(inspect.signature(group_identify).parameters.values())[1:]
    assert [p.name for p in accessor] == [p.name for p in function]
    for a, f in zip(accessor, function, strict=True):
        assert (a.kind, a.default, a.annotation) == (f.kind, f.default, f.annotation), a.name
    identify_options = inspect.signature(AmplitudeAccessor.identify).parameters
    for name in ("api_key", "region", "server_url", "session", "batch_size", "max_workers",
                 "timeout", "throttle_pause", "throttle_budget", "retry_ambiguous",
                 "max_retries", "backoff", "backoff_max", "interrupt_grace", "progress",
                 "nulls", "dry_run", "set", "set_once", "add", "append", "prepend", "unset"):
        assert inspect.signature(group_identify).parameters[name].default == (
            identify_options[name].default), name


def _reference(rows: list[tuple[Any, Any, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The plain reading of the rules: each row's state, and the valid rows' payloads."""
    states, payloads = [], []
    for value, plan, seats in rows:
        if value is None or (isinstance(value, str) and not value.strip()):
            states.append("invalid")
            continue
        props: dict[str, Any] = {}
        if plan is not None:
            props["$set"] = {"plan": plan}
        if seats is not None:
            props["$add"] = {"seats": seats}
        if not props:
            states.append("skipped")
            continue
        states.append("valid")
        payloads.append({"group_type": "company", "group_value": str(value),
                         "group_properties": props})
    return states, payloads


@given(st.lists(st.tuples(
    st.sampled_from(["acme", "globex", "ü-co", None, "", "  ", 17, "0017"]),
    st.sampled_from(["pro", "free", None, 'q"uote']),
    st.one_of(st.none(), st.integers(min_value=-10**6, max_value=10**6)),
), min_size=1, max_size=30))
def test_build_matches_the_plain_reading(rows: list[tuple[Any, Any, Any]]) -> None:
    df = pd.DataFrame({
        "id": pd.Series([r[0] for r in rows], dtype=object),
        "plan": pd.Series([r[1] for r in rows], dtype=object),
        "seats": pd.array([r[2] for r in rows], dtype="Int64"),
    })
    p = preview(df, group_type="company", group_value="id", set=["plan"], add=["seats"])
    states, payloads = _reference(rows)
    assert list(p.payloads) == payloads
    names = {0: "valid", 1: "invalid", 2: "skipped"}
    assert [names[int(s)] for s in p.plan.state] == states
    # the property count the chunker reads: one per name in each operation
    expected = [len(x["group_properties"].get("$set", {})) + len(
        x["group_properties"].get("$add", {})) for x in payloads]
    assert p.plan.properties[p.plan.state == 0].tolist() == expected


def test_a_send_override_above_1024_still_keeps_the_limit(sb) -> None:
    df = pd.DataFrame({"id": [f"c{i}" for i in range(1100)], "n": 1})
    p = preview(df, group_type="company", group_value="id", set=["n"],
                server_url=sb.group_url, api_key=sb.api_key, **QUICK)
    result = p.send(batch_size=2000)
    assert (result.status == "success").all()
    assert sorted(r.count for r in group_requests(sb)) == [76, 1024]


def test_the_result_says_group_identify(sb) -> None:
    df = pd.DataFrame({"id": ["acme"], "n": [1]})
    result = send(df, sb, group_type="company", group_value="id", set=["n"])
    assert repr(result).startswith("Amplitude group identify result — 1 rows")
    assert "<strong>Amplitude group identify result</strong>" in result._repr_html_()


def test_a_second_send_is_refused_naming_group_identify(sb) -> None:
    from amp_pandas.errors import AlreadySentError

    df = pd.DataFrame({"id": ["acme"], "n": [1]})
    p = preview(df, group_type="company", group_value="id", add=["n"],
                server_url=sb.group_url, api_key=sb.api_key, **QUICK)
    p.send()
    with pytest.raises(AlreadySentError, match=r"df\.amplitude\.group_identify\(\.\.\., dry_run"):
        p.send()
    assert sb.group_profile("company", "acme") == {"n": 1}


def test_a_server_url_of_the_other_api_is_refused(sb) -> None:
    df = pd.DataFrame({"id": ["acme-user"], "n": [1]})
    with pytest.raises(ConfigurationError, match=r"Identify API's URL, but these are sent to "
                                                 r"the Group Identify API: give its URL, ending "
                                                 r"in /groupidentify \(a sandbox's group_url\)"):
        df.amplitude.group_identify(group_type="company", group_value="id", set=["n"],
                                    server_url=sb.url, api_key=sb.api_key)
    with pytest.raises(ConfigurationError, match="Group Identify API's URL, but these are sent "
                                                 "to the Identify API"):
        df.amplitude.identify(user_id="id", set=["n"], server_url=sb.group_url,
                              api_key=sb.api_key)
    p = preview(df, group_type="company", group_value="id", set=["n"], api_key=sb.api_key)
    with pytest.raises(ConfigurationError, match="ending in /groupidentify"):
        p.send(server_url=sb.url)
    assert sb.requests == []  # nothing was sent
