"""Feature rows shaped like the served ones, for drift tests of the library, the job and the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd


def feature_rows(n: int, *, seed: int, amount_scale: float = 1.0) -> pd.DataFrame:
    """Rows shaped like member features: amounts with zeros, counts, a ratio with NaN, a category."""
    rng = np.random.default_rng(seed)
    delivers = rng.random(n) < 0.6
    amount = np.where(delivers, rng.lognormal(8.0, 0.8, n), 0.0) * amount_scale
    count = rng.poisson(2.0, n)
    share = np.where(count > 0, rng.beta(5, 2, n), np.nan)
    return pd.DataFrame(
        {
            "member_id": [f"m{seed}-{i}" for i in range(n)],
            "delivery_amount_90d": amount,
            "meeting_count_90d": count.astype(np.int64),
            "repayment_on_time_share_365d": share,
            "county_id": rng.choice(["county-01", "county-02"], n),
            "score": rng.normal(600, 40, n),
            "pd": rng.beta(2, 30, n),
        }
    )
