"""The ``/2/httpapi`` endpoint: Amplitude's HTTP V2 API, as Amplitude's own SDKs use it.

A JSON body ``{"api_key": …, "events": [...], "options": {...}}``. ``$identify`` events are
applied like identifications; ``$groupidentify`` events (``groups={type: value}`` and
``group_properties``, the shape of the SDKs' ``group_identify``) are applied to the group
profiles; other events are checked for their ids, accepted and counted only. Every invalid event
is listed in the 400 answer (``events_with_invalid_fields`` / ``events_with_missing_fields``), as
HTTP V2 does.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ._endpoint import answer_throttled, apply, keep
from ._exchange import JSON, Exchange
from ._parse import parse_json
from ._rules import (
    HTTP_V2_PATH,
    MIN_ID_LENGTH,
    GroupKey,
    check_group_event,
    check_identification,
)
from ._server import Route
from ._state import GroupUpdate, State

__all__ = ["GROUP_IDENTIFY_EVENT", "IDENTIFY_EVENT", "METHODS", "PATH", "ROUTE", "handle"]

PATH = HTTP_V2_PATH
METHODS = ("POST",)
IDENTIFY_EVENT = "$identify"
GROUP_IDENTIFY_EVENT = "$groupidentify"
_NO_GROUPS: list[GroupKey] = []  # shared, never changed: the groups of any other event


def _groups_of(event: dict[str, Any]) -> list[GroupKey]:
    """The ``(group_type, group_value)`` pairs a valid ``$groupidentify`` event updates."""
    keys: list[GroupKey] = []
    for group_type, values in event["groups"].items():
        for value in [values] if type(values) is str else values:
            keys.append((group_type, value))
    return keys


def handle(exchange: Exchange, state: State) -> None:
    """Answer one ``/2/httpapi`` request (called one at a time, under ``state.serial``)."""
    payload, problem = parse_json(exchange.body)
    if problem is not None or type(payload) is not dict:
        exchange.error(400, f"Invalid JSON request body: {problem or 'not an object'}")
        return
    if not state.key_ok(payload.get("api_key")):
        # HTTP V2 says "Invalid API key: …"; Amplitude's SDK looks for that prefix to stop.
        exchange.error(400, "Invalid API key: not this sandbox's key")
        return
    events = payload.get("events")
    if type(events) is not list or not events:
        exchange.error(400, "Request missing required field", extra={"missing_field": "events"})
        return
    keep(exchange, state, events)
    faults = state.faults
    limit = faults.max_identifications
    if len(events) > limit:
        exchange.error(413, f"Payload too large: {len(events)} events; the limit is {limit}")
        return
    options = payload.get("options")
    min_id_length = MIN_ID_LENGTH
    if type(options) is dict:
        asked = options.get("min_id_length")
        if type(asked) is int and asked > 0:
            min_id_length = asked
    reject_ids = faults.reject_ids
    reject_groups = faults.reject_groups
    invalid: dict[str, list[int]] = {}
    missing: dict[str, list[int]] = {}
    first: str | None = None
    identifies: list[dict[str, Any]] = []
    group_events: list[dict[str, Any]] = []
    group_updates: list[GroupUpdate] = []
    groups_per_event: list[list[GroupKey]] = []
    for index, event in enumerate(events):
        keys = _NO_GROUPS
        found: tuple[str, str] | None
        if type(event) is not dict:
            found = ("event", "is not a JSON object")
        elif type(event.get("event_type")) is not str or not event["event_type"]:
            found = ("event_type", "needs an event_type")
        elif event["event_type"] == GROUP_IDENTIFY_EVENT:
            found = check_group_event(
                event,
                reject_ids=reject_ids,
                min_id_length=min_id_length,
                reject_groups=reject_groups,
            )
            if found is None:
                group_events.append(event)
                keys = _groups_of(event)
                properties = event.get("group_properties")
                group_updates.extend((kind, value, properties) for kind, value in keys)
        else:
            is_identify = event["event_type"] == IDENTIFY_EVENT
            found = check_identification(
                event,
                reject_ids=reject_ids,
                min_id_length=min_id_length,
                check_properties=is_identify,
            )
            if found is None and is_identify:
                identifies.append(event)
        groups_per_event.append(keys)
        if found is not None:
            field_name, reason = found
            if reason.startswith("needs "):
                missing.setdefault(field_name, []).append(index)
            else:
                invalid.setdefault(field_name, []).append(index)
            if first is None:
                first = f"event {index}: {reason}"
    if first is not None:
        extra: dict[str, Any] = {}
        if invalid:
            extra["events_with_invalid_fields"] = invalid
        if missing:
            extra["events_with_missing_fields"] = missing
        exchange.error(400, f"Invalid events: {first}", extra=extra)
        return
    if answer_throttled(exchange, state, events, groups_per_event if group_events else None):
        return
    if not apply(exchange, state, identifies, group_events, group_updates):
        return
    answer = {
        "code": 200,
        "events_ingested": len(events),
        "payload_size_bytes": exchange.bytes,
        "server_upload_time": int(time.time() * 1000),
    }
    exchange.finish(200, json.dumps(answer).encode(), JSON)


ROUTE = Route(PATH, METHODS, handle)
