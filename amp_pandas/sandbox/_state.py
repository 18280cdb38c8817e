"""What a sandbox holds between requests: profiles, group profiles, records and apply logs.

One :class:`State` per sandbox, shared by its connection threads. ``lock`` guards everything
here (held only for short copies and for applying); ``serial`` makes parsing and applying one
request at a time, in arrival order. The faults live beside it (:mod:`._faults` has its own lock).
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Sequence
from typing import Any

from ._exchange import RequestRecord
from ._faults import Faults
from ._group_profiles import GroupStore
from ._profiles import ProfileStore

__all__ = ["GroupUpdate", "State"]

#: One change to one group: ``(group_type, group_value, group_properties or None)``.
GroupUpdate = tuple[str, str, "dict[str, Any] | None"]


class State:
    """The stores, the record log and the apply logs of one sandbox.

    Parameters
    ----------
    api_key : str
        The key requests must carry.
    faults : Faults
        The sandbox's fault settings.
    record_identifications : bool
        Keep what was applied (not only counts) in the apply logs and the records.
    """

    def __init__(self, api_key: str, faults: Faults, *, record_identifications: bool) -> None:
        self.api_key = api_key
        self._api_key_bytes = api_key.encode("utf-8")
        self.faults = faults
        self.record_identifications = record_identifications
        self.lock = threading.Lock()
        self.serial = threading.Lock()
        self.users = ProfileStore()
        self.groups = GroupStore()
        self.records: list[RequestRecord] = []
        self.applied: list[dict[str, Any]] = []
        self.applied_total = 0
        self.group_applied: list[dict[str, Any]] = []
        self.group_applied_total = 0

    def key_ok(self, key: Any) -> bool:
        """Whether ``key`` is this sandbox's API key (compared in constant time)."""
        return isinstance(key, str) and hmac.compare_digest(
            key.encode("utf-8", "surrogatepass"), self._api_key_bytes
        )

    def keep(self, record: RequestRecord) -> None:
        """Add one finished request to the record log."""
        with self.lock:
            self.records.append(record)

    def apply(
        self,
        stopping: threading.Event,
        identifications: Sequence[dict[str, Any]] = (),
        group_identifications: Sequence[dict[str, Any]] = (),
        group_updates: Sequence[GroupUpdate] = (),
    ) -> bool:
        """Apply validated identifications and group updates, in order, under the lock.

        ``group_identifications`` are what the group apply log keeps (``/groupidentify``'s
        identifications or HTTP V2's ``$groupidentify`` events); ``group_updates`` are the changes
        they make. Returns ``False`` (nothing applied) when the sandbox is stopping.
        """
        with self.lock:
            if stopping.is_set():
                return False
            if identifications:
                self.users.apply_many(identifications)
                if self.record_identifications:
                    self.applied.extend(identifications)
                self.applied_total += len(identifications)
            if group_updates:
                apply_group = self.groups.apply
                for group_type, group_value, properties in group_updates:
                    apply_group(group_type, group_value, properties)
            if group_identifications:
                if self.record_identifications:
                    self.group_applied.extend(group_identifications)
                self.group_applied_total += len(group_identifications)
        return True

    def clear(self) -> None:
        """Forget profiles, group profiles, links, records and apply logs."""
        with self.lock:
            self.users.clear()
            self.groups.clear()
            self.records = []
            self.applied = []
            self.applied_total = 0
            self.group_applied = []
            self.group_applied_total = 0
