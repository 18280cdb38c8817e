"""Parsing request bodies and parameters, fast and without ``cgi``/``email``.

Every parser returns ``(value, None)`` on success or ``(None, reason)`` when the input is
malformed, so the server can answer a 400 that explains itself. When a parameter appears more
than once, the first occurrence wins (what Amplitude does is UNCONFIRMED).
"""

from __future__ import annotations

import binascii
import json
import re
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "content_type_of",
    "parse_identification",
    "parse_json",
    "parse_multipart",
    "parse_urlencoded",
    "unquote_plus_fast",
]

Params = dict[str, str]

_NAME = re.compile(r'(?:^|;)\s*name\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BOUNDARY = re.compile(r'(?:^|;)\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)


def content_type_of(header: str | None) -> str:
    """The media type of a ``Content-Type`` header, lower case, without parameters."""
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


def unquote_plus_fast(text: str) -> str:
    """``urllib.parse.unquote_plus(text, errors="strict")``, about 10x faster on long values.

    A urlencoded JSON text is mostly ``%XX`` escapes, which ``unquote_plus`` decodes one by one
    in Python. Once ``+`` is a space and ``%`` is ``=``, the text is quoted-printable, which
    ``binascii`` decodes in C. Text where that reading could differ (a raw ``=``, CR or LF, a
    ``%`` not followed by two hex digits, non-ASCII) takes ``unquote_plus`` itself.

    Examples
    --------
    >>> unquote_plus_fast("%7B%22a%22%3A+%22%C3%A9%22%7D")
    '{"a": "é"}'
    """
    if "%" not in text:
        return text.replace("+", " ")
    if (
        not text.isascii()
        or "=" in text
        or "\r" in text
        or "\n" in text
        or _BAD_PERCENT.search(text) is not None
    ):
        return unquote_plus(text, errors="strict")
    return binascii.a2b_qp(text.replace("+", " ").replace("%", "=")).decode("utf-8")


def parse_urlencoded(text: bytes | str) -> tuple[Params | None, str | None]:
    """Parse ``application/x-www-form-urlencoded`` text (a body or a query string).

    Examples
    --------
    >>> parse_urlencoded(b"api_key=k&identification=%7B%7D")
    ({'api_key': 'k', 'identification': '{}'}, None)
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None, "the urlencoded body is not ASCII: percent-encode it"
    params: Params = {}
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        try:
            name = unquote_plus_fast(name)
            value = unquote_plus_fast(value)
        except UnicodeDecodeError:
            return None, "a urlencoded parameter is not valid UTF-8 once decoded"
        params.setdefault(name, value)
    return params, None


def parse_multipart(body: bytes, content_type: str) -> tuple[Params | None, str | None]:
    """Parse a ``multipart/form-data`` body by splitting on its boundary.

    Parameters
    ----------
    body : bytes
        The request body.
    content_type : str
        The full ``Content-Type`` header (it carries the boundary).

    Examples
    --------
    >>> body = (b'--xx\\r\\nContent-Disposition: form-data; name="api_key"\\r\\n\\r\\nk\\r\\n'
    ...         b'--xx--\\r\\n')
    >>> parse_multipart(body, "multipart/form-data; boundary=xx")
    ({'api_key': 'k'}, None)
    """
    match = _BOUNDARY.search(content_type.partition(";")[2])
    if match is None:
        return None, "multipart/form-data without a boundary parameter"
    boundary = match.group(1) or match.group(2)
    try:
        delimiter = b"--" + boundary.encode("ascii")
    except UnicodeEncodeError:
        return None, "the multipart boundary is not ASCII"
    parts = body.split(delimiter)
    if len(parts) < 2:
        return None, "the multipart body does not contain its boundary"
    params: Params = {}
    for part in parts[1:]:
        if part[:2] == b"--":
            return params, None
        if part[:2] != b"\r\n":
            return None, "a multipart boundary is not followed by CRLF"
        head, separator, value = part[2:].partition(b"\r\n\r\n")
        if not separator:
            return None, "a multipart part has no blank line after its headers"
        if value[-2:] != b"\r\n":
            return None, "a multipart part does not end with CRLF before the next boundary"
        name = _part_name(head)
        if name is None:
            return None, "a multipart part has no Content-Disposition name"
        if name in params:
            continue
        try:
            params[name] = value[:-2].decode("utf-8")
        except UnicodeDecodeError:
            return None, f"multipart part {name!r} is not valid UTF-8"
    return None, "the multipart body has no closing boundary"


def _part_name(head: bytes) -> str | None:
    for line in head.decode("latin-1").split("\r\n"):
        header, _, value = line.partition(":")
        if header.strip().lower() == "content-disposition":
            match = _NAME.search(value.partition(";")[2])
            if match is None:
                return None
            return match.group(1) if match.group(1) is not None else match.group(2)
    return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str | bytes) -> tuple[Any, str | None]:
    """Parse strict JSON text: ``NaN`` and ``Infinity`` are refused, as real JSON parsers do.

    Returns ``(value, None)`` or ``(None, reason)``; a JSON ``null`` is ``(None, None)``.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant), None
    except RecursionError:
        return None, "JSON nested too deeply"
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        return None, f"not valid JSON ({exc})"


def parse_identification(text: str | None) -> tuple[list[Any] | None, str | None]:
    """Parse the ``identification`` parameter into a list of identifications.

    One JSON object gives a one-element list; an array gives its elements. Missing, invalid
    JSON, anything else or an empty array gives a reason starting with ``missing_event``, the
    wording Amplitude documents for that case.

    Examples
    --------
    >>> parse_identification('{"user_id": "user-1"}')
    ([{'user_id': 'user-1'}], None)
    >>> parse_identification(None)[1]
    'missing_event: the identification parameter is missing'
    """
    if text is None:
        return None, "missing_event: the identification parameter is missing"
    value, problem = parse_json(text)
    if problem is not None:
        return None, f"missing_event: identification is {problem}"
    if type(value) is dict:
        return [value], None
    if type(value) is list:
        if not value:
            return None, "missing_event: identification is an empty array"
        return value, None
    return None, (
        "missing_event: identification must be a JSON object or an array of objects, "
        f"not {'null' if value is None else type(value).__name__}"
    )
