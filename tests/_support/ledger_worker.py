"""A process that writes to a ledger, for the tests that kill it or race it.

``hold PATH``
    Begin a run of the job, put ``held-1`` and ``held-2`` in flight, print ``ready <pid>`` and
    wait until stdin closes (then finish the run).
``write PATH SEED KILL_AT``
    Begin a run and write batches as a sender would, printing a line *before* each step starts
    (``F i``, ``d i``) and *after* each step committed (``f i``, ``D i``), each followed by the
    number of progress-handler calls so far. With ``KILL_AT > 0``,
    SQLite's progress handler sends SIGKILL to this process at its ``KILL_AT``-th call (every
    20 virtual-machine steps): a kill inside a transaction, at a point the seed reproduces.
    Without, it prints ``sending N`` before the run finishes and ``calls N`` at the end.
"""

from __future__ import annotations

import os
import random
import signal
import sys

from amp_pandas._ledger import Ledger

JOB = ("crash", "http://127.0.0.1:9/identify", "worker-key")
BATCHES = 12
BATCH = 40
#: The outcome each batch is answered with, drawn from the seed.
OUTCOMES = ("acknowledged", "acknowledged", "failed", "unknown")


def batches(seed: int) -> list[tuple[list[str], str]]:
    """The batches of a seed: their users and the outcome of each (the parent's oracle)."""
    rng = random.Random(seed)
    out = []
    for b in range(BATCHES):
        out.append(([f"user-{b:02d}-{i:03d}" for i in range(BATCH)], rng.choice(OUTCOMES)))
    return out


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    ledger = Ledger(path)
    job = ledger.job(*JOB)
    if mode == "hold":
        run = ledger.begin_run(job)
        run.mark_in_flight(["held-1", "held-2"], [b"h" * 16, b"i" * 16])
        say(f"ready {os.getpid()}")
        sys.stdin.read()
        run.finish()
        return
    seed, kill_at = int(sys.argv[3]), int(sys.argv[4])
    calls = 0

    def progress() -> int:
        nonlocal calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return 0

    run = ledger.begin_run(job)
    assert ledger._conn is not None
    ledger._conn.set_progress_handler(progress, 20)
    for b, (keys, outcome) in enumerate(batches(seed)):
        say(f"F {b} {calls}")
        run.mark_in_flight(keys, [bytes([b]) * 16] * len(keys))
        say(f"f {b} {calls}")
        say(f"d {b} {calls}")
        run.mark_done(keys, outcome)
        say(f"D {b} {calls}")
    say(f"sending {calls}")
    run.finish()
    say(f"calls {calls}")


if __name__ == "__main__":
    main()
