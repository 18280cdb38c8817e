"""The sandbox's HTTP V2 endpoint (``POST /2/httpapi``), including Amplitude's own Python SDK."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest
import requests

from amp_pandas.sandbox import Sandbox

TIMEOUT = 10


def send(
    sb: Sandbox, events: Any, *, api_key: str | None = None, **payload: Any
) -> requests.Response:
    body = {"api_key": sb.api_key if api_key is None else api_key, "events": events, **payload}
    return requests.post(
        sb.http_v2_url,
        data=json.dumps(body),
        timeout=TIMEOUT,
        headers={"Content-Type": "application/json"},
    )


def identify(user_id: str = "user-1", /, **user_properties: Any) -> dict[str, Any]:
    return {"event_type": "$identify", "user_id": user_id, "user_properties": user_properties}


def test_identify_events_are_applied_and_other_events_only_counted(sb: Sandbox) -> None:
    events = [
        identify(**{"$set": {"plan": "pro"}, "$add": {"logins": 2}}),
        {"event_type": "page_view", "user_id": "user-1", "user_properties": {"ignored": 1}},
        {
            "event_type": "$identify",
            "device_id": "device-1",
            "platform": "Web",
            "groups": {"org": "acme"},
            "user_properties": {"$append": {"tags": "a"}},
            "insert_id": "x",
            "time": 1,
        },
    ]
    response = send(sb, events)
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 200 and body["events_ingested"] == 3
    assert body["payload_size_bytes"] == len(response.request.body or b"")  # type: ignore[arg-type]
    assert isinstance(body["server_upload_time"], int) and body["server_upload_time"] > 0
    assert sb.profile("user-1") == {"plan": "pro", "logins": 2}
    assert sb.profile("device-1") == {"platform": "Web", "org": "acme", "tags": ["a"]}
    assert sb.applied == [events[0], events[2]]
    (record,) = sb.requests
    assert (record.path, record.count, record.status, record.applied) == (
        "/2/httpapi",
        3,
        200,
        True,
    )


@pytest.mark.parametrize("api_key", ["wrong", "", None, 42])
def test_bad_key(sb: Sandbox, api_key: Any) -> None:
    body: dict[str, Any] = {"events": [identify(a=1)]}
    if api_key is not None:
        body["api_key"] = api_key
    response = requests.post(sb.http_v2_url, json=body, timeout=TIMEOUT)
    assert response.status_code == 400
    assert response.json()["error"].startswith("Invalid API key")  # the SDK's test
    assert sb.profiles().empty


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'{"api_key": NaN}'])
def test_body_not_a_json_object(sb: Sandbox, body: bytes) -> None:
    response = requests.post(sb.http_v2_url, data=body, timeout=TIMEOUT)
    assert response.status_code == 400 and "Invalid JSON" in response.json()["error"]


@pytest.mark.parametrize("events", [None, [], {"event_type": "x"}])
def test_missing_events(sb: Sandbox, events: Any) -> None:
    response = send(sb, events)
    assert response.status_code == 400
    assert response.json()["missing_field"] == "events"


def test_invalid_events_reject_the_request_and_say_which(sb: Sandbox) -> None:
    events = [
        identify(a=1),
        {"event_type": "click", "user_id": "abc"},
        {"user_id": "user-2"},
        identify(**{"$add": {"n": "x"}}),
        {"event_type": "click"},
        "not an event",
    ]
    response = send(sb, events)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Invalid events: event 1: user_id 'abc' is shorter than 5 characters"
    assert body["events_with_invalid_fields"] == {
        "user_id": [1],
        "user_properties": [3],
        "event": [5],
    }
    assert body["events_with_missing_fields"] == {"event_type": [2], "user_id": [4]}
    assert sb.profiles().empty


def test_non_identify_events_skip_property_rules(sb: Sandbox) -> None:
    response = send(
        sb, [{"event_type": "click", "user_id": "user-1", "user_properties": {"$bogus": 1, "x": 2}}]
    )
    assert response.status_code == 200 and sb.profiles().empty


def test_min_id_length_option(sb: Sandbox) -> None:
    assert send(sb, [identify("abc", a=1)]).status_code == 400
    assert send(sb, [identify("abc", a=1)], options={"min_id_length": 3}).status_code == 200
    assert send(sb, [identify("user-1", a=1)], options={"min_id_length": 10}).status_code == 400
    assert sb.applied_counts().to_dict() == {"abc": 1}


def test_limits_throttle_poison_and_faults(sb: Sandbox) -> None:
    sb.set_faults(max_identifications=2)
    response = send(sb, [identify(a=1)] * 3)
    assert response.status_code == 413 and response.json()["code"] == 413
    sb.set_faults(max_body_bytes=100)
    assert send(sb, [identify(a="x" * 100)]).status_code == 413
    sb.reset()
    sb.set_faults(reject_ids=["user-poison"])
    response = send(sb, [identify("user-poison", a=1)])
    assert response.status_code == 400 and "user-poison" in response.json()["error"]
    sb.reset()
    sb.throttle(user_ids="user-hot", requests=1)
    response = send(sb, [identify(a=1), identify("user-hot", a=1)])
    assert response.status_code == 429
    assert response.json()["throttled_users"] == {"user-hot": 1}
    assert response.json()["throttled_events"] == [1]
    sb.set_faults(rate_503=1.0)
    assert send(sb, [identify(a=1)]).status_code == 503
    assert sb.profiles().empty


def test_official_sdk_sends_identifies_to_the_sandbox(
    sb: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    amplitude = pytest.importorskip("amplitude")
    # A short flush interval: the SDK's consumer thread (not a daemon) waits that long before
    # it can end, and the interpreter waits for it at exit.
    config = amplitude.Config(
        server_url=sb.http_v2_url, flush_queue_size=100, flush_interval_millis=50
    )
    threads_before = set(threading.enumerate())
    client = amplitude.Amplitude(sb.api_key, configuration=config)
    try:
        operations = (
            amplitude.Identify()
            .set("plan", "pro")
            .add("logins", 2)
            .append("tags", "a")
            .set_once("first_seen", "2024-01-31")
        )
        client.identify(operations, amplitude.EventOptions(user_id="user-sdk-1"))
        client.identify(
            amplitude.Identify().add("logins", 3).unset("first_seen"),
            amplitude.EventOptions(user_id="user-sdk-1", device_id="device-sdk"),
        )
        client.set_group("org", ["acme", "globex"], amplitude.EventOptions(user_id="user-sdk-2"))
        client.track(amplitude.BaseEvent("page_view", user_id="user-sdk-1"))
        for future in client.flush():
            if future is not None:
                future.result(timeout=TIMEOUT)
    finally:
        with caplog.at_level(logging.CRITICAL):
            client.shutdown()
        for thread in set(threading.enumerate()) - threads_before:
            thread.join(timeout=TIMEOUT)
    assert sb.profile("user-sdk-1") == {"plan": "pro", "logins": 5, "tags": ["a"]}
    assert sb.profile("user-sdk-2") == {"org": ["acme", "globex"]}
    assert {r.status for r in sb.requests} == {200}
    assert sum(r.count for r in sb.requests) == 4
