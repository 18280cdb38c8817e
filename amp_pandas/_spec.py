"""The mapping from columns to an identification, checked before anything is built.

:func:`parse_mapping` turns ``identify``'s keyword arguments into an :class:`IdentifySpec`, or
raises an :class:`~amp_pandas.errors.ArgumentError` subclass that names the argument and says
what to pass instead.

Column labels are any hashable pandas accepts. A tuple is a column label when the frame's
columns hold it (``MultiIndex`` columns are named by their full tuple, ``("ids", "uid")``);
otherwise, where a list of columns is expected, a tuple is a sequence of labels. Property names,
group types and field keys are strings.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ._amplitude import FIELDS, GROUP_OPERATIONS, MAX_GROUP_TYPES, OPERATIONS, UNSET
from .errors import (
    ArgumentError,
    ColumnNotFoundError,
    DuplicatePropertyError,
    MissingIdError,
    UnknownFieldError,
)

__all__ = [
    "FIELDS",
    "GROUP_REFUSED",
    "NULL_POLICIES",
    "OPERATIONS",
    "GroupSpec",
    "IdentifySpec",
    "Literal",
    "NullPolicy",
    "literal",
    "parse_group_mapping",
    "parse_mapping",
]

#: ``identify()`` operation keywords that Amplitude does not document for group properties.
GROUP_REFUSED: tuple[str, ...] = tuple(arg for arg in OPERATIONS if arg not in GROUP_OPERATIONS)

#: What ``nulls=`` takes: what becomes of a missing cell.
NullPolicy = typing.Literal["skip", "unset", "error"]
NULL_POLICIES: tuple[str, ...] = typing.get_args(NullPolicy)


@dataclass(frozen=True)
class Literal:
    """A constant that stands where a column name can. Build it with :func:`literal`."""

    value: Any

    def __repr__(self) -> str:
        return f"literal({self.value!r})"


def literal(value: Any) -> Literal:
    """A constant value for every row, wherever a column name can stand.

    Parameters
    ----------
    value : Any
        Anything the type rules accept: a string, number, bool, Timestamp, list, dict ...

    Examples
    --------
    >>> import pandas as pd
    >>> import amp_pandas
    >>> from amp_pandas import literal
    >>> df = pd.DataFrame({"uid": ["user-1", "user-2"]})
    >>> preview = df.amplitude.identify(user_id="uid", set={"cohort": literal("Test A")},
    ...                                 dry_run=True)
    >>> preview.payloads[0]
    {'user_id': 'user-1', 'user_properties': {'$set': {'cohort': 'Test A'}}}
    """
    if isinstance(value, Literal):
        return value
    return Literal(value)


Source = Hashable  # a column label or a Literal


@dataclass(frozen=True)
class Slot:
    """One value in the payload: where it goes, and where it comes from."""

    key: str  # property, field or group type name
    source: Source
    arg: str  # the identify() argument it came from (for messages)

    @property
    def is_literal(self) -> bool:
        return isinstance(self.source, Literal)

    def describe(self) -> str:
        return repr(self.source) if self.is_literal else f"column {self.source!r}"


@dataclass(frozen=True)
class IdentifySpec:
    """A checked mapping: which column (or literal) feeds which part of an identification."""

    user_id: Slot | None
    device_id: Slot | None
    operations: tuple[tuple[str, tuple[Slot, ...]], ...]  # ("$set", slots) in OPERATIONS order
    unset: tuple[str, ...]
    groups: tuple[Slot, ...]
    fields: tuple[Slot, ...]
    nulls: str

    def all_slots(self) -> Iterable[Slot]:
        for s in (self.user_id, self.device_id):
            if s is not None:
                yield s
        for _, slots in self.operations:
            yield from slots
        yield from self.groups
        yield from self.fields


@dataclass(frozen=True)
class GroupSpec:
    """A checked group mapping: which column (or literal) feeds which part of a group
    identification. ``operations``, ``unset`` and ``nulls`` read as in :class:`IdentifySpec`."""

    group_type: Slot
    group_value: Slot
    operations: tuple[tuple[str, tuple[Slot, ...]], ...]  # in GROUP_OPERATIONS order
    unset: tuple[str, ...]
    nulls: str

    def all_slots(self) -> Iterable[Slot]:
        yield self.group_type
        yield self.group_value
        for _, slots in self.operations:
            yield from slots


def _suggest(label: Any, candidates: Iterable[Any]) -> Any:
    names = {str(c): c for c in candidates}
    match = difflib.get_close_matches(str(label), list(names), n=1, cutoff=0.6)
    return names[match[0]] if match else None


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _is_column(df: pd.DataFrame, label: Any) -> bool:
    """Whether ``label`` names a column: a full label (the whole tuple for MultiIndex columns)."""
    if isinstance(label, Literal) or not _hashable(label):
        return False
    columns = df.columns
    if isinstance(columns, pd.MultiIndex) and not (
        isinstance(label, tuple) and len(label) == columns.nlevels
    ):
        return False  # "a" in a MultiIndex is a partial key, not a column
    try:
        return bool(label in columns)
    except (TypeError, ValueError):
        return False


def _check_column(df: pd.DataFrame, source: Any, arg: str) -> None:
    if isinstance(source, Literal):
        return
    if not _hashable(source):
        raise ArgumentError(
            f"{arg}: {source!r} ({type(source).__name__}) is not a column label; pass a column "
            "label, or literal(...) for a constant"
        )
    columns = df.columns
    if not _is_column(df, source):
        if isinstance(columns, pd.MultiIndex) and not (
            isinstance(source, tuple) and len(source) == columns.nlevels
        ):
            key = source if isinstance(source, tuple) else (source,)
            starting = [c for c in columns if c[: len(key)] == key]
            example = starting[0] if starting else (columns[0] if len(columns) else None)
            raise ColumnNotFoundError(
                f"{arg}: {source!r} is not a column label: the DataFrame's columns have "
                f"{columns.nlevels} levels, so name a column by its full tuple"
                + (f", e.g. {example!r}" if example is not None else ""),
                column=source,
                suggestion=example,
            )
        suggestion = _suggest(source, columns)
        hint = f" Did you mean {suggestion!r}?" if suggestion is not None else ""
        raise ColumnNotFoundError(
            f"{arg}: column {source!r} is not in the DataFrame.{hint} "
            f"To send a constant instead, use literal({source!r}).",
            column=source,
            suggestion=suggestion,
        )
    found = columns.get_loc(source)
    if not isinstance(found, int):
        raise ArgumentError(
            f"{arg}: column {source!r} appears more than once in the DataFrame; "
            "rename the duplicates first"
        )


def _prop_name(name: Any, arg: str, what: str = "property name") -> str:
    if not isinstance(name, str):
        raise ArgumentError(f"{arg}: a {what} must be a str; got {name!r} ({type(name).__name__})")
    if not name:
        raise ArgumentError(f"{arg}: a {what} cannot be empty")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ArgumentError(
            f"{arg}: {what} {name.encode('utf-8', 'backslashreplace').decode()!r} is not "
            "valid Unicode (a lone surrogate); rename it"
        ) from None
    if name.startswith("$"):
        raise ArgumentError(
            f"{arg}: {what} {name!r} starts with '$', which Amplitude reads as an "
            "operation; rename it"
        )
    return name


def _named_after(label: Any, arg: str) -> str:
    """The property named after a column (list form): the label, as text."""
    if isinstance(label, tuple):
        raise ArgumentError(
            f"{arg}: column {label!r} has a tuple label, which names no property; give the "
            f"property a name: {arg}={{'name': {label!r}}}"
        )
    return _prop_name(label if isinstance(label, str) else str(label), arg)


def _no_literal(arg: str) -> ArgumentError:
    return ArgumentError(
        f"{arg}: a literal needs a property name; write {arg}={{'name': literal(...)}}"
    )


def _slots(df: pd.DataFrame, value: Any, arg: str) -> tuple[Slot, ...]:
    """``[col, ...]`` / ``col`` / ``{name: col_or_literal}`` -> slots."""
    if value is None:
        return ()
    if isinstance(value, Literal):
        raise _no_literal(arg)
    if isinstance(value, Mapping):
        items = [(_prop_name(name, arg), source) for name, source in value.items()]
    elif isinstance(value, str) or _is_column(df, value):
        items = [(_named_after(value, arg), value)]
    elif isinstance(value, (list, tuple)):
        if any(isinstance(v, Literal) for v in value):
            raise _no_literal(arg)
        items = []
        for v in value:
            _check_column(df, v, arg)
            items.append((_named_after(v, arg), v))
    else:
        raise ArgumentError(
            f"{arg}: expected a list of column names or a dict {{property: column}}, "
            f"got {type(value).__name__}"
        )
    slots = []
    for name, source in items:
        _check_column(df, source, arg)
        slots.append(Slot(name, source, arg))
    return tuple(slots)


def _id_slot(df: pd.DataFrame, source: Any, arg: str) -> Slot | None:
    if source is None:
        return None
    multi = isinstance(df.columns, pd.MultiIndex)
    if isinstance(source, (list, dict, set, frozenset)) or (
        isinstance(source, tuple) and not multi and not _is_column(df, source)
    ):
        raise ArgumentError(
            f"{arg}: expected one column label (or literal(...)), got "
            f"{type(source).__name__} {source!r}"
        )
    _check_column(df, source, arg)
    return Slot(arg, source, arg)


def parse_mapping(
    df: pd.DataFrame,
    *,
    user_id: Any = None,
    device_id: Any = None,
    operations: Mapping[str, Any],
    unset: Any = None,
    groups: Mapping[str, Any] | None = None,
    fields: Mapping[str, Any] | None = None,
    nulls: NullPolicy = "skip",
) -> IdentifySpec:
    """Check identify()'s arguments against the frame; raise at the first that cannot work."""
    unknown_ops = [arg for arg in operations if arg not in OPERATIONS]
    if unknown_ops:
        raise ArgumentError(f"unknown operation argument(s): {', '.join(unknown_ops)}")
    _check_nulls(nulls)
    if user_id is None and device_id is None:
        raise MissingIdError(
            "identify() needs user_id= or device_id= (a column name, or both); Amplitude "
            "requires at least one id per identification"
        )
    user_slot = _id_slot(df, user_id, "user_id")
    device_slot = _id_slot(df, device_id, "device_id")

    ops, unset_names = _parse_operations(df, operations, unset, OPERATIONS)

    group_slots: tuple[Slot, ...] = ()
    if groups is not None:
        if not isinstance(groups, Mapping):
            raise ArgumentError(
                f"groups: expected a dict {{group type: column}}, got {type(groups).__name__}"
            )
        if len(groups) > MAX_GROUP_TYPES:
            raise ArgumentError(
                f"groups: {len(groups)} group types given; Amplitude allows at most "
                f"{MAX_GROUP_TYPES}"
            )
        group_list = []
        for group_type, src in groups.items():
            name = _prop_name(group_type, "groups", "group type")
            _check_column(df, src, "groups")
            group_list.append(Slot(name, src, "groups"))
        group_slots = tuple(group_list)

    field_slots: tuple[Slot, ...] = ()
    if fields is not None:
        if not isinstance(fields, Mapping):
            raise ArgumentError(
                f"fields: expected a dict {{field: column}}, got {type(fields).__name__}"
            )
        out = []
        for key, src in fields.items():
            if key not in FIELDS:
                suggestion = _suggest(key, FIELDS)
                hint = f" Did you mean {suggestion!r}?" if suggestion else ""
                raise UnknownFieldError(
                    f"fields: {key!r} is not a top-level key Amplitude documents.{hint} "
                    f"Known keys: {', '.join(FIELDS)}. To send it as a user property, use set="
                )
            _check_column(df, src, "fields")
            out.append(Slot(key, src, "fields"))
        field_slots = tuple(out)

    return IdentifySpec(
        user_id=user_slot,
        device_id=device_slot,
        operations=ops,
        unset=unset_names,
        groups=group_slots,
        fields=field_slots,
        nulls=nulls,
    )


def _parse_operations(
    df: pd.DataFrame,
    operations: Mapping[str, Any],
    unset: Any,
    table: Mapping[str, str],
) -> tuple[tuple[tuple[str, tuple[Slot, ...]], ...], tuple[str, ...]]:
    """The operations (keyword -> operation per ``table``, in its order) and ``unset``'s names,
    checked: each property in one operation only."""
    ops = []
    seen: dict[str, str] = {}

    def claim(name: str, arg: str) -> None:
        if name in seen:
            raise DuplicatePropertyError(
                f"property {name!r} is in both {seen[name]}= and {arg}=; Amplitude keeps only "
                "one operation per property — remove one of them"
            )
        seen[name] = arg

    for arg, op in table.items():
        slots = _slots(df, operations.get(arg), arg)
        for s in slots:
            claim(s.key, arg)
        if slots:
            ops.append((op, slots))

    if unset is None:
        unset_names: tuple[str, ...] = ()
    elif isinstance(unset, str):
        unset_names = (_prop_name(unset, "unset"),)
    elif isinstance(unset, (list, tuple, set, frozenset)):
        unset_names = tuple(_prop_name(u, "unset") for u in unset)
    else:
        raise ArgumentError(f"unset: expected a list of property names, got {type(unset).__name__}")
    for name in unset_names:
        claim(name, "unset")
    return tuple(ops), unset_names


def _check_nulls(nulls: Any) -> None:
    if not isinstance(nulls, str) or nulls not in NULL_POLICIES:
        raise ArgumentError(
            f"nulls={nulls!r} is not one of {', '.join(map(repr, NULL_POLICIES))}: pass one of "
            "these strings"
        )


def parse_group_mapping(
    df: pd.DataFrame,
    *,
    group_type: Any,
    group_value: Any,
    operations: Mapping[str, Any],
    unset: Any = None,
    nulls: NullPolicy = "skip",
) -> GroupSpec:
    """Check group_identify()'s arguments against the frame; raise at the first that cannot work.

    ``group_type`` is a column label when the frame has that column, else (a ``str``) the group
    type of every row; :func:`literal` makes a constant explicit. ``group_value`` is a column (or
    a literal). ``operations`` may hold only :data:`~amp_pandas._amplitude.GROUP_OPERATIONS`'
    keywords: the other operations of ``identify`` are refused, by name.
    """
    refused = [arg for arg in GROUP_REFUSED if operations.get(arg) is not None]
    if refused:
        names = ", ".join(f"{arg} ({OPERATIONS[arg]})" for arg in refused)
        documented = ", ".join((*GROUP_OPERATIONS.values(), UNSET))
        raise ArgumentError(
            f"{names}: not documented for group properties by Amplitude's Group Identify API, "
            f"which documents {documented} only; remove it (to change a list property of a "
            "group, set the whole new list)"
        )
    known = (*GROUP_OPERATIONS, *GROUP_REFUSED)
    unknown = [arg for arg in operations if arg not in known]
    if unknown:
        raise ArgumentError(f"unknown operation argument(s): {', '.join(unknown)}")
    _check_nulls(nulls)
    if group_type is None or group_value is None:
        missing = " and ".join(
            name for name, v in (("group_type=", group_type), ("group_value=", group_value))
            if v is None
        )
        raise MissingIdError(
            f"group_identify() needs {missing}: every group identification names a group type "
            "(a string, or a column) and a group value (a column)"
        )
    if isinstance(group_type, str) and not _is_column(df, group_type):
        type_source: Any = Literal(_prop_name(group_type, "group_type", "group type"))
    else:
        type_source = group_type
    type_slot = _id_slot(df, type_source, "group_type")
    value_slot = _id_slot(df, group_value, "group_value")
    assert type_slot is not None and value_slot is not None
    ops, unset_names = _parse_operations(df, operations, unset, GROUP_OPERATIONS)
    return GroupSpec(
        group_type=type_slot,
        group_value=value_slot,
        operations=ops,
        unset=unset_names,
        nulls=nulls,
    )
