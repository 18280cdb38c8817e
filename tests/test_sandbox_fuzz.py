"""Fuzzing the sandbox's request parser: malformed input gets a 4xx answer and the server keeps
answering; a request is applied whole or not at all."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from amp_pandas.sandbox import Sandbox
from amp_pandas.sandbox._parse import unquote_plus_fast

TIMEOUT = 10
FUZZ = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
FUZZ_STRUCTURED = settings(FUZZ, max_examples=80)  # generating these costs more than sending


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(record_identifications=False) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


def still_answers(sb: Sandbox, session: requests.Session) -> None:
    response = session.post(
        sb.url,
        timeout=TIMEOUT,
        data={"api_key": sb.api_key, "identification": '{"user_id": "user-alive"}'},
    )
    assert (response.status_code, response.text) == (200, "success")


def is_4xx(response: requests.Response) -> bool:
    if not 400 <= response.status_code < 500:
        return False
    if response.status_code != 429:
        body = response.json()
        assert body["code"] == response.status_code and isinstance(body["error"], str)
    return True


CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xYz",
        "multipart/form-data",
        'multipart/form-data; boundary="a b"',
        "application/json",
        "text/plain; charset=utf-8",
        "garbage",
    ]
)


@FUZZ
@given(
    body=st.binary(max_size=2000),
    content_type=CONTENT_TYPES,
    path=st.sampled_from(["/identify", "/2/httpapi"]),
)
def test_random_bodies_get_a_4xx(
    sb: Sandbox, session: requests.Session, body: bytes, content_type: str | None, path: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = session.post(
        sb.url.replace("/identify", path), data=body, headers=headers, timeout=TIMEOUT
    )
    assert is_4xx(response)


@st.composite
def multipart_bodies(draw: st.DrawFn) -> bytes:
    """Multipart bodies built from plausible pieces, often slightly wrong."""
    pieces = draw(
        st.lists(
            st.sampled_from(
                [
                    b"--xYz",
                    b"--xYz--",
                    b"\r\n",
                    b"\r\n\r\n",
                    b"Content-Disposition: form-data; ",
                    b'name="api_key"',
                    b'name="identification"',
                    b"name=api_key",
                    b"sandbox-key",
                    b'{"user_id": "user-1"}',
                    b"[",
                    b"]",
                    b"{}",
                    b"\xff\xfe",
                    b"Content-Type: x",
                ]
            ),
            max_size=25,
        )
    )
    return b"".join(pieces)


@FUZZ
@given(body=multipart_bodies())
def test_near_miss_multipart_bodies_get_a_4xx_or_apply_whole(
    sb: Sandbox, session: requests.Session, body: bytes
) -> None:
    before = int(sb.applied_counts().sum())
    response = session.post(
        sb.url,
        data=body,
        timeout=TIMEOUT,
        headers={"Content-Type": "multipart/form-data; boundary=xYz"},
    )
    after = int(sb.applied_counts().sum())
    if response.status_code == 200:  # the pieces happened to form a valid request
        assert after == before + 1
    else:
        assert is_4xx(response) and after == before


@FUZZ
@given(identification=st.text(max_size=300))
def test_random_identification_text_gets_a_4xx(
    sb: Sandbox, session: requests.Session, identification: str
) -> None:
    assume("user_id" not in identification and "device_id" not in identification)
    response = session.post(
        sb.url, timeout=TIMEOUT, data={"api_key": sb.api_key, "identification": identification}
    )
    assert is_4xx(response)


@FUZZ
@given(query=st.text(alphabet=st.characters(codec="ascii"), max_size=300))
def test_random_query_strings_get_a_4xx(sb: Sandbox, session: requests.Session, query: str) -> None:
    assume("user_id" not in query and "device_id" not in query)
    response = session.get(f"{sb.url}?{query}", timeout=TIMEOUT)
    assert is_4xx(response)


JSON_KEYS = st.sampled_from(
    [
        "user_id",
        "device_id",
        "user_properties",
        "groups",
        "platform",
        "country",
        "$set",
        "$setOnce",
        "$add",
        "$append",
        "$prepend",
        "$unset",
        "$preInsert",
        "$postInsert",
        "$remove",
        "$clearAll",
        "$bogus",
        "plan",
        "n",
        "",
    ]
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-10, 10)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["user-1", "device-1", "null", "abc", "-", "x" * 1100, "0"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(JSON_KEYS, children, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ_STRUCTURED
@given(identifications=st.lists(JSON_VALUES, min_size=1, max_size=5), multipart=st.booleans())
def test_structured_identifications_are_applied_whole_or_not_at_all(
    sb: Sandbox, session: requests.Session, identifications: list[Any], multipart: bool
) -> None:
    fields = {"api_key": sb.api_key, "identification": json.dumps(identifications)}
    before = int(sb.applied_counts().sum())
    if multipart:
        response = session.post(
            sb.url, files={k: (None, v) for k, v in fields.items()}, timeout=TIMEOUT
        )
    else:
        response = session.post(sb.url, data=fields, timeout=TIMEOUT)
    after = int(sb.applied_counts().sum())
    if response.status_code == 200:
        assert response.text == "success" and after == before + len(identifications)
    else:
        assert is_4xx(response) and after == before


@FUZZ_STRUCTURED
@given(
    payload=st.dictionaries(
        st.sampled_from(["api_key", "events", "options"]),
        JSON_VALUES | st.lists(JSON_VALUES, max_size=3),
        max_size=3,
    )
)
def test_http_v2_structured_payloads(
    sb: Sandbox, session: requests.Session, payload: dict[str, Any]
) -> None:
    payload["api_key"] = sb.api_key
    response = session.post(sb.http_v2_url, data=json.dumps(payload), timeout=TIMEOUT)
    assert response.status_code == 200 or is_4xx(response)


RAW_REQUESTS = [
    b"\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"POST /identify HTTP/9.9\r\n\r\n",
    b"POST /identify HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /identify HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
    b"POST /identify HTTP/1.1\r\n" + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    b"DELETE /identify HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    b"\x00\x01\x02\xff" * 10 + b"\r\n\r\n",
]


@pytest.mark.parametrize("raw", RAW_REQUESTS, ids=range(len(RAW_REQUESTS)))
def test_raw_garbage_on_the_socket(sb: Sandbox, session: requests.Session, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", sb.port), timeout=TIMEOUT) as connection:
        try:
            connection.sendall(raw)
            answer = connection.recv(200)
        except ConnectionError:
            answer = b""
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500
    still_answers(sb, session)


@FUZZ
@given(raw=st.binary(min_size=1, max_size=300))
def test_random_bytes_on_the_socket(sb: Sandbox, session: requests.Session, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", sb.port), timeout=TIMEOUT) as connection:
        connection.sendall(raw + b"\r\n\r\n")
        connection.shutdown(socket.SHUT_WR)
        try:
            answer = connection.recv(200)
        except ConnectionError:
            answer = b""
    if answer:
        assert answer.startswith(b"HTTP/1.")
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500


def test_the_server_still_answers_after_the_fuzzing(sb: Sandbox, session: requests.Session) -> None:
    still_answers(sb, session)
    assert sb.running


def _outcome(function: Any, text: str) -> Any:
    try:
        return function(text)
    except UnicodeDecodeError:
        return UnicodeDecodeError


@FUZZ
@given(
    text=st.text(max_size=200)
    | st.text(max_size=200).map(quote_plus)
    | st.text(alphabet="%+=2AaFfZz09\r\n ", max_size=40)
)
def test_fast_unquote_agrees_with_unquote_plus(text: str) -> None:
    expected = _outcome(lambda t: unquote_plus(t, errors="strict"), text)
    assert _outcome(unquote_plus_fast, text) == expected
