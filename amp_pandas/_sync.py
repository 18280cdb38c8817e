"""Sync planning: what a run of a job sends, given what the ledger remembers.

A *job* (``sync="name"``) remembers, per user, the digest of the identifications last sent for
that user, the outcome of that send, and what undoes the job's effect (:class:`RevertInfo`).
This module holds that model and the decisions made from it; it does no I/O. The ledger
(:mod:`amp_pandas._ledger`) stores the state and hands it over as a :class:`LedgerState`.

Users are named by a *key*: the ``user_id`` when there is one, else ``"\\x00"`` followed by the
``device_id`` (so that a device id can never be mistaken for a user id of the same text). A
group (a job of ``group_identify``) is two NULs followed by the JSON array
``[group_type, group_value]`` (:func:`group_key`): unambiguous whatever the type and value hold,
and never a user key unless that user's id itself begins with a NUL (a group job and a user job
never share a ledger job anyway: their endpoints differ). :func:`user_key`, :func:`group_key`
and :func:`key_fields` convert.

How a user of the new run is classified (:func:`classify`, a pure function of the user's
remembered state; :func:`plan_sync` applies it to every user at once):

============  ===========================================================================
new           not in the ledger, or its last revert was acknowledged: sent
changed       its identifications differ from the last ones sent, or the last send of them
              failed (was not applied): sent
unchanged     byte for byte the identifications last acknowledged: not sent
ambiguous     the last send may or may not have been applied (``unknown``, or in flight in a
              run that died): sent again because every one of its rows is idempotent, or
              because ``retry_ambiguous=True``
held          as ``ambiguous``, but a row holds a non-idempotent operation (``$add``,
              ``$append``, ``$prepend``): not sent; its rows stay ``unknown`` with a reason
============  ===========================================================================

A *removed* user is one the job still counts as a member (sent in an earlier run, not reverted
and not let go; a revert that failed or may not have landed is sent again) that is absent from
the new run. ``removed="keep"`` sends nothing and lets it go;
``removed="revert"`` sends one identification per such user, built by
:func:`revert_identification`, which undoes what the job did: ``$unset`` of every property the
job set (by ``$set``, ``$setOnce`` or a plain property) and ``$remove`` of every value the job
added to a list (``$append``, ``$prepend``, ``$preInsert``, ``$postInsert``). What cannot be
undone is listed, never guessed: ``$add`` (the amount added is not known to be the amount to
subtract once other sources add too), ``$remove`` and ``$unset`` (the removed values are gone),
``$clearAll``, ``groups`` and the top-level fields.

What a sender computes per user, fastest first: :func:`digest_and_idempotent` (all that planning
needs; no JSON parsed), :func:`revert_infos_of_rows` and :func:`union_by_user` (revert infos
from columns, for the users that will be sent), or :func:`summarize_user` (all three from the
JSON texts, parsed).

Amplitude allows one property in only one operation of an identification. When the job both
set a property and added list values to it (in different runs), the revert ``$unset``\\ s it and
drops the ``$remove``: the whole property goes, values included.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ._amplitude import FIELDS, NON_IDEMPOTENT_OPERATIONS, OPERATIONS, UNSET, UNSET_VALUE

__all__ = [
    "ACKNOWLEDGED",
    "ACTIONS",
    "AMBIGUOUS",
    "CHANGED",
    "DIGEST_BYTES",
    "FAILED",
    "GROUP_KEY_PREFIX",
    "HELD",
    "HELD_REASON",
    "IN_FLIGHT",
    "KEPT",
    "LedgerState",
    "NEW",
    "OUTCOMES",
    "PLAN_STATUSES",
    "REVERT",
    "RevertInfo",
    "SYNC",
    "SyncPlan",
    "UNCHANGED",
    "UNKNOWN",
    "UserSummary",
    "classify",
    "digest_and_idempotent",
    "group_key",
    "identification_digest",
    "identification_digests",
    "key_fields",
    "key_label",
    "plan_sync",
    "revert_identification",
    "revert_info",
    "revert_infos_of_rows",
    "summarize_user",
    "union_by_user",
    "user_key",
    "user_keys",
]

# --- Remembered state ----------------------------------------------------------------------------

#: Outcome of the last send for a user, as stored (small integers, names below).
IN_FLIGHT, ACKNOWLEDGED, FAILED, UNKNOWN = 0, 1, 2, 3
OUTCOMES = ("in_flight", "acknowledged", "failed", "unknown")
#: What that last send was: the job's identifications, a revert, or nothing (a removed user let
#: go with ``removed="keep"``, or one with nothing to undo).
SYNC, REVERT, KEPT = 0, 1, 2
ACTIONS = ("sync", "revert", "kept")

#: Digests are the first 16 bytes of a SHA-256.
DIGEST_BYTES = 16

#: How a user of a new run is classified.
NEW, CHANGED, UNCHANGED, AMBIGUOUS, HELD = 0, 1, 2, 3, 4
PLAN_STATUSES = ("new", "changed", "unchanged", "ambiguous", "held")

#: Why a ``held`` user's rows end ``unknown``.
HELD_REASON = (
    "sync: the last send of this user may or may not have been applied, and a row holds "
    f"{', '.join(sorted(NON_IDEMPOTENT_OPERATIONS))}, which would apply twice; not sent "
    "(retry_ambiguous=True sends it anyway)"
)

_SET_OPERATIONS = frozenset({OPERATIONS["set"], OPERATIONS["set_once"]})
_LIST_OPERATIONS = frozenset(
    {OPERATIONS["append"], OPERATIONS["prepend"], OPERATIONS["pre_insert"],
     OPERATIONS["post_insert"]}
)  # fmt: skip
_REMOVE = OPERATIONS["remove"]
_ID_KEYS = ("user_id", "device_id")


def _plain(value: Any) -> Any:
    """numpy scalars as the Python values JSON knows."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_plain)  # fmt: skip


@dataclass(frozen=True)
class RevertInfo:
    """What undoes a job's effect on one user (or group).

    Attributes
    ----------
    set : tuple of str
        Properties the job set (``$set``, ``$setOnce``, plain properties), sorted.
    added : tuple of (str, tuple of str)
        Per property (sorted), the values the job added to it as canonical JSON texts, in the
        order first added.
    irreversible : tuple of str
        What cannot be undone, sorted: ``"$add logins"``, ``"$remove tags"``, ``"groups"``,
        ``"country"``...
    non_idempotent : tuple of str
        The non-idempotent operations used (``$add``, ``$append``, ``$prepend``), sorted.

    Examples
    --------
    >>> info = revert_info([{"user_id": "user-1", "user_properties": {
    ...     "$set": {"cohort": "q2"}, "$postInsert": {"campaigns": "q2"}}}])
    >>> info.set, info.added
    (('cohort',), (('campaigns', ('"q2"',)),))
    >>> RevertInfo.from_json(info.to_json()) == info
    True
    """

    set: tuple[str, ...] = ()
    added: tuple[tuple[str, tuple[str, ...]], ...] = ()
    irreversible: tuple[str, ...] = ()
    non_idempotent: tuple[str, ...] = ()

    @property
    def undoable(self) -> bool:
        """Whether a revert identification has anything to do."""
        return bool(self.set or self.added)

    def union(self, other: RevertInfo) -> RevertInfo:
        """Everything either holds: what two sends, both possibly applied, may have done."""
        if other is self or not (other.set or other.added or other.irreversible
                                 or other.non_idempotent):
            return self
        if not (self.set or self.added or self.irreversible or self.non_idempotent):
            return other
        added: dict[str, list[str]] = {p: list(v) for p, v in self.added}
        for prop, values in other.added:
            known = added.setdefault(prop, [])
            known.extend(v for v in values if v not in known)
        return RevertInfo(
            set=tuple(sorted({*self.set, *other.set})),
            added=tuple((p, tuple(added[p])) for p in sorted(added)),
            irreversible=tuple(sorted({*self.irreversible, *other.irreversible})),
            non_idempotent=tuple(sorted({*self.non_idempotent, *other.non_idempotent})),
        )

    def to_json(self) -> str:
        """Canonical JSON text (equal infos give equal texts): how the ledger stores it."""
        return _canonical({
            "set": list(self.set),
            "added": {p: [json.loads(v) for v in vals] for p, vals in self.added},
            "irreversible": list(self.irreversible),
            "non_idempotent": list(self.non_idempotent),
        })  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> RevertInfo:
        """The inverse of :meth:`to_json`."""
        data = json.loads(text)
        return cls(
            set=tuple(data.get("set", ())),
            added=tuple((p, tuple(_canonical(v) for v in vals))
                        for p, vals in sorted(data.get("added", {}).items())),
            irreversible=tuple(data.get("irreversible", ())),
            non_idempotent=tuple(data.get("non_idempotent", ())),
        )  # fmt: skip


EMPTY_REVERT = RevertInfo()


def _values(value: Any) -> list[Any]:
    """The values a list operation adds: the items of a list, else the value itself."""
    return list(value) if isinstance(value, list) else [value]


def revert_info(identifications: Iterable[Mapping[str, Any] | str]) -> RevertInfo:
    """What undoes the given identifications of one user (dicts or their JSON texts).

    ``null`` values are ignored (Amplitude ignores them: they change nothing).

    Examples
    --------
    >>> info = revert_info(['{"user_id":"user-1","user_properties":{"plan":"pro"}}',
    ...                     '{"user_id":"user-1","user_properties":{"$add":{"logins":2},'
    ...                     '"$append":{"tags":["a","b"]}}}'])
    >>> info.set, info.added, info.irreversible, info.non_idempotent
    (('plan',), (('tags', ('"a"', '"b"')),), ('$add logins',), ('$add', '$append'))
    """
    sets: set[str] = set()
    added: dict[str, list[str]] = {}
    irreversible: set[str] = set()
    non_idempotent: set[str] = set()
    for item in identifications:
        ident = json.loads(item) if isinstance(item, str | bytes) else item
        for name in ident:
            if name == "groups" or name in FIELDS:
                irreversible.add(name)
        props = ident.get("user_properties") or ident.get("group_properties") or {}
        if not any(k.startswith("$") for k in props):
            sets.update(p for p, v in props.items() if v is not None)
            continue
        for op, body in props.items():
            if op in NON_IDEMPOTENT_OPERATIONS:
                non_idempotent.add(op)
            if not isinstance(body, Mapping):  # $clearAll: "-"
                irreversible.add(op)
                continue
            for prop, value in body.items():
                if value is None:
                    continue
                if op in _SET_OPERATIONS:
                    sets.add(prop)
                elif op in _LIST_OPERATIONS:
                    known = added.setdefault(prop, [])
                    for v in _values(value):
                        text = _canonical(v)
                        if text not in known:
                            known.append(text)
                else:  # $add, $remove, $unset: nothing a later identification can restore
                    irreversible.add(f"{op} {prop}")
    return RevertInfo(
        set=tuple(sorted(sets)),
        added=tuple((p, tuple(added[p])) for p in sorted(added)),
        irreversible=tuple(sorted(irreversible)),
        non_idempotent=tuple(sorted(non_idempotent)),
    )


def identification_digest(texts: Iterable[str | bytes]) -> bytes:
    """The digest of one user's identifications: SHA-256 of their JSON texts, in order.

    Each text is followed by a newline (compact JSON never holds one), so ``["ab"]`` and
    ``["a", "b"]`` differ. 16 bytes.

    Examples
    --------
    >>> identification_digest(['{"user_id":"user-1"}']).hex()
    'a845e9a407604d6ac85680cd7a524af7'
    """
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode() if isinstance(text, str) else text)
        h.update(b"\n")
    return h.digest()[:DIGEST_BYTES]


def identification_digests(data: Any, bounds: Sequence[int] | np.ndarray) -> list[bytes]:
    r""":func:`identification_digest` of many users at once, from one buffer of texts.

    ``data`` (bytes-like, or a ``pyarrow.Buffer``) holds the users' texts back to back, each
    followed by a newline; user ``i``'s texts are ``data[bounds[i]:bounds[i + 1]]``. Nothing is
    decoded, and no Python code runs per user: Arrow cuts the buffer into one ``bytes`` per
    user, ``map`` hashes them, numpy keeps the first 16 bytes of each digest.

    Examples
    --------
    >>> texts = b'{"user_id":"user-1"}\n{"a":1}\n{"b":2}\n'
    >>> identification_digests(texts, [0, 21, 37]) == [
    ...     identification_digest(['{"user_id":"user-1"}']),
    ...     identification_digest(['{"a":1}', '{"b":2}'])]
    True
    """
    offsets = np.ascontiguousarray(bounds, dtype=np.int64)
    n = len(offsets) - 1
    if n <= 0:
        return []
    buffer = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    if offsets[0] < 0 or offsets[-1] > buffer.size or (np.diff(offsets) < 0).any():
        raise ValueError("identification_digests: bounds outside the data, or not in order")
    users = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(offsets), buffer]
    )
    whole = b"".join(map(_DIGEST_OF, map(hashlib.sha256, users.to_numpy(zero_copy_only=False))))
    full = np.frombuffer(whole, dtype=np.uint8).reshape(n, len(whole) // n)
    return full[:, :DIGEST_BYTES].copy().view(f"V{DIGEST_BYTES}").ravel().tolist()


#: ``HASH.digest`` of hashlib's SHA-256 objects (unbound: for ``map``).
_DIGEST_OF = type(hashlib.sha256()).digest


@dataclass(frozen=True)
class UserSummary:
    """What a sync run needs to know of one user's identifications.

    Attributes
    ----------
    digest : bytes
        :func:`identification_digest` of the JSON texts.
    idempotent : bool
        No row holds ``$add``, ``$append`` or ``$prepend``: sending them twice is harmless.
    revert : RevertInfo
        What undoes them.
    """

    digest: bytes
    idempotent: bool
    revert: RevertInfo


_NON_IDEMPOTENT_NAMES = tuple(f'"{op}"' for op in sorted(NON_IDEMPOTENT_OPERATIONS))


def digest_and_idempotent(texts: Sequence[str]) -> tuple[bytes, bool]:
    """What planning needs of one user, without parsing its JSON: the digest, and whether its
    rows are all idempotent.

    Idempotency is read from the text: a row holding the quoted name of a non-idempotent
    operation (``"$add"``, ``"$append"``, ``"$prepend"``) counts as not idempotent, even when
    the name is a property name or a value. That errs on the safe side only (such a user may
    be held when ambiguous, never re-sent wrongly). Compute :func:`revert_info` afterwards, for
    the users that will be sent: an all-unchanged re-run then parses nothing.

    Examples
    --------
    >>> digest_and_idempotent(['{"user_id":"user-1","user_properties":{"$add":{"n":1}}}'])[1]
    False
    """
    idempotent = not any(name in text for text in texts for name in _NON_IDEMPOTENT_NAMES)
    return identification_digest(texts), idempotent


def _object_array(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """A 1-d object array of the values (a list value stays one element)."""
    if isinstance(values, np.ndarray) and values.dtype == object and values.ndim == 1:
        return values
    return np.fromiter(values, dtype=object, count=len(values))


#: ``type`` of each element of an object array (a ufunc: no Python loop).
_TYPE_OF = np.frompyfunc(type, 1, 1)


def _value_codes(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Codes of per-row values: equal JSON values share a code; ``None`` is -1. Type is part
    of the code (``1``, ``1.0`` and ``True`` are different JSON)."""
    arr = _object_array(values)
    try:
        codes, uniques = pd.factorize(arr, use_na_sentinel=True)
    except TypeError:  # lists or dicts: compare their canonical text
        codes, _ = pd.factorize(np.array([None if v is None else _canonical(v) for v in arr],
                                         dtype=object))  # fmt: skip
        return np.asarray(codes, dtype=np.int64)
    if all(type(u) is str for u in uniques):  # texts only: no 1 == 1.0 == True to tell apart
        return np.asarray(codes, dtype=np.int64)
    kinds, names = pd.factorize(_TYPE_OF(arr))
    codes = np.asarray(codes, dtype=np.int64)
    return np.where(codes < 0, -1, codes * len(names) + np.asarray(kinds, dtype=np.int64))


def _patterns(columns: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Number the distinct rows of integer columns (each >= -1): per row its pattern, and per
    pattern its first row. One mixed-radix key when it fits in 62 bits, else ``np.unique``."""
    key = np.zeros(n, dtype=np.int64)
    radix = 1
    for col in columns:
        span = int(col.max(initial=-1)) + 2
        if radix * span >= 1 << 62:
            _, first, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_index=True,
                                          return_inverse=True)  # fmt: skip
            return np.asarray(inverse).reshape(-1), first
        key += (col + 1) * radix
        radix *= span
    codes, uniques = pd.factorize(key)
    first = np.empty(len(uniques), dtype=np.int64)
    first[codes[::-1]] = np.arange(n - 1, -1, -1)
    return codes, first


def revert_infos_of_rows(
    n_rows: int,
    *,
    set_properties: Mapping[str, np.ndarray] | None = None,
    added: Mapping[str, Sequence[Any] | np.ndarray] | None = None,
    irreversible: Mapping[str, np.ndarray] | None = None,
    non_idempotent: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Revert infos of many rows at once, from columns (no JSON parsed): the fast path for a
    build that knows, per column, its operation and property.

    Parameters
    ----------
    n_rows : int
        How many rows.
    set_properties : mapping of str to bool array
        Property -> which rows set it (``$set``, ``$setOnce``, plain; ``False`` where null).
    added : mapping of str to sequence
        Property -> the value each row adds to it with a list operation (``None`` or NaN:
        nothing); a list adds each of its items.
    irreversible : mapping of str to bool array
        What cannot be undone (``"$add logins"``, ``"country"``...) -> which rows do it.
    non_idempotent : mapping of str to bool array
        Non-idempotent operation -> which rows use it.

    Returns
    -------
    ndarray of RevertInfo
        One per row; rows given equal values share one object (looked up once by the ledger).

    Examples
    --------
    >>> infos = revert_infos_of_rows(3, set_properties={"cohort": np.array([True, True, False])},
    ...                              added={"campaigns": ["q2", "q2", None]})
    >>> infos[0] is infos[1], infos[2]
    (True, RevertInfo(set=(), added=(), irreversible=(), non_idempotent=()))
    """
    parts = [("s", p, np.asarray(m, dtype=bool)) for p, m in (set_properties or {}).items()]
    parts += [("i", p, np.asarray(m, dtype=bool)) for p, m in (irreversible or {}).items()]
    parts += [("n", p, np.asarray(m, dtype=bool)) for p, m in (non_idempotent or {}).items()]
    values = {p: _object_array(v) for p, v in (added or {}).items()}
    columns = [m.astype(np.int64) for *_, m in parts]
    columns += [_value_codes(v) for v in values.values()]
    if not columns:
        return np.full(n_rows, EMPTY_REVERT, dtype=object)
    inverse, first = _patterns(columns, n_rows)
    infos = np.empty(len(first), dtype=object)
    for j, row in enumerate(first.tolist()):
        sets = [p for kind, p, m in parts if kind == "s" and m[row]]
        lost = [p for kind, p, m in parts if kind == "i" and m[row]]
        ops = [p for kind, p, m in parts if kind == "n" and m[row]]
        add: list[tuple[str, tuple[str, ...]]] = []
        for p in sorted(values):
            v = values[p][row]
            if v is not None and v == v:  # None, or NaN: nothing added
                texts = list(dict.fromkeys(_canonical(x) for x in _values(v)))
                add.append((p, tuple(texts)))
        infos[j] = RevertInfo(
            set=tuple(sorted(sets)), added=tuple(add), irreversible=tuple(sorted(lost)),
            non_idempotent=tuple(sorted(ops)),
        )
    return infos[inverse]


def union_by_user(user_codes: Sequence[int] | np.ndarray, infos: Sequence[RevertInfo],
                  n_users: int) -> list[RevertInfo]:
    """Each user's revert info: the union of its rows' (``user_codes``: 0..n_users-1 per row,
    in row order).

    Examples
    --------
    >>> a, b = RevertInfo(set=("p",)), RevertInfo(set=("q",))
    >>> union_by_user([0, 1, 0], [a, b, b], 2)
    [RevertInfo(set=('p', 'q'), added=(), irreversible=(), non_idempotent=()), RevertInfo(set=('q',), added=(), irreversible=(), non_idempotent=())]
    """  # noqa: E501
    out: list[RevertInfo | None] = [None] * n_users
    for user, info in zip(np.asarray(user_codes).tolist(), infos, strict=True):
        held = out[user]
        out[user] = info if held is None or held is info else held.union(info)
    return [EMPTY_REVERT if i is None else i for i in out]


#: Revert infos of one identification, by the parts of it a revert info depends on: the
#: names of the properties with a non-null value, for set-like and irreversible operations;
#: the whole body of list operations.
_INFO_CACHE: dict[Any, RevertInfo] = {}
_INFO_CACHE_SIZE = 4096


def _info_of(ident: Mapping[str, Any]) -> RevertInfo:
    props = ident.get("user_properties") or ident.get("group_properties") or {}
    try:
        sig = (
            tuple(k for k in ident if k == "groups" or k in FIELDS),
            tuple((op, repr(body) if op in _LIST_OPERATIONS
                   else tuple(k for k, v in body.items() if v is not None)
                   if isinstance(body, Mapping) else body)
                  for op, body in props.items()),
        )  # fmt: skip
        hash(sig)
    except TypeError:
        return revert_info([ident])
    info = _INFO_CACHE.get(sig)
    if info is None:
        info = revert_info([ident])
        if len(_INFO_CACHE) >= _INFO_CACHE_SIZE:
            _INFO_CACHE.clear()
        _INFO_CACHE[sig] = info
    return info


def summarize_user(texts: Sequence[str]) -> UserSummary:
    """Digest, idempotency and revert info of one user's identifications (JSON texts, in order).

    Identifications that differ only in their ids or in values of ``$set``-like operations
    share one revert info, computed once.

    Examples
    --------
    >>> s = summarize_user(['{"user_id":"user-1","user_properties":{"$add":{"n":1}}}'])
    >>> s.idempotent, s.revert.irreversible, len(s.digest)
    (False, ('$add n',), 16)
    """
    info = EMPTY_REVERT
    for text in texts:
        info = info.union(_info_of(json.loads(text)))
    return UserSummary(identification_digest(texts), not info.non_idempotent, info)


# --- Keys ---------------------------------------------------------------------------------------


def user_key(user_id: str | None, device_id: str | None = None) -> str:
    """The ledger's key for a user: its ``user_id``, else NUL + its ``device_id``.

    Examples
    --------
    >>> user_key("user-1", "device-1"), user_key(None, "device-1")
    ('user-1', '\\x00device-1')
    """
    if user_id is not None:
        return user_id
    if device_id is None:
        raise ValueError("a user key needs a user_id or a device_id")
    return "\x00" + device_id


def user_keys(user_ids: Sequence[Any], device_ids: Sequence[Any] | None = None) -> np.ndarray:
    """:func:`user_key` for whole columns (missing values as ``None`` or NA).

    (Written as a loop: pandas' ``"\x00" + series`` drops the NUL.)
    """
    uid = pd.Series(user_ids, dtype=object)
    if device_ids is None:
        return uid.to_numpy(dtype=object)
    present = uid.notna().to_numpy()
    did = pd.Series(device_ids, dtype=object).to_numpy()
    return np.array(
        [u if p else "\x00" + d for u, p, d in zip(uid.to_numpy(), present, did, strict=True)],
        dtype=object,
    )


#: What begins a group's key (:func:`group_key`).
GROUP_KEY_PREFIX = "\x00\x00"


def group_key(group_type: str, group_value: str) -> str:
    """The ledger's key for a group: two NULs, then ``[group_type, group_value]`` as compact JSON.

    Examples
    --------
    >>> group_key("company", "17")
    '\\x00\\x00["company","17"]'
    >>> key_fields(group_key("org", "a\\x00b"), group=True)
    {'group_type': 'org', 'group_value': 'a\\x00b'}
    """
    return GROUP_KEY_PREFIX + json.dumps([group_type, group_value], ensure_ascii=False,
                                         separators=(",", ":"))  # fmt: skip


def key_label(key: str) -> str:
    """A key in words: the user id, ``device D``, or ``group TYPE VALUE``.

    Examples
    --------
    >>> key_label("user-1"), key_label("\\x00device-1"), key_label(group_key("company", "17"))
    ('user-1', 'device device-1', 'group company 17')
    """
    if key.startswith(GROUP_KEY_PREFIX):
        fields = key_fields(key, group=True)
        return f"group {fields['group_type']} {fields['group_value']}"
    if key.startswith("\x00"):
        return f"device {key[1:]}"
    return key


def key_fields(key: str, *, group: bool = False) -> dict[str, str]:
    """The id fields of an identification for a key (the inverse of :func:`user_key` and
    :func:`group_key`).

    Examples
    --------
    >>> key_fields("user-1"), key_fields("\\x00device-1")
    ({'user_id': 'user-1'}, {'device_id': 'device-1'})
    >>> key_fields(group_key("org", "acme"), group=True)
    {'group_type': 'org', 'group_value': 'acme'}
    """
    if group:
        group_type, value = json.loads(key[len(GROUP_KEY_PREFIX) :])
        return {"group_type": group_type, "group_value": value}
    if key.startswith("\x00"):
        return {"device_id": key[1:]}
    return {"user_id": key}


# --- Revert -------------------------------------------------------------------------------------


def revert_identification(
    key: str, info: RevertInfo, *, group: bool = False
) -> dict[str, Any] | None:
    """The identification that undoes a job's effect on one user, or ``None`` if nothing can.

    ``$unset`` of the properties set; ``$remove`` of the values added, except on a property
    that is ``$unset`` anyway (one property may appear in one operation only). Group properties
    have no documented ``$remove``: their added values stay (see :attr:`RevertInfo.added`).

    Examples
    --------
    >>> info = RevertInfo(set=("cohort",), added=(("campaigns", ('"q2"',)),))
    >>> revert_identification("user-1", info)
    {'user_id': 'user-1', 'user_properties': {'$unset': {'cohort': '-'}, '$remove': {'campaigns': ['q2']}}}
    """  # noqa: E501
    ops: dict[str, dict[str, Any]] = {}
    if info.set:
        ops[UNSET] = {p: UNSET_VALUE for p in info.set}
    if not group:
        removals = {p: [json.loads(v) for v in vals]
                    for p, vals in info.added if p not in info.set}  # fmt: skip
        if removals:
            ops[_REMOVE] = removals
    if not ops:
        return None
    properties = "group_properties" if group else "user_properties"
    return {**key_fields(key, group=group), properties: ops}


def not_undone(info: RevertInfo, *, group: bool = False) -> list[str]:
    """What a revert leaves in place, in words (empty if everything is undone)."""
    left = list(info.irreversible)
    if group:
        left += [f"values added to {p}" for p, _ in info.added if p not in info.set]
    return left


# --- Planning -----------------------------------------------------------------------------------


@dataclass
class LedgerState:
    """What the ledger holds for one job, as columns (one entry per user it knows).

    Attributes
    ----------
    keys : ndarray of object
        The users' keys.
    digest : ndarray of ``S16``
        Digest of the identifications last sent (zero bytes when none: after a revert).
    outcome : ndarray of int8
        :data:`OUTCOMES` code of the last send. ``in_flight`` is read as ``unknown`` when the
        run that wrote it is not alive.
    action : ndarray of int8
        :data:`ACTIONS` code: what the last send was.
    revert : ndarray of int64
        Id of the user's :class:`RevertInfo` in :attr:`reverts` (what may be in effect).
    reverts : dict
        Revert-info id -> :class:`RevertInfo`.
    job : str
        The job's name; ``last_run`` the start of its last run (or ``None``).
    """

    keys: np.ndarray
    digest: np.ndarray
    outcome: np.ndarray
    action: np.ndarray
    revert: np.ndarray
    reverts: dict[int, RevertInfo] = field(default_factory=dict)
    job: str = ""
    last_run: pd.Timestamp | None = None
    _index: pd.Index | None = field(default=None, repr=False)

    @classmethod
    def empty(cls, job: str = "") -> LedgerState:
        """The state of a job that never ran."""
        return cls(
            keys=np.empty(0, dtype=object), digest=np.empty(0, dtype=f"S{DIGEST_BYTES}"),
            outcome=np.empty(0, dtype=np.int8), action=np.empty(0, dtype=np.int8),
            revert=np.empty(0, dtype=np.int64), job=job,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def index(self) -> pd.Index:
        """The keys as a pandas Index (built once), to find users in bulk."""
        if self._index is None:
            self._index = pd.Index(self.keys, dtype=object)
        return self._index

    def positions(self, keys: Sequence[str] | np.ndarray) -> np.ndarray:
        """Each key's position in the state, or -1 (an object Index on both sides: pandas
        would otherwise convert the keys to its string dtype first, at twice the cost)."""
        if not len(self):
            return np.full(len(keys), -1, dtype=np.intp)
        return self.index.get_indexer(pd.Index(np.asarray(keys, dtype=object), dtype=object))

    def member_mask(self) -> np.ndarray:
        """Per user, whether the job counts it as a member: its last action is ``sync``, or a
        revert that was not acknowledged (failed, or unknown: reverting is idempotent, so a
        removed user's revert is sent again until it is acknowledged)."""
        return (self.action == SYNC) | ((self.action == REVERT) & (self.outcome != ACKNOWLEDGED))

    @property
    def members(self) -> int:
        """Users the job counts as members (see :meth:`member_mask`)."""
        return int(self.member_mask().sum())

    def revert_of(self, positions: np.ndarray) -> list[RevertInfo]:
        """The revert infos of the users at ``positions``."""
        return [self.reverts.get(int(r), EMPTY_REVERT) for r in self.revert[positions]]


def classify(
    outcome: int | None, action: int | None, same_digest: bool, idempotent: bool,
    retry_ambiguous: bool = False,
) -> int:
    """How one user of a new run is classified (a :data:`PLAN_STATUSES` code).

    Parameters
    ----------
    outcome, action : int or None
        The user's remembered outcome and action codes; ``None`` if the ledger does not know
        the user. ``in_flight`` means a run that is no longer alive (read as unknown).
    same_digest : bool
        Whether the new identifications are byte for byte the remembered ones.
    idempotent : bool
        Whether every new row is idempotent.
    retry_ambiguous : bool
        Send ambiguous users even when a row is not idempotent.

    Examples
    --------
    >>> PLAN_STATUSES[classify(ACKNOWLEDGED, SYNC, True, False)]
    'unchanged'
    >>> PLAN_STATUSES[classify(UNKNOWN, SYNC, True, False)]
    'held'
    """
    if outcome is None or (action == REVERT and outcome == ACKNOWLEDGED):
        return NEW
    ambiguous = outcome in (UNKNOWN, IN_FLIGHT) or (action == REVERT and outcome != ACKNOWLEDGED)
    if ambiguous:
        return AMBIGUOUS if idempotent or retry_ambiguous else HELD
    if outcome == ACKNOWLEDGED and same_digest:
        return UNCHANGED
    return CHANGED


@dataclass
class SyncPlan:
    """What a sync run will do, user by user.

    Attributes
    ----------
    keys : ndarray of object
        The new run's users, in the order given.
    status : ndarray of int8
        Their :data:`PLAN_STATUSES` codes.
    send : ndarray of bool
        Whether each is sent (``new``, ``changed``, ``ambiguous``). The rows of ``held``
        users end ``unknown`` with :data:`HELD_REASON`.
    removed : ndarray of object
        Keys of the removed users (members of the job absent from the new run).
    removed_revert : list of RevertInfo
        Their revert infos, in the same order.
    removed_mode : str
        ``"keep"`` or ``"revert"``.
    state : LedgerState
        The state the plan was made from.
    """

    keys: np.ndarray
    status: np.ndarray
    send: np.ndarray
    removed: np.ndarray
    removed_revert: list[RevertInfo]
    removed_mode: str
    state: LedgerState

    def counts(self) -> dict[str, int]:
        """Users per plan status, plus ``removed``."""
        counts = np.bincount(self.status.astype(np.int64), minlength=len(PLAN_STATUSES))
        out = {name: int(counts[i]) for i, name in enumerate(PLAN_STATUSES)}
        out["removed"] = len(self.removed)
        return out

    def reverts(self, *, group: bool = False) -> pd.DataFrame:
        """The removed users: key, the identification that reverts them (or ``None``), and what
        it leaves in place. Empty identifications when ``removed="keep"``."""
        rows = []
        for key, info in zip(self.removed, self.removed_revert, strict=True):
            ident = revert_identification(key, info, group=group)
            rows.append({
                "key": key,
                "identification": ident if self.removed_mode == "revert" else None,
                "not_undone": not_undone(info, group=group),
            })  # fmt: skip
        return pd.DataFrame(rows, columns=["key", "identification", "not_undone"])


def plan_sync(
    state: LedgerState,
    keys: Sequence[str] | np.ndarray,
    digests: Sequence[bytes] | np.ndarray,
    idempotent: Sequence[bool] | np.ndarray,
    *,
    removed: str = "keep",
    retry_ambiguous: bool = False,
    positions: np.ndarray | None = None,
) -> SyncPlan:
    """Classify every user of a new run against the job's remembered state.

    Parameters
    ----------
    state : LedgerState
        The job's state, read from the ledger (under the run's lock when about to send).
    keys : sequence of str
        The new run's users (:func:`user_key`), each once.
    digests : sequence of bytes
        Each user's :func:`identification_digest`.
    idempotent : sequence of bool
        Whether each user's rows are all idempotent.
    removed : {"keep", "revert"}
        What becomes of members absent from the new run.
    retry_ambiguous : bool
        Send ambiguous users even when a row is not idempotent.
    positions : ndarray of int, optional
        ``state.positions(keys)``, when the caller has it already.

    Examples
    --------
    >>> state = LedgerState.empty("winback")
    >>> plan = plan_sync(state, ["user-1"], [identification_digest(["{}"])], [True])
    >>> plan.counts()
    {'new': 1, 'changed': 0, 'unchanged': 0, 'ambiguous': 0, 'held': 0, 'removed': 0}
    """
    if removed not in ("keep", "revert"):
        raise ValueError(f'removed= must be "keep" or "revert", not {removed!r}')
    key_arr = np.asarray(keys, dtype=object)
    n = len(key_arr)
    digest_arr = np.asarray(list(digests) if not isinstance(digests, np.ndarray) else digests,
                            dtype=f"S{DIGEST_BYTES}")  # fmt: skip
    idem = np.asarray(idempotent, dtype=bool)
    if not len(digest_arr) == len(idem) == n:
        raise ValueError("keys, digests and idempotent must have the same length")

    pos = state.positions(key_arr) if positions is None else np.asarray(positions)
    known = pos >= 0
    p = pos[known]
    outcome = np.full(n, -1, dtype=np.int8)
    action = np.full(n, -1, dtype=np.int8)
    outcome[known] = state.outcome[p]
    action[known] = state.action[p]
    same = np.zeros(n, dtype=bool)
    same[known] = state.digest[p] == digest_arr[known]

    # the table of classify(), on whole columns (tests hold the two to each other)
    status = np.full(n, CHANGED, dtype=np.int8)
    reverted = (action == REVERT) & (outcome == ACKNOWLEDGED)
    ambiguous = known & ~reverted & (
        (outcome == UNKNOWN) | (outcome == IN_FLIGHT) | (action == REVERT)
    )
    status[known & ~ambiguous & (outcome == ACKNOWLEDGED) & same] = UNCHANGED
    status[ambiguous] = np.where(idem[ambiguous] | retry_ambiguous, AMBIGUOUS, HELD)
    status[~known | reverted] = NEW

    present = np.zeros(len(state), dtype=bool)
    present[p] = True
    removed_pos = np.flatnonzero(state.member_mask() & ~present)
    return SyncPlan(
        keys=key_arr,
        status=status,
        send=(status == NEW) | (status == CHANGED) | (status == AMBIGUOUS),
        removed=state.keys[removed_pos],
        removed_revert=state.revert_of(removed_pos),
        removed_mode=removed,
        state=state,
    )
