"""The sandbox's hot path (``ProfileStore.apply_many``, with some operations inlined) against
the plain operation functions it must match, on random identifications."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from amp_pandas.sandbox._profiles import _OPERATIONS, _RANK, ProfileStore, _thaw

USERS = st.sampled_from(["user-1", "user-2", "user-3"])
NAMES = st.sampled_from(["a", "tags"])
SCALARS = st.one_of(  # few distinct values, so that operations meet what is already there
    st.sampled_from(["x", "y", "z" * 1030, "z" * 1024]),
    st.none(),
    st.booleans(),
    st.integers(0, 1),
    st.sampled_from([1.0, 0.5, "1", "true"]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
OPERATIONS = st.sampled_from(["$set", "$setOnce", "$add", "$postInsert", "$append", "$unset"])


@st.composite
def identification(draw: Any) -> dict[str, Any]:
    props: dict[str, dict[str, Any]] = {}
    for operation in draw(st.lists(OPERATIONS, min_size=1, max_size=3, unique=True)):
        numeric = st.one_of(st.integers(-3, 3), st.floats(-2, 2, allow_nan=False))
        value = draw(numeric if operation == "$add" else VALUES)
        props[operation] = {draw(NAMES): "-" if operation == "$unset" else value}
    return {"user_id": draw(USERS), "user_properties": props}


def reference(identifications: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each operation through its own function, in Amplitude's order: no inlining."""
    profiles: dict[str, dict[str, Any]] = {}
    for ident in identifications:
        props = profiles.setdefault(ident["user_id"], {})
        for operation, body in sorted(ident["user_properties"].items(), key=lambda i: _RANK[i[0]]):
            _OPERATIONS[operation](props, body)
    return profiles


@settings(max_examples=300, deadline=None)
@given(st.lists(identification(), min_size=1, max_size=12))
def test_apply_many_matches_the_operation_functions(identifications: list[dict[str, Any]]) -> None:
    sent = copy.deepcopy(identifications)
    store = ProfileStore()
    store.apply_many(identifications)
    stored = reference(copy.deepcopy(sent))
    assert store.profiles == stored  # stored alike, tuples included
    expected = {user: _thaw(props) for user, props in stored.items()}
    assert store.snapshot() == expected
    # the same types too (True is not 1), and what was sent is left as it was
    snapshot = store.snapshot()
    for user, props in expected.items():
        for name, value in props.items():
            assert type(snapshot[user][name]) is type(value)
            if isinstance(value, list):
                assert [type(v) for v in snapshot[user][name]] == [type(v) for v in value]
    assert identifications == sent  # what was sent is left as it was
