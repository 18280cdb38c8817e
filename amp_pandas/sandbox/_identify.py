"""The ``/identify`` endpoint: user identifications from a form (GET or POST), by Amplitude's rules.

Steps: form parameters and key; over ``max_identifications`` → 413; the first invalid
identification (Amplitude's rules, the poison ids) → 400 naming it and counting the others;
a throttled id → 429; then everything is applied in request order and the answer is 200
``success``.
"""

from __future__ import annotations

from typing import Any

from ._endpoint import answer_throttled, apply, read_identifications
from ._exchange import TEXT, Exchange
from ._rules import IDENTIFY_PATH, check_identification, first_invalid
from ._server import Route
from ._state import State

__all__ = ["METHODS", "PATH", "ROUTE", "handle"]

PATH = IDENTIFY_PATH
METHODS = ("GET", "POST")


def handle(exchange: Exchange, state: State) -> None:
    """Answer one ``/identify`` request (called one request at a time, under ``state.serial``)."""
    identifications = read_identifications(exchange, state)
    if identifications is None:
        return
    faults = state.faults
    limit = faults.max_identifications
    if len(identifications) > limit:
        exchange.error(
            413, f"{len(identifications)} identifications in one request; the limit is {limit}"
        )
        return
    reject_ids = faults.reject_ids
    invalid = first_invalid(identifications, reject_ids=reject_ids)
    if invalid is not None:
        exchange.error(400, invalid_message(identifications, invalid, reject_ids))
        return
    if answer_throttled(exchange, state, identifications):
        return
    if apply(exchange, state, identifications):
        exchange.finish(200, b"success", TEXT)


def invalid_message(identifications: list[Any], first: int, reject_ids: frozenset[str]) -> str:
    """``identification N: <reason>``, with how many more identifications are invalid."""
    problem = check_identification(identifications[first], reject_ids=reject_ids)
    assert problem is not None
    others = sum(
        1
        for identification in identifications[first + 1 :]
        if check_identification(identification, reject_ids=reject_ids) is not None
    )
    message = f"identification {first}: {problem[1]}"
    if others:
        message += f" (and {others} more invalid identification{'s' if others > 1 else ''})"
    return message


ROUTE = Route(PATH, METHODS, handle)
