"""``python -m amp_pandas``: the same as the ``amp-pandas`` command."""

import sys

from .cli import main

sys.exit(main())
