"""Encoding each request's body, and what a request's framing costs in bytes.

Bodies are ``multipart/form-data``, written by hand: form-urlencoding a JSON array percent-escapes
every ``{ } " :`` (about a third more bytes) and costs several microseconds per identification in
``urllib.parse.urlencode``; a multipart body is the JSON text itself plus ~200 bytes of framing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ._amplitude import MAX_BODY_BYTES as AMPLITUDE_MAX_BODY_BYTES
from ._amplitude import MAX_IDENTIFICATIONS

__all__ = [
    "MAX_BATCH_SIZE",
    "DEFAULT_BATCH_SIZE",
    "MAX_BODY_BYTES",
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
