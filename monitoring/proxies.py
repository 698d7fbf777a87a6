"""Single-column proxies: how well one column alone tells a group from the rest, and which way.

The strength is max(AUC, 1 - AUC) (0.5 = no information, 1.0 = a perfect proxy), never a bare AUC:
an AUC of 0.00 is a perfect *inverse* proxy, not the absence of one. The direction says which way:
for numbers, whether higher or lower values point to the group (missing counts as lowest); for text,
the category where the group is most common (categories are scored by the group's smoothed share).
Pure numpy/pandas, so the table checks at training time and the fairness audits share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import rankdata

Direction = Literal["higher", "lower", "category"]
MISSING_CATEGORY: Final = "(missing)"
# Categories are scored by the group's share, pulled towards the overall share by this many rows, so
# a category seen a handful of times does not look like a perfect proxy.
CATEGORY_PRIOR_ROWS: Final = 10.0


@dataclass(frozen=True)
class ProxySignal:
    """One column against one group: raw AUC, its strength and its direction."""

    auc: float  # of the column's values (numbers) or of the group's share per category (text)
    direction: Direction
    category: str | None = None  # text: the category where the group is most common

    @property
    def strength(self) -> float:
        """max(AUC, 1 - AUC): 0.5 = no information, 1.0 = a perfect proxy (either way)."""
        return max(self.auc, 1.0 - self.auc)

    def describe(self, group: str) -> str:
        """'higher values → female', 'lower values → female' or "category 'tea' → female"."""
        if self.direction == "category":
            return f"category {self.category!r} → {group}"
        return f"{self.direction} values → {group}"

    def to_dict(self, group: str) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "auc": self.auc,
            "strength": self.strength,
            "direction": self.direction,
            "category": self.category,
            "describe": self.describe(group),
        }


def rank_auc(y: npt.NDArray[np.int64], score: npt.NDArray[np.float64]) -> float:
    """ROC AUC of `score` for `y` == 1 by ranks (ties averaged); NaN with one class only."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = rankdata(score)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def is_numeric(column: pd.Series) -> bool:
    """Numbers (booleans count as 0/1); anything else is a category."""
    return bool(pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column))


def single_column_proxy(column: pd.Series, y: npt.ArrayLike) -> ProxySignal | None:
    """How well `column` alone separates `y` == 1 (the group) from `y` == 0 (the rest); None when
    either side is empty or the column carries one value only."""
    target = np.asarray(y, dtype=np.int64)
    if is_numeric(column):
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        finite = values[np.isfinite(values)]
        floor = (finite.min() - 1.0) if len(finite) else 0.0
        auc = rank_auc(target, np.where(np.isfinite(values), values, floor))
        if math.isnan(auc):
            return None
        return ProxySignal(auc, "higher" if auc >= 0.5 else "lower")
    text = column.astype("string").fillna(MISSING_CATEGORY).to_numpy(dtype=object)
    frame = pd.DataFrame({"category": text, "y": target})
    stats = frame.groupby("category")["y"].agg(["sum", "count"])
    base = float(target.mean()) if len(target) else math.nan
    share = (stats["sum"] + CATEGORY_PRIOR_ROWS * base) / (stats["count"] + CATEGORY_PRIOR_ROWS)
    auc = rank_auc(target, frame["category"].map(share).to_numpy(dtype=np.float64))
    if math.isnan(auc):
        return None
    return ProxySignal(auc, "category", str(share.idxmax()))
