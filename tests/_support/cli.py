"""Running the ``amp-pandas`` command line in the test process, with its output captured."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

from amp_pandas import cli


def run(*argv: str) -> tuple[int, str, str]:
    """``amp-pandas ARGV...``: the exit status, what it printed to stdout and to stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()
