"""Every exception and warning amp_pandas raises, in one place.

The hierarchy::

    AmpPandasError                      base of everything raised on purpose
    ├── ArgumentError (ValueError)      identify() was called with arguments that cannot work;
    │   │                               raised at once, before anything is built or sent
    │   ├── ColumnNotFoundError         a column named in the mapping is not in the frame
    │   ├── MissingIdError              neither ``user_id`` nor ``device_id`` was given
    │   ├── UnknownFieldError           a ``fields`` key that Amplitude does not document
    │   └── DuplicatePropertyError      one property in two operations
    ├── ConfigurationError (ValueError) sending cannot start as configured (key, region,
    │   │                               endpoint, session, sending options): checked before
    │   │                               any request
    │   ├── MissingApiKeyError          no ``api_key=`` and no ``AMPLITUDE_API_KEY``
    │   └── InsecureEndpointError       plain ``http://`` to a host that is not loopback
    ├── SendError                       a send stopped early; ``.result`` holds the partial result
    │   ├── AuthenticationError         Amplitude rejected the API key (``.status_code``)
    │   └── AlreadySentError            this preview was sent already; ``.result`` is that send's
    ├── InputFileError                  the CLI could not read its input file
    ├── SandboxError                    the local sandbox could not start or was misused
    └── LedgerError                     the sync ledger cannot be used (``.path``); nothing sent
        ├── LedgerCorruptError          the file is not a readable amp_pandas ledger
        ├── LedgerAccessError           the file or its directory cannot be opened or written
        ├── LedgerVersionError          written by a newer amp_pandas (schema ``.version``)
        └── LedgerLockedError           another run of the job is sending (``.pid``, ``.host``)

    AmpPandasWarning (UserWarning)
    ├── RowsNotSucceededWarning         a send returned rows whose status is not ``success``
    └── InterruptedSendWarning          a send was interrupted; the result is partial

No message, attribute or ``repr`` of any of these ever holds the API key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "AmpPandasError",
    "ArgumentError",
    "ColumnNotFoundError",
    "MissingIdError",
    "UnknownFieldError",
    "DuplicatePropertyError",
    "ConfigurationError",
    "MissingApiKeyError",
    "InsecureEndpointError",
    "SendError",
    "AuthenticationError",
    "AlreadySentError",
    "InputFileError",
    "SandboxError",
    "AmpPandasWarning",
    "RowsNotSucceededWarning",
    "InterruptedSendWarning",
    "LedgerError",
    "LedgerCorruptError",
    "LedgerAccessError",
    "LedgerVersionError",
    "LedgerLockedError",
]


class AmpPandasError(Exception):
    """Base class of every error amp_pandas raises on purpose."""


class ArgumentError(AmpPandasError, ValueError):
    """The arguments given to ``identify`` cannot work; nothing was built or sent."""


class ColumnNotFoundError(ArgumentError):
    """A column named in the mapping is not in the DataFrame.

    Attributes
    ----------
    column : Hashable
        The label that was asked for.
    suggestion : Hashable or None
        The closest existing column label, when there is one.
    """

    def __init__(self, message: str, *, column: Any = None, suggestion: Any = None) -> None:
        super().__init__(message)
        self.column = column
        self.suggestion = suggestion


class MissingIdError(ArgumentError):
    """Neither ``user_id`` nor ``device_id`` was given."""


class UnknownFieldError(ArgumentError):
    """A ``fields`` key is not one of Amplitude's documented top-level keys."""


class DuplicatePropertyError(ArgumentError):
    """The same user property appears in two operations of one call."""


class ConfigurationError(AmpPandasError, ValueError):
    """Sending cannot start as configured; raised before any request.

    A :class:`ValueError` too, like :class:`ArgumentError`: both say a value given to
    ``identify`` cannot work. (An unknown keyword is Python's own :class:`TypeError`.)
    """


class MissingApiKeyError(ConfigurationError):
    """No API key: pass ``api_key=`` or set ``AMPLITUDE_API_KEY``."""


class InsecureEndpointError(ConfigurationError):
    """A plain ``http://`` URL to a host that is not loopback was refused."""


class SendError(AmpPandasError):
    """A send stopped before every row reached a final status.

    Attributes
    ----------
    result : pandas.DataFrame or None
        The per-row result as far as it got (rows never sent are ``not_sent``).
    """

    def __init__(self, message: str, *, result: pd.DataFrame | None = None) -> None:
        super().__init__(message)
        self.result = result


class AuthenticationError(SendError):
    """Amplitude answered that the API key is invalid or missing; the send stopped at once.

    Attributes
    ----------
    status_code : int
        The HTTP status of the response that said so.
    result : pandas.DataFrame or None
        The partial per-row result.
    """

    def __init__(
        self, message: str, *, status_code: int, result: pd.DataFrame | None = None
    ) -> None:
        super().__init__(message, result=result)
        self.status_code = status_code


class AlreadySentError(SendError):
    """This preview was sent already; sending it again was refused and nothing was sent.

    Sending twice applies ``$add``, ``$append`` and ``$prepend`` twice. To send again anyway,
    call ``preview.send(force=True)``; to send fresh data, build a new preview.

    Attributes
    ----------
    result : pandas.DataFrame or None
        The result of the earlier send.
    """


class InputFileError(AmpPandasError):
    """The command line could not read its input file."""


class SandboxError(AmpPandasError):
    """The local sandbox could not start, or was used in a way it does not support."""


class AmpPandasWarning(UserWarning):
    """Base class of amp_pandas warnings."""


class RowsNotSucceededWarning(AmpPandasWarning):
    """A send finished with rows whose status is not ``success``; see ``result.status``."""


class InterruptedSendWarning(AmpPandasWarning):
    """A send was interrupted; the returned result is partial and says which rows were sent."""


class LedgerError(AmpPandasError):
    """The sync ledger cannot be used; nothing was sent.

    Attributes
    ----------
    path : str or None
        The ledger file.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class LedgerCorruptError(LedgerError):
    """The ledger file is damaged or is not an amp_pandas ledger; it is never reset."""


class LedgerAccessError(LedgerError):
    """The ledger file or its directory cannot be created, opened or written."""


class LedgerVersionError(LedgerError):
    """The ledger was written by a newer amp_pandas (its schema ``.version`` is unknown here).

    Attributes
    ----------
    version : int
        The ledger's schema version.
    """

    def __init__(self, message: str, *, path: str | None = None, version: int = 0) -> None:
        super().__init__(message, path=path)
        self.version = version


class LedgerLockedError(LedgerError):
    """Another run of the same job holds the ledger's lock; nothing was sent.

    Attributes
    ----------
    job : str
        The job's name.
    pid : int
        The process running it.
    host : str
        The host that process runs on.
    started : str
        When that run started (ISO 8601, UTC).
    """

    def __init__(
        self, message: str, *, path: str | None = None, job: str = "", pid: int = 0,
        host: str = "", started: str = "",
    ) -> None:
        super().__init__(message, path=path)
        self.job = job
        self.pid = pid
        self.host = host
        self.started = started
