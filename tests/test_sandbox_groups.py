"""The sandbox's Group Identify API (``POST /groupidentify``) over real HTTP: formats, Amplitude's
group rules and limits, every group operation against a reference model, ``group_profiles()``,
faults and throttling by group, and ``$groupidentify`` events on HTTP V2."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amp_pandas.errors import SandboxError
from amp_pandas.sandbox import Sandbox

TIMEOUT = 10


@pytest.fixture(scope="module")
def _server() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def sb(_server: Sandbox) -> Sandbox:
    _server.reset()
    return _server


def post(
    sb: Sandbox,
    identification: Any,
    *,
    api_key: str | None = None,
    multipart: bool = False,
    session: requests.Session | None = None,
) -> requests.Response:
    """POST group identifications (a Python value, or raw text) to /groupidentify."""
    text = identification if isinstance(identification, str) else json.dumps(identification)
    fields = {"api_key": sb.api_key if api_key is None else api_key, "identification": text}
    sender = session or requests
    if multipart:
        files = {name: (None, value) for name, value in fields.items()}
        return sender.post(sb.group_url, files=files, timeout=TIMEOUT)
    return sender.post(sb.group_url, data=fields, timeout=TIMEOUT)


def group(
    value: str = "acme", /, group_type: str = "company", **group_properties: Any
) -> dict[str, Any]:
    return {"group_type": group_type, "group_value": value, "group_properties": group_properties}


def error_of(response: requests.Response) -> str:
    body = response.json()
    assert body["code"] == response.status_code
    return body["error"]


def send_v2(sb: Sandbox, events: list[Any], **payload: Any) -> requests.Response:
    body = {"api_key": sb.api_key, "events": events, **payload}
    return requests.post(sb.http_v2_url, json=body, timeout=TIMEOUT)


def group_event(groups: Any, **group_properties: Any) -> dict[str, Any]:
    return {"event_type": "$groupidentify", "groups": groups, "group_properties": group_properties}


# -- format, key, endpoint ----------------------------------------------------------------------


@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
def test_post_applies_and_answers_success(sb: Sandbox, multipart: bool) -> None:
    response = post(sb, [group(plan="pro"), group("globex", seats=3)], multipart=multipart)
    assert (response.status_code, response.text) == (200, "success")
    assert sb.group_profile("company", "acme") == {"plan": "pro"}
    assert sb.group_profile("company", "globex") == {"seats": 3}
    (record,) = sb.requests
    assert (record.method, record.path, record.status, record.count, record.applied) == (
        "POST",
        "/groupidentify",
        200,
        2,
        True,
    )
    assert record.identifications == [group(plan="pro"), group("globex", seats=3)]
    assert sb.profiles().empty  # no user profile was touched


def test_group_url() -> None:
    with Sandbox() as sb:
        assert sb.group_url == f"http://127.0.0.1:{sb.port}/groupidentify"
    with pytest.raises(SandboxError, match="not been started"):
        Sandbox().group_url  # noqa: B018


def test_one_object_or_an_array(sb: Sandbox) -> None:
    assert post(sb, group(a=1)).status_code == 200
    assert post(sb, [group(b=2), group(c=3)]).status_code == 200
    assert sb.group_profile("company", "acme") == {"a": 1, "b": 2, "c": 3}
    assert [r.count for r in sb.requests] == [1, 2]


def test_get_is_405_and_nothing_is_applied(sb: Sandbox) -> None:
    response = requests.get(
        sb.group_url,
        params={"api_key": sb.api_key, "identification": json.dumps(group(a=1))},
        timeout=TIMEOUT,
    )
    assert response.status_code == 405
    assert error_of(response) == "/groupidentify takes POST only"
    assert sb.group_profiles().empty


@pytest.mark.parametrize("api_key", ["wrong-key", "", "SANDBOX-KEY", None])
def test_wrong_or_missing_key_is_400_invalid_api_key(sb: Sandbox, api_key: str | None) -> None:
    fields = {"identification": json.dumps(group(a=1))}
    if api_key is not None:
        fields["api_key"] = api_key
    response = requests.post(sb.group_url, data=fields, timeout=TIMEOUT)
    assert response.status_code == 400 and error_of(response) == "Invalid API key"
    assert sb.group_profiles().empty


@pytest.mark.parametrize("text", [None, "", "not json", "[]", "3", "null", '"text"'])
def test_missing_or_malformed_identification_is_400_missing_event(
    sb: Sandbox, text: str | None
) -> None:
    fields = {"api_key": sb.api_key}
    if text is not None:
        fields["identification"] = text
    response = requests.post(sb.group_url, data=fields, timeout=TIMEOUT)
    assert response.status_code == 400
    assert error_of(response).startswith("missing_event")


def test_a_json_body_is_refused(sb: Sandbox) -> None:
    response = requests.post(
        sb.group_url, json={"api_key": sb.api_key, "identification": [group(a=1)]}, timeout=TIMEOUT
    )
    assert response.status_code == 400
    assert "x-www-form-urlencoded or multipart/form-data" in error_of(response)


def test_unknown_path_names_every_endpoint(sb: Sandbox) -> None:
    response = requests.post(sb.url.replace("/identify", "/batch"), data={}, timeout=TIMEOUT)
    assert response.status_code == 404
    message = error_of(response)
    assert all(path in message for path in ("/identify", "/groupidentify", "/2/httpapi"))


# -- the rules ----------------------------------------------------------------------------------

LONG = "x" * 1025
RULES = [
    ({"group_value": "acme", "group_properties": {"a": 1}}, "needs a group_type"),
    ({"group_type": None, "group_value": "acme"}, "needs a group_type"),
    ({"group_type": "company", "group_properties": {"a": 1}}, "needs a group_value"),
    ({"group_type": 7, "group_value": "acme"}, "group_type must be a string, not int"),
    ({"group_type": "company", "group_value": 42}, "group_value must be a string, not int"),
    ({"group_type": "company", "group_value": ["a"]}, "group_value must be a string, not list"),
    ({"group_type": "", "group_value": "acme"}, "group_type is empty"),
    ({"group_type": "company", "group_value": ""}, "group_value is empty"),
    ({"group_type": LONG, "group_value": "acme"}, "group_type is longer than 1024 characters"),
    ({"group_type": "company", "group_value": LONG}, "group_value is longer than 1024 characters"),
    (group(**{"$preInsert": {"t": "a"}}), "$preInsert is not documented for group properties"),
    (group(**{"$postInsert": {"t": "a"}}), "$postInsert is not documented for group properties"),
    (group(**{"$remove": {"t": "a"}}), "$remove is not documented for group properties"),
    (group(**{"$clearAll": "-"}), "$clearAll is not documented for group properties"),
    (group(**{"$bogus": {"t": "a"}}), "unknown operation '$bogus' in group_properties"),
    (group(**{"$set": {"a": 1}, "b": 2}), "mixes operations ($set) with plain properties ('b')"),
    (group(**{"$add": {"n": "1"}}), "$add value for 'n' is not a number"),
    (group(**{"$add": {"n": True}}), "$add value for 'n' is not a number"),
    (group(**{"$set": ["a"]}), "$set must map property names to values, not list"),
    ({**group(), "group_properties": ["a"]}, "group_properties must be a JSON object, not list"),
    (group(deep=json.loads("[" * 40 + "]" * 40)), "nested deeper than 40 levels"),
    ("a string", "is a JSON str, not an object"),
]


@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
@pytest.mark.parametrize(("bad", "reason"), RULES)
def test_each_rule_is_400_naming_the_problem_and_nothing_is_applied(
    sb: Sandbox, bad: Any, reason: str, multipart: bool
) -> None:
    response = post(sb, [group(ok=1), bad], multipart=multipart)
    assert response.status_code == 400
    message = error_of(response)
    assert message.startswith("identification 1: "), message
    assert reason in message
    assert sb.group_profiles().empty and sb.group_applied == []
    assert sb.requests[-1].applied is False


@pytest.mark.parametrize(
    "good",
    [
        group("x" * 1024, group_type="t" * 1024, a=1),
        group("a"),  # one character: no minimum length for group values (ids have 5)
        group("null"),  # the rejected-id list is for user and device ids only
        {"group_type": "company", "group_value": "acme"},  # no group_properties: no change
        group(**{"$set": {"a": 1}, "$setOnce": {"b": 1}, "$add": {"c": 1.5}, "$unset": {"d": "-"}}),
        group(**{"$append": {"t": ["a", 1]}, "$prepend": {"u": "b"}}),
        group(deep=json.loads("[" * 39 + "]" * 39)),
        {**group(a=1), "user_id": "x", "other": 1},  # undocumented keys are ignored
    ],
)
def test_what_is_still_accepted(sb: Sandbox, good: dict[str, Any]) -> None:
    response = post(sb, [good])
    assert response.status_code == 200, response.text
    assert sb.group_applied_counts().to_dict() == {(good["group_type"], good["group_value"]): 1}


def test_error_message_counts_the_other_invalid_identifications(sb: Sandbox) -> None:
    bad = group("")
    response = post(sb, [group(a=1), bad, group(b=1), bad, bad])
    assert error_of(response) == (
        "identification 1: group_value is empty (and 2 more invalid identifications)"
    )
    response = post(sb, [bad, group(a=1), bad])
    assert error_of(response).endswith("(and 1 more invalid identification)")


# -- limits -------------------------------------------------------------------------------------


def test_1024_group_identifications_are_accepted_and_1025_are_413(sb: Sandbox) -> None:
    rows = [group(f"g{number}", n=number) for number in range(1025)]
    response = post(sb, rows)
    assert response.status_code == 413
    assert error_of(response) == "1025 group identifications in one request; the limit is 1024"
    assert sb.group_profiles().empty
    assert post(sb, rows[:1024]).status_code == 200
    assert len(sb.group_profiles()) == 1024
    assert sb.group_profile("company", "g1023") == {"n": 1023}


def test_1024_group_properties_are_accepted_and_1025_are_413(sb: Sandbox) -> None:
    names = [f"p{number}" for number in range(1025)]
    # counted over the request: 1000 in one identification plus 25 spread over operations
    over = [
        group("a", **{name: 1 for name in names[:1000]}),
        group("b", **{"$set": {n: 1 for n in names[1000:1010]}, "$unset": {"q": "-"}}),
        group("c", **{"$add": {n: 1 for n in names[1010:1024]}}),
    ]
    response = post(sb, over)
    assert response.status_code == 413
    assert error_of(response) == "1025 group properties in one request; the limit is 1024"
    assert sb.group_profiles().empty
    over[1]["group_properties"]["$unset"] = {}
    assert post(sb, over).status_code == 200
    assert len(sb.group_profile("company", "a")) == 1000


def test_limits_can_be_made_smaller(sb: Sandbox) -> None:
    sb.set_faults(max_group_identifications=2, max_group_properties=3)
    assert post(sb, [group("a"), group("b"), group("c")]).status_code == 413
    assert post(sb, [group("a", x=1, y=2), group("b", z=3, w=4)]).status_code == 413
    assert post(sb, [group("a", x=1, y=2), group("b", z=3)]).status_code == 200
    assert sb.group_applied_counts().to_dict() == {("company", "a"): 1, ("company", "b"): 1}


def test_over_max_body_bytes_is_413(sb: Sandbox) -> None:
    sb.set_faults(max_body_bytes=200)
    response = post(sb, [group(text="x" * 300)])
    assert response.status_code == 413 and "the limit is 200" in error_of(response)
    assert sb.group_profiles().empty


def test_poison_groups_reject_the_request_naming_the_group() -> None:
    with Sandbox(reject_groups={"company": ["poison", "toxic"]}) as sb:
        response = post(sb, [group("fine", a=1), group("toxic", a=1)])
        assert response.status_code == 400
        assert error_of(response) == (
            "identification 1: group company:toxic is one of the sandbox's reject_groups"
        )
        assert post(sb, [group("toxic", group_type="team", a=1)]).status_code == 200
        assert sb.group_applied_counts().to_dict() == {("team", "toxic"): 1}
        assert sb.faults["reject_groups"] == {("company", "poison"), ("company", "toxic")}


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"max_group_identifications": 0}, "positive integer"),
        ({"max_group_properties": 2.5}, "positive integer"),
        ({"reject_groups": ["company:acme"]}, "must map group types"),
        ({"reject_groups": {"company": [1]}}, "strings"),
    ],
)
def test_impossible_group_faults_are_refused(
    sb: Sandbox, faults: dict[str, Any], message: str
) -> None:
    with pytest.raises(SandboxError, match=message):
        sb.set_faults(**faults)


# -- operations, against a reference model ------------------------------------------------------


def apply_all(sb: Sandbox, *properties: dict[str, Any]) -> list[dict[str, Any]]:
    """Send each group_properties object in turn; return the group's profile after each step."""
    states = []
    for props in properties:
        response = post(sb, group(**props))
        assert response.status_code == 200, response.text
        states.append(sb.group_profile("company", "acme"))
    return states


def test_set_and_flat_properties_overwrite_and_null_is_ignored(sb: Sandbox) -> None:
    assert apply_all(
        sb,
        {"plan": "free", "seats": 1},
        {"$set": {"plan": "pro", "tags": ["a", "b"]}},
        {"plan": None},
        {"$set": {"seats": None, "region": "eu"}},
    ) == [
        {"plan": "free", "seats": 1},
        {"plan": "pro", "seats": 1, "tags": ["a", "b"]},
        {"plan": "pro", "seats": 1, "tags": ["a", "b"]},
        {"plan": "pro", "seats": 1, "tags": ["a", "b"], "region": "eu"},
    ]


def test_set_once_only_when_absent_and_again_after_unset(sb: Sandbox) -> None:
    assert apply_all(
        sb,
        {"$setOnce": {"first": "2024-01-01"}},
        {"$setOnce": {"first": "2025-01-01"}},
        {"$unset": {"first": "-"}},
        {"$setOnce": {"first": "2026-01-01"}},
    ) == [
        {"first": "2024-01-01"},
        {"first": "2024-01-01"},
        {},
        {"first": "2026-01-01"},
    ]


def test_add(sb: Sandbox) -> None:
    assert apply_all(
        sb,
        {"$add": {"seats": 5}},
        {"$add": {"seats": -2}},
        {"$add": {"seats": 0.5}},
        {"$set": {"name": "x"}},
        {"$add": {"name": 3}},  # not a number yet: replaced
    ) == [
        {"seats": 5},
        {"seats": 3},
        {"seats": 3.5},
        {"seats": 3.5, "name": "x"},
        {"seats": 3.5, "name": 3},
    ]


def test_append_and_prepend_keep_duplicates(sb: Sandbox) -> None:
    assert apply_all(
        sb,
        {"$append": {"tags": "a"}},
        {"$append": {"tags": ["b", "a"]}},
        {"$prepend": {"tags": ["z", "y"]}},
        {"$set": {"one": 1}},
        {"$append": {"one": 2}},  # a scalar becomes a list
        {"$prepend": {"new": "p"}},
    ) == [
        {"tags": ["a"]},
        {"tags": ["a", "b", "a"]},
        {"tags": ["z", "y", "a", "b", "a"]},
        {"tags": ["z", "y", "a", "b", "a"], "one": 1},
        {"tags": ["z", "y", "a", "b", "a"], "one": [1, 2]},
        {"tags": ["z", "y", "a", "b", "a"], "one": [1, 2], "new": ["p"]},
    ]


def test_unset(sb: Sandbox) -> None:
    assert apply_all(sb, {"a": 1, "b": 2, "c": 3}, {"$unset": {"a": "-", "missing": "-"}}) == [
        {"a": 1, "b": 2, "c": 3},
        {"b": 2, "c": 3},
    ]


def test_operations_in_one_identification_run_in_the_sdk_order(sb: Sandbox) -> None:
    # written in reverse; applied as $unset $set $setOnce $add $append $prepend
    (state,) = apply_all(
        sb,
        {
            "$prepend": {"t": "first"},
            "$append": {"t": "last"},
            "$add": {"n": 2},
            "$setOnce": {"n": 100, "once": 1},
            "$set": {"n": 1, "t": "middle", "gone": 1},
            "$unset": {"gone": "-"},
        },
    )
    assert state == {"n": 3, "once": 1, "t": ["first", "middle", "last"], "gone": 1}


def test_long_strings_are_cut_to_1024_characters(sb: Sandbox) -> None:
    (state,) = apply_all(sb, {"$set": {"s": "y" * 2000}, "$append": {"l": "z" * 1500}})
    assert state == {"s": "y" * 1024, "l": ["z" * 1024]}


def test_groups_are_a_store_of_their_own(sb: Sandbox) -> None:
    # a user whose id equals a group value, and a user that is a member of that group
    user = {"user_id": "acme-corp", "user_properties": {"plan": "user-plan"}}
    member = {"user_id": "user-1", "groups": {"company": "acme-corp"}}
    response = requests.post(
        sb.url,
        data={"api_key": sb.api_key, "identification": json.dumps([user, member])},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert sb.group_profiles().empty  # membership does not make a group profile
    assert post(sb, group("acme-corp", plan="group-plan")).status_code == 200
    assert sb.profile("acme-corp") == {"plan": "user-plan"}
    assert sb.profile("user-1") == {"company": "acme-corp"}
    assert sb.group_profile("company", "acme-corp") == {"plan": "group-plan"}
    assert sb.group_profile("team", "acme-corp") == {}  # the type is part of the key
    assert sb.applied_counts().sum() == 2 and sb.group_applied_counts().sum() == 1


# The reference model: a plain re-statement of the documented semantics, written for this test.
ORDER = ("$unset", "$set", "$setOnce", "$add", "$append", "$prepend")


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def model_apply(props: dict[str, Any], group_properties: dict[str, Any]) -> None:
    if not any(key.startswith("$") for key in group_properties):
        group_properties = {"$set": group_properties}
    for operation in ORDER:
        for name, value in group_properties.get(operation, {}).items():
            if operation == "$unset":
                props.pop(name, None)
            elif value is None:
                continue
            elif operation == "$set":
                props[name] = value
            elif operation == "$setOnce":
                props.setdefault(name, value)
            elif operation == "$add":
                current = props.get(name)
                number = isinstance(current, (int, float)) and not isinstance(current, bool)
                props[name] = current + value if number else value
            elif operation == "$append":
                props[name] = _as_list(props.get(name)) + _as_list(value)
            else:
                props[name] = _as_list(value) + _as_list(props.get(name))


NAMES = st.sampled_from(["a", "b", "c"])
ATOMS = st.one_of(st.integers(-5, 5), st.sampled_from(["x", "y", "z"]))
VALUES = st.one_of(ATOMS, st.none(), st.lists(ATOMS, max_size=3))
OPERATION_BODIES = {
    "$set": st.dictionaries(NAMES, VALUES, min_size=1, max_size=2),
    "$setOnce": st.dictionaries(NAMES, VALUES, min_size=1, max_size=2),
    "$add": st.dictionaries(NAMES, st.integers(-5, 5), min_size=1, max_size=2),
    "$append": st.dictionaries(NAMES, VALUES, min_size=1, max_size=2),
    "$prepend": st.dictionaries(NAMES, VALUES, min_size=1, max_size=2),
    "$unset": st.dictionaries(NAMES, st.just("-"), min_size=1, max_size=2),
}
GROUP_PROPERTIES = st.one_of(
    st.dictionaries(NAMES, VALUES, min_size=1, max_size=3),  # flat: a $set
    st.lists(st.sampled_from(ORDER), min_size=1, max_size=3, unique=True).flatmap(
        lambda operations: st.fixed_dictionaries({op: OPERATION_BODIES[op] for op in operations})
    ),
)
KEYS = st.sampled_from([("company", "acme"), ("company", "globex"), ("team", "acme")])
STEPS = st.lists(st.tuples(KEYS, GROUP_PROPERTIES), min_size=1, max_size=8)


@settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=STEPS, one_request=st.booleans())
def test_every_group_operation_matches_the_reference_model(
    _server: Sandbox, steps: list[tuple[tuple[str, str], dict[str, Any]]], one_request: bool
) -> None:
    sb = _server
    sb.reset()
    rows = [
        {"group_type": kind, "group_value": value, "group_properties": props}
        for (kind, value), props in steps
    ]
    if one_request:
        assert post(sb, rows).status_code == 200
    else:
        for row in rows:
            assert post(sb, row).status_code == 200
    expected: dict[tuple[str, str], dict[str, Any]] = {}
    for key, props in steps:
        model_apply(expected.setdefault(key, {}), props)
    assert {key: sb.group_profile(*key) for key in expected} == expected
    assert sb.group_applied == rows
    counts: dict[tuple[str, str], int] = {}
    for key, _props in steps:
        counts[key] = counts.get(key, 0) + 1
    assert sb.group_applied_counts().to_dict() == counts


# -- group_profiles() ---------------------------------------------------------------------------


def test_group_profiles_frame(sb: Sandbox) -> None:
    rows = [
        group("globex", plan="pro", tags=["a"]),
        group("acme", seats=3),
        group("red", group_type="team", lead="ann"),
        {"group_type": "company", "group_value": "empty"},
    ]
    assert post(sb, rows).status_code == 200
    frame = sb.group_profiles()
    assert list(frame.index.names) == ["group_type", "group_value"]
    assert list(frame.index) == [
        ("company", "acme"),
        ("company", "empty"),
        ("company", "globex"),
        ("team", "red"),
    ]
    assert list(frame.columns) == ["lead", "plan", "seats", "tags"]
    assert frame.loc[("company", "globex"), "tags"] == ["a"]
    assert frame.loc[("company", "acme"), "seats"] == 3
    assert frame.loc[("team", "red"), "lead"] == "ann"
    assert frame.loc[("company", "empty")].isna().all()
    assert math.isnan(frame.loc[("company", "acme"), "lead"])
    counts = sb.group_applied_counts()
    assert counts.name == "applied" and list(counts.index.names) == ["group_type", "group_value"]
    assert counts.to_dict() == {
        ("company", "acme"): 1,
        ("company", "empty"): 1,
        ("company", "globex"): 1,
        ("team", "red"): 1,
    }


def test_empty_group_inspection(sb: Sandbox) -> None:
    frame = sb.group_profiles()
    assert frame.shape == (0, 0) and list(frame.index.names) == ["group_type", "group_value"]
    counts = sb.group_applied_counts()
    assert len(counts) == 0 and counts.dtype == "int64"
    assert list(counts.index.names) == ["group_type", "group_value"]
    assert sb.group_applied == [] and sb.group_profile("company", "acme") == {}


def test_group_profile_is_a_copy(sb: Sandbox) -> None:
    assert post(sb, group(tags=["a"])).status_code == 200
    copy = sb.group_profile("company", "acme")
    copy["tags"].append("mutated")
    assert sb.group_profile("company", "acme") == {"tags": ["a"]}


def test_recorded_group_identifications_are_not_changed_by_later_operations(sb: Sandbox) -> None:
    first = group(tags=["a"])
    assert post(sb, [first, group(**{"$append": {"tags": "b"}})]).status_code == 200
    assert sb.group_applied[0] == group(tags=["a"])
    assert sb.requests[0].identifications is not None
    assert sb.requests[0].identifications[0] == group(tags=["a"])


def test_record_identifications_off_keeps_counts_only() -> None:
    with Sandbox(record_identifications=False) as sb:
        assert post(sb, [group(a=1), group(a=2)]).status_code == 200
        with pytest.raises(SandboxError, match="group_applied_counts"):
            sb.group_applied  # noqa: B018
        assert sb.group_applied_counts().to_dict() == {("company", "acme"): 2}
        assert sb.requests[0].identifications is None
        assert sb.group_profile("company", "acme") == {"a": 2}


def test_repr_counts_groups_and_reset_clears_them(sb: Sandbox) -> None:
    assert "group" not in repr(sb)
    assert post(sb, [group(a=1), group("globex", a=1)]).status_code == 200
    assert repr(sb).endswith(
        ": 1 requests, 0 identifications applied, 0 profiles, "
        "2 group identifications applied, 2 groups>"
    )
    assert sb.api_key not in repr(sb)
    sb.set_faults(reject_groups={"company": "x"}, max_group_identifications=1)
    sb.throttle(groups={"company": "acme"})
    sb.reset()
    assert sb.group_profiles().empty and sb.group_applied == []
    assert len(sb.group_applied_counts()) == 0
    assert sb.faults["reject_groups"] == frozenset()
    assert sb.faults["max_group_identifications"] == 1024 and sb.faults["throttles"] == 0
    assert post(sb, [group(a=1), group("x", a=1)]).status_code == 200


# -- faults -------------------------------------------------------------------------------------


def test_latency_is_added(sb: Sandbox) -> None:
    sb.set_faults(latency=0.3)
    started = time.perf_counter()
    assert post(sb, group(a=1)).status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_503_applies_nothing(sb: Sandbox) -> None:
    sb.set_faults(rate_503=1.0)
    response = post(sb, group(**{"$add": {"n": 1}}))
    assert response.status_code == 503
    assert sb.group_profiles().empty
    (record,) = sb.requests
    assert (record.status, record.applied) == (503, False)


def test_500_after_apply_applies_then_fails(sb: Sandbox) -> None:
    sb.set_faults(rate_500_after_apply=1.0)
    response = post(sb, group(**{"$add": {"n": 1}}))
    assert response.status_code == 500
    assert sb.group_profile("company", "acme") == {"n": 1}
    (record,) = sb.requests
    assert (record.status, record.applied) == (500, True)


def test_drop_after_apply_closes_without_an_answer(sb: Sandbox) -> None:
    sb.set_faults(rate_drop_after_apply=1.0)
    with requests.Session() as session, pytest.raises(requests.ConnectionError):
        post(sb, group(**{"$add": {"n": 1}}), session=session)
    assert sb.group_profile("company", "acme") == {"n": 1}
    (record,) = sb.requests
    assert record.status is None and record.applied
    sb.set_faults(rate_drop_after_apply=0.0)
    assert post(sb, group(**{"$add": {"n": 1}})).status_code == 200
    assert sb.group_profile("company", "acme") == {"n": 2}


def test_random_faults_repeat_with_the_same_seed() -> None:
    def run() -> list[int]:
        with Sandbox(seed=7, rate_503=0.5) as sb:
            return [post(sb, group(n=number)).status_code for number in range(12)]

    first = run()
    assert first == run()
    assert set(first) == {200, 503}


def test_throttle_by_group_for_n_responses_with_a_json_body(sb: Sandbox) -> None:
    sb.throttle(groups={"company": ["hot", "absent"], "team": "hot"}, requests=2)
    rows = [group("cold"), group("hot", a=1), group("hot", group_type="team"), group("hot", b=2)]
    response = post(sb, rows)
    assert response.status_code == 429
    assert response.json() == {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": 30,
        "throttled_devices": {},
        "throttled_users": {},
        "throttled_events": [1, 2, 3],
        "throttled_groups": {"company:hot": 2, "team:hot": 1},
    }
    assert post(sb, [group("cold")]).status_code == 200  # no throttled group: not counted
    assert post(sb, [group("hot", group_type="team")]).status_code == 429
    assert post(sb, rows).status_code == 200  # two 429s given: over
    assert sb.group_applied_counts().to_dict() == {
        ("company", "cold"): 2,
        ("company", "hot"): 2,
        ("team", "hot"): 1,
    }
    assert [r.applied for r in sb.requests] == [False, True, False, True]


def test_throttle_by_group_for_seconds_with_a_text_body(sb: Sandbox) -> None:
    sb.throttle(groups={"company": "hot"}, seconds=0.4, json_body=False)
    response = post(sb, group("hot"))
    assert response.status_code == 429
    assert response.text == "Too many requests for some devices and users"
    time.sleep(0.45)
    assert post(sb, group("hot")).status_code == 200


def test_a_user_throttle_does_not_touch_group_identifications(sb: Sandbox) -> None:
    sb.throttle(user_ids="acme-user")
    assert post(sb, [group("acme-user")]).status_code == 200
    sb.clear_throttle()
    sb.throttle(groups={"company": "acme-user"})
    identify = {"user_id": "acme-user", "groups": {"company": "acme-user"}}
    response = requests.post(
        sb.url,
        data={"api_key": sb.api_key, "identification": json.dumps(identify)},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200  # a user identify only sets membership


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"groups": {}}, "needs user_ids or device_ids"),
        ({"groups": ["company:acme"]}, "must map group types"),
        ({"groups": {"company": 3}}, "strings"),
        ({"groups": {"company": "acme"}, "requests": 0}, "requests"),
    ],
)
def test_impossible_group_throttles_are_refused(
    sb: Sandbox, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(SandboxError, match=message):
        sb.throttle(**arguments)


def test_requests_on_both_endpoints_side_by_side(sb: Sandbox) -> None:
    codes: list[int] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        with requests.Session() as session:
            for step in range(10):
                user = {"user_id": f"user-{number:03d}", "user_properties": {"$add": {"n": 1}}}
                answer = session.post(
                    sb.url,
                    data={"api_key": sb.api_key, "identification": json.dumps(user)},
                    timeout=TIMEOUT,
                )
                row = group(f"g{number}", **{"$add": {"n": step}})
                answer_group = post(sb, row, session=session)
                with lock:
                    codes.extend([answer.status_code, answer_group.status_code])

    threads = [threading.Thread(target=client, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 80
    assert sb.applied_counts().to_dict() == {f"user-{n:03d}": 10 for n in range(4)}
    assert sb.group_profiles()["n"].to_dict() == {("company", f"g{n}"): 45 for n in range(4)}


# -- $groupidentify events on HTTP V2 -----------------------------------------------------------


def test_group_identify_events_are_applied_to_the_group_store(sb: Sandbox) -> None:
    events = [
        group_event({"company": "acme"}, **{"$set": {"plan": "pro"}, "$add": {"seats": 2}}),
        {"event_type": "$identify", "user_id": "user-1", "user_properties": {"a": 1}},
        {**group_event({"company": "acme"}, **{"$add": {"seats": 3}}), "user_id": "user-1"},
        group_event({"team": ["red", "blue"], "company": "globex"}, color="x"),
        {"event_type": "click", "user_id": "user-1"},
    ]
    response = send_v2(sb, events)
    assert response.status_code == 200, response.text
    assert response.json()["events_ingested"] == 5
    assert sb.group_profile("company", "acme") == {"plan": "pro", "seats": 5}
    assert sb.group_profile("team", "red") == sb.group_profile("team", "blue") == {"color": "x"}
    assert sb.group_profile("company", "globex") == {"color": "x"}
    assert sb.profile("user-1") == {"a": 1}  # group properties never reach the user
    assert sb.applied == [events[1]]
    assert sb.group_applied == [events[0], events[2], events[3]]
    assert sb.group_applied_counts().to_dict() == {
        ("company", "acme"): 2,
        ("company", "globex"): 1,
        ("team", "blue"): 1,
        ("team", "red"): 1,
    }


def test_invalid_group_identify_events_reject_the_request_and_say_which(sb: Sandbox) -> None:
    events = [
        group_event({"company": "acme"}, a=1),
        {"event_type": "$groupidentify", "group_properties": {"a": 1}},
        group_event({"company": "acme"}, **{"$remove": {"t": "a"}}),
        group_event({"company": ""}, a=1),
        {**group_event({"company": "acme"}, a=1), "user_id": "abc"},
        group_event({f"t{n}": "v" for n in range(6)}, a=1),
        group_event({"company": []}, a=1),
    ]
    response = send_v2(sb, events)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == (
        "Invalid events: event 1: needs groups naming the group(s) to update "
        "(a $groupidentify event)"
    )
    assert body["events_with_missing_fields"] == {"groups": [1, 6]}
    assert body["events_with_invalid_fields"] == {
        "group_properties": [2],
        "groups": [3, 5],
        "user_id": [4],
    }
    assert sb.group_profiles().empty


def test_group_identify_events_meet_group_throttles_and_poison_groups(sb: Sandbox) -> None:
    sb.throttle(groups={"company": "hot"}, requests=1)
    events = [group_event({"company": "cold"}, a=1), group_event({"company": "hot"}, a=1)]
    response = send_v2(sb, events)
    assert response.status_code == 429
    assert response.json()["throttled_groups"] == {"company:hot": 1}
    assert response.json()["throttled_events"] == [1]
    assert send_v2(sb, events).status_code == 200
    sb.set_faults(reject_groups={"company": "bad"})
    response = send_v2(sb, [group_event({"company": "bad"}, a=1)])
    assert response.status_code == 400 and "reject_groups" in response.json()["error"]
    assert sb.group_applied_counts().to_dict() == {("company", "cold"): 1, ("company", "hot"): 1}


def test_official_sdk_group_identify_reaches_the_group_store(
    sb: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    amplitude = pytest.importorskip("amplitude")
    config = amplitude.Config(
        server_url=sb.http_v2_url, flush_queue_size=100, flush_interval_millis=50
    )
    threads_before = set(threading.enumerate())
    client = amplitude.Amplitude(sb.api_key, configuration=config)
    try:
        client.group_identify(
            "company",
            "acme",
            amplitude.Identify()
            .set("plan", "pro")
            .set_once("since", "2024-01-31")
            .add("seats", 5)
            .append("tags", "a")
            .prepend("owners", "z"),
        )
        client.group_identify(
            "company",
            "acme",
            amplitude.Identify().add("seats", -2).unset("plan"),
            amplitude.EventOptions(user_id="user-sdk-1"),
        )
        client.group_identify("team", "red", amplitude.Identify().set("lead", "ann"))
        for future in client.flush():
            if future is not None:
                future.result(timeout=TIMEOUT)
    finally:
        with caplog.at_level(logging.CRITICAL):
            client.shutdown()
        for thread in set(threading.enumerate()) - threads_before:
            thread.join(timeout=TIMEOUT)
    assert sb.group_profile("company", "acme") == {
        "since": "2024-01-31",
        "seats": 3,
        "tags": ["a"],
        "owners": ["z"],
    }
    assert sb.group_profile("team", "red") == {"lead": "ann"}
    assert {r.status for r in sb.requests} == {200}
    assert sum(r.count for r in sb.requests) == 3
    assert sb.profiles().empty


def test_group_profiles_frame_is_a_dataframe_for_pandas_users(sb: Sandbox) -> None:
    assert post(sb, [group(plan="pro")]).status_code == 200
    frame = sb.group_profiles()
    assert isinstance(frame, pd.DataFrame)
    assert frame.xs("company", level="group_type")["plan"].to_dict() == {"acme": "pro"}


# -- any mix of valid and invalid group identifications: the status follows the rules ------------

DOCUMENTED = ("$set", "$setOnce", "$add", "$append", "$prepend", "$unset")
NAME_VALUES = st.one_of(
    st.sampled_from(["company", "acme", "x", "x" * 1024]),  # valid
    st.sampled_from(["", "x" * 1025]),  # invalid strings
    st.one_of(st.none(), st.integers(), st.booleans(), st.lists(st.just("a"), max_size=1)),
)
PROPERTY_BODIES = st.one_of(
    st.none(),
    GROUP_PROPERTIES,  # valid
    st.dictionaries(  # any operation, documented or not, with numeric or text values
        st.sampled_from([*DOCUMENTED, "$preInsert", "$postInsert", "$remove", "$clearAll", "p"]),
        st.dictionaries(NAMES, st.one_of(st.integers(), st.just("t")), max_size=2),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from([[], "text", 3]),
)


def expected_valid(row: dict[str, Any]) -> bool:
    """The documented rules, re-stated independently of the sandbox's code."""
    for name in ("group_type", "group_value"):
        value = row.get(name)
        if not isinstance(value, str) or not 1 <= len(value) <= 1024:
            return False
    props = row.get("group_properties")
    if props is None:
        return True
    if not isinstance(props, dict):
        return False
    operations = [key for key in props if key.startswith("$")]
    if operations and len(operations) != len(props):
        return False
    for operation in operations:
        if operation not in DOCUMENTED or not isinstance(props[operation], dict):
            return False
        if operation == "$add" and not all(
            isinstance(v, (int, float)) and not isinstance(v, bool)
            for v in props[operation].values()
        ):
            return False
    return True


ROWS = st.lists(
    st.fixed_dictionaries(
        {"group_type": NAME_VALUES, "group_value": NAME_VALUES},
        optional={"group_properties": PROPERTY_BODIES},
    ),
    min_size=1,
    max_size=5,
)


@settings(
    derandomize=True,
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=ROWS)
def test_a_request_is_applied_whole_exactly_when_every_row_follows_the_rules(
    _server: Sandbox, rows: list[dict[str, Any]]
) -> None:
    sb = _server
    sb.reset()
    response = post(sb, rows)
    if all(expected_valid(row) for row in rows):
        assert response.status_code == 200, response.text
        assert sb.group_applied == rows
    else:
        assert response.status_code == 400
        first = next(index for index, row in enumerate(rows) if not expected_valid(row))
        assert error_of(response).startswith(f"identification {first}: ")
        assert sb.group_applied == [] and sb.group_profiles().empty


@settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=STEPS)
def test_group_and_user_properties_change_alike(
    _server: Sandbox, steps: list[tuple[tuple[str, str], dict[str, Any]]]
) -> None:
    sb = _server
    sb.reset()
    rows = [
        {"group_type": kind, "group_value": value, "group_properties": props}
        for (kind, value), props in steps
    ]
    users = [
        {"user_id": f"user-{kind}-{value}", "user_properties": props}
        for (kind, value), props in steps
    ]
    assert post(sb, rows).status_code == 200
    response = requests.post(
        sb.url,
        data={"api_key": sb.api_key, "identification": json.dumps(users)},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    for kind, value in {key for key, _props in steps}:
        assert sb.group_profile(kind, value) == sb.profile(f"user-{kind}-{value}")
