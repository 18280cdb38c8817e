"""Sync planning: classification, removed users, revert identifications, digests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amp_pandas._ledger import Ledger
from amp_pandas._sync import (
    ACKNOWLEDGED,
    AMBIGUOUS,
    CHANGED,
    FAILED,
    HELD,
    HELD_REASON,
    IN_FLIGHT,
    KEPT,
    NEW,
    PLAN_STATUSES,
    REVERT,
    SYNC,
    UNCHANGED,
    UNKNOWN,
    LedgerState,
    RevertInfo,
    classify,
    digest_and_idempotent,
    identification_digest,
    key_fields,
    not_undone,
    plan_sync,
    revert_identification,
    revert_info,
    revert_infos_of_rows,
    summarize_user,
    union_by_user,
    user_key,
    user_keys,
)
from amp_pandas.sandbox._profiles import ProfileStore

URL = "http://127.0.0.1:8123/identify"

# --- classification ----------------------------------------------------------------------------

# (outcome, action, same digest, idempotent, retry_ambiguous) -> status, written out by hand
TABLE = [
    (None, None, False, False, False, NEW),
    (None, None, False, True, True, NEW),
    (ACKNOWLEDGED, SYNC, True, False, False, UNCHANGED),
    (ACKNOWLEDGED, SYNC, True, True, False, UNCHANGED),
    (ACKNOWLEDGED, SYNC, False, False, False, CHANGED),
    (FAILED, SYNC, True, False, False, CHANGED),  # last send not applied: send again
    (FAILED, SYNC, False, True, False, CHANGED),
    (UNKNOWN, SYNC, True, True, False, AMBIGUOUS),
    (UNKNOWN, SYNC, False, True, False, AMBIGUOUS),
    (UNKNOWN, SYNC, True, False, False, HELD),
    (UNKNOWN, SYNC, False, False, False, HELD),
    (UNKNOWN, SYNC, True, False, True, AMBIGUOUS),
    (IN_FLIGHT, SYNC, True, False, False, HELD),  # a dead run's in-flight user
    (IN_FLIGHT, SYNC, True, True, False, AMBIGUOUS),
    (ACKNOWLEDGED, REVERT, False, False, False, NEW),  # reverted, then back
    (FAILED, REVERT, True, False, False, HELD),  # the revert's fate is unclear
    (UNKNOWN, REVERT, True, True, False, AMBIGUOUS),
    (ACKNOWLEDGED, KEPT, True, False, False, UNCHANGED),  # let go, back unchanged
    (ACKNOWLEDGED, KEPT, False, False, False, CHANGED),
    (UNKNOWN, KEPT, True, False, False, HELD),
]


@pytest.mark.parametrize(("outcome", "action", "same", "idempotent", "retry", "expected"), TABLE)
def test_classify_table(outcome: Any, action: Any, same: bool, idempotent: bool, retry: bool,
                        expected: int) -> None:
    assert PLAN_STATUSES[classify(outcome, action, same, idempotent, retry)] == \
        PLAN_STATUSES[expected]


def state_of(rows: list[tuple[str, bytes, int, int, RevertInfo | None]]) -> LedgerState:
    reverts: dict[int, RevertInfo] = {}
    ids = []
    for *_, info in rows:
        if info is None:
            ids.append(-1)
        else:
            ids.append(len(reverts))
            reverts[len(reverts)] = info
    return LedgerState(
        keys=np.array([r[0] for r in rows], dtype=object),
        digest=np.array([r[1] for r in rows], dtype="S16"),
        outcome=np.array([r[2] for r in rows], dtype=np.int8),
        action=np.array([r[3] for r in rows], dtype=np.int8),
        revert=np.array(ids, dtype=np.int64),
        reverts=reverts,
        job="j",
    )


def dg(n: int) -> bytes:
    return bytes([n]) * 16


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    known=st.lists(
        st.tuples(st.integers(0, 7), st.sampled_from([IN_FLIGHT, ACKNOWLEDGED, FAILED, UNKNOWN]),
                  st.sampled_from([SYNC, REVERT, KEPT]), st.integers(1, 3)),
        unique_by=lambda t: t[0], max_size=8,
    ),
    new=st.lists(st.tuples(st.integers(0, 7), st.integers(1, 3), st.booleans()),
                 unique_by=lambda t: t[0], max_size=8),
    retry=st.booleans(),
)
def test_plan_agrees_with_classify_user_by_user(
    known: list[tuple[int, int, int, int]], new: list[tuple[int, int, bool]], retry: bool
) -> None:
    state = state_of([(f"user-{k}", dg(g), o, a, None) for k, o, a, g in known])
    plan = plan_sync(state, [f"user-{k}" for k, _, _ in new], [dg(g) for _, g, _ in new],
                     [i for *_, i in new], retry_ambiguous=retry)
    remembered = {f"user-{k}": (o, a, g) for k, o, a, g in known}
    expected = []
    for k, g, idem in new:
        o, a, old = remembered.get(f"user-{k}", (None, None, None))
        expected.append(PLAN_STATUSES[classify(o, a, old == g, idem, retry)])
    assert [PLAN_STATUSES[s] for s in plan.status] == expected
    assert list(plan.send) == [s in ("new", "changed", "ambiguous") for s in expected]
    present = {f"user-{k}" for k, _, _ in new}
    assert sorted(plan.removed) == sorted(
        f"user-{k}" for k, o, a, _ in known
        if (a == SYNC or (a == REVERT and o != ACKNOWLEDGED)) and f"user-{k}" not in present
    )


def test_plan_of_a_hand_built_state() -> None:
    cohort = RevertInfo(set=("cohort",), added=(("campaigns", ('"q2"',)),))
    state = state_of([
        ("same", dg(1), ACKNOWLEDGED, SYNC, cohort),
        ("edited", dg(1), ACKNOWLEDGED, SYNC, cohort),
        ("retry", dg(1), FAILED, SYNC, None),
        ("maybe-safe", dg(1), UNKNOWN, SYNC, cohort),
        ("maybe-adds", dg(1), UNKNOWN, SYNC, cohort),
        ("left", dg(1), ACKNOWLEDGED, SYNC, cohort),
        ("left-unknown", dg(1), UNKNOWN, SYNC, cohort),
        ("kept-earlier", dg(1), ACKNOWLEDGED, KEPT, cohort),
        ("reverted-earlier", b"", ACKNOWLEDGED, REVERT, None),
        ("revert-failed", dg(1), FAILED, REVERT, cohort),  # its revert is sent again
    ])  # fmt: skip
    keys = ["same", "edited", "retry", "maybe-safe", "maybe-adds", "brand-new"]
    plan = plan_sync(state, keys, [dg(1), dg(2), dg(1), dg(1), dg(1), dg(1)],
                     [True, True, True, True, False, False], removed="revert")
    assert dict(zip(keys, (PLAN_STATUSES[s] for s in plan.status), strict=True)) == {
        "same": "unchanged", "edited": "changed", "retry": "changed",
        "maybe-safe": "ambiguous", "maybe-adds": "held", "brand-new": "new",
    }  # fmt: skip
    assert list(plan.send) == [False, True, True, True, False, True]
    assert plan.counts() == {"new": 1, "changed": 2, "unchanged": 1, "ambiguous": 1, "held": 1,
                             "removed": 3}  # fmt: skip
    assert list(plan.removed) == ["left", "left-unknown", "revert-failed"]
    reverts = plan.reverts()
    assert list(reverts["key"]) == ["left", "left-unknown", "revert-failed"]
    assert reverts["identification"][0] == {
        "user_id": "left",
        "user_properties": {"$unset": {"cohort": "-"}, "$remove": {"campaigns": ["q2"]}},
    }
    assert plan_sync(state, keys, [dg(1)] * 6, [True] * 6).reverts()["identification"].isna().all()
    assert "$add, $append, $prepend" in HELD_REASON and "retry_ambiguous=True" in HELD_REASON


def test_plan_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match='"keep" or "revert"'):
        plan_sync(LedgerState.empty(), [], [], [], removed="delete")
    with pytest.raises(ValueError, match="same length"):
        plan_sync(LedgerState.empty(), ["a"], [], [True])


# --- revert infos and identifications ----------------------------------------------------------

# one identification per operation -> (the revert identification, what is left in place);
# every expected payload is written out by hand
U = "user-1"
REVERT_CASES: list[tuple[dict[str, Any], dict[str, Any] | None, list[str]]] = [
    ({"$set": {"plan": "pro"}}, {"$unset": {"plan": "-"}}, []),
    ({"$setOnce": {"first": "2024-01-01"}}, {"$unset": {"first": "-"}}, []),
    ({"plan": "pro", "seats": 3}, {"$unset": {"plan": "-", "seats": "-"}}, []),
    ({"$append": {"tags": "a"}}, {"$remove": {"tags": ["a"]}}, []),
    ({"$prepend": {"tags": ["a", "b"]}}, {"$remove": {"tags": ["a", "b"]}}, []),
    ({"$preInsert": {"tags": 7}}, {"$remove": {"tags": [7]}}, []),
    ({"$postInsert": {"tags": ["x", {"k": 1}]}}, {"$remove": {"tags": ["x", {"k": 1}]}}, []),
    ({"$add": {"logins": 2}}, None, ["$add logins"]),
    ({"$remove": {"tags": "a"}}, None, ["$remove tags"]),
    ({"$unset": {"old": "-"}}, None, ["$unset old"]),
    ({"$clearAll": "-"}, None, ["$clearAll"]),
    ({"$set": {"plan": None}, "$append": {"tags": None}}, None, []),  # nulls change nothing
    ({"$set": {"plan": "pro"}, "$add": {"n": 1}, "$postInsert": {"tags": "q"}},
     {"$unset": {"plan": "-"}, "$remove": {"tags": ["q"]}}, ["$add n"]),
]


@pytest.mark.parametrize(("props", "expected", "left"), REVERT_CASES)
def test_revert_of_each_operation(
    props: dict[str, Any], expected: dict[str, Any] | None, left: list[str]
) -> None:
    info = revert_info([{"user_id": U, "user_properties": props}])
    ident = revert_identification(U, info)
    assert ident == (None if expected is None else {"user_id": U, "user_properties": expected})
    assert not_undone(info) == left
    # the same from the JSON text
    assert revert_info([json.dumps({"user_id": U, "user_properties": props})]) == info


def test_set_and_append_of_one_property_unsets_it_only() -> None:
    info = revert_info([
        {"user_id": U, "user_properties": {"$set": {"tags": ["base"]}}},
        {"user_id": U, "user_properties": {"$append": {"tags": "more", "other": "x"}}},
    ])  # fmt: skip
    assert revert_identification(U, info) == {
        "user_id": U,
        "user_properties": {"$unset": {"tags": "-"}, "$remove": {"other": ["x"]}},
    }


def test_fields_and_groups_are_not_undone() -> None:
    info = revert_info([{"user_id": U, "country": "FR", "groups": {"org": "acme"},
                         "user_properties": {"$set": {"p": 1}}}])  # fmt: skip
    assert not_undone(info) == ["country", "groups"]
    assert revert_identification(U, info) == {
        "user_id": U, "user_properties": {"$unset": {"p": "-"}}
    }


def test_revert_of_a_device_and_of_a_group() -> None:
    info = RevertInfo(set=("plan",), added=(("tags", ('"a"',)),))
    assert revert_identification(user_key(None, "device-9"), info) == {
        "device_id": "device-9",
        "user_properties": {"$unset": {"plan": "-"}, "$remove": {"tags": ["a"]}},
    }
    # group properties have no documented $remove: the added values stay, and say so
    assert revert_identification('\x00\x00["org","acme"]', info, group=True) == {
        "group_type": "org", "group_value": "acme", "group_properties": {"$unset": {"plan": "-"}},
    }
    assert not_undone(info, group=True) == ["values added to tags"]


def test_reverting_with_the_sandbox_undoes_the_job_and_only_it() -> None:
    store = ProfileStore()
    store.apply({"user_id": U, "user_properties": {"$set": {"own": "keep", "tags": ["mine"]}}})
    job_rows = [
        {"user_id": U, "user_properties": {"$set": {"cohort": "q2"}, "$setOnce": {"first": "x"},
                                           "$postInsert": {"tags": "q2"}}},
        {"user_id": U, "user_properties": {"$append": {"campaigns": ["c1", "c2"]},
                                           "$add": {"n": 1}}},
    ]  # fmt: skip
    store.apply_many(job_rows)
    ident = revert_identification(U, revert_info(job_rows))
    assert ident is not None
    store.apply(ident)
    # what the job set or added is gone; $add's effect stays (reported as not undone)
    assert store.profile(U) == {"own": "keep", "tags": ["mine"], "campaigns": [], "n": 1}


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3),
                                                                     children, max_size=3),
    max_leaves=5,
)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(
    a=st.dictionaries(st.sampled_from(["$set", "$setOnce", "$append", "$postInsert", "$add"]),
                      st.dictionaries(st.sampled_from("pqr"), values, max_size=3), max_size=4),
    b=st.dictionaries(st.sampled_from(["$set", "$prepend", "$preInsert", "$remove"]),
                      st.dictionaries(st.sampled_from("pqr"), values, max_size=3), max_size=4),
)
def test_infos_round_trip_and_union_is_what_both_rows_give(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    ia = revert_info([{"user_id": U, "user_properties": a}])
    ib = revert_info([{"user_id": U, "user_properties": b}])
    both = revert_info([{"user_id": U, "user_properties": a}, {"user_id": U, "user_properties": b}])
    assert RevertInfo.from_json(ia.to_json()) == ia
    assert ia.union(ib) == both
    assert ia.union(ia) == ia and ia.union(RevertInfo()) == ia


# --- digests, idempotency, keys ----------------------------------------------------------------


def test_digest_against_hashlib() -> None:
    rows = ['{"user_id":"user-1","user_properties":{"a":1}}', '{"user_id":"user-1"}']
    expected = hashlib.sha256((rows[0] + "\n" + rows[1] + "\n").encode()).digest()[:16]
    assert identification_digest(rows) == expected
    assert identification_digest([r.encode() for r in rows]) == expected
    assert identification_digest(rows[::-1]) != expected
    assert identification_digest(["ab"]) != identification_digest(["a", "b"])


@pytest.mark.parametrize(
    ("op", "idempotent"),
    [("$set", True), ("$setOnce", True), ("$add", False), ("$append", False),
     ("$prepend", False), ("$preInsert", True), ("$postInsert", True), ("$remove", True),
     ("$unset", True)],
)  # fmt: skip
def test_idempotency_of_each_operation(op: str, idempotent: bool) -> None:
    rows = [json.dumps({"user_id": U, "user_properties": {"$set": {"a": 1}}}),
            json.dumps({"user_id": U, "user_properties": {op: {"p": 1}}})]  # fmt: skip
    summary = summarize_user(rows)
    assert summary.idempotent is idempotent
    assert summary.digest == identification_digest(rows)


def test_keys() -> None:
    assert user_key("user-1", "device-1") == "user-1"
    assert user_key(None, "device-1") == "\x00device-1"
    assert user_key("device-1") != user_key(None, "device-1")  # a user id is not a device id
    with pytest.raises(ValueError):
        user_key(None, None)
    keys = user_keys(["user-1", None, None], ["d-1", "d-2", "d-3"])
    assert list(keys) == ["user-1", "\x00d-2", "\x00d-3"]
    assert [key_fields(k) for k in keys] == [
        {"user_id": "user-1"}, {"device_id": "d-2"}, {"device_id": "d-3"}
    ]
    assert list(user_keys(["a", "b"])) == ["a", "b"]


# --- three runs through a real ledger ----------------------------------------------------------


def rows_of(user: str, cohort: str, adds: bool = False) -> list[str]:
    props: dict[str, Any] = {"$set": {"cohort": cohort}, "$postInsert": {"campaigns": cohort}}
    if adds:
        props["$add"] = {"visits": 1}
    return [json.dumps({"user_id": user, "user_properties": props}, separators=(",", ":"))]


def run_job(ledger: Ledger, users: dict[str, list[str]], answers: dict[str, str],
            removed: str = "keep") -> dict[str, Any]:
    """What a sender does: plan under the lock, mark, send (answers given), finish."""
    job = ledger.job("weekly", URL, "key-abc")
    with ledger.begin_run(job) as run:
        summaries = {k: summarize_user(v) for k, v in users.items()}
        keys = list(users)
        plan = plan_sync(run.state(), keys, [summaries[k].digest for k in keys],
                         [summaries[k].idempotent for k in keys], removed=removed)
        sent = [k for k, s in zip(keys, plan.send, strict=True) if s]
        if sent:
            run.mark_in_flight(sent, [summaries[k].digest for k in sent],
                               [summaries[k].revert for k in sent])
            run.mark_done(sent, [answers.get(k, "acknowledged") for k in sent])
        reverts = plan.reverts()
        if removed == "revert":
            todo = [k for k, i in zip(reverts["key"], reverts["identification"], strict=True)
                    if i is not None]
            if todo:
                run.mark_revert_in_flight(todo)
                run.mark_done(todo, [answers.get(k, "acknowledged") for k in todo])
            run.mark_left([k for k in reverts["key"] if k not in todo])
        else:
            run.mark_left(list(reverts["key"]))
    return {"status": dict(zip(keys, (PLAN_STATUSES[s] for s in plan.status), strict=True)),
            "sent": sent, "reverts": reverts}  # fmt: skip


def test_three_runs_of_a_weekly_cohort(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        week1 = {u: rows_of(u, "q2") for u in ("ann", "bob", "cat", "dan")}
        week1["eve"] = rows_of("eve", "q2", adds=True)
        first = run_job(ledger, week1, {"dan": "failed", "eve": "unknown"})
        assert set(first["status"].values()) == {"new"}

        again = run_job(ledger, week1, {})
        assert again["status"] == {"ann": "unchanged", "bob": "unchanged", "cat": "unchanged",
                                   "dan": "changed", "eve": "held"}  # fmt: skip
        assert again["sent"] == ["dan"]

        week3 = {"ann": rows_of("ann", "q2"), "bob": rows_of("bob", "q3"),
                 "fay": rows_of("fay", "q3"), "eve": rows_of("eve", "q2", adds=True)}
        third = run_job(ledger, week3, {}, removed="revert")
        assert third["status"] == {"ann": "unchanged", "bob": "changed", "fay": "new",
                                   "eve": "held"}  # fmt: skip
        reverts = third["reverts"].set_index("key")["identification"].to_dict()
        assert reverts == {
            u: {"user_id": u, "user_properties": {"$unset": {"cohort": "-"},
                                                  "$remove": {"campaigns": ["q2"]}}}
            for u in ("cat", "dan")
        }  # fmt: skip

        fourth = run_job(ledger, week3, {}, removed="revert")
        assert fourth["status"] == {"ann": "unchanged", "bob": "unchanged", "fay": "unchanged",
                                    "eve": "held"}  # fmt: skip
        assert fourth["reverts"].empty  # reverted users are no members any more
        # bob's revert would now undo both cohorts it was tagged with
        state = ledger.state(ledger.job("weekly", URL, "key-abc"))
        bob = state.revert_of(state.index.get_indexer(["bob"]))[0]
        assert bob == RevertInfo(set=("cohort",), added=(("campaigns", ('"q2"', '"q3"')),))


def test_summaries_share_infos_only_when_they_are_equal() -> None:
    def text(user: str, props: dict[str, Any]) -> str:
        return json.dumps({"user_id": user, "user_properties": props})

    a = summarize_user([text("u-1", {"$set": {"p": 1}, "$postInsert": {"t": "x"}})])
    b = summarize_user([text("u-2", {"$set": {"p": 2}, "$postInsert": {"t": "x"}})])
    c = summarize_user([text("u-3", {"$set": {"p": 2}, "$postInsert": {"t": "y"}})])
    e = summarize_user([text("u-4", {"$set": {"p": None}, "$postInsert": {"t": "x"}})])
    f = summarize_user([text("u-5", {"$set": {"p": 1}, "$postInsert": {"t": 1}})])
    g = summarize_user([text("u-6", {"$set": {"p": 1}, "$postInsert": {"t": True}})])
    assert a.revert == b.revert == RevertInfo(set=("p",), added=(("t", ('"x"',)),))
    assert c.revert == RevertInfo(set=("p",), added=(("t", ('"y"',)),))
    assert e.revert == RevertInfo(added=(("t", ('"x"',)),))  # a null sets nothing
    assert f.revert.added == (("t", ("1",)),) and g.revert.added == (("t", ("true",)),)
    two = summarize_user([text("u-7", {"$set": {"p": 1}}), text("u-7", {"$append": {"t": "z"}})])
    assert two.revert == RevertInfo(set=("p",), added=(("t", ('"z"',)),),
                                    non_idempotent=("$append",))  # fmt: skip
    assert two.idempotent is False


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.lists(
    st.dictionaries(st.sampled_from(["$set", "$setOnce", "$add", "$append", "$postInsert",
                                     "$remove", "$unset"]),
                    st.dictionaries(st.sampled_from("pq"), values, max_size=2), max_size=3)
    | st.dictionaries(st.sampled_from("pq"), values, max_size=2),
    min_size=1, max_size=3))
def test_cached_summaries_equal_the_uncached_revert_info(rows: list[dict[str, Any]]) -> None:
    texts = [json.dumps({"user_id": U, "user_properties": r}) for r in rows]
    assert summarize_user(texts).revert == revert_info(texts)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.lists(
    st.dictionaries(st.sampled_from(["$set", "$setOnce", "$add", "$append", "$prepend",
                                     "$postInsert", "$remove"]),
                    st.dictionaries(st.sampled_from(["p", "$add", "q"]),
                                    values | st.just("$append"), max_size=2), max_size=3),
    min_size=1, max_size=3))
def test_quick_idempotency_never_says_idempotent_wrongly(rows: list[dict[str, Any]]) -> None:
    texts = [json.dumps({"user_id": U, "user_properties": r}) for r in rows]
    digest, idempotent = digest_and_idempotent(texts)
    assert digest == identification_digest(texts)
    exact = summarize_user(texts).idempotent
    if not exact:
        assert idempotent is False
    names_clean = all(k not in ("$add", "$append") and v not in ("$add", "$append")
                      for r in rows for body in r.values() for k, v in body.items())
    if names_clean:  # no operation name used as a property name or value: exact
        assert idempotent is exact


# --- revert infos from columns -----------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from([1.0, 2.5]) | \
    st.sampled_from(["a", "b"])


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.data())
def test_columnar_revert_infos_equal_the_rows_own(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 12))
    set_cols = data.draw(st.lists(st.sampled_from(["p", "q", "r"]), unique=True, max_size=3))
    add_cols = data.draw(st.lists(st.sampled_from(["t", "u"]), unique=True, max_size=2))
    set_values = {p: data.draw(st.lists(st.none() | st.integers(0, 1), min_size=n, max_size=n))
                  for p in set_cols}  # fmt: skip
    list_values = {p: data.draw(st.lists(scalars | st.lists(scalars, max_size=3), min_size=n,
                                         max_size=n)) for p in add_cols}  # fmt: skip
    adds = data.draw(st.lists(st.none() | st.integers(1, 3), min_size=n, max_size=n))
    rows = []
    for i in range(n):
        props: dict[str, Any] = {"$set": {p: v[i] for p, v in set_values.items()},
                                 "$postInsert": {p: v[i] for p, v in list_values.items()},
                                 "$add": {"n": adds[i]}}  # fmt: skip
        rows.append({"user_id": U, "user_properties": props})
    infos = revert_infos_of_rows(
        n,
        set_properties={p: np.array([x is not None for x in v]) for p, v in set_values.items()},
        added=list_values,
        irreversible={"$add n": np.array([a is not None for a in adds])},
        non_idempotent={"$add": np.array([a is not None for a in adds])},
    )
    expected = [revert_info([r]) for r in rows]
    # revert_info counts an operation as used even when its only value is null
    expected = [RevertInfo(e.set, e.added, e.irreversible, ("$add",) if "$add n" in
                           e.irreversible else ()) for e in expected]  # fmt: skip
    assert list(infos) == expected

    def given_for(i: int) -> str:
        return json.dumps([[v[i] is None for v in set_values.values()], adds[i] is None,
                           [v[i] for v in list_values.values()]])  # fmt: skip

    for i in range(n):  # rows given the same values share one info object
        for j in range(n):
            if given_for(i) == given_for(j):
                assert infos[i] is infos[j]


def test_columnar_values_of_numpy_and_of_lookalike_types() -> None:
    infos = revert_infos_of_rows(
        5, added={"t": np.array([np.int64(1), 1, True, 1.0, None], dtype=object)}
    )
    assert [i.added for i in infos] == [
        (("t", ("1",)),), (("t", ("1",)),), (("t", ("true",)),), (("t", ("1.0",)),), ()
    ]


def test_union_by_user() -> None:
    a, b, c = RevertInfo(set=("p",)), RevertInfo(added=(("t", ('"x"',)),)), RevertInfo()
    assert union_by_user([1, 0, 1, 2], [a, b, b, a], 4) == [
        b, RevertInfo(set=("p",), added=(("t", ('"x"',)),)), a, c
    ]


@pytest.mark.parametrize("high", [3, 2**40])  # the mixed-radix key, and np.unique past 62 bits
def test_row_patterns_group_equal_rows(high: int) -> None:
    from amp_pandas._sync import _patterns

    rng = np.random.default_rng(high)
    cols = [rng.integers(-1, high, 60) for _ in range(3)]
    cols = [np.concatenate([c, c]) for c in cols]  # every row twice
    inverse, first = _patterns(cols, 120)
    rows = list(zip(*(c.tolist() for c in cols), strict=True))
    for i in range(120):
        assert rows[int(first[inverse[i]])] == rows[i]
        for j in range(120):
            assert (inverse[i] == inverse[j]) == (rows[i] == rows[j])


def test_columnar_nan_adds_nothing() -> None:
    infos = revert_infos_of_rows(3, added={"t": [float("nan"), None, "x"]})
    assert [i.added for i in infos] == [(), (), (("t", ('"x"',)),)]
