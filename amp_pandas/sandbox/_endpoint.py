"""The steps the endpoints share: form parameters and key, 429 answers, applying with faults.

Each step either returns what the endpoint needs next or ends the exchange with its answer (and
then returns ``None`` / ``False``), so an endpoint reads as a list of steps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._exchange import JSON, TEXT, Exchange
from ._parse import content_type_of, parse_identification, parse_multipart, parse_urlencoded
from ._rules import GroupKey
from ._state import GroupUpdate, State

__all__ = ["THROTTLED", "answer_throttled", "apply", "keep", "read_identifications"]

#: The reason given with every 429.
THROTTLED = "Too many requests for some devices and users"


def read_identifications(exchange: Exchange, state: State) -> list[Any] | None:
    """The ``identification`` parameter of a form request, once the ``api_key`` is checked.

    A GET reads the query string; a POST reads a urlencoded or multipart body (its query string
    is not read). Ends the exchange with a 400 and returns ``None`` when the parameters are
    malformed, the key is wrong (``Invalid API key``) or ``identification`` is missing or
    malformed (``missing_event…``). Otherwise sets ``exchange.count`` (and the recorded
    identifications).
    """
    media = content_type_of(exchange.content_type)
    params: dict[str, str] | None
    if exchange.method == "GET":
        params, problem = parse_urlencoded(exchange.query)
    elif media == "multipart/form-data":
        params, problem = parse_multipart(exchange.body, exchange.content_type or "")
    elif media == "application/x-www-form-urlencoded":
        params, problem = parse_urlencoded(exchange.body)
    else:
        params, problem = (
            None,
            (
                "the body must be application/x-www-form-urlencoded or multipart/form-data, "
                f"not {media or 'missing'}"
            ),
        )
    if params is None:
        exchange.error(400, problem or "malformed parameters")
        return None
    if not state.key_ok(params.get("api_key")):
        exchange.error(400, "Invalid API key")
        return None
    identifications, problem = parse_identification(params.get("identification"))
    if identifications is None:
        exchange.error(400, problem or "missing_event")
        return None
    keep(exchange, state, identifications)
    return identifications


def keep(exchange: Exchange, state: State, items: list[Any]) -> None:
    """Count the request's items, and keep them in its record unless recording is off."""
    exchange.count = len(items)
    if state.record_identifications:
        exchange.identifications = items


def answer_throttled(
    exchange: Exchange,
    state: State,
    items: list[Any],
    groups: Sequence[Sequence[GroupKey]] | None = None,
) -> bool:
    """Answer 429 when a throttle covers an id (or group) of the request; return whether it did.

    The JSON body is HTTP V2's (``throttled_users``, ``throttled_devices``, ``throttled_events``),
    plus ``throttled_groups`` (``{"group_type:group_value": n}``) when a group is throttled:
    what Amplitude's Group Identify API says in a 429 is UNCONFIRMED.
    """
    hit = state.faults.throttled(items, groups)
    if hit is None:
        return False
    if hit.json_body:
        answer: dict[str, Any] = {
            "code": 429,
            "error": THROTTLED,
            "eps_threshold": 30,
            "throttled_devices": hit.devices,
            "throttled_users": hit.users,
            "throttled_events": hit.events,
        }
        if hit.groups:
            answer["throttled_groups"] = hit.groups
        exchange.finish(429, json.dumps(answer).encode(), JSON, error=THROTTLED)
    else:
        exchange.finish(429, THROTTLED.encode(), TEXT, error=THROTTLED)
    return True


def apply(
    exchange: Exchange,
    state: State,
    identifications: Sequence[dict[str, Any]] = (),
    group_identifications: Sequence[dict[str, Any]] = (),
    group_updates: Sequence[GroupUpdate] = (),
) -> bool:
    """Apply, then draw the after-apply faults; return whether the caller should answer 200.

    ``False`` means the request was already dealt with: the sandbox was stopping (nothing
    applied, no answer), or an injected fault answered 500 or dropped the connection after
    applying.
    """
    if not state.apply(exchange.stopping, identifications, group_identifications, group_updates):
        # Stopped before applying: like a server that went down, nothing applied.
        exchange.drop(applied=False, error="the sandbox stopped")
        return False
    exchange.applied = True
    if state.faults.roll("rate_500_after_apply"):
        exchange.error(500, "internal error after applying (injected fault)")
        return False
    if state.faults.roll("rate_drop_after_apply"):
        exchange.drop(applied=True, error="connection dropped after applying (injected fault)")
        return False
    return True
