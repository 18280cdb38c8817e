"""amp_pandas: update Amplitude user and group properties in bulk from a pandas DataFrame.

``import amp_pandas`` registers the ``df.amplitude`` accessor::

    preview = df.amplitude.identify(user_id="uid", set=["plan"], dry_run=True)  # IdentifyPreview
    result = preview.send()                                                     # SendResult
    companies.amplitude.group_identify(group_type="company", group_value="id", set=["plan"])

See the README for the whole story; :mod:`amp_pandas.sandbox` is a local Amplitude-compatible
server for rehearsals and tests. With Dask or polars imported (before or after), ``ddf.amplitude``
and ``pl_df.amplitude`` work too; :func:`identify_file` streams a file in bounded memory.
"""

from __future__ import annotations

from . import _extensions, errors
from ._accessor import AmplitudeAccessor
from ._amplitude import FIELDS
from ._ledger import Ledger
from ._preview import GroupIdentifyPreview, IdentifyPreview
from ._result import SendResult
from ._spec import literal
from ._stream import identify_file

__all__ = [
    "AmplitudeAccessor",
    "FIELDS",
    "GroupIdentifyPreview",
    "IdentifyPreview",
    "Ledger",
    "SendResult",
    "__version__",
    "errors",
    "identify_file",
    "literal",
]

__version__ = "0.1.0"

# ddf.amplitude (Dask) and pl_df.amplitude (polars), registered when those are imported
_extensions.install()
