"""Generate ``users.csv``, the cohort export that ``02-cohort-tagging.ipynb`` loads.

Run once (``python notebooks/data/make_users.py``); the CSV is committed. Deterministic: the same
file every run. 400 realistic rows plus a few bad ones an export really contains: a placeholder
id, a truncated id, a missing id, and an impossible signup date.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

N = 400
SEED = 2025


def make_users(n: int = N, seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"cust-{10_000 + i * 7}" for i in range(n)]
    signup = pd.Timestamp("2023-01-01") + pd.to_timedelta(
        rng.integers(0, 700 * 86_400, n), unit="s"
    )
    tag_pool = np.array(["beta", "newsletter", "mobile", "enterprise-trial", "support-vip"])
    tags = [
        ";".join(sorted(rng.choice(tag_pool, k, replace=False))) for k in rng.integers(0, 3, n)
    ]
    df = pd.DataFrame(
        {
            "user_id": ids,
            "country": rng.choice(["DE", "FR", "GB", "US", "BR", "JP", "IN"], n,
                                  p=[0.2, 0.12, 0.12, 0.3, 0.1, 0.08, 0.08]),
            "plan": rng.choice(["free", "pro", "team"], n, p=[0.55, 0.35, 0.10]),
            "signup_at": signup.strftime("%Y-%m-%d %H:%M:%S"),
            "sessions_30d": rng.poisson(6, n),
            "tags": tags,
        }
    )
    # what a real export holds too
    df.loc[17, "user_id"] = "anonymous"  # a placeholder id Amplitude rejects
    df.loc[143, "user_id"] = "c-42"  # truncated: shorter than 5 characters
    df.loc[288, "user_id"] = ""  # missing
    df.loc[305, "signup_at"] = "2024-02-30 09:15:00"  # no such day
    return df


if __name__ == "__main__":
    out = Path(__file__).with_name("users.csv")
    make_users().to_csv(out, index=False)
    print(f"wrote {out} ({N} rows)")
