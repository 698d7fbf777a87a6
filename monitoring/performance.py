"""Model performance as outcomes arrive: AUC, observed default rate and mean predicted PD by monthly
application cohort.

Outcomes (90+ days past due within 12 months) arrive a year after the decision, so recent cohorts
have no or few outcomes: each cohort reports how many of its applications have one, and AUC only
where both classes are present in at least `min_outcomes` labelled rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank (Mann-Whitney) formula, ties averaged; NaN without both classes."""
    y = np.asarray(labels, dtype=bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(scores, dtype=np.float64)).rank(method="average").to_numpy()
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def cohort_performance(
    decisions: pd.DataFrame,
    *,
    time_column: str = "applied_at",
    pd_column: str = "pd",
    outcome_column: str = "defaulted",
    min_outcomes: int = 30,
) -> list[dict[str, Any]]:
    """Per monthly cohort: applications, outcomes known, defaults, observed default rate, mean PD
    (all applications and labelled ones), and AUC of PD against the outcome.

    Args:
        decisions: one row per application with `applied_at` (UTC), `pd` and nullable `defaulted`.
        min_outcomes: fewest labelled rows for an AUC (smaller cohorts report None).
    """
    if decisions.empty:
        return []
    times = pd.to_datetime(decisions[time_column], utc=True)
    cohort = times.dt.strftime("%Y-%m")
    frame = pd.DataFrame(
        {
            "cohort": cohort.to_numpy(),
            "pd": pd.to_numeric(decisions[pd_column], errors="coerce").to_numpy(dtype=np.float64),
            "defaulted": decisions[outcome_column].astype("boolean").to_numpy(),
        }
    )
    rows: list[dict[str, Any]] = []
    for name, part in frame.groupby("cohort", sort=True):
        known = part["defaulted"].notna().to_numpy(dtype=bool)
        labelled = part.loc[known]
        labels = labelled["defaulted"].to_numpy(dtype=bool)
        scores = labelled["pd"].to_numpy(dtype=np.float64)
        area = auc(labels, scores) if len(labelled) >= min_outcomes else float("nan")
        rows.append(
            {
                "cohort": str(name),
                "applications": len(part),
                "outcomes": int(known.sum()),
                "defaults": int(labels.sum()),
                "observed_default_rate": _round(labels.mean()) if len(labels) else None,
                "mean_pd": _round(part["pd"].mean()),
                "mean_pd_labelled": _round(scores.mean()) if len(scores) else None,
                "auc": None if np.isnan(area) else round(area, 6),
            }
        )
    return rows


def _round(value: Any) -> float | None:
    number = float(value)
    return None if np.isnan(number) else round(number, 6)
