"""The sandbox over real HTTP (127.0.0.1 only): formats, Amplitude's rules, operations, linking,
inspection, faults and lifecycle."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import requests

from amp_pandas.errors import SandboxError
from amp_pandas.sandbox import Sandbox
from amp_pandas.sandbox._rules import REJECTED_IDS

TIMEOUT = 10


def post(
    sb: Sandbox,
    identification: Any,
    *,
    api_key: str | None = None,
    multipart: bool = False,
    session: requests.Session | None = None,
) -> requests.Response:
    """POST identifications (a Python value, or raw text) to the sandbox."""
    text = identification if isinstance(identification, str) else json.dumps(identification)
    fields = {"api_key": sb.api_key if api_key is None else api_key, "identification": text}
    sender = session or requests
    if multipart:
        return sender.post(sb.url, files={k: (None, v) for k, v in fields.items()}, timeout=TIMEOUT)
    return sender.post(sb.url, data=fields, timeout=TIMEOUT)


def ident(user_id: str = "user-1", /, **user_properties: Any) -> dict[str, Any]:
    return {"user_id": user_id, "user_properties": user_properties}


def error_of(response: requests.Response) -> str:
    body = response.json()
    assert body["code"] == response.status_code
    return body["error"]


# -- formats ----------------------------------------------------------------------------------


def test_urlencoded_post_applies_and_answers_success(sb: Sandbox) -> None:
    response = post(sb, [ident(plan="pro")])
    assert (response.status_code, response.text) == (200, "success")
    assert sb.profile("user-1") == {"plan": "pro"}
    (record,) = sb.requests
    assert (record.method, record.path, record.status, record.count, record.applied) == (
        "POST",
        "/identify",
        200,
        1,
        True,
    )
    assert record.content_type == "application/x-www-form-urlencoded"
    assert record.bytes == len(response.request.body or b"")  # type: ignore[arg-type]
    assert record.identifications == [ident(plan="pro")]


def test_multipart_post_applies(sb: Sandbox) -> None:
    response = post(sb, [ident("user-1", plan="pro"), ident("user-2", plan="free")], multipart=True)
    assert (response.status_code, response.text) == (200, "success")
    assert str(sb.requests[0].content_type).startswith("multipart/form-data; boundary=")
    assert sb.profile("user-2") == {"plan": "free"}


def test_hand_built_multipart_with_quoted_boundary_and_file_part(sb: Sandbox) -> None:
    body = (
        b'--"not-the-boundary"\r\n'  # preamble text is ignored
        b'--b0und\r\nContent-Disposition: form-data; name="api_key"\r\n\r\n'
        + sb.api_key.encode()
        + b'\r\n--b0und\r\ncontent-disposition: form-data; name="identification"; '
        b'filename="rows.json"\r\nContent-Type: application/json\r\n\r\n'
        b'{"user_id": "user-1", "user_properties": {"city": "K\xc3\xb8benhavn"}}\r\n--b0und--\r\n'
    )
    response = requests.post(
        sb.url,
        data=body,
        timeout=TIMEOUT,
        headers={"Content-Type": 'multipart/form-data; boundary="b0und"'},
    )
    assert response.status_code == 200, response.text
    assert sb.profile("user-1") == {"city": "København"}


@pytest.mark.parametrize(
    "body",
    [
        b"no boundary here",
        b"--b0und\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b0und--\r\n",  # no name
        b'--b0und\r\nContent-Disposition: form-data; name="api_key"\r\n\r\nx\r\n',  # not closed
        b'--b0und\r\nContent-Disposition: form-data; name="api_key"\r\nx\r\n--b0und--\r\n',
        b'--b0undContent-Disposition: form-data; name="api_key"\r\n\r\nx\r\n--b0und--\r\n',
        b'--b0und\r\nContent-Disposition: form-data; name="api_key"\r\n\r\nx--b0und--\r\n',
        b'--b0und\r\nContent-Disposition: form-data; name="api_key"\r\n\r\n\xff\r\n--b0und--\r\n',
        b"--b0und\r\nX-Other: 1\r\n\r\nx\r\n--b0und--\r\n",  # no Content-Disposition
    ],
)
def test_malformed_multipart_is_400(sb: Sandbox, body: bytes) -> None:
    response = requests.post(
        sb.url,
        data=body,
        timeout=TIMEOUT,
        headers={"Content-Type": "multipart/form-data; boundary=b0und"},
    )
    assert response.status_code == 400 and "multipart" in error_of(response)


def test_the_first_of_repeated_parameters_wins(sb: Sandbox) -> None:
    first = json.dumps(ident("user-1"))
    body = f"api_key={sb.api_key}&identification={first}&identification=not-json&api_key=wrong"
    response = requests.post(
        sb.url,
        data=body,
        timeout=TIMEOUT,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    parts = b"".join(
        b'--b0und\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % pair
        for pair in [
            (b"api_key", sb.api_key.encode()),
            (b"identification", first.encode()),
            (b"identification", b"not-json"),
        ]
    )
    response = requests.post(
        sb.url,
        data=parts + b"--b0und--\r\n",
        timeout=TIMEOUT,
        headers={"Content-Type": "multipart/form-data; boundary=b0und"},
    )
    assert response.status_code == 200
    assert sb.applied_counts().to_dict() == {"user-1": 2}


@pytest.mark.parametrize("body", [b"api_key=sandbox-key&identification=%ff", "é=1".encode()])
def test_urlencoded_body_that_is_not_text_is_400(sb: Sandbox, body: bytes) -> None:
    response = requests.post(
        sb.url,
        data=body,
        timeout=TIMEOUT,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400 and "urlencoded" in error_of(response)


def test_multipart_without_boundary_parameter_is_400(sb: Sandbox) -> None:
    response = requests.post(
        sb.url, data=b"x", timeout=TIMEOUT, headers={"Content-Type": "multipart/form-data"}
    )
    assert response.status_code == 400 and "boundary" in error_of(response)


def test_get_with_query_parameters(sb: Sandbox) -> None:
    params = {"api_key": sb.api_key, "identification": json.dumps(ident(plan="pro"))}
    response = requests.get(sb.url, params=params, timeout=TIMEOUT)
    assert (response.status_code, response.text) == (200, "success")
    assert sb.profile("user-1") == {"plan": "pro"}
    assert sb.requests[0].method == "GET"


def test_get_longer_than_8192_bytes_is_414_and_8192_is_fine(sb: Sandbox) -> None:
    def target_length(padding: int) -> tuple[str, int]:
        text = json.dumps(ident(note="x" * padding))
        prepared = requests.Request(
            "GET", sb.url, params={"api_key": sb.api_key, "identification": text}
        ).prepare()
        return prepared.path_url, len(prepared.path_url)

    base = target_length(0)[1]
    at_limit, length = target_length(8192 - base)
    assert length == 8192
    assert (
        requests.get(sb.url.replace("/identify", "") + at_limit, timeout=TIMEOUT).status_code == 200
    )
    over, length = target_length(8193 - base)
    response = requests.get(sb.url.replace("/identify", "") + over, timeout=TIMEOUT)
    assert response.status_code == 414 and "use POST" in error_of(response)
    assert sb.applied_counts().sum() == 1


def test_a_json_body_is_not_an_identify_body(sb: Sandbox) -> None:
    response = requests.post(
        sb.url, json={"api_key": sb.api_key, "identification": []}, timeout=TIMEOUT
    )
    assert response.status_code == 400
    assert "x-www-form-urlencoded or multipart/form-data" in error_of(response)
    assert "API key" not in error_of(response)


def test_one_object_or_an_array(sb: Sandbox) -> None:
    assert post(sb, ident(a=1)).status_code == 200
    assert post(sb, [ident(b=2), ident(c=3)]).status_code == 200
    assert sb.profile("user-1") == {"a": 1, "b": 2, "c": 3}
    assert [r.count for r in sb.requests] == [1, 2]


def test_unknown_path_404_and_get_on_http_v2_405(sb: Sandbox) -> None:
    response = requests.post(
        sb.url.replace("/identify", "/batch"), data={"a": "b"}, timeout=TIMEOUT
    )
    assert response.status_code == 404
    response = requests.get(sb.http_v2_url, timeout=TIMEOUT)
    assert response.status_code == 405


def test_keep_alive_connection_serves_many_requests(sb: Sandbox) -> None:
    with requests.Session() as session:
        for number in range(5):
            assert post(sb, ident(n=number), session=session).status_code == 200
    assert sb.profile("user-1") == {"n": 4}


# -- API key and missing_event ------------------------------------------------------------------


@pytest.mark.parametrize("api_key", ["wrong-key", "", "SANDBOX-KEY", None])
def test_wrong_or_missing_key_is_400_invalid_api_key(sb: Sandbox, api_key: str | None) -> None:
    fields = {"identification": json.dumps(ident(plan="pro"))}
    if api_key is not None:
        fields["api_key"] = api_key
    response = requests.post(sb.url, data=fields, timeout=TIMEOUT)
    assert response.status_code == 400
    assert response.json() == {"code": 400, "error": "Invalid API key"}
    assert sb.profiles().empty


@pytest.mark.parametrize(
    "identification",
    [
        None,
        "",
        "not json",
        "{'user_id': 'user-1'}",
        '{"user_id": "user-1"',
        "[]",
        "null",
        "42",
        '"user-1"',
        '[{"user_id": "user-1", "user_properties": {"x": NaN}}]',
        '{"user_id": "user-1", "user_properties": {"x": Infinity}}',
    ],
)
def test_missing_or_malformed_identification_is_400_missing_event(
    sb: Sandbox, identification: str | None
) -> None:
    fields = {"api_key": sb.api_key}
    if identification is not None:
        fields["identification"] = identification
    response = requests.post(sb.url, data=fields, timeout=TIMEOUT)
    assert response.status_code == 400
    assert "missing_event" in response.text
    assert sb.profiles().empty


# -- Amplitude's rules: 400, nothing in the request applied ------------------------------------

VALID = ident("user-ok", plan="pro")


def nested(levels: int) -> Any:
    """``levels`` levels of objects, e.g. nested(2) == {"n": {"n": 1}}."""
    value: Any = 1
    for _ in range(levels):
        value = {"n": value}
    return value


RULES = [
    ({"user_properties": {"a": 1}}, "needs a user_id or a device_id"),
    ({"user_id": None, "device_id": None}, "needs a user_id or a device_id"),
    ({"user_id": "abcd"}, "shorter than 5 characters"),
    ({"device_id": "abcd"}, "device_id 'abcd' is shorter than 5"),
    ({"user_id": "u" * 1025}, "longer than 1024 characters"),
    ({"user_id": 12345}, "user_id must be a string, not int"),
    ({"device_id": ["device-1"]}, "device_id must be a string, not list"),
    (ident(**{"$set": {"a": 1}, "b": 2}), "mixes operations ($set) with plain properties ('b')"),
    (ident(**{"$increment": {"a": 1}}), "unknown operation '$increment'"),
    (ident(**{"$add": {"n": "1"}}), "$add value for 'n' is not a number"),
    (ident(**{"$add": {"n": True}}), "$add value for 'n' is not a number"),
    (ident(**{"$add": {"n": None}}), "$add value for 'n' is not a number"),
    (ident(**{"$set": 5}), "$set must map property names to values"),
    ({"user_id": "user-1", "user_properties": ["a"]}, "user_properties must be a JSON object"),
    (ident(deep=nested(40)), "nested deeper than 40 levels"),
    (ident(**{"$set": {"deep": nested(39)}}), "nested deeper than 40 levels"),
    (ident(**{"$append": {"deep": [nested(38)]}}), "nested deeper than 40 levels"),
    ({"user_id": "user-1", "groups": {f"type{i}": "g" for i in range(6)}}, "6 group types"),
    ({"user_id": "user-1", "groups": {"org": [f"g{i}" for i in range(11)]}}, "11 groups in total"),
    (
        {"user_id": "user-1", "groups": {"a": ["g"] * 5, "b": ["g"] * 5, "c": "g"}},
        "11 groups in total",
    ),
    ({"user_id": "user-1", "groups": {"org": 7}}, "must be a string or a list of strings"),
    ({"user_id": "user-1", "groups": {"org": ["a", 1]}}, "must be a string or a list of strings"),
    ({"user_id": "user-1", "groups": ["org"]}, "groups must be a JSON object"),
    (5, "identification 1: is a JSON int, not an object"),
]


@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
@pytest.mark.parametrize(("bad", "reason"), RULES)
def test_each_rule_is_400_naming_the_problem_and_nothing_is_applied(
    sb: Sandbox, bad: Any, reason: str, multipart: bool
) -> None:
    response = post(sb, [VALID, bad, VALID], multipart=multipart)
    assert response.status_code == 400
    message = error_of(response)
    assert reason in message
    assert message.startswith("identification 1: ")
    assert sb.profiles().empty and sb.applied == []
    assert sb.requests[0].applied is False and sb.requests[0].status == 400


@pytest.mark.parametrize(
    "value",
    sorted(REJECTED_IDS) + ["NULL", "Anonymous", "N/A", "UNDEFINED", "Unknown", "LMY47D", "NIL"],
)
@pytest.mark.parametrize("field", ["user_id", "device_id"])
def test_rejected_id_values_in_any_case(sb: Sandbox, field: str, value: str) -> None:
    response = post(sb, [VALID, {field: value}])
    assert response.status_code == 400
    assert field in error_of(response)
    assert sb.profiles().empty


def test_error_message_counts_the_other_invalid_identifications(sb: Sandbox) -> None:
    response = post(sb, [{"user_id": "null"}, VALID, {"user_id": "abc"}, {"device_id": "0"}])
    assert error_of(response) == (
        "identification 0: user_id 'null' is a value Amplitude rejects "
        "(and 2 more invalid identifications)"
    )


@pytest.mark.parametrize(
    "good",
    [
        {"user_id": "abcde"},
        {"device_id": "abcde"},
        {"user_id": "u" * 1024, "device_id": "d" * 1024},
        {"user_id": "user-1", "device_id": None},
        ident(deep=nested(39)),
        ident(**{"$set": {"deep": nested(38)}}),
        ident(**{"$add": {"n": -2.5}}),
        ident(**{"$clearAll": "-"}),
        ident(),
        {"user_id": "user-1", "groups": {f"type{i}": ["a", "b"] for i in range(5)}},
        {"user_id": "user-1", "platform": 3, "unknown_key": "ignored"},
    ],
)
def test_limits_that_are_still_accepted(sb: Sandbox, good: dict[str, Any]) -> None:
    response = post(sb, good)
    assert response.status_code == 200, response.text


def test_over_max_body_bytes_is_413_and_the_connection_stays_usable(sb: Sandbox) -> None:
    big = [ident(f"user-{i:05d}", note="x" * 900) for i in range(1100)]  # > 1,000,000 bytes
    with requests.Session() as session:
        response = post(sb, big, multipart=True, session=session)
        assert response.status_code == 413
        assert "limit is 1000000" in error_of(response)
        assert post(sb, VALID, session=session).status_code == 200
    assert list(sb.applied_counts().index) == ["user-ok"]
    sb.set_faults(max_body_bytes=500)
    assert post(sb, [ident(note="x" * 600)]).status_code == 413
    assert post(sb, [ident(note="x" * 10)]).status_code == 200


def test_over_max_identifications_is_413(sb: Sandbox) -> None:
    rows = [ident(f"user-{i:05d}", n=i) for i in range(2001)]
    response = post(sb, rows, multipart=True)
    assert response.status_code == 413 and "2001 identifications" in error_of(response)
    assert sb.profiles().empty and sb.requests[0].count == 2001
    assert post(sb, rows[:2000], multipart=True).status_code == 200
    assert len(sb.profiles()) == 2000
    sb.set_faults(max_identifications=2)
    assert post(sb, rows[:3]).status_code == 413
    assert post(sb, rows[:2]).status_code == 200


def test_poison_ids_reject_the_whole_request_naming_the_id(sb: Sandbox) -> None:
    sb.set_faults(reject_ids={"user-poison", "device-poison"})
    response = post(sb, [VALID, ident("user-poison", a=1)])
    assert response.status_code == 400 and "'user-poison'" in error_of(response)
    response = post(sb, [VALID, {"user_id": "user-2", "device_id": "device-poison"}])
    assert response.status_code == 400 and "'device-poison'" in error_of(response)
    assert sb.profiles().empty
    assert post(sb, [VALID]).status_code == 200


def test_constructor_takes_the_faults_too() -> None:
    with Sandbox("another-key-123", reject_ids=["user-poison"], max_identifications=1) as sb:
        assert post(sb, [ident("user-poison")]).status_code == 400
        assert post(sb, [VALID, VALID]).status_code == 413
        assert post(sb, [VALID]).status_code == 200
        assert post(sb, [VALID], api_key="sandbox-key").status_code == 400


# -- operations, value by value -----------------------------------------------------------------


def apply_all(sb: Sandbox, *user_properties: dict[str, Any], key: str = "user-1") -> list[Any]:
    """Send each user_properties object in turn; return the profile after each step."""
    states = []
    for properties in user_properties:
        response = post(sb, {"user_id": key, "user_properties": properties})
        assert response.status_code == 200, response.text
        states.append(sb.profile(key))
    return states


def test_set_and_flat_properties_overwrite(sb: Sandbox) -> None:
    assert apply_all(
        sb, {"plan": "free", "seats": 1}, {"$set": {"plan": "pro"}}, {"seats": [1, 2]}
    ) == [
        {"plan": "free", "seats": 1},
        {"plan": "pro", "seats": 1},
        {"plan": "pro", "seats": [1, 2]},
    ]


def test_null_values_are_ignored(sb: Sandbox) -> None:
    assert (
        apply_all(
            sb,
            {"plan": "free"},
            {"plan": None},
            {"$set": {"plan": None}},
            {"$append": {"plan": None}},
        )
        == [{"plan": "free"}] * 4
    )


def test_set_once_only_when_absent_and_again_after_unset(sb: Sandbox) -> None:
    assert apply_all(
        sb,
        {"$setOnce": {"first": "a"}},
        {"$setOnce": {"first": "b"}},
        {"$unset": {"first": "-"}},
        {"$setOnce": {"first": "c"}},
    ) == [{"first": "a"}, {"first": "a"}, {}, {"first": "c"}]


def test_add(sb: Sandbox) -> None:
    assert apply_all(
        sb,
        {"$add": {"n": 3}},
        {"$add": {"n": -5}},
        {"$add": {"n": 0.5}},
        {"$set": {"s": "text"}},
        {"$add": {"s": 2}},  # an existing non-number is replaced (UNCONFIRMED)
    ) == [{"n": 3}, {"n": -2}, {"n": -1.5}, {"n": -1.5, "s": "text"}, {"n": -1.5, "s": 2}]


def test_add_to_a_bool_replaces_it(sb: Sandbox) -> None:
    assert apply_all(sb, {"$set": {"b": True}}, {"$add": {"b": 1}})[-1] == {"b": 1}


def test_append_and_prepend(sb: Sandbox) -> None:
    assert apply_all(
        sb,
        {"$append": {"tags": "a"}},
        {"$append": {"tags": ["b", "a"]}},
        {"$prepend": {"tags": ["x", "y"]}},
        {"$prepend": {"tags": "a"}},
        {"$set": {"one": "s"}},
        {"$append": {"one": "t"}},
        {"$prepend": {"two": 1}},
    ) == [
        {"tags": ["a"]},
        {"tags": ["a", "b", "a"]},
        {"tags": ["x", "y", "a", "b", "a"]},
        {"tags": ["a", "x", "y", "a", "b", "a"]},
        {"tags": ["a", "x", "y", "a", "b", "a"], "one": "s"},
        {"tags": ["a", "x", "y", "a", "b", "a"], "one": ["s", "t"]},
        {"tags": ["a", "x", "y", "a", "b", "a"], "one": ["s", "t"], "two": [1]},
    ]


def test_pre_insert_and_post_insert_skip_present_values_and_keep_order(sb: Sandbox) -> None:
    states = apply_all(
        sb,
        {"$postInsert": {"l": ["a", "b"]}},
        {"$postInsert": {"l": ["b", "c", "c", "d"]}},
        {"$preInsert": {"l": ["x", "a", "y"]}},
        {"$preInsert": {"l": "a"}},
        {"$set": {"s": "a"}},
        {"$postInsert": {"s": ["a", "b"]}},
        {"$postInsert": {"n": [1, True]}},
    )
    assert [state.get("l") for state in states[:4]] == [
        ["a", "b"],
        ["a", "b", "c", "d"],
        ["x", "y", "a", "b", "c", "d"],
        ["x", "y", "a", "b", "c", "d"],
    ]
    assert states[5]["s"] == ["a", "b"]
    assert states[6]["n"] == [1, True]  # JSON true is not 1


def test_remove_every_occurrence(sb: Sandbox) -> None:
    assert apply_all(
        sb,
        {"$append": {"l": ["a", "b", "a", "c"]}},
        {"$remove": {"l": "a"}},
        {"$remove": {"l": ["b", "zzz"]}},
        {"$set": {"s": "x", "t": "y"}},
        {"$remove": {"s": "x", "t": "other", "missing": "m"}},
    ) == [
        {"l": ["a", "b", "a", "c"]},
        {"l": ["b", "c"]},
        {"l": ["c"]},
        {"l": ["c"], "s": "x", "t": "y"},
        {"l": ["c"], "s": [], "t": "y"},
    ]


def test_unset_and_clear_all(sb: Sandbox) -> None:
    assert apply_all(
        sb,
        {"a": 1, "b": 2, "c": 3},
        {"$unset": {"a": "-", "missing": "-"}},
        {"$clearAll": "-"},
        {"d": 4},
    ) == [{"a": 1, "b": 2, "c": 3}, {"b": 2, "c": 3}, {}, {"d": 4}]


def test_operations_in_one_identification_run_in_the_sdk_order(sb: Sandbox) -> None:
    # $clearAll, $unset, $set, $setOnce, $add, $append, $prepend, $preInsert, $postInsert, $remove
    states = apply_all(
        sb,
        {"$set": {"keep": "me", "n": 1, "l": ["b"]}},
        {
            "$remove": {"l": "z"},
            "$postInsert": {"l": "z"},
            "$add": {"n": 1},
            "$set": {"n": 10},
            "$unset": {"keep": "-"},
            "$setOnce": {"keep": "again"},
        },
        {"$set": {"fresh": True}, "$clearAll": "-"},
    )
    assert states[1] == {"n": 11, "l": ["b"], "keep": "again"}
    assert states[2] == {"fresh": True}


def test_long_strings_are_cut_to_1024_characters(sb: Sandbox) -> None:
    state = apply_all(sb, {"$set": {"s": "é" * 1500}, "$append": {"l": "x" * 2000}})[-1]
    assert state == {"s": "é" * 1024, "l": ["x" * 1024]}


def test_groups_and_top_level_fields_are_stored_as_columns(sb: Sandbox) -> None:
    response = post(
        sb,
        {
            "user_id": "user-1",
            "platform": "iOS",
            "country": "FR",
            "city": None,
            "groups": {"org": ["acme", "globex"], "team": "data"},
            "user_properties": {"$clearAll": "-"},
        },
    )
    assert response.status_code == 200
    assert sb.profile("user-1") == {
        "platform": "iOS",
        "country": "FR",
        "org": ["acme", "globex"],
        "team": "data",
    }


def test_identifications_apply_in_request_order(sb: Sandbox) -> None:
    rows = [ident(**{"$append": {"seen": i}}) for i in range(5)] + [ident(**{"$add": {"n": 2}})]
    assert post(sb, rows, multipart=True).status_code == 200
    assert sb.profile("user-1") == {"seen": [0, 1, 2, 3, 4], "n": 2}
    assert sb.applied == rows


def test_recorded_identifications_are_not_changed_by_later_operations(sb: Sandbox) -> None:
    post(sb, ident(**{"$set": {"l": ["a"]}}))
    post(sb, ident(**{"$append": {"l": "b"}}))
    assert sb.applied[0] == ident(**{"$set": {"l": ["a"]}})
    profile = sb.profile("user-1")
    profile["l"].append("mutated")
    assert sb.profile("user-1") == {"l": ["a", "b"]}


# -- device → user linking ----------------------------------------------------------------------


def test_device_linked_to_a_user_applies_to_that_user(sb: Sandbox) -> None:
    post(sb, {"device_id": "device-1", "user_properties": {"anon": True, "plan": "free"}})
    assert list(sb.profiles().index) == ["device-1"]
    post(sb, {"user_id": "user-1", "user_properties": {"plan": "pro"}})
    # linking merges the device's profile into the user's (the user's values win)
    post(sb, {"user_id": "user-1", "device_id": "device-1", "user_properties": {"$add": {"n": 1}}})
    assert list(sb.profiles().index) == ["user-1"]
    assert sb.profile("user-1") == {"anon": True, "plan": "pro", "n": 1}
    post(sb, {"device_id": "device-1", "user_properties": {"$add": {"n": 1}}})
    assert sb.profile("user-1")["n"] == 2
    # a user_id always wins over the device's link
    post(sb, {"user_id": "user-2", "device_id": "device-1", "user_properties": {"x": 1}})
    post(sb, {"device_id": "device-1", "user_properties": {"y": 1}})
    assert sb.profile("user-2") == {"x": 1, "y": 1}
    assert sb.applied_counts().to_dict() == {"user-1": 4, "user-2": 2}


def test_unlinked_devices_keep_their_own_profile(sb: Sandbox) -> None:
    post(
        sb,
        [
            {"device_id": "device-1", "user_properties": {"a": 1}},
            {"device_id": "device-2", "user_properties": {"a": 2}},
        ],
    )
    assert sb.applied_counts().to_dict() == {"device-1": 1, "device-2": 1}


# -- inspection ---------------------------------------------------------------------------------


def test_profiles_frame(sb: Sandbox) -> None:
    assert (
        post(
            sb,
            [
                ident("user-2", plan="pro", tags=["a", "b"]),
                ident("user-1", **{"$add": {"logins": 2}}),
            ],
        ).status_code
        == 200
    )
    frame = sb.profiles()
    assert frame.index.name == "id"
    assert list(frame.index) == ["user-1", "user-2"]
    assert list(frame.columns) == ["logins", "plan", "tags"]
    assert frame.loc["user-2", "tags"] == ["a", "b"]
    assert frame.loc["user-1", "logins"] == 2
    assert pd.isna(frame.loc["user-1", "plan"]) and pd.isna(frame.loc["user-2", "logins"])
    counts = sb.applied_counts()
    assert counts.name == "applied" and counts.index.name == "id"
    assert counts.to_dict() == {"user-1": 1, "user-2": 1}


def test_empty_inspection(sb: Sandbox) -> None:
    assert sb.profiles().empty and sb.profiles().index.name == "id"
    assert sb.applied_counts().empty and sb.requests == [] and sb.applied == []
    assert sb.profile("nobody") == {}


def test_record_identifications_off_keeps_counts_only() -> None:
    with Sandbox(record_identifications=False) as sb:
        assert post(sb, [VALID, VALID]).status_code == 200
        assert sb.requests[0].identifications is None and sb.requests[0].count == 2
        assert sb.applied_counts().to_dict() == {"user-ok": 2}
        with pytest.raises(SandboxError, match="record_identifications=False"):
            sb.applied  # noqa: B018


def test_repr_shows_url_and_counts_never_the_key() -> None:
    sb = Sandbox("secret-looking-key-123")
    assert "never started" in repr(sb)
    with sb:
        post(sb, [VALID, ident("user-2")])
        text = repr(sb)
        assert sb.url in text and "running" in text
        assert "1 requests" in text and "2 identifications applied" in text
        assert "2 profiles" in text
    assert "stopped" in repr(sb)
    assert "secret-looking-key-123" not in text + repr(sb)


# -- faults -------------------------------------------------------------------------------------


def test_latency_is_added_and_can_change_while_running(sb: Sandbox) -> None:
    sb.set_faults(latency=0.3)
    started = time.perf_counter()
    assert post(sb, VALID).status_code == 200
    assert time.perf_counter() - started >= 0.3
    sb.set_faults(latency=0)
    started = time.perf_counter()
    assert post(sb, VALID).status_code == 200
    assert time.perf_counter() - started < 0.3


def statuses(sb: Sandbox, n: int) -> list[int | None]:
    out: list[int | None] = []
    for number in range(n):
        try:
            out.append(post(sb, ident(f"user-{number:03d}")).status_code)
        except requests.ConnectionError:
            out.append(None)
    return out


def test_503_applies_nothing(sb: Sandbox) -> None:
    sb.set_faults(rate_503=1.0)
    response = post(sb, VALID)
    assert response.status_code == 503
    assert sb.profiles().empty and sb.requests[0].applied is False


def test_random_faults_repeat_with_the_same_seed() -> None:
    runs = []
    for _ in range(2):
        with Sandbox(
            seed=7, rate_503=0.3, rate_500_after_apply=0.3, rate_drop_after_apply=0.3
        ) as sb:
            runs.append(statuses(sb, 30))
            assert [r.status for r in sb.requests] == runs[-1]
            applied = {r.status for r in sb.requests if r.applied}
            assert applied <= {200, 500, None}
            assert sum(r.count for r in sb.requests if r.applied) == sb.applied_counts().sum()
    assert runs[0] == runs[1]
    assert {200, 503, 500, None} <= set(runs[0])
    with Sandbox(seed=8, rate_503=0.3, rate_500_after_apply=0.3, rate_drop_after_apply=0.3) as sb:
        assert statuses(sb, 30) != runs[0]


def test_reseeding_while_running(sb: Sandbox) -> None:
    sb.set_faults(rate_503=0.5, seed=3)
    first = statuses(sb, 12)
    sb.set_faults(seed=3)
    assert statuses(sb, 12) == first


def test_500_after_apply_applies_then_fails(sb: Sandbox) -> None:
    sb.set_faults(rate_500_after_apply=1.0)
    response = post(sb, ident(**{"$add": {"n": 1}}))
    assert response.status_code == 500
    assert sb.profile("user-1") == {"n": 1}
    (record,) = sb.requests
    assert record.status == 500 and record.applied


def test_drop_after_apply_closes_without_an_answer(sb: Sandbox) -> None:
    sb.set_faults(rate_drop_after_apply=1.0)
    with requests.Session() as session, pytest.raises(requests.ConnectionError):
        post(sb, ident(**{"$add": {"n": 1}}), session=session)
    assert sb.profile("user-1") == {"n": 1}
    (record,) = sb.requests
    assert record.status is None and record.applied
    sb.set_faults(rate_drop_after_apply=0.0)
    assert post(sb, VALID).status_code == 200


def test_throttle_for_n_responses_with_a_json_body(sb: Sandbox) -> None:
    sb.throttle(user_ids=["user-hot", "user-absent"], device_ids="device-hot", requests=2)
    rows = [
        ident("user-cold"),
        ident("user-hot", a=1),
        {"device_id": "device-hot"},
        ident("user-hot", b=2),
    ]
    response = post(sb, rows)
    assert response.status_code == 429
    assert response.json() == {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": 30,
        "throttled_devices": {"device-hot": 1},
        "throttled_users": {"user-hot": 2},
        "throttled_events": [1, 2, 3],
    }
    assert post(sb, [ident("user-cold")]).status_code == 200  # no throttled id: not counted
    assert post(sb, [{"device_id": "device-hot"}]).status_code == 429
    assert post(sb, rows).status_code == 200  # two 429s given: over
    assert sb.applied_counts().to_dict() == {"device-hot": 1, "user-cold": 2, "user-hot": 2}
    assert [r.applied for r in sb.requests] == [False, True, False, True]


def test_throttle_for_seconds_with_a_text_body_and_clear(sb: Sandbox) -> None:
    sb.throttle(user_ids="user-hot", seconds=0.4, json_body=False)
    response = post(sb, ident("user-hot"))
    assert response.status_code == 429
    assert response.text == "Too many requests for some devices and users"
    assert response.headers["Content-Type"].startswith("text/plain")
    time.sleep(0.45)
    assert post(sb, ident("user-hot")).status_code == 200
    sb.throttle(user_ids="user-hot")  # until cleared
    assert [post(sb, ident("user-hot")).status_code for _ in range(3)] == [429] * 3
    sb.clear_throttle()
    assert post(sb, ident("user-hot")).status_code == 200


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"rate_503": 1.5}, "probability"),
        ({"rate_500_after_apply": -0.1}, "probability"),
        ({"rate_drop_after_apply": "1"}, "probability"),
        ({"latency": -1}, "latency"),
        ({"max_body_bytes": 0}, "positive integer"),
        ({"max_identifications": 1.5}, "positive integer"),
        ({"reject_ids": [1]}, "strings"),
        ({"rate_404": 0.1}, "unknown fault setting"),
    ],
)
def test_impossible_faults_are_refused(sb: Sandbox, faults: dict[str, Any], message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        sb.set_faults(**faults)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "needs user_ids or device_ids"),
        ({"user_ids": "u-123", "requests": 0}, "requests"),
        ({"user_ids": "u-123", "seconds": -1}, "seconds"),
    ],
)
def test_impossible_throttles_are_refused(
    sb: Sandbox, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(SandboxError, match=message):
        sb.throttle(**arguments)


def test_reset_clears_profiles_records_and_faults(sb: Sandbox) -> None:
    sb.set_faults(reject_ids={"user-poison"}, max_identifications=1, latency=0.01)
    sb.throttle(user_ids="user-1")
    post(sb, ident("user-2"))
    sb.reset()
    assert sb.profiles().empty and sb.requests == [] and sb.applied == []
    assert sb.faults == {
        "latency": 0.0,
        "rate_503": 0.0,
        "rate_500_after_apply": 0.0,
        "rate_drop_after_apply": 0.0,
        "reject_ids": frozenset(),
        "reject_groups": frozenset(),
        "max_body_bytes": 1_000_000,
        "max_identifications": 2000,
        "max_group_identifications": 1024,
        "max_group_properties": 1024,
        "throttles": 0,
    }
    assert post(sb, [ident("user-1"), ident("user-poison")]).status_code == 200


def test_faults_change_safely_while_requests_run(sb: Sandbox) -> None:
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            sb.set_faults(rate_503=0.5, latency=0.001)
            sb.set_faults(rate_503=0.0, latency=0.0)

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        with requests.Session() as session:
            codes = [
                post(sb, ident(f"user-{i:03d}"), session=session).status_code for i in range(40)
            ]
    finally:
        stop.set()
        flipper.join()
    assert set(codes) <= {200, 503}
    assert sb.applied_counts().sum() == codes.count(200)


# -- lifecycle ----------------------------------------------------------------------------------


def test_urls_port_and_loopback_only() -> None:
    with Sandbox() as sb:
        assert sb.url == f"http://127.0.0.1:{sb.port}/identify"
        assert sb.http_v2_url == f"http://127.0.0.1:{sb.port}/2/httpapi"
        assert sb.port > 0 and sb.running
        assert sb._server is not None and sb._server.server_address[0] == "127.0.0.1"
        assert sb.start() is sb  # already running: a no-op


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(SandboxError, match="not been started"):
        Sandbox().url  # noqa: B018


@pytest.mark.parametrize(
    "arguments", [{"api_key": ""}, {"api_key": None}, {"port": -1}, {"port": 70000}, {"port": "80"}]
)
def test_bad_constructor_arguments(arguments: dict[str, Any]) -> None:
    with pytest.raises(SandboxError):
        Sandbox(**arguments)


def test_a_busy_port_is_a_sandbox_error() -> None:
    with Sandbox() as first, pytest.raises(SandboxError, match=f"127.0.0.1:{first.port}"):
        Sandbox(port=first.port).start()


def test_stop_is_prompt_frees_the_port_and_restart_keeps_profiles() -> None:
    sb = Sandbox().start()
    port = sb.port
    with requests.Session() as session:
        assert post(sb, VALID, session=session).status_code == 200  # an idle keep-alive
        started = time.perf_counter()
        sb.stop()
        assert time.perf_counter() - started < 1.0
        assert not sb.running
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))  # the port is free
        with pytest.raises(requests.ConnectionError):
            post(sb, VALID, session=session)
    sb.stop()  # twice is fine
    with sb:
        assert sb.port == port
        assert post(sb, VALID).status_code == 200
    assert sb.applied_counts().to_dict() == {"user-ok": 2}


def test_stop_while_a_client_is_mid_run() -> None:
    sb = Sandbox(latency=5.0).start()
    outcome: list[Any] = []

    def client() -> None:
        try:
            outcome.append(post(sb, VALID).status_code)
        except requests.ConnectionError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 5
    while not (sb._server and sb._server._open) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # the request is inside its latency
    started = time.perf_counter()
    sb.stop()
    thread.join(5)
    assert time.perf_counter() - started < 2.0
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError)
    assert sb.profiles().empty  # stopped before applying: nothing applied


def test_stop_between_requests_of_a_running_sender() -> None:
    sb = Sandbox().start()
    results: list[Any] = []

    def sender() -> None:
        with requests.Session() as session:
            for number in range(10_000):
                try:
                    results.append(
                        post(sb, ident(f"user-{number:05d}"), session=session).status_code
                    )
                except requests.ConnectionError:
                    results.append("down")
                    return

    thread = threading.Thread(target=sender)
    thread.start()
    while len(results) < 5:
        time.sleep(0.01)
    sb.stop()
    thread.join(5)
    assert not thread.is_alive() and results[-1] == "down"
    assert sb.applied_counts().sum() == results.count(200)


def test_server_errors_in_the_client_socket_are_quiet(
    sb: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    # A client that sends half a body and goes away.
    with socket.create_connection(("127.0.0.1", sb.port)) as raw:
        raw.sendall(
            b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\napi_key="
        )
    time.sleep(0.1)
    assert post(sb, VALID).status_code == 200
    assert capsys.readouterr().err == ""


def test_chunked_and_bad_content_length_are_refused(sb: Sandbox) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"api_key=sandbox-key&identification="
        yield b"%7B%7D"

    response = requests.post(
        sb.url,
        data=chunks(),
        timeout=TIMEOUT,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 411
    with socket.create_connection(("127.0.0.1", sb.port)) as raw:
        raw.sendall(b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400 ")


def test_many_concurrent_clients(sb: Sandbox) -> None:
    def send(worker: int) -> list[int]:
        with requests.Session() as session:
            return [
                post(
                    sb,
                    [ident(f"user-{worker}-{i}", **{"$add": {"n": 1}}) for i in range(50)],
                    multipart=True,
                    session=session,
                ).status_code
                for _ in range(5)
            ]

    threads_out: list[list[int]] = []
    threads = [threading.Thread(target=lambda w=w: threads_out.append(send(w))) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [code for codes in threads_out for code in codes] == [200] * 40
    counts = sb.applied_counts()
    assert len(counts) == 400 and set(counts) == {5}
    assert math.isclose(sb.profiles()["n"].sum(), 2000)
