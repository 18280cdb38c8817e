"""Amplitude's rules, in one place: endpoints, ids, limits, fields and operations.

Everything the client knows about what Amplitude accepts lives here, and every other module reads
it from here: the build's checks, the sender's limits and answer table, the accessor's signature
and the command line's options. The sandbox (:mod:`amp_pandas.sandbox`) keeps an independent copy
on purpose, since it stands in for Amplitude; ``tests/test_rules_agree.py`` asserts that the two
agree, so a change to one without the other fails CI.

Where Amplitude's documentation is silent, the value chosen is the safe one and says so
(UNCONFIRMED).
"""

from __future__ import annotations

import re

__all__ = [
    "AMBIGUOUS_STATUSES",
    "ENDPOINTS",
    "FIELDS",
    "GROUP_OPERATIONS",
    "IDEMPOTENT_OPERATIONS",
    "IDENTIFY_PATH",
    "GROUP_IDENTIFY_PATH",
    "KEY_REJECTED",
    "MAX_BODY_BYTES",
    "MAX_GROUP_IDENTIFICATIONS",
    "MAX_GROUP_PROPERTIES",
    "MAX_GROUP_TYPES",
    "MAX_GROUPS",
    "MAX_ID_LENGTH",
    "MAX_IDENTIFICATIONS",
    "MAX_STRING_LENGTH",
    "MAX_USER_PROPERTIES_DEPTH",
    "MAX_UPDATES_PER_HOUR",
    "MIN_ID_LENGTH",
    "NON_IDEMPOTENT_OPERATIONS",
    "OPERATIONS",
    "REGIONS",
    "REJECTED_IDS",
    "RETRYABLE_STATUSES",
    "THROTTLE_PAUSE",
    "UNSET",
    "UNSET_VALUE",
]

# --- Endpoints --------------------------------------------------------------------------------

#: Region name -> API host. ``identify(region=...)`` takes these names.
REGIONS: dict[str, str] = {
    "standard": "https://api2.amplitude.com",
    "eu": "https://api.eu.amplitude.com",
}
IDENTIFY_PATH = "/identify"
GROUP_IDENTIFY_PATH = "/groupidentify"
#: Region name -> the Identify API's URL.
ENDPOINTS: dict[str, str] = {region: host + IDENTIFY_PATH for region, host in REGIONS.items()}

# --- Ids ----------------------------------------------------------------------------------------

#: Id values Amplitude rejects with a 400. Compared case-insensitively: Amplitude does not say
#: whether the list is case-sensitive (UNCONFIRMED), so the safe reading rejects every casing
#: before it can cost a 400 for a whole request.
REJECTED_IDS: frozenset[str] = frozenset(
    {
        "anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", "",
        "00000000-0000-0000-0000-000000000000", "{}", "lmy47d", "0", "-1",
    }
)  # fmt: skip
#: Shortest ``user_id`` / ``device_id`` Amplitude accepts (the HTTP V2 rule).
MIN_ID_LENGTH = 5
#: Longest id, group type or group value, in characters.
MAX_ID_LENGTH = 1024

# --- Identifications ----------------------------------------------------------------------------

#: The documented optional top-level string fields of an identification.
FIELDS: tuple[str, ...] = (
    "app_version", "platform", "os_name", "os_version", "device_brand", "device_manufacturer",
    "device_model", "carrier", "country", "region", "city", "dma", "language", "paying",
    "start_version",
)  # fmt: skip

#: ``identify()`` keyword -> user-property operation, in the order they appear in a payload.
#: ``$unset`` is not here: it takes no column (``nulls="unset"`` and sync's revert produce it).
OPERATIONS: dict[str, str] = {
    "set": "$set",
    "set_once": "$setOnce",
    "add": "$add",
    "append": "$append",
    "prepend": "$prepend",
    "pre_insert": "$preInsert",
    "post_insert": "$postInsert",
    "remove": "$remove",
}
UNSET = "$unset"
#: The value ``$unset`` takes for each property it removes.
UNSET_VALUE = "-"

#: Operations that change the profile again when applied twice: Amplitude does not deduplicate
#: identify calls, so a row holding one is never retried when its first attempt may have landed.
NON_IDEMPOTENT_OPERATIONS: frozenset[str] = frozenset({"$add", "$append", "$prepend"})
#: Every other operation: applying it twice leaves the profile as applying it once.
IDEMPOTENT_OPERATIONS: frozenset[str] = frozenset(
    {*OPERATIONS.values(), UNSET} - NON_IDEMPOTENT_OPERATIONS
)

#: ``user_properties`` may nest at most this many levels of objects and arrays, itself included.
MAX_USER_PROPERTIES_DEPTH = 40
#: String values longer than this many characters are truncated by Amplitude.
MAX_STRING_LENGTH = 1024
#: At most this many group types, and groups in total, in one identification's ``groups``.
MAX_GROUP_TYPES = 5
MAX_GROUPS = 10
#: Amplitude silently drops user-property updates past this many per user per hour.
MAX_UPDATES_PER_HOUR = 1800

# --- Group Identify -----------------------------------------------------------------------------

#: ``group_identify()`` keyword -> group-property operation. ``$preInsert``, ``$postInsert`` and
#: ``$remove`` are not documented for group properties, so they are refused.
GROUP_OPERATIONS: dict[str, str] = {
    "set": "$set",
    "set_once": "$setOnce",
    "add": "$add",
    "append": "$append",
    "prepend": "$prepend",
}
MAX_GROUP_IDENTIFICATIONS = 1024
MAX_GROUP_PROPERTIES = 1024

# --- Requests and answers -----------------------------------------------------------------------

#: Identifications per request: Amplitude answers 413 above this (HTTP V2 rule, by reference).
MAX_IDENTIFICATIONS = 2000
#: Request body limit: Amplitude answers 413 at 1 MB.
MAX_BODY_BYTES = 1_000_000
#: Answers after which the request may or may not have been applied.
AMBIGUOUS_STATUSES: frozenset[int] = frozenset({500, 502, 504})
#: Answers after which nothing was applied and the same request may go again.
RETRYABLE_STATUSES: frozenset[int] = frozenset({503})
#: How long Amplitude asks throttled ids to wait after a 429, in seconds.
THROTTLE_PAUSE = 15.0
#: A 400 (or 401/403) whose body says this means the key is wrong: stop, don't bisect. The body
#: is undocumented for ``/identify`` (UNCONFIRMED); HTTP V2 says ``Invalid API key``, so any
#: spelling of "invalid/missing api key" is taken as a key rejection.
KEY_REJECTED = re.compile(
    r"(invalid|missing)[ _]?api[ _]?key|api[ _]?key.*(invalid|missing)", re.IGNORECASE
)
