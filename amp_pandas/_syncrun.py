"""A sync run of ``identify`` or ``group_identify`` (``sync="job"``): the job's plan, its send, and
its removed users (or groups).

The bridge between a built plan, the ledger (:mod:`amp_pandas._ledger`, storage) and the
planning rules (:mod:`amp_pandas._sync`, no I/O):

- :func:`sync_options` checks ``sync=``, ``ledger=``, ``removed=`` (without ``sync=`` nothing
  else happens and no ledger is touched);
- :func:`group_users` names each valid row's user (its ``user_id``, else its ``device_id``; for
  a plan of group identifications, its group: :func:`~amp_pandas._sync.group_key`) and
  computes per user the digest of its identifications and whether they are all idempotent;
- :class:`SyncKind` holds what differs between a job of users and a job of groups (the noun,
  the id columns of ``result.removed``, how a revert is sent): :data:`USERS` or :data:`GROUPS`,
  chosen by the plan (:func:`sync_kind`);
- :func:`preview_sync` reads the job's state (reads only; a missing ledger file is not created)
  and plans against it, for the dry run;
- :func:`send_sync` takes the job's lock, plans again from the state under it, sends the users
  that need it through :func:`~amp_pandas._send.send_plan` with :class:`LedgerObserver` (each
  request's users in flight before it leaves, their outcome after the answer), then handles the
  removed users (let go, or one revert identification each, sent the same way).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ._amplitude import (
    MAX_GROUP_IDENTIFICATIONS,
    MAX_GROUP_PROPERTIES,
    NON_IDEMPOTENT_OPERATIONS,
    OPERATIONS,
    UNSET,
)
from ._config import SendSettings, require_key
from ._ledger import OUTCOME_OF_STATUS, Ledger, Run, default_path
from ._payloads import ArrowPayloads, Ids, Payloads, TextPayloads, text_bounds
from ._plan import VALID, Plan, empty_problems
from ._progress import ProgressCallback
from ._result import STATUSES, UNCHANGED, UNKNOWN, SendResult
from ._send import send_plan, user_stacklevel
from ._spec import GroupSpec, IdentifySpec, Literal
from ._sync import (
    ACKNOWLEDGED,
    DIGEST_BYTES,
    FAILED,
    HELD,
    HELD_REASON,
    OUTCOMES,
    LedgerState,
    SyncPlan,
    group_key,
    identification_digest,
    identification_digests,
    key_fields,
    plan_sync,
    revert_infos_of_rows,
    summarize_user,
    union_by_user,
    user_keys,
)
from ._sync import (
    UNCHANGED as PLAN_UNCHANGED,
)
from ._sync import (
    UNKNOWN as OUTCOME_UNKNOWN,
)
from .errors import (
    AmpPandasWarning,
    ArgumentError,
    InterruptedSendWarning,
    RowsNotSucceededWarning,
    SendError,
)

__all__ = [
    "GROUPS",
    "GROUP_REMOVED_COLUMNS",
    "REMOVED_COLUMNS",
    "USERS",
    "LedgerObserver",
    "LazyReverts",
    "RevertColumns",
    "SyncKind",
    "SyncOptions",
    "SyncPreview",
    "UserGroups",
    "group_revert_columns",
    "group_users",
    "plan_users",
    "preview_sync",
    "revert_columns",
    "revert_infos",
    "send_sync",
    "sync_kind",
    "sync_options",
]

REMOVED_MODES = ("keep", "revert")
#: Columns of ``result.removed``.
REMOVED_COLUMNS = ["user_id", "device_id", "identification", "status", "error", "not_undone"]
#: Columns of ``result.removed`` for a job of groups.
GROUP_REMOVED_COLUMNS = ["group_type", "group_value", "identification", "status", "error",
                         "not_undone"]  # fmt: skip
#: Rows whose texts are read at a time when digesting.
_CHUNK = 65_536


@dataclass(frozen=True)
class SyncKind:
    """What differs between a sync job of users (``identify``) and one of groups
    (``group_identify``); everything else (planning, the ledger, the lock, the observer) is
    shared.

    Attributes
    ----------
    noun : str
        What one member is called in counts and messages (``"user"``, ``"group"``).
    group : bool
        Keys are :func:`~amp_pandas._sync.group_key` s; reverts are group identifications
        (``$unset`` only: group properties have no ``$remove``).
    removed_columns : list of str
        The columns of ``result.removed`` (its id columns first).
    """

    noun: str
    group: bool
    removed_columns: list[str]

    @property
    def id_columns(self) -> list[str]:
        """The id columns of ``result.removed``."""
        return self.removed_columns[:2]

    @property
    def held_reason(self) -> str:
        """Why a held member's rows end ``unknown``."""
        return HELD_REASON if not self.group else HELD_REASON.replace("this user", "this group")

    def revert_plan(self, identifications: list[dict[str, Any]]) -> Plan:
        """A plan of the revert identifications, sent to this kind's endpoint with its limits."""
        if not self.group:
            return Plan.from_identifications(identifications)
        return _group_revert_plan(identifications)


#: A job of ``identify``: members are users.
USERS = SyncKind("user", False, REMOVED_COLUMNS)
#: A job of ``group_identify``: members are groups.
GROUPS = SyncKind("group", True, GROUP_REMOVED_COLUMNS)


def sync_kind(plan: Plan) -> SyncKind:
    """:data:`GROUPS` for a plan of group identifications, else :data:`USERS`."""
    return USERS if plan.group is None else GROUPS


def _group_revert_plan(identifications: list[dict[str, Any]]) -> Plan:
    """A plan of group revert identifications (``$unset`` only: idempotent), one lane each,
    under the Group Identify API's limits per request."""
    n = len(identifications)
    text = np.empty(n, dtype=object)
    text[:] = [json.dumps(i, separators=(",", ":"), ensure_ascii=False) for i in identifications]
    names = np.empty(n, dtype=object)
    names[:] = [f"{i['group_type']}:{i['group_value']}" for i in identifications]
    touched = [sum(len(body) for body in i["group_properties"].values()) for i in identifications]
    return Plan.from_parts(
        index=pd.RangeIndex(n), state=np.zeros(n, dtype=np.int8), payload=TextPayloads(text),
        user_id=Ids.none(n), device_id=Ids.none(n), idempotent=np.ones(n, dtype=bool),
        reason=np.full(n, None, dtype=object), problems=empty_problems(),
        group=Ids(np.arange(n, dtype=np.int64), names),
        properties=np.asarray(touched, dtype=np.int64), max_rows=MAX_GROUP_IDENTIFICATIONS,
        max_properties=MAX_GROUP_PROPERTIES,
    )  # fmt: skip


@dataclass(frozen=True)
class SyncOptions:
    """What ``sync=``, ``ledger=`` and ``removed=`` asked for."""

    name: str
    ledger: Path | None
    removed: str

    @property
    def ledger_path(self) -> Path:
        """The ledger file: ``ledger=``, else the default (``$AMP_PANDAS_LEDGER``...)."""
        return self.ledger if self.ledger is not None else default_path()


def sync_options(sync: Any, ledger: Any, removed: Any) -> SyncOptions | None:
    """Check the sync arguments; ``None`` without ``sync=`` (and then nothing else may be set).

    Examples
    --------
    >>> sync_options("winback", None, "revert").removed
    'revert'
    >>> sync_options(None, None, "keep") is None
    True
    """
    if not isinstance(removed, str) or removed not in REMOVED_MODES:
        raise ArgumentError(f'removed= must be "keep" or "revert", not {removed!r}')
    if ledger is not None and not isinstance(ledger, str | os.PathLike):
        raise ArgumentError(
            f"ledger= takes the path of the ledger file (a str or a Path), not "
            f"{type(ledger).__name__} {ledger!r}"
        )
    if sync is None:
        if ledger is not None:
            raise ArgumentError("ledger= is used by sync runs only; pass sync= a job name too")
        if removed != "keep":
            raise ArgumentError(
                f'removed="{removed}" needs a sync job: pass sync= a job name (the job '
                "remembers who was sent, so that it can tell who left)"
            )
        return None
    if not isinstance(sync, str) or not sync.strip():
        raise ArgumentError(
            f"sync= takes a job name (a non-empty string such as 'winback-q2'), not "
            f"{type(sync).__name__} {sync!r}"
        )
    path = None if ledger is None else Path(os.fspath(ledger)).expanduser()
    return SyncOptions(sync, path, removed)


# --- users of a plan ----------------------------------------------------------------------------


@dataclass
class UserGroups:
    """The users of a plan's valid rows, and the digests of their identifications (computed
    when first asked for: a first run needs none before it starts sending).

    Attributes
    ----------
    rows : ndarray of int64
        The valid rows (positions).
    code : ndarray of int64
        Per row of the plan, its user's number (-1 for rows that are not valid).
    keys : ndarray of object
        Per user, its ledger key (:func:`~amp_pandas._sync.user_key`).
    idempotent : ndarray of bool
        Per user, whether every row is idempotent.
    n_rows : ndarray of int64
        Per user, its number of valid rows.
    """

    rows: np.ndarray
    code: np.ndarray
    keys: np.ndarray
    idempotent: np.ndarray
    n_rows: np.ndarray
    payload: Payloads = field(repr=False)
    kind: SyncKind = field(default=USERS, repr=False)
    _digest: np.ndarray = field(init=False, repr=False)
    _sorted: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)
    _by_user: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._digest = np.full(len(self.keys), None, dtype=object)

    def __len__(self) -> int:
        return len(self.keys)

    def user_rows(self, users: np.ndarray) -> np.ndarray:
        """The valid rows of ``users`` (user numbers), user by user, in row order."""
        if len(self.rows) == len(self.keys):  # one row per user
            if self._by_user is None:
                self._by_user = np.empty(len(self.keys), dtype=np.int64)
                self._by_user[self.code[self.rows]] = self.rows
            return self._by_user[users]
        if self._sorted is None:
            codes = self.code[self.rows]
            order = np.argsort(codes, kind="stable")
            starts = np.concatenate(([0], np.cumsum(self.n_rows))).astype(np.int64)
            self._sorted = (self.rows[order], starts)
        sorted_rows, starts = self._sorted
        if not len(users):
            return np.empty(0, dtype=np.int64)
        return np.concatenate([sorted_rows[starts[u] : starts[u + 1]] for u in users.tolist()])

    def digests(self, users: np.ndarray) -> list[bytes]:
        """The digests of ``users`` (user numbers): of each one's JSON texts, in row order.

        From Arrow payloads the texts are written once into one buffer (each followed by the
        newline the digest puts after it) and hashed in place; a user's rows are contiguous
        there, so a user of many rows is one slice."""
        users = np.asarray(users, dtype=np.int64)
        todo = users[pd.isna(self._digest[users])] if len(users) else users
        todo = _each_once(todo)
        render = self.payload.render if isinstance(self.payload, ArrowPayloads) else None
        for start in range(0, len(todo), _CHUNK):
            part = todo[start : start + _CHUNK]
            rows = self.user_rows(part)
            counts = self.n_rows[part]
            if render is not None:
                text = render(rows, close="}\n")
                data, bounds = text_bounds(text)
                if len(rows) != len(part):  # users of several rows: one slice each
                    bounds = bounds[np.concatenate(([0], np.cumsum(counts)))]
                self._digest[part] = identification_digests(data, bounds)
                continue
            texts = self.payload.texts(rows)
            if len(rows) == len(part):
                self._digest[part] = [identification_digest((t,)) for t in texts]
                continue
            out, at = [], 0
            for c in counts.tolist():
                out.append(identification_digest(texts[at : at + c]))
                at += c
            self._digest[part] = out
        return self._digest[users].tolist()

    def digests_from_request(self, rows: np.ndarray, texts: Any) -> None:
        """Digest, from a request's texts written ahead (:meth:`ArrowPayloads.request_texts
        <amp_pandas._payloads.ArrowPayloads.request_texts>` of ``rows``: each text ends in
        ``"},"``), the users of ``rows`` that have that one row, so that :meth:`digests` finds
        them done; the texts are not written a second time. The others are left as they are.
        """
        if not isinstance(texts, pa.Array) or len(texts) != len(rows) or not len(rows):
            return
        users = self.code[rows]
        ours = (users >= 0) & (self.n_rows[np.maximum(users, 0)] == 1)
        ours &= pd.isna(self._digest[np.maximum(users, 0)])
        if not ours.any():
            return
        data, bounds = text_bounds(texts)
        lo, hi = int(bounds[0]), int(bounds[-1])
        # the same bytes as digests() hashes: each text followed by a newline, not a comma
        buf = np.frombuffer(data, dtype=np.uint8, count=hi - lo, offset=lo).copy()
        buf[bounds[1:] - lo - 1] = 0x0A
        at = np.flatnonzero(ours)
        digests = np.empty(len(rows), dtype=object)
        digests[:] = identification_digests(buf, bounds - lo)  # every row: no Python loop
        self._digest[users[at]] = digests[at]

    def digest_array(self, users: np.ndarray) -> np.ndarray:
        """Every user's digest as ``S16``, computed for ``users`` only (zeros elsewhere)."""
        out = np.zeros(len(self.keys), dtype=f"S{DIGEST_BYTES}")
        if len(users):
            out[users] = self.digests(users)
        return out


def _each_once(users: np.ndarray) -> np.ndarray:
    """``users`` (numbers) with repeats dropped, in first-seen order; as they are when they
    only go up (the common case, checked without sorting)."""
    if len(users) > 1 and not (np.diff(users) > 0).all():
        return pd.unique(users)
    return users


def group_users(plan: Plan) -> UserGroups:
    """Number the users of the plan's valid rows (digests are computed when asked for); the
    groups of a plan of group identifications."""
    if plan.group is not None:
        return _group_members(plan)
    rows = np.flatnonzero(plan.state == VALID)
    ucodes = plan.user_id.codes[rows]
    if len(rows) and (ucodes >= 0).all():  # user ids only: their codes number the users
        codes, uniq = pd.factorize(ucodes)
        keys = plan.user_id.values(np.asarray(uniq, dtype=np.int64))
    else:
        row_keys = user_keys(plan.user_id[rows], plan.device_id[rows])
        codes, uniq = pd.factorize(row_keys)
        keys = np.asarray(uniq, dtype=object)
    codes = np.asarray(codes, dtype=np.int64)
    n_users = len(keys)
    code = np.full(len(plan), -1, dtype=np.int64)
    code[rows] = codes
    n_rows = np.bincount(codes, minlength=n_users).astype(np.int64)
    non_idem = np.bincount(codes, weights=~plan.idempotent[rows], minlength=n_users)
    return UserGroups(rows, code, np.asarray(keys, dtype=object), non_idem == 0, n_rows,
                      plan.payload)  # fmt: skip


_DECODER = json.JSONDecoder()
_TYPE_HEAD = '{"group_type":'
_VALUE_HEAD = ',"group_value":'


def _group_of(text: str) -> tuple[str, str]:
    """The group type and value of a group identification's JSON text (its head only)."""
    if text.startswith(_TYPE_HEAD):
        group_type, end = _DECODER.raw_decode(text, len(_TYPE_HEAD))
        if text.startswith(_VALUE_HEAD, end):
            return group_type, _DECODER.raw_decode(text, end + len(_VALUE_HEAD))[0]
    ident = json.loads(text)  # pragma: no cover - a build writes the type and value first
    return ident["group_type"], ident["group_value"]


def _group_members(plan: Plan) -> UserGroups:
    """:func:`group_users` of a plan of group identifications: one member per (group type,
    group value), keyed by :func:`~amp_pandas._sync.group_key` (read from each group's first
    identification)."""
    assert plan.group is not None
    rows = np.flatnonzero(plan.state == VALID)
    codes, uniq = pd.factorize(plan.group.codes[rows])
    codes = np.asarray(codes, dtype=np.int64)
    n_groups = len(uniq)
    first = np.empty(n_groups, dtype=np.int64)
    first[codes[::-1]] = rows[::-1]
    keys = np.empty(n_groups, dtype=object)
    for start in range(0, n_groups, _CHUNK):
        texts = plan.payload.texts(first[start : start + _CHUNK])
        keys[start : start + len(texts)] = [group_key(*_group_of(t)) for t in texts]
    code = np.full(len(plan), -1, dtype=np.int64)
    code[rows] = codes
    n_rows = np.bincount(codes, minlength=n_groups).astype(np.int64)
    non_idem = np.bincount(codes, weights=~plan.idempotent[rows], minlength=n_groups)
    return UserGroups(rows, code, keys, non_idem == 0, n_rows, plan.payload, kind=GROUPS)


def plan_users(state: LedgerState, users: UserGroups, *, removed: str,
               retry_ambiguous: bool) -> SyncPlan:
    """:func:`~amp_pandas._sync.plan_sync` of the users; only users the ledger knows are
    digested (the others are new whatever their digest)."""
    pos = state.positions(users.keys)
    known = np.flatnonzero(pos >= 0)
    return plan_sync(state, users.keys, users.digest_array(known), users.idempotent,
                     removed=removed, retry_ambiguous=retry_ambiguous,
                     positions=pos)  # fmt: skip


_SET_OPS = (OPERATIONS["set"], OPERATIONS["set_once"])
_LIST_OPS = (OPERATIONS["append"], OPERATIONS["prepend"], OPERATIONS["pre_insert"],
             OPERATIONS["post_insert"])  # fmt: skip
_SCALARS = (str, bool, int, np.integer, np.bool_)


@dataclass
class RevertColumns:
    """What the revert infos of a frame's rows are made of, read from its columns: per
    property (or what cannot be undone, or operation) which rows hold it, and the values list
    operations add. Built by :func:`revert_columns`; nothing is parsed."""

    n_rows: int
    set_properties: dict[str, np.ndarray]
    added: dict[str, np.ndarray]
    irreversible: dict[str, np.ndarray]
    non_idempotent: dict[str, np.ndarray]
    _all: np.ndarray | None = field(default=None, init=False, repr=False)

    def infos(self, rows: np.ndarray) -> np.ndarray:
        """The revert info of each of ``rows`` (positions). Every row's is worked out at the
        first call, at once (rows with equal values share one object), and then looked up."""
        if self._all is None:
            self._all = revert_infos_of_rows(
                self.n_rows, set_properties=self.set_properties, added=self.added,
                irreversible=self.irreversible, non_idempotent=self.non_idempotent,
            )  # fmt: skip
        return self._all[rows]


def _plain_values(values: Any) -> bool:
    """Whether list-operation values are written to JSON as Python writes them: strings,
    integers, booleans, and lists of those (floats, dates and other objects are not)."""
    for v in values:
        if v is None or isinstance(v, _SCALARS):
            continue
        if isinstance(v, list) and all(isinstance(x, _SCALARS) for x in v):
            continue
        return False
    return True


def revert_columns(df: pd.DataFrame, spec: IdentifySpec) -> RevertColumns | None:
    """The columns revert infos are made of, or ``None`` where only the JSON tells (groups,
    list operations of floats, dates or objects, a literal ``None``): then the identifications
    sent are parsed instead.

    A cell is present where it is not missing (None, NaN, NaT, pd.NA), as the build reads it;
    rows that are not valid are never sent, so their masks do not matter.
    """
    if spec.groups:
        return None
    n = len(df)

    def present(source: Any) -> np.ndarray | None:
        if isinstance(source, Literal):
            value = source.value
            if value is None or (isinstance(value, float) and value != value):
                return None
            return np.ones(n, dtype=bool)
        col = df.iloc[:, df.columns.get_loc(source)]
        return ~col.isna().to_numpy(dtype=bool)

    sets: dict[str, np.ndarray] = {}
    added: dict[str, np.ndarray] = {}
    lost: dict[str, np.ndarray] = {}
    ops: dict[str, np.ndarray] = {}
    for op, slots in spec.operations:
        for slot in slots:
            mask = present(slot.source)
            if mask is None:
                return None
            if op in NON_IDEMPOTENT_OPERATIONS:
                ops[op] = ops[op] | mask if op in ops else mask
            if op in _SET_OPS:
                sets[slot.key] = mask
                if spec.nulls == "unset" and not mask.all():
                    lost[f"{UNSET} {slot.key}"] = ~mask
            elif op in _LIST_OPS:
                if isinstance(slot.source, Literal):
                    values = np.empty(n, dtype=object)
                    values[:] = [slot.source.value] * n
                else:
                    col = df.iloc[:, df.columns.get_loc(slot.source)]
                    values = col.to_numpy(dtype=object, na_value=None).copy()
                    values[~mask] = None
                if isinstance(slot.source, Literal):
                    distinct: Any = [slot.source.value]
                else:
                    try:
                        distinct = pd.unique(values[mask])
                    except TypeError:  # lists: unhashable
                        distinct = values[mask]
                if not _plain_values(distinct):
                    return None
                added[slot.key] = values
            else:  # $add, $remove: nothing an identification can restore
                lost[f"{op} {slot.key}"] = mask
    for name in spec.unset:
        lost[f"{UNSET} {name}"] = np.ones(n, dtype=bool)
    for slot in spec.fields:
        mask = present(slot.source)
        if mask is None:
            return None
        lost[slot.key] = mask
    return RevertColumns(n, sets, added, lost, ops)


def group_revert_columns(df: pd.DataFrame, spec: GroupSpec) -> RevertColumns | None:
    """:func:`revert_columns` of a group mapping (its operations read as identify's do)."""
    return revert_columns(df, IdentifySpec(
        user_id=None, device_id=None, operations=spec.operations, unset=spec.unset, groups=(),
        fields=(), nulls=spec.nulls,
    ))  # fmt: skip


def revert_infos(
    plan: Plan, users: UserGroups, which: np.ndarray, columns: RevertColumns | None = None
) -> np.ndarray:
    """What undoes the identifications of the users ``which`` (user numbers), in that order:
    an object array of :class:`~amp_pandas._sync.RevertInfo`.

    From ``columns`` when given (:func:`revert_columns`: nothing parsed); else each row sent
    is parsed once, and rows that differ only in ids and ``$set``-like values share one revert
    info (:func:`~amp_pandas._sync.summarize_user` caches them).
    """
    which = np.asarray(which, dtype=np.int64)
    rows = users.user_rows(which)
    if columns is not None:
        infos = columns.infos(rows)
    else:
        infos = np.empty(len(rows), dtype=object)
        for start in range(0, len(rows), _CHUNK):
            part = rows[start : start + _CHUNK]
            infos[start : start + len(part)] = [summarize_user((text,)).revert
                                                for text in plan.payload.texts(part)]  # fmt: skip
    if len(rows) == len(which):  # one row per user: nothing to unite
        return infos
    counts = users.n_rows[which]
    out = np.empty(len(which), dtype=object)
    out[:] = union_by_user(np.repeat(np.arange(len(which)), counts), infos.tolist(), len(which))
    return out


# --- the dry run --------------------------------------------------------------------------------


@dataclass
class SyncPreview:
    """What a sync run would do, as a dry run sees it (nothing written).

    Attributes
    ----------
    job : str
        The job's name; ``ledger`` the ledger file; ``endpoint`` where it sends.
    known : bool
        Whether the job could be identified (it needs the API key's fingerprint).
    last_run : pandas.Timestamp or None
        When the job last ran (UTC).
    held_users : int
        Users the ledger holds for the job.
    counts : dict
        Users per plan status (``new``, ``changed``, ``unchanged``, ``ambiguous``, ``held``)
        and ``removed``.
    unchanged_rows : int
        Rows not sent because their user is unchanged.
    send_rows : int
        Rows a send would post.
    removed_mode : str
        ``"keep"`` or ``"revert"``.
    reverts : pandas.DataFrame
        The removed users: ``user_id``, ``device_id``, ``identification`` (the revert a send
        would post; ``None`` with ``removed="keep"`` or nothing to undo) and ``not_undone``.
    note : str or None
        Why the counts may differ when sent (no API key yet, no ledger file yet).
    unit : str
        What the job's members are: ``"user"``, or ``"group"`` for ``group_identify`` (whose
        ``reverts`` have ``group_type`` and ``group_value`` in place of the user's ids).
    """

    job: str
    ledger: str
    endpoint: str
    known: bool
    last_run: pd.Timestamp | None
    held_users: int
    counts: dict[str, int]
    unchanged_rows: int
    send_rows: int
    removed_mode: str
    reverts: pd.DataFrame
    note: str | None = None
    unit: str = "user"
    #: Per row of the plan, whether a send would post it (its user is new, changed or
    #: ambiguous).
    sent: np.ndarray | None = field(default=None, repr=False)

    def send_text(self) -> str:
        """What a Send will do, in one sentence."""
        c = self.counts
        u = self.unit
        sent_users = c["new"] + c["changed"] + c["ambiguous"]
        parts = [
            f"send {_n(self.send_rows, 'row')} of {_n(sent_users, f'new or changed {u}')}"
        ]
        if c["unchanged"]:
            parts.append(f"skip {_n(c['unchanged'], f'unchanged {u}')}")
        if c["held"]:
            parts.append(f"hold {_n(c['held'], f'ambiguous {u}')} (unknown)")
        n_removed = c["removed"]
        if n_removed:
            if self.removed_mode == "revert":
                n_revert = int(self.reverts["identification"].notna().sum())
                parts.append(f"revert {n_revert:,} of {_n(n_removed, f'removed {u}')}")
            else:
                parts.append(f"keep {_n(n_removed, f'removed {u}')} as they are")
        return "A Send will " + ", ".join(parts) + f" (sync job {self.job!r})."


def _n(count: int, noun: str) -> str:
    """``1 row``, ``2 rows``: a count and its noun, plural when not one."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _reverts_frame(plan: SyncPlan, *, send: bool, kind: SyncKind = USERS) -> pd.DataFrame:
    """The removed users as ``result.removed`` lists them (without the send's status)."""
    frame = plan.reverts(group=kind.group)
    ids = [key_fields(k, group=kind.group) for k in plan.removed.tolist()]
    out = pd.DataFrame(
        {
            **{c: pd.Series([i.get(c) for i in ids], dtype=object) for c in kind.id_columns},
            "identification": pd.Series(
                frame["identification"].tolist() if send else [None] * len(frame), dtype=object
            ),
            "not_undone": pd.Series(frame["not_undone"].tolist(), dtype=object),
        }
    )
    return out


def preview_sync(
    plan: Plan, users: UserGroups, settings: SendSettings, options: SyncOptions
) -> SyncPreview:
    """The sync plan of a dry run, from the ledger as it is now (read only)."""
    path = options.ledger_path
    key = settings.api_key.reveal() if settings.api_key is not None else None
    note = None
    state = LedgerState.empty(options.name)
    known = key is not None
    if not path.exists():
        note = f"the ledger {path} does not exist yet: every {users.kind.noun} is new"
    elif key is None:
        note = ("no API key set: the job (name, endpoint and key) cannot be looked up; "
                f"every {users.kind.noun} is counted as new")
    else:
        with Ledger(path) as ledger:
            state = ledger.state(ledger.job(options.name, settings.endpoint, key))
    splan = plan_users(state, users, removed=options.removed,
                       retry_ambiguous=settings.retry_ambiguous)
    counts = splan.counts()
    unchanged_rows = int(users.n_rows[splan.status == PLAN_UNCHANGED].sum())
    sent = np.zeros(len(plan), dtype=bool)
    sent[users.rows] = splan.send[users.code[users.rows]]
    send_rows = int(np.count_nonzero(sent))
    return SyncPreview(
        job=options.name, ledger=str(path), endpoint=settings.endpoint, known=known,
        last_run=state.last_run, held_users=len(state), counts=counts,
        unchanged_rows=unchanged_rows, send_rows=send_rows, removed_mode=options.removed,
        reverts=_reverts_frame(splan, send=options.removed == "revert", kind=users.kind),
        note=note, unit=users.kind.noun, sent=sent,
    )  # fmt: skip


# --- the send -----------------------------------------------------------------------------------


class LazyReverts:
    """The revert infos of the users sent (``reverts[users]``; ``None`` for a user not sent),
    each worked out when first asked for (by a request, or ahead of it): not all before the
    first request leaves."""

    def __init__(self, plan: Plan, users: UserGroups, send: np.ndarray,
                 columns: RevertColumns | None) -> None:  # fmt: skip
        self._plan, self._users, self._send, self._columns = plan, users, send, columns
        self._values = np.full(len(users), None, dtype=object)
        self._done = ~np.asarray(send, dtype=bool)  # users not sent: None, nothing to do

    def __getitem__(self, which: np.ndarray) -> np.ndarray:
        which = np.asarray(which, dtype=np.int64)
        todo = which[~self._done[which]]
        if len(todo):
            todo = _each_once(todo)
            self._values[todo] = revert_infos(self._plan, self._users, todo, self._columns)
            self._done[todo] = True
        return self._values[which]

    @property
    def computed(self) -> int:
        """How many users sent have theirs worked out."""
        return int((self._done & self._send).sum())


#: Per result status code, the outcome flag a row brings to its user: acknowledged 1, failed 2,
#: unknown 4 (also for a status that is no outcome: never claimed a success); one flag alone is
#: the user's outcome, a mix is unknown (partly applied).
_STATUS_FLAG = np.array(
    [{ACKNOWLEDGED: 1, FAILED: 2}.get(OUTCOMES.index(OUTCOME_OF_STATUS.get(s, "unknown")), 4)
     for s in STATUSES], dtype=np.int8,
)  # fmt: skip


class LedgerObserver:
    """The ledger's side of a send: users in flight before each request, outcomes after.

    Parameters
    ----------
    run : Run
        The job's run (holding its lock).
    row_user : ndarray of int64
        Per row of the plan sent, its user's number (-1: none).
    keys : ndarray of object
        Per user number, its key.
    users : UserGroups, optional
        The users sent, whose digests are computed request by request, just before each
        request's users are written in flight (not all before the first request); ``None`` for
        revert identifications.
    reverts : ndarray of object or LazyReverts, optional
        Per user number, its revert info (for the users sent).
    n_rows : ndarray of int64, optional
        Per user number, its rows in this run.
    """

    def __init__(
        self, run: Run, row_user: np.ndarray, keys: np.ndarray, *,
        users: UserGroups | None = None, reverts: np.ndarray | LazyReverts | None = None,
        n_rows: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        self.run = run
        self.row_user = row_user
        self.keys = keys
        self.users = users
        self.reverts = reverts
        self.n_rows = n_rows
        self.flown = np.zeros(len(keys), dtype=bool)
        self.interrupted = False
        #: every user has one row: a request's users are its rows' (each once), and a user's
        #: row that is final makes the user final
        self._single = n_rows is None or bool((np.asarray(n_rows) == 1).all())
        if users is not None:
            # per user: its send and place in it, rows not final yet, outcome flags so far
            self._send = np.full(len(keys), -1, dtype=np.int64)
            self._place = np.zeros(len(keys), dtype=np.int64)
            self._left = (np.ones(len(keys), dtype=np.int64) if n_rows is None
                          else np.asarray(n_rows, dtype=np.int64).copy())  # fmt: skip
            self._flags = np.zeros(len(keys), dtype=np.int8)
            self._sizes: dict[int, int] = {}

    def _new_users(self, rows: np.ndarray) -> np.ndarray:
        """The users of ``rows`` not in flight yet, each once."""
        users = self.row_user[rows]
        users = users[(users >= 0) & ~self.flown[np.maximum(users, 0)]]
        return users if self._single else np.unique(users)

    def prepare(self, rows: np.ndarray, texts: Any = None) -> None:
        """Digest the users of ``rows`` (from the request's ``texts`` when they were written
        ahead) and work out their revert infos, ahead of their request (spare time: the send
        loop would otherwise wait); nothing is written."""
        if self.users is None:
            return
        users = self._new_users(rows)
        if len(users):
            assert self.reverts is not None
            if texts is not None:
                self.users.digests_from_request(rows, texts)
            self.users.digests(users)
            self.reverts[users]

    def before_request(self, rows: np.ndarray) -> None:
        users = self._new_users(rows)
        if not len(users):
            return
        keys = self.keys[users].tolist()
        if self.users is None:
            self.run.mark_revert_in_flight(keys)
        else:
            assert self.reverts is not None
            send = self.run.mark_request_in_flight(keys, self.users.digests(users),
                                                   self.reverts[users].tolist())  # fmt: skip
            self._send[users] = send
            self._place[users] = np.arange(len(users))
            self._sizes[send] = len(users)
        self.flown[users] = True

    def after_rows_final(self, rows: np.ndarray, statuses: np.ndarray) -> None:
        users = self.row_user[rows]
        mine = (users >= 0) & self.flown[np.maximum(users, 0)]
        if not mine.any():
            return
        if self.users is None:
            names = np.array(STATUSES, dtype=object)[statuses[mine]]
            self.run.mark_done(self.keys[users[mine]].tolist(), names.tolist())
            return
        users = users[mine]
        if self._single:
            open_ = self._left[users] > 0  # (a row is final once; never count it twice)
            final, flags = users[open_], _STATUS_FLAG[statuses[mine][open_]]
        else:
            np.subtract.at(self._left, users, 1)
            np.bitwise_or.at(self._flags, users, _STATUS_FLAG[statuses[mine]])
            final = pd.unique(users[self._left[users] == 0])
            flags = self._flags[final]
        if not len(final):
            return
        self._left[final] = -1  # final: never counted again
        codes = np.where(flags == 1, ACKNOWLEDGED,
                         np.where(flags == 2, FAILED, OUTCOME_UNKNOWN))
        sends, places = self._send[final], self._place[final]
        if (sends == sends[0]).all():  # most often: the users of one send
            parts = [np.arange(len(sends))]
        else:
            order = np.argsort(sends, kind="stable")
            sends, places, codes = sends[order], places[order], codes[order]
            parts = np.split(np.arange(len(sends)), np.flatnonzero(np.diff(sends)) + 1)
        out = {}
        for part in parts:
            send = int(sends[part[0]])
            got = np.zeros(self._sizes[send], dtype=np.int8)
            got[places[part]] = codes[part]
            out[send] = got.tobytes()
        self.run.mark_request_done(out)

    def send_over(self, interrupted: bool) -> None:
        self.interrupted = interrupted


def send_sync(
    plan: Plan,
    users: UserGroups,
    settings: SendSettings,
    options: SyncOptions,
    *,
    columns: RevertColumns | None = None,
    progress_callback: ProgressCallback | None = None,
) -> SendResult:
    """Send a plan as a run of the job: see the module's docstring.

    Raises
    ------
    LedgerError
        The ledger cannot be opened or written, or another run of the job holds its lock:
        before anything is sent.
    """
    key = require_key(settings)
    with Ledger(options.ledger_path) as ledger:
        job = ledger.job(options.name, settings.endpoint, key)
        with ledger.begin_run(job) as run:
            splan = plan_users(run.state(), users, removed=options.removed,
                               retry_ambiguous=settings.retry_ambiguous)
            status_of_row = np.full(len(plan), -1, dtype=np.int8)
            status_of_row[users.rows] = splan.status[users.code[users.rows]]
            settled = [
                (np.flatnonzero(status_of_row == PLAN_UNCHANGED), UNCHANGED, None),
                (np.flatnonzero(status_of_row == HELD), UNKNOWN, users.kind.held_reason),
            ]
            # the digests and revert infos of the users sent are computed as requests need
            # them, just before their users are written in flight
            reverts = LazyReverts(plan, users, splan.send, columns)
            observer = LedgerObserver(run, users.code, users.keys, users=users,
                                      reverts=reverts, n_rows=users.n_rows)  # fmt: skip
            result = send_plan(plan, settings, progress_callback=progress_callback,
                               observer=observer, settled=settled)  # fmt: skip
            removed = _removed(run, splan, settings, options, stopped=observer.interrupted,
                               kind=users.kind)  # fmt: skip
    if not isinstance(result, SendResult):  # pragma: no cover - the sender builds one
        result = SendResult(result)
    result.removed = removed
    return result


def _removed(
    run: Run, splan: SyncPlan, settings: SendSettings, options: SyncOptions, *, stopped: bool,
    kind: SyncKind = USERS,
) -> pd.DataFrame:
    """Let the removed users go, or send their reverts; ``result.removed``."""
    frame = _reverts_frame(splan, send=options.removed == "revert", kind=kind)
    n = len(frame)
    status = np.full(n, "kept" if options.removed == "keep" else "skipped", dtype=object)
    error = np.full(n, None, dtype=object)
    keys = splan.removed
    if stopped:
        status[:] = "not_sent"
        error[:] = "not sent: the send was interrupted before the removed users"
        frame["identification"] = None
    elif options.removed == "keep":
        run.mark_left(keys.tolist())
        error[:] = 'removed="keep": left as the job left it'
    else:
        has = frame["identification"].notna().to_numpy()
        nothing = np.flatnonzero(~has)
        if len(nothing):
            run.mark_left(keys[nothing].tolist())
            error[nothing] = "nothing this job did can be undone by an identification"
        todo = np.flatnonzero(has)
        if len(todo):
            rplan = kind.revert_plan(frame["identification"].iloc[todo].tolist())
            observer = LedgerObserver(run, np.arange(len(todo), dtype=np.int64), keys[todo])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", AmpPandasWarning)
                try:
                    rresult = send_plan(rplan, settings, observer=observer)
                except SendError as exc:
                    rresult = exc.result
                    if rresult is None:
                        raise
                    _rewarn(f"the revert identifications stopped: {exc}")
            for w in caught:
                if not issubclass(w.category, RowsNotSucceededWarning | InterruptedSendWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            status[todo] = rresult["status"].to_numpy(dtype=object)
            error[todo] = rresult["error"].astype(object).where(rresult["error"].notna(), None)
            bad = int((rresult["status"] != "success").sum())
            if bad:
                _rewarn(
                    f"{bad:,} of {len(todo):,} revert identifications of removed "
                    f"{kind.noun}s did not succeed; see result.removed. The job still counts "
                    "them as members: the next run with removed=\"revert\" tries again"
                )
    frame["status"] = pd.Series(status, dtype=object)
    frame["error"] = pd.Series(error, dtype=object)
    return frame[kind.removed_columns]


def _rewarn(message: str) -> None:
    warnings.warn(message, RowsNotSucceededWarning, stacklevel=user_stacklevel())
