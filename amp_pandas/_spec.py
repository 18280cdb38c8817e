"""The mapping from columns to an identification, checked before anything is built.

:func:`parse_mapping` turns ``identify``'s keyword arguments into an :class:`IdentifySpec`, or
raises an :class:`~amp_pandas.errors.ArgumentError` subclass that says what to do.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping

import pandas as pd

from ._amplitude import FIELDS, MAX_GROUP_TYPES, OPERATIONS
from .errors import (
    ArgumentError,
    ColumnNotFoundError,
    DuplicatePropertyError,
    MissingIdError,
    UnknownFieldError,
)

__all__ = ["literal", "Literal", "IdentifySpec", "parse_mapping", "OPERATIONS", "FIELDS"]

NULL_POLICIES = ("skip", "unset", "error")


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


def _suggest(label: Any, candidates: Iterable[Any]) -> Any:
    names = {str(c): c for c in candidates}
    match = difflib.get_close_matches(str(label), list(names), n=1, cutoff=0.6)
    return names[match[0]] if match else None


def _check_column(df: pd.DataFrame, source: Any, arg: str) -> None:
    if isinstance(source, Literal):
        return
    try:
        hash(source)
        present = source in df.columns
    except TypeError:
        raise ArgumentError(
            f"{arg}: {source!r} is not a column label; pass a column name or literal(...)"
        ) from None
    if not present:
        suggestion = _suggest(source, df.columns)
        hint = f" Did you mean {suggestion!r}?" if suggestion is not None else ""
        raise ColumnNotFoundError(
            f"{arg}: column {source!r} is not in the DataFrame.{hint} "
            f"To send a constant instead, use literal({source!r}).",
            column=source,
            suggestion=suggestion,
        )
    found = df.columns.get_loc(source)
    if not isinstance(found, int):
        raise ArgumentError(
            f"{arg}: column {source!r} appears more than once in the DataFrame; "
            "rename the duplicates first"
        )


def _prop_name(name: Any, arg: str) -> str:
    if not isinstance(name, str):
        name = str(name)
    if not name:
        raise ArgumentError(f"{arg}: a property name cannot be empty")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ArgumentError(
            f"{arg}: property name {name.encode('utf-8', 'backslashreplace').decode()!r} is not "
            "valid Unicode (a lone surrogate); rename it"
        ) from None
    if name.startswith("$"):
        raise ArgumentError(
            f"{arg}: property name {name!r} starts with '$', which Amplitude reads as an "
            "operation; rename it"
        )
    return name


def _slots(df: pd.DataFrame, value: Any, arg: str) -> tuple[Slot, ...]:
    """``[col, ...]`` / ``col`` / ``{name: col_or_literal}`` -> slots."""
    if value is None:
        return ()
    if isinstance(value, Literal):
        raise ArgumentError(
            f"{arg}: a literal needs a property name; write {arg}={{'name': literal(...)}}"
        )
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        for v in value:
            if isinstance(v, Literal):
                raise ArgumentError(
                    f"{arg}: a literal needs a property name; write "
                    f"{arg}={{'name': literal(...)}}"
                )
        items = [(v, v) for v in value]
    elif isinstance(value, str) or (not isinstance(value, (set, frozenset)) and _hashable(value)
                                    and value in df.columns):
        items = [(value, value)]
    else:
        raise ArgumentError(
            f"{arg}: expected a list of column names or a dict {{property: column}}, "
            f"got {type(value).__name__}"
        )
    slots = []
    for name, source in items:
        _check_column(df, source, arg)
        slots.append(Slot(_prop_name(name, arg), source, arg))
    return tuple(slots)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def parse_mapping(
    df: pd.DataFrame,
    *,
    user_id: Any = None,
    device_id: Any = None,
    operations: Mapping[str, Any],
    unset: Any = None,
    groups: Mapping[str, Any] | None = None,
    fields: Mapping[str, Any] | None = None,
    nulls: str = "skip",
) -> IdentifySpec:
    """Check identify()'s arguments against the frame; raise at the first that cannot work."""
    if nulls not in NULL_POLICIES:
        raise ArgumentError(f"nulls={nulls!r} is not one of {', '.join(map(repr, NULL_POLICIES))}")
    if user_id is None and device_id is None:
        raise MissingIdError(
            "identify() needs user_id= or device_id= (a column name, or both); Amplitude "
            "requires at least one id per identification"
        )
    ids = []
    for arg, source in (("user_id", user_id), ("device_id", device_id)):
        if source is None:
            ids.append(None)
            continue
        if isinstance(source, (list, tuple, dict, set)):
            raise ArgumentError(f"{arg}: expected one column name, got {type(source).__name__}")
        _check_column(df, source, arg)
        ids.append(Slot(arg, source, arg))

    ops = []
    seen: dict[str, str] = {}

    def claim(name: str, arg: str) -> None:
        if name in seen:
            raise DuplicatePropertyError(
                f"property {name!r} is in both {seen[name]}= and {arg}=; Amplitude keeps only "
                "one operation per property — remove one of them"
            )
        seen[name] = arg

    for arg, op in OPERATIONS.items():
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
        group_slots = tuple(
            (_check_column(df, src, "groups"), Slot(_prop_name(gt, "groups"), src, "groups"))[1]
            for gt, src in groups.items()
        )

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
        user_id=ids[0],
        device_id=ids[1],
        operations=tuple(ops),
        unset=unset_names,
        groups=group_slots,
        fields=field_slots,
        nulls=nulls,
    )
