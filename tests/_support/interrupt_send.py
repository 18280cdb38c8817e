"""Send a marked frame to a sandbox and write the result; the interrupt tests Ctrl-C it.

Usage::

    python interrupt_send.py URL KEY OUT.pkl ROWS '{"batch_size": 50, ...}'

Prints ``sending`` on stdout when the send starts. Writes the result (a pickled DataFrame) to
``OUT.pkl`` and the warnings the send raised to ``OUT.pkl.warnings.json``; exits 0. If a
``KeyboardInterrupt`` escapes the send (it must not: an interrupted send returns its partial
result), writes nothing and exits 3.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
import warnings
from pathlib import Path

# SIGINT may be inherited as ignored (a background job of a non-interactive shell): restore
# Python's default, so that the test's SIGINT is a KeyboardInterrupt as a user's Ctrl-C is.
signal.signal(signal.SIGINT, signal.default_int_handler)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for _support

import pandas as pd

import amp_pandas  # noqa: F401
from _support.frames import MAPPING, mixed_frame


def main() -> int:
    url, key, out, n, options = sys.argv[1:6]
    df = mixed_frame(int(n))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        print("sending", flush=True)
        try:
            result = df.amplitude.identify(
                **MAPPING, server_url=url, api_key=key, progress=False, **json.loads(options)
            )
        except KeyboardInterrupt:
            traceback.print_exc()
            print("KeyboardInterrupt escaped the send", file=sys.stderr, flush=True)
            return 3
    # The send is over: a late Ctrl-C must not cut the writing of its result short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pd.DataFrame(result).to_pickle(out)
    Path(out + ".warnings.json").write_text(
        json.dumps([[w.category.__name__, str(w.message)] for w in caught])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
