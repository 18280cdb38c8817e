"""The ``/groupidentify`` endpoint: group properties from a form, by Amplitude's Group Identify API.

A POST (urlencoded or multipart, like ``/identify``) with ``api_key`` and ``identification``: one
object or an array of ``{"group_type": str, "group_value": str, "group_properties": {...}}``.

Steps: form parameters and key (400 ``Invalid API key`` / ``missing_event…``); over
``max_group_identifications`` (1024) → 413; the first invalid group identification (see
:func:`~amp_pandas.sandbox._rules.check_group_identification`: type and value present, strings,
non-empty, at most 1024 characters; only the operations documented for groups; never plain
properties mixed with operations; the poison groups) → 400 naming it and counting the others;
over ``max_group_properties`` (1024, counted over the request) → 413; a throttled group → 429;
then every identification is applied to the group profiles in request order, and the answer is
200 ``success``.

Amplitude documents only 200 and 400 for this endpoint. The sandbox answers the two per-request
limits with 413 (as ``/identify`` answers its limits), so that a client splits the request rather
than bisecting it: UNCONFIRMED. GET is refused (405): Amplitude documents POST only.
"""

from __future__ import annotations

from typing import Any

from ._endpoint import answer_throttled, apply, read_identifications
from ._exchange import TEXT, Exchange
from ._rules import (
    GROUP_IDENTIFY_PATH,
    GroupKey,
    check_group_identification,
    count_group_properties,
)
from ._server import Route
from ._state import GroupUpdate, State

__all__ = ["METHODS", "PATH", "ROUTE", "handle"]

PATH = GROUP_IDENTIFY_PATH
METHODS = ("POST",)


def handle(exchange: Exchange, state: State) -> None:
    """Answer one ``/groupidentify`` request (called one at a time, under ``state.serial``)."""
    identifications = read_identifications(exchange, state)
    if identifications is None:
        return
    faults = state.faults
    limit = faults.max_group_identifications
    if len(identifications) > limit:
        # UNCONFIRMED: 413 (documented: "at most 1024 group identifies per request").
        exchange.error(
            413,
            f"{len(identifications)} group identifications in one request; the limit is {limit}",
        )
        return
    reject_groups = faults.reject_groups
    problems = [
        check_group_identification(identification, reject_groups=reject_groups)
        for identification in identifications
    ]
    invalid = [index for index, problem in enumerate(problems) if problem is not None]
    if invalid:
        first = invalid[0]
        problem = problems[first]
        assert problem is not None
        message = f"identification {first}: {problem[1]}"
        others = len(invalid) - 1
        if others:
            message += f" (and {others} more invalid identification{'s' if others > 1 else ''})"
        exchange.error(400, message)
        return
    properties = sum(count_group_properties(identification) for identification in identifications)
    limit = faults.max_group_properties
    if properties > limit:
        # UNCONFIRMED: 413 (documented: "at most 1024 group properties per request").
        exchange.error(413, f"{properties} group properties in one request; the limit is {limit}")
        return
    keys: list[list[GroupKey]] = []
    updates: list[GroupUpdate] = []
    for identification in identifications:
        group_type: Any = identification["group_type"]
        group_value: Any = identification["group_value"]
        keys.append([(group_type, group_value)])
        updates.append((group_type, group_value, identification.get("group_properties")))
    # UNCONFIRMED: Amplitude does not say whether or how it throttles group identifies; the
    # sandbox's group throttles (Sandbox.throttle(groups=...)) key on (group_type, group_value).
    if answer_throttled(exchange, state, identifications, keys):
        return
    if apply(exchange, state, group_identifications=identifications, group_updates=updates):
        exchange.finish(200, b"success", TEXT)


ROUTE = Route(PATH, METHODS, handle)
