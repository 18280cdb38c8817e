"""Amplitude's rules, as the sandbox reads them: endpoints, limits, and checks that return a reason.

Each check answers ``None`` when the identification (or group identification) is acceptable, or
``(field, reason)`` where ``field`` names the part that was wrong (``user_id``,
``user_properties``, ``group_type`` …) and ``reason`` is a human sentence. An endpoint turns the
first reason into a 400 body; nothing in that request is applied. The checks are written for
speed (type identity tests, no recursion unless a value is a dict or a list): they run once per
identification on the hot path.

This is the sandbox's own copy of the rules, kept apart from the client's on purpose (the
sandbox stands in for Amplitude); ``tests/test_rules_agree.py`` holds the two to each other.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

__all__ = [
    "GROUP_IDENTIFY_PATH",
    "GroupKey",
    "GROUP_OPERATIONS",
    "HTTP_V2_PATH",
    "IDENTIFY_PATH",
    "KNOWN_OPERATIONS",
    "MAX_GROUP_IDENTIFICATIONS",
    "MAX_GROUP_PROPERTIES",
    "MAX_DEPTH",
    "MAX_GROUPS",
    "MAX_GROUP_TYPES",
    "MAX_ID_LENGTH",
    "MIN_ID_LENGTH",
    "REJECTED_IDS",
    "TOP_LEVEL_FIELDS",
    "check_group_event",
    "check_group_identification",
    "check_group_properties",
    "check_groups",
    "check_id",
    "check_identification",
    "count_group_properties",
    "check_user_properties",
    "first_invalid",
]

#: The paths Amplitude serves (on ``api2.amplitude.com`` and, for the EU, ``api.eu.amplitude.com``).
IDENTIFY_PATH = "/identify"
GROUP_IDENTIFY_PATH = "/groupidentify"
HTTP_V2_PATH = "/2/httpapi"

#: Every operation Amplitude documents inside ``user_properties``.
KNOWN_OPERATIONS: tuple[str, ...] = (
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
)
_KNOWN_OPERATIONS = frozenset(KNOWN_OPERATIONS)

#: The documented optional top-level keys of an identification (stored as profile columns).
TOP_LEVEL_FIELDS: tuple[str, ...] = (
    "app_version",
    "platform",
    "os_name",
    "os_version",
    "device_brand",
    "device_manufacturer",
    "device_model",
    "carrier",
    "country",
    "region",
    "city",
    "dma",
    "language",
    "paying",
    "start_version",
)

#: Id values Amplitude refuses (compared in lower case: case sensitivity is UNCONFIRMED, so the
#: sandbox takes the stricter reading).
REJECTED_IDS: frozenset[str] = frozenset(
    {
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "",
        "00000000-0000-0000-0000-000000000000",
        "{}",
        "lmy47d",
        "0",
        "-1",
    }
)

MIN_ID_LENGTH = 5
_REJECTED_LENGTHS = frozenset(len(value) for value in REJECTED_IDS)
MAX_ID_LENGTH = 1024
#: ``user_properties`` may hold at most this many levels of objects/arrays, itself included.
MAX_DEPTH = 40
MAX_GROUP_TYPES = 5
MAX_GROUPS = 10

#: The operations Amplitude documents inside ``group_properties``. ``$preInsert``,
#: ``$postInsert``, ``$remove`` and ``$clearAll`` are documented for user properties only: the
#: sandbox refuses them in group properties, saying so.
GROUP_OPERATIONS: tuple[str, ...] = ("$set", "$setOnce", "$add", "$append", "$prepend", "$unset")
_GROUP_OPERATIONS = frozenset(GROUP_OPERATIONS)
#: Group identifications in one ``/groupidentify`` request.
MAX_GROUP_IDENTIFICATIONS = 1024
#: Group properties in one ``/groupidentify`` request, counted over all its identifications
#: (see :func:`count_group_properties`).
MAX_GROUP_PROPERTIES = 1024
#: A group, as the sandbox keys it: ``(group_type, group_value)``.
GroupKey = tuple[str, str]

Problem = tuple[str, str]


def _exceeds(value: Any, budget: int) -> bool:
    """Whether the dict or list ``value`` holds more than ``budget`` levels of containers.

    ``value`` itself counts as one level. The recursion stops as soon as the budget is spent, so
    a hostile, very deep value costs at most ``budget`` frames.
    """
    if budget <= 0:
        return True
    children = value.values() if type(value) is dict else value
    for child in children:
        kind = type(child)
        if (kind is dict or kind is list) and _exceeds(child, budget - 1):
            return True
    return False


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_id(
    name: str,
    value: Any,
    *,
    min_length: int = MIN_ID_LENGTH,
    reject_ids: Collection[str] = (),
) -> Problem | None:
    """Check one ``user_id`` or ``device_id`` value (not ``None``).

    Parameters
    ----------
    name : str
        ``"user_id"`` or ``"device_id"``: used in the reason.
    value : object
        The value as parsed from JSON.
    min_length : int, default 5
        Amplitude's minimum id length (HTTP V2 lets a request lower it with ``min_id_length``).
    reject_ids : collection of str
        The sandbox's poison ids: an otherwise valid id in it is refused too.

    Returns
    -------
    tuple of (str, str) or None
        ``(name, reason)`` when the id is refused.

    Examples
    --------
    >>> check_id("user_id", "user-1") is None
    True
    >>> check_id("user_id", "NULL")
    ('user_id', "user_id 'NULL' is a value Amplitude rejects")
    """
    if type(value) is not str:
        return name, f"{name} must be a string, not {_type_name(value)}"
    if value.lower() in REJECTED_IDS:
        return name, f"{name} {value!r} is a value Amplitude rejects"
    if len(value) < min_length:
        return name, f"{name} {value!r} is shorter than {min_length} characters"
    if len(value) > MAX_ID_LENGTH:
        return name, f"{name} is longer than {MAX_ID_LENGTH} characters ({len(value)})"
    if value in reject_ids:
        return name, f"{name} {value!r} is one of the sandbox's reject_ids"
    return None


def check_user_properties(user_properties: Any) -> Problem | None:
    """Check a ``user_properties`` value (not ``None``).

    Refused: a value that is not an object; an object mixing operations (``$``-keys) with plain
    keys; an unknown operation; an operation whose value is not an object (except ``$clearAll``,
    whose value is ignored); a non-numeric ``$add`` value (``bool`` and ``null`` are not numbers);
    more than :data:`MAX_DEPTH` levels of objects/arrays, counting ``user_properties`` itself as
    level 1 (so ``{"$set": {"a": [..]}}`` uses three levels).

    Examples
    --------
    >>> check_user_properties({"$set": {"plan": "pro"}}) is None
    True
    >>> check_user_properties({"$add": {"logins": "1"}})[1]
    "$add value for 'logins' is not a number: '1'"
    """
    return _check_properties(user_properties, "user_properties", _KNOWN_OPERATIONS)


def check_group_properties(group_properties: Any) -> Problem | None:
    """Check a ``group_properties`` value (not ``None``).

    The rules of :func:`check_user_properties`, with the operations Amplitude documents for
    groups (:data:`GROUP_OPERATIONS`): ``$preInsert``, ``$postInsert``, ``$remove`` and
    ``$clearAll`` are refused with a reason that says they are not documented for groups.

    Examples
    --------
    >>> check_group_properties({"$set": {"plan": "pro"}}) is None
    True
    >>> check_group_properties({"$remove": {"tags": "a"}})[1].split(" (")[0]
    '$remove is not documented for group properties'
    """
    return _check_properties(group_properties, "group_properties", _GROUP_OPERATIONS)


def _check_properties(properties: Any, field: str, allowed: frozenset[str]) -> Problem | None:
    if type(properties) is not dict:
        return field, f"{field} must be a JSON object, not {_type_name(properties)}"
    operations = 0
    for key, body in properties.items():
        if key[:1] != "$":
            kind = type(body)
            if (kind is dict or kind is list) and _exceeds(body, MAX_DEPTH - 1):
                return field, f"{field} is nested deeper than {MAX_DEPTH} levels"
            continue
        operations += 1
        if key not in allowed:
            if key in _KNOWN_OPERATIONS:
                return field, (
                    f"{key} is not documented for group properties "
                    f"(only {' '.join(GROUP_OPERATIONS)} are)"
                )
            known = KNOWN_OPERATIONS if allowed is _KNOWN_OPERATIONS else GROUP_OPERATIONS
            return field, f"unknown operation {key!r} in {field} (known: {' '.join(known)})"
        if key == "$clearAll":
            continue
        if type(body) is not dict:
            return field, f"{key} must map property names to values, not {_type_name(body)}"
        if key == "$add":
            for name, value in body.items():
                kind = type(value)
                if kind is not int and kind is not float:
                    return field, f"$add value for {name!r} is not a number: {value!r}"
        else:
            for value in body.values():
                kind = type(value)
                if (kind is dict or kind is list) and _exceeds(value, MAX_DEPTH - 2):
                    return field, f"{field} is nested deeper than {MAX_DEPTH} levels"
    if operations and operations != len(properties):
        names = [key for key in properties if key[:1] == "$"]
        plain = [key for key in properties if key[:1] != "$"]
        return field, (
            f"{field} mixes operations ({', '.join(names)}) with plain properties "
            f"({', '.join(map(repr, plain[:5]))}); put plain properties inside $set"
        )
    return None


def check_groups(groups: Any) -> Problem | None:
    """Check a ``groups`` value (not ``None``): at most 5 group types and 10 groups in total.

    A group value is a string (one group) or a list of strings (that many groups).

    Examples
    --------
    >>> check_groups({"company": ["acme", "globex"]}) is None
    True
    >>> check_groups({"company": 3})[1]
    "group 'company' must be a string or a list of strings, not int"
    """
    if type(groups) is not dict:
        return "groups", f"groups must be a JSON object, not {_type_name(groups)}"
    if len(groups) > MAX_GROUP_TYPES:
        return "groups", (
            f"groups has {len(groups)} group types; Amplitude allows at most {MAX_GROUP_TYPES}"
        )
    total = 0
    for group_type, value in groups.items():
        if type(value) is str:
            total += 1
        elif type(value) is list and all(type(item) is str for item in value):
            total += len(value)
        else:
            return "groups", (
                f"group {group_type!r} must be a string or a list of strings, "
                f"not {_type_name(value)}"
            )
    if total > MAX_GROUPS:
        return (
            "groups",
            f"groups has {total} groups in total; Amplitude allows at most {MAX_GROUPS}",
        )
    return None


def check_identification(
    identification: Any,
    *,
    reject_ids: Collection[str] = (),
    min_id_length: int = MIN_ID_LENGTH,
    check_properties: bool = True,
) -> Problem | None:
    """Check one identification (or one HTTP V2 event) against Amplitude's rules.

    Parameters
    ----------
    identification : object
        One parsed element of the ``identification`` parameter.
    reject_ids : collection of str
        The sandbox's poison ids.
    min_id_length : int, default 5
        Minimum id length.
    check_properties : bool, default True
        Also check ``user_properties`` and ``groups`` (HTTP V2 events other than ``$identify``
        are not applied, so only their ids are checked).

    Returns
    -------
    tuple of (str, str) or None
        ``(field, reason)`` for the first problem found.

    Notes
    -----
    A ``null`` id counts as absent. Keys that Amplitude does not document are ignored, and the
    documented top-level strings (``platform`` …) are not type-checked: what Amplitude does with
    a non-string there is UNCONFIRMED, and the sandbox stores it as sent.

    Examples
    --------
    >>> check_identification({"user_id": "user-1", "user_properties": {"plan": "pro"}}) is None
    True
    >>> check_identification({"user_properties": {"plan": "pro"}})
    ('user_id', 'needs a user_id or a device_id')
    """
    if type(identification) is not dict:
        return "identification", f"is a JSON {_type_name(identification)}, not an object"
    get = identification.get
    user_id = get("user_id")
    device_id = get("device_id")
    if user_id is None and device_id is None:
        return "user_id", "needs a user_id or a device_id"
    # Fast path first; check_id explains a refusal.
    if user_id is not None and (
        type(user_id) is not str
        or not min_id_length <= len(user_id) <= MAX_ID_LENGTH
        or user_id.lower() in REJECTED_IDS
        or (reject_ids and user_id in reject_ids)
    ):
        return check_id("user_id", user_id, min_length=min_id_length, reject_ids=reject_ids)
    if device_id is not None and (
        type(device_id) is not str
        or not min_id_length <= len(device_id) <= MAX_ID_LENGTH
        or device_id.lower() in REJECTED_IDS
        or (reject_ids and device_id in reject_ids)
    ):
        return check_id("device_id", device_id, min_length=min_id_length, reject_ids=reject_ids)
    if check_properties:
        user_properties = get("user_properties")
        if user_properties is not None:
            problem = check_user_properties(user_properties)
            if problem is not None:
                return problem
        groups = get("groups")
        if groups is not None:
            problem = check_groups(groups)
            if problem is not None:
                return problem
    return None


def first_invalid(
    identifications: list[Any],
    *,
    reject_ids: Collection[str] = (),
    min_id_length: int = MIN_ID_LENGTH,
) -> int | None:
    """The index of the first identification :func:`check_identification` refuses, or ``None``.

    The common shape (a valid ``user_id``, no ``device_id`` or ``groups``, operations whose
    values hold no nested objects) is accepted inline, without function calls; every other
    identification goes through :func:`check_identification`, so both always agree.

    Examples
    --------
    >>> first_invalid([{"user_id": "user-1"}, {"user_id": "null"}])
    1
    """
    rejected = REJECTED_IDS
    rejected_lengths = _REJECTED_LENGTHS
    known = _KNOWN_OPERATIONS
    shortest = max(min_id_length, MIN_ID_LENGTH)
    for index, identification in enumerate(identifications):
        if type(identification) is dict:
            get = identification.get
            user_id = get("user_id")
            if (
                get("device_id") is None
                and get("groups") is None
                and type(user_id) is str
                and shortest <= len(user_id) <= MAX_ID_LENGTH
                and (len(user_id) not in rejected_lengths or user_id.lower() not in rejected)
                and not (reject_ids and user_id in reject_ids)
            ):
                user_properties = get("user_properties")
                if user_properties is None:
                    continue
                if type(user_properties) is dict:
                    for operation, body in user_properties.items():
                        if operation not in known or type(body) is not dict:
                            break
                        if operation == "$add":
                            for value in body.values():
                                kind = type(value)
                                if kind is not int and kind is not float:
                                    break
                            else:
                                continue
                            break
                        for value in body.values():
                            kind = type(value)
                            if kind is dict or kind is list:
                                break
                        else:
                            continue
                        break
                    else:
                        continue  # every operation passed: valid
        if (
            check_identification(identification, reject_ids=reject_ids, min_id_length=min_id_length)
            is not None
        ):
            return index
    return None


def _check_group_name(name: str, value: Any) -> Problem | None:
    if value is None:
        return name, f"needs a {name}"
    if type(value) is not str:
        return name, f"{name} must be a string, not {_type_name(value)}"
    if not value:
        return name, f"{name} is empty"
    if len(value) > MAX_ID_LENGTH:
        return name, f"{name} is longer than {MAX_ID_LENGTH} characters ({len(value)})"
    return None


def check_group_identification(
    identification: Any, *, reject_groups: Collection[tuple[str, str]] = ()
) -> Problem | None:
    """Check one element of ``/groupidentify``'s ``identification`` parameter.

    Parameters
    ----------
    identification : object
        One parsed group identification.
    reject_groups : collection of (str, str)
        The sandbox's poison groups, as ``(group_type, group_value)`` pairs.

    Returns
    -------
    tuple of (str, str) or None
        ``(field, reason)`` for the first problem found.

    Notes
    -----
    ``group_type`` and ``group_value`` must be non-empty strings of at most 1024 characters (a
    number is refused: UNCONFIRMED, Amplitude documents strings). ``group_properties`` follows
    :func:`check_group_properties`; an identification without it changes nothing (UNCONFIRMED).
    Other keys are ignored.

    Examples
    --------
    >>> check_group_identification(
    ...     {"group_type": "company", "group_value": "acme", "group_properties": {"plan": "pro"}}
    ... ) is None
    True
    >>> check_group_identification({"group_type": "company", "group_value": ""})
    ('group_value', 'group_value is empty')
    """
    if type(identification) is not dict:
        return "identification", f"is a JSON {_type_name(identification)}, not an object"
    group_type = identification.get("group_type")
    group_value = identification.get("group_value")
    problem = _check_group_name("group_type", group_type) or _check_group_name(
        "group_value", group_value
    )
    if problem is not None:
        return problem
    if reject_groups and (group_type, group_value) in reject_groups:
        return "group_value", (
            f"group {group_type}:{group_value} is one of the sandbox's reject_groups"
        )
    group_properties = identification.get("group_properties")
    if group_properties is not None:
        return check_group_properties(group_properties)
    return None


def count_group_properties(identification: dict[str, Any]) -> int:
    """How many group properties a valid group identification (or ``$groupidentify`` event) touches.

    A flat ``group_properties`` counts its keys; an object of operations counts the properties
    named in each operation (a property in two operations counts twice). How Amplitude counts
    toward its 1024 per request is UNCONFIRMED; this reading is the strictest plausible one.

    Examples
    --------
    >>> count_group_properties(
    ...     {"group_properties": {"$set": {"a": 1, "b": 2}, "$unset": {"c": "-"}}}
    ... )
    3
    """
    group_properties = identification.get("group_properties")
    if not group_properties:
        return 0
    total = 0
    for key, body in group_properties.items():
        total += len(body) if key[:1] == "$" and type(body) is dict else 1
    return total


def check_group_event(
    event: dict[str, Any],
    *,
    reject_ids: Collection[str] = (),
    min_id_length: int = MIN_ID_LENGTH,
    reject_groups: Collection[tuple[str, str]] = (),
) -> Problem | None:
    """Check an HTTP V2 ``$groupidentify`` event (a dict whose ``event_type`` was checked).

    Amplitude's SDKs send a group identify with ``groups`` (``{group_type: group_value}``) and
    ``group_properties``, and without a ``user_id`` or ``device_id``: ids are checked only when
    present. ``groups`` must name at least one group; each group type and value follows
    :func:`check_group_identification`'s rules (a list of values updates each of them), within
    :func:`check_groups`' limits.

    Examples
    --------
    >>> check_group_event({"event_type": "$groupidentify", "groups": {"company": "acme"},
    ...                    "group_properties": {"$add": {"seats": 2}}}) is None
    True
    >>> check_group_event({"event_type": "$groupidentify", "group_properties": {"a": 1}})
    ('groups', 'needs groups naming the group(s) to update (a $groupidentify event)')
    """
    for name in ("user_id", "device_id"):
        value = event.get(name)
        if value is not None:
            problem = check_id(name, value, min_length=min_id_length, reject_ids=reject_ids)
            if problem is not None:
                return problem
    groups = event.get("groups")
    if type(groups) is not dict or not groups:
        return "groups", "needs groups naming the group(s) to update (a $groupidentify event)"
    problem = check_groups(groups)
    if problem is not None:
        return problem
    if all(type(values) is list and not values for values in groups.values()):
        return "groups", "needs groups naming the group(s) to update (a $groupidentify event)"
    for group_type, values in groups.items():
        for group_value in [values] if type(values) is str else values:
            problem = check_group_identification(
                {"group_type": group_type, "group_value": group_value},
                reject_groups=reject_groups,
            )
            if problem is not None:
                return "groups", f"groups: {problem[1]}"
    group_properties = event.get("group_properties")
    if group_properties is not None:
        return check_group_properties(group_properties)
    return None
