"""Per-user profiles and how an identification changes them.

The semantics follow Amplitude's documentation; where it is silent, the choice is marked
UNCONFIRMED and is the plausible one.

Profile key
    ``user_id`` when present; otherwise the user a ``device_id`` was linked to (an identification
    carrying both ids links them); otherwise the ``device_id``.
Linking
    The first time a device is linked to a user, a profile already kept under that device id is
    merged into the user's profile (the user's own values win) and its applied count moves with
    it, as Amplitude merges an anonymous device into the user it identifies as (UNCONFIRMED
    detail). A device later linked to another user follows the newer user; nothing moves.
Order inside one identification
    ``user_properties`` first, then ``groups``, then the top-level fields, so that a
    ``$clearAll`` does not wipe groups or fields sent alongside it. Inside ``user_properties`` the
    operations run in the order Amplitude's SDKs use (``$clearAll $unset $set $setOnce $add
    $append $prepend $preInsert $postInsert $remove``); the server's order is UNCONFIRMED.
Values
    ``null`` values are ignored (Amplitude never clears a property with ``null``; ``$unset`` does).
    Strings longer than 1024 characters are cut to 1024, as Amplitude does.
    Stored lists are never changed in place, so recorded identifications stay as they were sent.
Storage
    A profile keeps list values as tuples (nested ones too): a dict holding only atoms and tuples
    is left alone by Python's cyclic garbage collector, which otherwise walks every profile on
    each full collection (seconds per million identifications once a million profiles exist).
    :meth:`ProfileStore.profile` and :meth:`ProfileStore.snapshot` give them back as lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._rules import TOP_LEVEL_FIELDS

__all__ = ["ProfileStore", "apply_properties", "thaw"]

_MAX_STRING = 1024
_FIELDS = frozenset(TOP_LEVEL_FIELDS)
_Props = dict[str, Any]


def _clip(value: Any) -> Any:
    if type(value) is str and len(value) > _MAX_STRING:
        return value[:_MAX_STRING]
    return value


def _freeze(value: Any) -> Any:
    """A JSON value as stored: lists become tuples, at every depth (see *Storage* above)."""
    kind = type(value)
    if kind is list:
        return tuple([_freeze(item) for item in value])
    if kind is dict:
        return {name: _freeze(item) for name, item in value.items()}
    return value


def thaw(value: Any) -> Any:
    """A stored value back as JSON: tuples become lists; a fresh copy of every container.

    Examples
    --------
    >>> thaw({"tags": ("a", ("b",))})
    {'tags': ['a', ['b']]}
    """
    kind = type(value)
    if kind is tuple:
        return [thaw(item) for item in value]
    if kind is dict:
        return {name: thaw(item) for name, item in value.items()}
    return value


_thaw = thaw


def _values(value: Any) -> list[Any]:
    """An operation's value as a list: a list gives its elements in order, a scalar itself."""
    if type(value) is list:
        return [_clip(_freeze(item)) for item in value]
    return [_clip(_freeze(value))]


def _as_list(current: Any) -> list[Any]:
    """The current value as a list: missing is empty, a scalar is a one-element list."""
    if current is None:
        return []
    if type(current) is tuple:
        return list(current)
    return [current]


def _same(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: ``true`` is not ``1``."""
    return a == b and (type(a) is bool) == (type(b) is bool)


def _contains(items: list[Any], value: Any) -> bool:
    return any(_same(item, value) for item in items)


def _set(props: _Props, body: dict[str, Any]) -> None:
    """``$set``: overwrite."""
    for name, value in body.items():
        if value is not None:
            if type(value) is str and len(value) > _MAX_STRING:
                value = value[:_MAX_STRING]
            props[name] = _freeze(value)


def _set_once(props: _Props, body: dict[str, Any]) -> None:
    """``$setOnce``: set only if the property is absent.

    A property removed by ``$unset`` counts as absent again (UNCONFIRMED).
    """
    for name, value in body.items():
        if value is not None and name not in props:
            props[name] = _clip(_freeze(value))


def _add(props: _Props, body: dict[str, Any]) -> None:
    """``$add``: numeric add; a missing property starts at 0.

    An existing value that is not a number (a string, a list, a bool) is replaced by the added
    value: UNCONFIRMED.
    """
    for name, value in body.items():
        current = props.get(name)
        kind = type(current)
        if kind is int or kind is float:
            props[name] = current + value
        else:
            props[name] = value


def _append(props: _Props, body: dict[str, Any]) -> None:
    """``$append``: add the value(s) at the end; a scalar becomes a list; duplicates kept."""
    for name, value in body.items():
        if value is not None:
            props[name] = tuple(_as_list(props.get(name)) + _values(value))


def _prepend(props: _Props, body: dict[str, Any]) -> None:
    """``$prepend``: add the value(s) at the start, in the order given; duplicates kept."""
    for name, value in body.items():
        if value is not None:
            props[name] = tuple(_values(value) + _as_list(props.get(name)))


def _new_values(current: list[Any], value: Any) -> list[Any]:
    added: list[Any] = []
    for item in _values(value):
        if not _contains(current, item) and not _contains(added, item):
            added.append(item)
    return added


def _pre_insert(props: _Props, body: dict[str, Any]) -> None:
    """``$preInsert``: add the value(s) not already present at the start, order kept."""
    for name, value in body.items():
        if value is not None:
            current = _as_list(props.get(name))
            props[name] = tuple(_new_values(current, value) + current)


def _post_insert(props: _Props, body: dict[str, Any]) -> None:
    """``$postInsert``: add the value(s) not already present at the end, order kept."""
    for name, value in body.items():
        if value is not None:
            current = _as_list(props.get(name))
            props[name] = tuple(current + _new_values(current, value))


def _remove(props: _Props, body: dict[str, Any]) -> None:
    """``$remove``: remove every occurrence of the value(s).

    A missing property stays missing. A scalar property is treated as a one-element list: if it
    matches, the property becomes ``[]``; otherwise it is left as it was (UNCONFIRMED).
    """
    for name, value in body.items():
        if value is None or name not in props:
            continue
        current = props[name]
        removed = _values(value)
        if type(current) is tuple:
            props[name] = tuple([item for item in current if not _contains(removed, item)])
        elif _contains(removed, current):
            props[name] = ()


def _unset(props: _Props, body: dict[str, Any]) -> None:
    """``$unset``: delete the properties named (the values, by convention ``"-"``, are ignored)."""
    for name in body:
        props.pop(name, None)


def _clear_all(props: _Props, body: Any) -> None:
    """``$clearAll``: delete every property of the profile (the value is ignored)."""
    props.clear()


#: Operation → function, in the order they run inside one ``user_properties`` object.
_OPERATIONS: dict[str, Callable[[_Props, Any], None]] = {
    "$clearAll": _clear_all,
    "$unset": _unset,
    "$set": _set,
    "$setOnce": _set_once,
    "$add": _add,
    "$append": _append,
    "$prepend": _prepend,
    "$preInsert": _pre_insert,
    "$postInsert": _post_insert,
    "$remove": _remove,
}


_RANK = {operation: rank for rank, operation in enumerate(_OPERATIONS)}


def _by_rank(item: tuple[str, Any]) -> int:
    return _RANK[item[0]]


def apply_properties(props: dict[str, Any], properties: dict[str, Any]) -> None:
    """Apply one validated properties object to a profile's stored properties, in place.

    ``properties`` is either flat (a ``$set`` of the whole object) or only operations, which run
    in the order of the module docstring. This is the plain (not inlined) path; the group
    profiles use it, so group properties follow exactly the user-property semantics above.

    Examples
    --------
    >>> props = {"seats": 3}
    >>> apply_properties(props, {"$append": {"tags": "a"}, "$add": {"seats": 2}})
    >>> thaw(props)
    {'seats': 5, 'tags': ['a']}
    """
    if not properties:
        return
    if any(key[:1] != "$" for key in properties):
        _set(props, properties)
        return
    for operation, body in sorted(properties.items(), key=_by_rank):
        _OPERATIONS[operation](props, body)


class ProfileStore:
    """Profiles keyed by user (or device), device→user links and applied counts.

    Not thread-safe on its own: the sandbox calls it under its one lock.

    Examples
    --------
    >>> store = ProfileStore()
    >>> store.apply({"user_id": "user-1", "device_id": "device-1", "user_properties": {"a": 1}})
    'user-1'
    >>> store.apply({"device_id": "device-1", "user_properties": {"$add": {"a": 1}}})
    'user-1'
    >>> store.profiles["user-1"], store.counts["user-1"]
    ({'a': 2}, 2)
    """

    def __init__(self) -> None:
        self.profiles: dict[str, _Props] = {}
        self.counts: dict[str, int] = {}
        self.links: dict[str, str] = {}

    def profile(self, key: str) -> dict[str, Any]:
        """A copy of one profile with list values as lists (``{}`` if there is none)."""
        return _thaw(self.profiles.get(key, {}))

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """A copy of every profile, keyed by profile key, with list values as lists."""
        return {key: _thaw(props) for key, props in self.profiles.items()}

    def clear(self) -> None:
        """Forget every profile, link and count."""
        self.profiles.clear()
        self.counts.clear()
        self.links.clear()

    def _link(self, device_id: str, user_id: str) -> None:
        first_link = device_id not in self.links
        self.links[device_id] = user_id
        if not first_link or device_id == user_id or device_id not in self.profiles:
            return
        device_props = self.profiles.pop(device_id)
        user_props = self.profiles.get(user_id, {})
        device_props.update(user_props)
        self.profiles[user_id] = device_props
        self.counts[user_id] = self.counts.get(user_id, 0) + self.counts.pop(device_id, 0)

    def apply(self, identification: dict[str, Any]) -> str:
        """Apply one validated identification; return the profile key it changed."""
        self.apply_many((identification,))
        user_id = identification.get("user_id")
        if user_id is not None:
            return user_id
        device_id = identification["device_id"]
        return self.links.get(device_id, device_id)

    def apply_many(self, identifications: Iterable[dict[str, Any]]) -> None:
        """Apply validated identifications in order, as the module docstring describes.

        This is the sandbox's hot path: one loop with locals cached, ``$set``, ``$setOnce``,
        ``$add`` and ``$postInsert`` of a string inlined (they must stay identical to
        :func:`_set`, :func:`_set_once`, :func:`_add` and :func:`_post_insert`;
        ``tests/test_sandbox_profiles.py`` compares them).

        Examples
        --------
        >>> store = ProfileStore()
        >>> store.apply_many([
        ...     {"user_id": "user-1", "user_properties": {"$add": {"n": 3}, "$set": {"n": 2}}},
        ...     {"user_id": "user-1", "user_properties": {"$append": {"tags": "a"}}},
        ... ])
        >>> store.profile("user-1")
        {'n': 5, 'tags': ['a']}
        """
        links = self.links
        profiles = self.profiles
        counts = self.counts
        fields = _FIELDS
        operations = _OPERATIONS
        rank = _RANK
        by_rank = _by_rank
        longest = _MAX_STRING
        freeze = _freeze
        for identification in identifications:
            get = identification.get
            user_id = get("user_id")
            device_id: Any = get("device_id")
            if user_id is not None:
                key = user_id
                if device_id is not None and links.get(device_id) != user_id:
                    self._link(device_id, user_id)
            else:
                key = links.get(device_id, device_id)  # validated: a device_id is present
            props = profiles.get(key)
            if props is None:
                props = profiles[key] = {}
            counts[key] = counts.get(key, 0) + 1
            known = 1 if user_id is None or device_id is None else 2

            user_properties = get("user_properties")
            if user_properties is not None:
                known += 1
                items: Any = user_properties.items()
                if len(user_properties) > 1:
                    previous = -1
                    for operation in user_properties:
                        order = rank.get(operation, 99)  # 99: a plain key (flat object)
                        if order < previous:
                            items = sorted(items, key=by_rank)
                            break
                        previous = order
                for operation, body in items:
                    # The common operations are inlined copies of _set, _set_once, _add and
                    # _post_insert (a call per identification costs throughput); keep them in
                    # step (tests/test_sandbox_profiles.py compares them).
                    if operation == "$set" or operation == "$setOnce":
                        once = operation == "$setOnce"
                        for name, value in body.items():
                            if value is None or (once and name in props):
                                continue
                            kind = type(value)
                            if kind is str:
                                if len(value) > longest:
                                    value = value[:longest]
                            elif kind is list or kind is dict:
                                value = freeze(value)
                            props[name] = value
                    elif operation == "$add":
                        for name, value in body.items():
                            current = props.get(name)
                            kind = type(current)
                            if kind is int or kind is float:
                                props[name] = current + value
                            else:
                                props[name] = value
                    elif operation == "$postInsert":
                        for name, value in body.items():
                            if type(value) is not str:
                                _post_insert(props, {name: value})
                                continue
                            # _post_insert for one string, inlined: for a str, ``in`` is
                            # _contains (no other JSON value equals a string)
                            if len(value) > longest:
                                value = value[:longest]
                            current = props.get(name)
                            if current is None:
                                props[name] = (value,)
                            elif type(current) is not tuple:
                                props[name] = (current,) if current == value else (current, value)
                            elif value not in current:
                                props[name] = current + (value,)
                    elif operation[:1] == "$":
                        operations[operation](props, body)
                    else:  # a flat object: a $set of the whole object
                        _set(props, user_properties)
                        break
            groups = get("groups")
            if groups is not None:
                known += 1
                for name, value in groups.items():
                    props[name] = freeze(value)
            if len(identification) > known:
                for name in identification:
                    if name in fields:
                        value = identification[name]
                        if value is not None:
                            props[name] = _clip(freeze(value))
