"""Injected faults: settable at any time, thread-safe, and seeded so that tests repeat.

Random faults draw from one ``random.Random(seed)``: one draw per request for each fault whose
rate is above zero, in the order the request meets them (503 before applying; 500 after applying;
then dropping the connection). With requests sent one at a time, the same seed gives the same
faults on the same requests.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from amp_pandas.errors import SandboxError

from ._rules import MAX_GROUP_IDENTIFICATIONS, MAX_GROUP_PROPERTIES, GroupKey

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_GROUP_IDENTIFICATIONS",
    "DEFAULT_MAX_GROUP_PROPERTIES",
    "DEFAULT_MAX_IDENTIFICATIONS",
    "Faults",
    "GroupsArgument",
    "Throttle",
    "ThrottleHit",
]

DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_MAX_IDENTIFICATIONS = 2000
DEFAULT_MAX_GROUP_IDENTIFICATIONS = MAX_GROUP_IDENTIFICATIONS
DEFAULT_MAX_GROUP_PROPERTIES = MAX_GROUP_PROPERTIES

_RATES = ("rate_503", "rate_500_after_apply", "rate_drop_after_apply")
_LIMITS = (
    "max_body_bytes",
    "max_identifications",
    "max_group_identifications",
    "max_group_properties",
)
_SETTINGS = ("latency", *_RATES, "reject_ids", "reject_groups", *_LIMITS, "seed")

#: Groups as users name them: ``{group_type: group_value or [group_values]}``.
GroupsArgument = Mapping[str, str | Iterable[str]]


@dataclass
class Throttle:
    """One ``throttle(...)`` call: ids answered with 429 until it runs out."""

    user_ids: frozenset[str]
    device_ids: frozenset[str]
    groups: frozenset[GroupKey]
    remaining: int | None
    until: float | None
    json_body: bool


@dataclass
class ThrottleHit:
    """What a throttled request is told: the throttled ids and groups it contains, with how many
    of its items carry each, and the indexes of those items (``groups`` keyed
    ``"group_type:group_value"``)."""

    json_body: bool
    users: dict[str, int] = field(default_factory=dict)
    devices: dict[str, int] = field(default_factory=dict)
    events: list[int] = field(default_factory=list)
    groups: dict[str, int] = field(default_factory=dict)


def _id_set(ids: str | Iterable[str] | None, name: str) -> frozenset[str]:
    if ids is None:
        return frozenset()
    if isinstance(ids, str):
        return frozenset([ids])
    values = frozenset(ids)
    if not all(isinstance(value, str) for value in values):
        raise SandboxError(f"{name} must be strings")
    return values


def group_keys(groups: GroupsArgument | None, name: str) -> frozenset[GroupKey]:
    """``{group_type: value or [values]}`` as a set of ``(group_type, group_value)`` pairs.

    Examples
    --------
    >>> sorted(group_keys({"company": ["acme", "globex"], "team": "red"}, "groups"))
    [('company', 'acme'), ('company', 'globex'), ('team', 'red')]
    """
    if groups is None:
        return frozenset()
    if not isinstance(groups, Mapping):
        raise SandboxError(
            f"{name} must map group types to a group value or a list of them, "
            f"e.g. {{'company': ['acme']}}, not {type(groups).__name__}"
        )
    keys: set[GroupKey] = set()
    for group_type, values in groups.items():
        if not isinstance(group_type, str):
            raise SandboxError(f"{name} group types must be strings")
        if not isinstance(values, (str, Iterable)):
            raise SandboxError(
                f"{name} values must be strings or lists of strings, not {type(values).__name__}"
            )
        for value in _id_set(values, f"{name} values"):
            keys.add((group_type, value))
    return frozenset(keys)


class Faults:
    """The fault settings of one sandbox, guarded by a lock."""

    def __init__(self, seed: int = 0, **settings: Any) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self.reset()
        self.set(**settings)

    def reset(self) -> None:
        """Back to no faults, default limits, and the RNG reseeded with the constructor's seed."""
        with self._lock:
            self.latency = 0.0
            self.rate_503 = 0.0
            self.rate_500_after_apply = 0.0
            self.rate_drop_after_apply = 0.0
            self.reject_ids: frozenset[str] = frozenset()
            self.reject_groups: frozenset[GroupKey] = frozenset()
            self.max_body_bytes = DEFAULT_MAX_BODY_BYTES
            self.max_identifications = DEFAULT_MAX_IDENTIFICATIONS
            self.max_group_identifications = DEFAULT_MAX_GROUP_IDENTIFICATIONS
            self.max_group_properties = DEFAULT_MAX_GROUP_PROPERTIES
            self._rng = random.Random(self._seed)
            self._throttles: list[Throttle] = []

    def set(self, **settings: Any) -> None:
        """Change some settings; unknown names or impossible values raise ``SandboxError``."""
        unknown = sorted(set(settings) - set(_SETTINGS))
        if unknown:
            raise SandboxError(
                f"unknown fault setting(s) {', '.join(unknown)}; known: {', '.join(_SETTINGS)}"
            )
        checked: dict[str, Any] = {}
        for name, value in settings.items():
            if name in _RATES:
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or not (0.0 <= value <= 1.0)
                ):
                    raise SandboxError(
                        f"{name} must be a probability between 0 and 1, not {value!r}"
                    )
                checked[name] = float(value)
            elif name == "latency":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise SandboxError(f"latency must be a number of seconds >= 0, not {value!r}")
                checked[name] = float(value)
            elif name in _LIMITS:
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise SandboxError(f"{name} must be a positive integer, not {value!r}")
                checked[name] = value
            elif name == "reject_ids":
                checked[name] = _id_set(value, "reject_ids")
            elif name == "reject_groups":
                checked[name] = group_keys(value, "reject_groups")
            elif name == "seed":
                checked[name] = value
        with self._lock:
            for name, value in checked.items():
                if name == "seed":
                    self._seed = value
                    self._rng = random.Random(value)
                else:
                    setattr(self, name, value)

    def snapshot(self) -> dict[str, Any]:
        """The current settings (for ``repr`` and tests)."""
        with self._lock:
            return {
                "latency": self.latency,
                "rate_503": self.rate_503,
                "rate_500_after_apply": self.rate_500_after_apply,
                "rate_drop_after_apply": self.rate_drop_after_apply,
                "reject_ids": self.reject_ids,
                "reject_groups": self.reject_groups,
                "max_body_bytes": self.max_body_bytes,
                "max_identifications": self.max_identifications,
                "max_group_identifications": self.max_group_identifications,
                "max_group_properties": self.max_group_properties,
                "throttles": len(self._throttles),
            }

    def roll(self, name: str) -> bool:
        """Draw whether the fault ``name`` (one of the rates) strikes this request."""
        with self._lock:
            rate = getattr(self, name)
            if rate <= 0.0:
                return False
            return self._rng.random() < rate

    # -- throttling -------------------------------------------------------------------------

    def throttle(
        self,
        user_ids: str | Iterable[str] | None = None,
        device_ids: str | Iterable[str] | None = None,
        *,
        groups: GroupsArgument | None = None,
        requests: int | None = None,
        seconds: float | None = None,
        json_body: bool = True,
    ) -> None:
        """Add a throttle; see :meth:`Sandbox.throttle`."""
        users = _id_set(user_ids, "user_ids")
        devices = _id_set(device_ids, "device_ids")
        group_set = group_keys(groups, "groups")
        if not users and not devices and not group_set:
            raise SandboxError("throttle() needs user_ids or device_ids (or groups)")
        if requests is not None and (
            isinstance(requests, bool) or not isinstance(requests, int) or requests < 1
        ):
            raise SandboxError(f"requests must be a positive integer, not {requests!r}")
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0
        ):
            raise SandboxError(f"seconds must be a positive number, not {seconds!r}")
        until = None if seconds is None else time.monotonic() + seconds
        with self._lock:
            self._throttles.append(Throttle(users, devices, group_set, requests, until, json_body))

    def clear_throttle(self) -> None:
        """Remove every throttle."""
        with self._lock:
            self._throttles.clear()

    def throttled(
        self,
        identifications: list[Any],
        groups: Sequence[Sequence[GroupKey]] | None = None,
    ) -> ThrottleHit | None:
        """The throttle verdict for a request, or ``None``; counts one 429 on each throttle hit.

        ``groups`` gives, for each item of ``identifications``, the groups it updates (group
        identifications only). The verdict names only the throttled ids and groups present in
        the request, with how many of the request's items carry each, and those items' indexes.
        """
        if not self._throttles:
            return None
        request_users: set[str] = set()
        request_devices: set[str] = set()
        for identification in identifications:
            if type(identification) is dict:
                user_id = identification.get("user_id")
                device_id = identification.get("device_id")
                if type(user_id) is str:
                    request_users.add(user_id)
                if type(device_id) is str:
                    request_devices.add(device_id)
        request_groups = {key for keys in groups for key in keys} if groups else set()
        with self._lock:
            now = time.monotonic()
            self._throttles = [t for t in self._throttles if t.until is None or t.until > now]
            matched = [
                t
                for t in self._throttles
                if not t.user_ids.isdisjoint(request_users)
                or not t.device_ids.isdisjoint(request_devices)
                or not t.groups.isdisjoint(request_groups)
            ]
            if not matched:
                return None
            for throttle in matched:
                if throttle.remaining is not None:
                    throttle.remaining -= 1
            self._throttles = [t for t in self._throttles if t.remaining is None or t.remaining > 0]
        throttled_users = frozenset().union(*(t.user_ids for t in matched))
        throttled_devices = frozenset().union(*(t.device_ids for t in matched))
        throttled_groups = frozenset().union(*(t.groups for t in matched))
        hit = ThrottleHit(json_body=matched[0].json_body)
        for index, identification in enumerate(identifications):
            if type(identification) is not dict:
                continue
            user_id = identification.get("user_id")
            device_id = identification.get("device_id")
            found = False
            if type(user_id) is str and user_id in throttled_users:
                hit.users[user_id] = hit.users.get(user_id, 0) + 1
                found = True
            if type(device_id) is str and device_id in throttled_devices:
                hit.devices[device_id] = hit.devices.get(device_id, 0) + 1
                found = True
            if groups:
                for key in groups[index]:
                    if key in throttled_groups:
                        name = f"{key[0]}:{key[1]}"
                        hit.groups[name] = hit.groups.get(name, 0) + 1
                        found = True
            if found:
                hit.events.append(index)
        return hit
