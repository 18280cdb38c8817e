"""The demo: the whole product in one command, against the bundled sandbox."""

from __future__ import annotations

import sys
import time
import warnings
from typing import TextIO

import numpy as np
import pandas as pd

__all__ = ["demo_frame", "run_demo"]


def demo_frame(n_users: int = 3000, seed: int = 7) -> pd.DataFrame:
    """A realistic cohort-tagging frame: a few thousand users and every kind of cell.

    Ints, floats, bools, Timestamps, categoricals, lists and missing values, plus a few rows
    that Amplitude would reject (so the dry run has something to show).

    Examples
    --------
    >>> df = demo_frame(50)
    >>> len(df), df["plan"].dtype.name
    (50, 'category')
    """
    rng = np.random.default_rng(seed)
    n = n_users
    uid = np.array([f"user-{i:05d}" for i in range(n)], dtype=object)
    signup = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 300 * 86_400, n), unit="s"
    )
    df = pd.DataFrame(
        {
            "user_id": uid,
            "plan": pd.Categorical(rng.choice(["free", "pro", "team"], n, p=[0.6, 0.3, 0.1])),
            "country": rng.choice(np.array(["DE", "FR", "US", "BR", "JP", None], dtype=object), n),
            "signup_at": signup,
            "sessions_last_week": rng.integers(0, 20, n),
            "ltv_eur": np.round(rng.gamma(2.0, 40.0, n), 2),
            "newsletter": rng.random(n) < 0.4,
            "interests": [
                list(rng.choice(["music", "sports", "news", "games"], k, replace=False))
                for k in rng.integers(0, 3, n)
            ],
        }
    )
    df.loc[rng.choice(n, n // 20, replace=False), "ltv_eur"] = np.nan
    # a few rows Amplitude would reject: a placeholder id, a too-short id, an infinite value
    df.loc[3, "user_id"] = "null"
    df.loc[11, "user_id"] = "u12"
    df.loc[42, "ltv_eur"] = np.inf
    return df


def run_demo(n_users: int = 3000, *, progress: bool = True, out: TextIO = sys.stdout) -> int:
    """Start a sandbox, dry-run, send, show the result and some profiles; 0 on success."""
    import amp_pandas  # noqa: F401  (registers df.amplitude)
    from amp_pandas import literal
    from amp_pandas.sandbox import Sandbox

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    pd.set_option("display.width", 120)
    df = demo_frame(n_users)
    say(f"amp_pandas demo — {len(df):,} users, against a local Amplitude sandbox (no network)\n")
    say(df.head().to_string())
    say()
    job = dict(
        user_id="user_id",
        set=["plan", "country", "newsletter", "ltv_eur"],
        set_once={"first_seen": "signup_at"},
        add={"sessions": "sessions_last_week"},
        post_insert={"interests": "interests", "campaigns": literal("spring-2025")},
    )
    with Sandbox() as sandbox:
        preview = df.amplitude.identify(
            **job,
            dry_run=True,
            server_url=sandbox.url,
            api_key=sandbox.api_key,
        )
        say("1. Dry run — nothing has been sent yet:\n")
        say(repr(preview))
        say("\n2. Sending the valid rows:\n")
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the summary below says the same, in context
            result = preview.send(progress=progress)
        elapsed = time.perf_counter() - started
        say(f"\n3. Result — one status per input row ({elapsed:.1f} s):\n")
        say(result.status.value_counts().to_string())
        failed = result[result.status != "success"]
        if len(failed):
            say("\nRows that did not succeed:")
            say(failed.to_string(max_rows=10))
        say("\n4. A few resulting profiles, as the sandbox holds them:\n")
        profiles = sandbox.profiles()
        say(profiles.head(5).to_string())
    say(
        "\nTo run the same job against Amplitude: set AMPLITUDE_API_KEY to your project's API "
        "key and drop server_url= (add region=\"eu\" for EU data residency):\n"
        "    result = df.amplitude.identify(user_id=\"user_id\", set=[\"plan\", ...])\n"
        "Re-run only what did not succeed:\n"
        "    df[result.status != \"success\"].amplitude.identify(...)"
    )
    ok = int((result.status == "success").sum())
    expected = int(preview.summary["valid"])
    return 0 if ok == expected else 1
