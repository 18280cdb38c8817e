"""Per-group profiles (group properties) and how a group identification changes them.

A group is keyed by ``(group_type, group_value)``. Its properties change by exactly the
user-property semantics of :mod:`amp_pandas.sandbox._profiles` (``$set``, ``$setOnce``,
``$add``, ``$append``, ``$prepend``, ``$unset``; a flat object is a ``$set``; ``null`` values
ignored; strings cut to 1024 characters), applied through
:func:`~amp_pandas.sandbox._profiles.apply_properties`, in a store of their own: a group never
shares properties with a user, even one whose id equals the group's value.
"""

from __future__ import annotations

from typing import Any

from ._profiles import apply_properties, thaw
from ._rules import GroupKey

__all__ = ["GroupStore"]


class GroupStore:
    """Group profiles and how many group identifications were applied to each.

    Not thread-safe on its own: the sandbox calls it under its one lock.

    Examples
    --------
    >>> store = GroupStore()
    >>> store.apply("company", "acme", {"plan": "pro"})
    >>> store.apply("company", "acme", {"$add": {"seats": 2}})
    >>> store.profile("company", "acme"), store.counts[("company", "acme")]
    ({'plan': 'pro', 'seats': 2}, 2)
    """

    def __init__(self) -> None:
        self.profiles: dict[GroupKey, dict[str, Any]] = {}
        self.counts: dict[GroupKey, int] = {}

    def apply(self, group_type: str, group_value: str, properties: dict[str, Any] | None) -> None:
        """Apply one validated ``group_properties`` (or ``None``: no change) to one group.

        The group's profile exists from its first identification on, even an empty one.
        """
        key = (group_type, group_value)
        props = self.profiles.get(key)
        if props is None:
            props = self.profiles[key] = {}
        self.counts[key] = self.counts.get(key, 0) + 1
        if properties:
            apply_properties(props, properties)

    def profile(self, group_type: str, group_value: str) -> dict[str, Any]:
        """A copy of one group's properties with list values as lists (``{}`` if there is none)."""
        return thaw(self.profiles.get((group_type, group_value), {}))

    def snapshot(self) -> dict[GroupKey, dict[str, Any]]:
        """A copy of every group profile, keyed by ``(group_type, group_value)``."""
        return {key: thaw(props) for key, props in self.profiles.items()}

    def clear(self) -> None:
        """Forget every group profile and count."""
        self.profiles.clear()
        self.counts.clear()
