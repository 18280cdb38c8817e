"""The preview's data: ``preview.payloads`` (a lazy sequence) and sending a preview once."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import amp_pandas  # noqa: F401  (registers df.amplitude)
from amp_pandas import IdentifyPreview
from amp_pandas.errors import AlreadySentError, MissingApiKeyError, SendError
from amp_pandas.sandbox import Sandbox


def expected(i: int) -> dict[str, Any]:
    """The identification of row ``i`` of :func:`numbered`, written by hand."""
    return {"user_id": f"user-{i:06d}", "user_properties": {"$set": {"n": i}}}


def numbered(n: int) -> pd.DataFrame:
    return pd.DataFrame({"uid": [f"user-{i:06d}" for i in range(n)], "n": np.arange(n)})


def dry(df: pd.DataFrame, **kwargs: Any) -> IdentifyPreview:
    return df.amplitude.identify(user_id="uid", set=["n"], dry_run=True, **kwargs)


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch):
    """Watch a preview's payloads: how many rows each read of the plan's texts asks for."""

    def watch(preview: IdentifyPreview) -> list[int]:
        asked: list[int] = []
        payload = preview.plan.payload
        original = payload.texts

        def texts(rows: np.ndarray) -> list[str]:
            asked.append(len(rows))
            return original(rows)

        monkeypatch.setattr(payload, "texts", texts)
        return asked

    return watch


# ----------------------------------------------------------------- payloads
def test_indexing_and_slicing_build_only_the_rows_asked_for(decoded) -> None:
    n = 50_000
    preview = dry(numbered(n))
    asked = decoded(preview)
    payloads = preview.payloads
    assert len(payloads) == n
    assert asked == []  # len reads no row
    assert payloads[:5] == [expected(i) for i in range(5)]
    assert asked == [5]
    assert payloads[-1] == expected(n - 1)
    assert payloads[-n] == expected(0)
    assert payloads[12_345] == expected(12_345)
    assert payloads[10:20:3] == [expected(10), expected(13), expected(16), expected(19)]
    assert payloads[-3:] == [expected(n - 3), expected(n - 2), expected(n - 1)]
    assert payloads[7:7] == [] and payloads[n + 5 :] == []
    assert asked == [5, 1, 1, 1, 4, 3]  # the empty slices read nothing
    assert isinstance(payloads[:2], list)


def test_iteration_reads_in_chunks_not_the_whole_frame(decoded) -> None:
    preview = dry(numbered(5_000))
    asked = decoded(preview)
    it = iter(preview.payloads)
    assert [next(it) for _ in range(3)] == [expected(0), expected(1), expected(2)]
    assert asked == [1000]
    assert sum(1 for _ in preview.payloads) == 5_000


def test_payloads_skip_rows_that_are_not_sent_and_positions_count_sent_rows() -> None:
    df = pd.DataFrame({"uid": ["user-a", "null", "user-c", "u4", "user-e"], "n": [1, 2, 3, 4, 5]})
    payloads = dry(df).payloads
    sent = [
        {"user_id": "user-a", "user_properties": {"$set": {"n": 1}}},
        {"user_id": "user-c", "user_properties": {"$set": {"n": 3}}},
        {"user_id": "user-e", "user_properties": {"$set": {"n": 5}}},
    ]
    assert len(payloads) == 3
    assert list(payloads) == sent
    assert payloads[1] == sent[1] and payloads[-1] == sent[2]
    assert payloads == sent and payloads == tuple(sent)
    assert payloads != sent[:2] and payloads != [*sent[:2], {"user_id": "other"}]
    assert repr(payloads) == repr(sent)


@pytest.mark.parametrize("position", [3, -4, 10**9])
def test_out_of_range_is_an_index_error(position: int) -> None:
    payloads = dry(numbered(3)).payloads
    with pytest.raises(IndexError, match="out of range: 3 rows are sent"):
        payloads[position]


@pytest.mark.parametrize("key", ["user-000001", 1.0, True, None])
def test_other_keys_are_a_type_error_that_points_to_payload(key: Any) -> None:
    payloads = dry(numbered(3)).payloads
    with pytest.raises(TypeError, match=r"preview\.payload\(label\)"):
        payloads[key]


def test_repr_of_many_payloads_does_not_build_them(decoded) -> None:
    preview = dry(numbered(20_000))
    asked = decoded(preview)
    assert repr(preview.payloads) == (
        "<20,000 payloads: read them with payloads[i], payloads[:10] or list(payloads)>"
    )
    assert asked == []


def test_no_valid_rows() -> None:
    payloads = dry(pd.DataFrame({"uid": ["null"], "n": [1]})).payloads
    assert len(payloads) == 0 and list(payloads) == [] and payloads == [] and payloads[:3] == []
    assert repr(payloads) == "[]"


# ----------------------------------------------------------------- sending once
def adds(sb: Sandbox, **kwargs: Any) -> IdentifyPreview:
    df = pd.DataFrame({"uid": ["user-1", "user-2"], "n": [5, 7], "tag": ["a", "b"]})
    kwargs.setdefault("api_key", sb.api_key)
    return df.amplitude.identify(
        user_id="uid", add=["n"], append=["tag"], dry_run=True, server_url=sb.url, **kwargs
    )


def test_a_second_send_is_refused_and_nothing_is_applied_twice() -> None:
    with Sandbox() as sb:
        preview = adds(sb)
        assert not preview.sent
        first = preview.send(progress=False)
        assert preview.sent and preview.result is first
        n_requests = len(sb.requests)
        with pytest.raises(AlreadySentError) as info:
            preview.send(progress=False)
        assert len(sb.requests) == n_requests
        assert sb.profile("user-1") == {"n": 5, "tag": ["a"]}
        assert sb.profile("user-2") == {"n": 7, "tag": ["b"]}
    error = info.value
    assert isinstance(error, SendError)
    assert error.result is first and preview.result is first
    message = str(error)
    assert "sent already" in message and "$add, $append and $prepend" in message
    assert "preview.send(force=True)" in message and "build a new preview" in message


def test_force_sends_again() -> None:
    with Sandbox() as sb:
        preview = adds(sb)
        preview.send(progress=False)
        second = preview.send(force=True, progress=False)
        assert second.status.tolist() == ["success", "success"]
        assert preview.result is second
        assert sb.profile("user-1") == {"n": 10, "tag": ["a", "a"]}


@pytest.mark.parametrize("force", ["yes", 1, None])
def test_force_must_be_a_bool(force: Any) -> None:
    with Sandbox() as sb:
        preview = adds(sb)
        with pytest.raises(TypeError, match="force must be True or False"):
            preview.send(force=force, progress=False)
        assert len(sb.requests) == 0 and not preview.sent


def test_a_send_that_never_started_does_not_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)
    with Sandbox() as sb:
        preview = adds(sb, api_key=None)
        with pytest.raises(MissingApiKeyError):
            preview.send(progress=False)
        assert not preview.sent and preview.result is None
        result = preview.send(api_key=sb.api_key, progress=False)
        assert result.status.tolist() == ["success", "success"]
        assert sb.profile("user-2") == {"n": 7, "tag": ["b"]}


def test_a_send_stopped_by_a_rejected_key_counts_as_sent() -> None:
    with Sandbox(api_key="the-right-key-0123456789") as sb:
        df = pd.DataFrame({"uid": ["user-1"], "n": [5]})
        preview = df.amplitude.identify(
            user_id="uid", add=["n"], dry_run=True, server_url=sb.url, api_key="wrong-key-000000"
        )
        with pytest.raises(amp_pandas.errors.AuthenticationError) as info:
            preview.send(progress=False)
        assert preview.sent and preview.result is info.value.result
        with pytest.raises(AlreadySentError):
            preview.send(progress=False)


# ----------------------------------------------------------------- as a sequence, any key
_SEVEN = numbered(7)
_SEVEN.loc[[2, 5], "uid"] = ["null", "n/a"]  # two rows not sent: positions count sent rows
_SENT = [expected(i) for i in (0, 1, 3, 4, 6)]


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    start=st.none() | st.integers(-8, 8),
    stop=st.none() | st.integers(-8, 8),
    step=st.none() | st.integers(-3, 3).filter(bool),
    position=st.integers(-5, 4),
)
def test_indexing_and_slicing_agree_with_a_list(
    start: int | None, stop: int | None, step: int | None, position: int
) -> None:
    payloads = dry(_SEVEN).payloads
    assert payloads[start:stop:step] == _SENT[start:stop:step]
    assert payloads[position] == _SENT[position]
