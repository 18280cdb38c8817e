"""Cutting a plan into requests, and encoding each request's body.

Bodies are ``multipart/form-data``, written by hand: form-urlencoding a JSON array percent-escapes
every ``{ } " :`` (about a third more bytes) and costs several microseconds per identification in
``urllib.parse.urlencode``; a multipart body is the JSON text itself plus ~200 bytes of framing.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ._plan import Plan

from ._amplitude import MAX_BODY_BYTES as AMPLITUDE_MAX_BODY_BYTES
from ._amplitude import MAX_IDENTIFICATIONS

__all__ = [
    "MAX_BATCH_SIZE",
    "DEFAULT_BATCH_SIZE",
    "MAX_BODY_BYTES",
    "chunk_rows",
    "encode_body",
    "encode_request",
    "body_overhead",
]

MAX_BATCH_SIZE = MAX_IDENTIFICATIONS
DEFAULT_BATCH_SIZE = 1000
#: Amplitude answers 413 at 1 MB of body; stay safely under it.
MAX_BODY_BYTES = AMPLITUDE_MAX_BODY_BYTES - 4_096

_PART = b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n'


def body_overhead(key_length: int, boundary_length: int = 32) -> int:
    """Bytes of a multipart body that are not the identifications themselves."""
    b = boundary_length
    return (
        len(_PART % (b"x" * b, b"api_key")) + key_length + 2
        + len(_PART % (b"x" * b, b"identification")) + 2 + 2
        + len(b"--") + b + len(b"--\r\n")
    )


def new_boundary() -> bytes:
    """A random multipart boundary."""
    return os.urandom(16).hex().encode()


def encode_body(
    api_key: str, payloads: bytes | Sequence[str] | Sequence[bytes], boundary: bytes
) -> bytes:
    """The multipart body of one request: the key and the JSON array of identifications.

    Parameters
    ----------
    api_key : str
        The project API key (goes in the body, never in a URL).
    payloads : bytes, or sequence of str (or bytes)
        The JSON array of the identifications as UTF-8 (``Payloads.json_array``), or each
        identification's JSON text.
    boundary : bytes
        The multipart boundary. It must not occur in the key or the payloads: ``ValueError``
        if it does (:func:`encode_request` then picks another).

    Examples
    --------
    >>> body = encode_body("k" * 8, ['{"user_id":"user-1"}'], b"b0undary")
    >>> b'[{"user_id":"user-1"}]' in body
    True
    """
    if isinstance(payloads, bytes):
        array = payloads
    elif len(payloads) and isinstance(payloads[0], bytes):
        array = b"[" + b",".join(payloads) + b"]"  # type: ignore[arg-type]
    else:
        array = ("[" + ",".join(payloads) + "]").encode()  # type: ignore[arg-type]
    if boundary in array or boundary in api_key.encode():
        raise ValueError("the multipart boundary occurs in the body")
    return b"".join(
        (
            _PART % (boundary, b"api_key"),
            api_key.encode(),
            b"\r\n",
            _PART % (boundary, b"identification"),
            array,
            b"\r\n--",
            boundary,
            b"--\r\n",
        )
    )


def encode_request(
    api_key: str, payloads: bytes | Sequence[str], boundary: bytes
) -> tuple[bytes, str]:
    """The body of one request and its ``Content-Type``.

    ``boundary`` is used unless it occurs in the body (astronomically unlikely with a random
    one); then a fresh one is drawn, so that a body is never corrupt.

    Examples
    --------
    >>> body, kind = encode_request("k" * 8, b'[{"user_id":"user-1"}]', b"b0undary")
    >>> kind
    'multipart/form-data; boundary=b0undary'
    """
    while True:
        try:
            return encode_body(api_key, payloads, boundary), content_type(boundary)
        except ValueError:
            boundary = new_boundary()


def content_type(boundary: bytes) -> str:
    return "multipart/form-data; boundary=" + boundary.decode()


def chunk_rows(
    plan: Plan,
    rows: np.ndarray | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_body_bytes: int = MAX_BODY_BYTES,
    overhead: int | None = None,
) -> list[np.ndarray]:
    """Cut rows (positions, in send order) into requests.

    Each request holds at most ``batch_size`` identifications and its body stays under
    ``max_body_bytes``. A lane (rows sharing an id) is kept inside one request when it fits, so
    that requests rarely depend on each other; a lane longer than a request spans consecutive
    requests, which the sender then sends one after another. A single identification larger than
    the byte budget gets a request of its own (the server will answer 413 for it).

    Examples
    --------
    >>> from amp_pandas._plan import Plan
    >>> plan = Plan.from_identifications([{"user_id": f"user-{i % 3}"} for i in range(7)])
    >>> [c.tolist() for c in chunk_rows(plan, batch_size=3)]
    [[0, 3, 6], [1, 4], [2, 5]]
    """
    if rows is None:
        rows = plan.order
    n = len(rows)
    if n == 0:
        return []
    budget = max_body_bytes - (body_overhead(64) if overhead is None else overhead)
    sizes = plan.nbytes[rows] + 1  # each identification plus its comma / bracket
    cum = np.concatenate(([0], np.cumsum(sizes)))
    lanes = plan.lane[rows]
    # position (within rows) where each row's lane run starts
    starts_flag = np.empty(n, dtype=bool)
    starts_flag[0] = True
    starts_flag[1:] = lanes[1:] != lanes[:-1]
    run_start = np.maximum.accumulate(np.where(starts_flag, np.arange(n), 0))
    chunks: list[np.ndarray] = []
    s = 0
    while s < n:
        end = min(s + batch_size, n)
        by_bytes = int(np.searchsorted(cum, cum[s] + budget, side="right")) - 1
        end = min(end, by_bytes)
        if end <= s:
            end = s + 1  # one oversized identification alone
        elif end < n and lanes[end] == lanes[end - 1]:
            start_of_lane = int(run_start[end - 1])
            if start_of_lane > s:
                end = start_of_lane
        chunks.append(rows[s:end])
        s = end
    return chunks
