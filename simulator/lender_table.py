"""A lender's awkward application table, generated: what `coopscore train --table` must cope with.

Everything a real export gets wrong at once, so the README example and the tests can show each check
offline: day-first dates (dd/mm/yyyy) with a few blank, a per-row text id, a constant branch column, a
text label with a third value for undecided loans, a collections column filled in after default (it
leaks the label), and missing incomes and land areas. Protected columns: `age` (22-65) and `gender`;
with `gender_proxy`, also `childcare_leave_days`, an ordinary-looking input that encodes gender
(almost only women take it) without saying anything about default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

START: Final = pd.Timestamp("2022-01-01")
MONTHS: Final = 24


def lender_table(rows: int = 2000, *, seed: int = 11, gender_proxy: bool = False) -> pd.DataFrame:
    """`rows` applications over two years; default risk rises with late payments and falls with income.

    `gender_proxy` adds `childcare_leave_days`, drawn from its own random stream so every other
    column is the same as without it.
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, rows)  # latent creditworthiness
    days = np.sort(rng.uniform(0, MONTHS * 30.4, rows))
    applied = START + pd.to_timedelta(days, unit="D")
    risk = 1 / (1 + np.exp(-(-2.0 - 1.3 * z)))
    defaulted = rng.random(rows) < risk
    outcome = np.where(defaulted, "default", "repaid").astype(object)
    outcome[rng.random(rows) < 0.03] = "pending"  # a decision not taken yet: neither good nor bad
    table = pd.DataFrame(
        {
            "application_id": [f"APP-{seed:02d}-{i:06d}" for i in range(rows)],
            "applied_on": applied.strftime("%d/%m/%Y"),
            "branch": "Linyi",
            "age": np.round(rng.uniform(22, 65, rows)).astype(int),
            "monthly_income": np.round(np.exp(7.4 + 0.45 * z + rng.normal(0, 0.4, rows)), 0),
            "land_mu": np.round(rng.gamma(2.0, 3.0, rows) * np.exp(0.2 * z), 1),
            "late_payments": rng.poisson(np.exp(-0.4 - 0.8 * z)),
            "loan_amount": np.round(rng.uniform(2, 50, rows)) * 1000,
            "crop": rng.choice(["rice", "tea", "maize", "hogs"], rows),
            "gender": rng.choice(["female", "male"], rows),
            # Written by the collections team after a default: it "predicts" the label perfectly.
            "collections_stage": np.where(outcome == "default", "referred", "none"),
            "outcome": outcome,
        }
    )
    table.loc[rng.random(rows) < 0.12, "monthly_income"] = np.nan
    table.loc[rng.random(rows) < 0.05, "land_mu"] = np.nan
    table.loc[rng.random(rows) < 0.01, "applied_on"] = None
    if gender_proxy:
        extra = np.random.default_rng([seed, 1])
        female = (table["gender"] == "female").to_numpy()
        days = np.where(
            female,
            extra.poisson(14, rows) * (extra.random(rows) < 0.9),
            extra.poisson(2, rows) * (extra.random(rows) < 0.1),
        )
        table.insert(list(table.columns).index("gender") + 1, "childcare_leave_days", days)
    return table


def write_lender_table(path: Path, rows: int = 2000, *, seed: int = 11, gender_proxy: bool = False) -> Path:
    """Write `lender_table` as CSV (or Parquet for a .parquet name) and return the path."""
    table = lender_table(rows, seed=seed, gender_proxy=gender_proxy)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False)
    return path
