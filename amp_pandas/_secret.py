"""The API key kept secret: :class:`Secret` never shows itself, :func:`redact` removes it from text.

The key travels in request bodies only. Everything else that a user may see (reprs, messages,
excerpts of a server's answer) either never holds it or goes through :func:`redact` first.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import quote, quote_plus

__all__ = ["MASK", "Secret", "redact"]

#: What stands in for a key, or for any piece of one, in text.
MASK = "••••"


class Secret:
    """An API key that never shows itself.

    ``repr``, ``str`` and f-strings show at most the last four characters (none for keys
    shorter than 12 characters); :meth:`reveal` returns the key for the request body.

    Examples
    --------
    >>> key = Secret("0123456789abcdef01231a2b")
    >>> key
    Secret('•••• 1a2b')
    >>> f"{key}", Secret("short").masked
    ('•••• 1a2b', '••••')
    >>> key.reveal()[-4:]
    '1a2b'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"an API key must be a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The key itself. Only the request body should ever hold it."""
        return self._value

    @property
    def masked(self) -> str:
        """``"•••• 1a2b"`` (last four characters), or ``"••••"`` for keys under 12 characters."""
        return f"{MASK} {self._value[-4:]}" if len(self._value) >= 12 else MASK

    def __repr__(self) -> str:
        return f"Secret({self.masked!r})"

    def __str__(self) -> str:
        return self.masked

    def __format__(self, spec: str) -> str:
        return format(self.masked, spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


def redact(text: str, key: str) -> str:
    """``text`` with the key removed in every form a server might echo it.

    The key as is, URL-encoded (``%2B``/``+``), JSON-escaped (``\\/``), and any run of 8 or
    more of its characters (a truncated echo). Redact *before* cutting an excerpt, so that a cut
    can never leave a piece of the key.

    Examples
    --------
    >>> redact("bad key 0123456789abcdef, or 0123456789", "0123456789abcdef")
    'bad key ••••, or ••••'
    >>> redact("nothing here", "")
    'nothing here'
    """
    if not key:
        return text
    forms = {key, quote(key, safe=""), quote_plus(key, safe=""), json.dumps(key)[1:-1]}
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, MASK)
    if len(key) >= 8:
        for width in range(len(key) - 1, 7, -1):
            for start in range(0, len(key) - width + 1):
                piece = key[start : start + width]
                if piece in text:
                    text = text.replace(piece, MASK)
    return text
