"""Data-quality checks of a current window against the reference: the breaks that PSI averages away.

A bookkeeping export that suddenly writes fen instead of yuan moves a few percent of rows far beyond
anything seen in training; PSI (equal-frequency bins) barely notices, a range check does. Per feature:

- missing share, current vs reference: an issue when the excess is at least `min_excess_share`, at
  least `min_count` rows, and at least `z` binomial standard errors (so a feature that is often
  missing, like a ratio with no base, does not flap);
- out-of-range share: rows below the reference minimum or above its maximum. With no drift, k of n
  current rows all beyond the maximum of m reference rows has probability C(n, k) / C(n + m, k) (the
  k largest of the pooled rows all being current ones), about (n / (n + m))^k: an extreme statistic
  is noisy when the window is as large as the reference, so an issue needs at least `min_count` rows,
  `max_out_of_range_share` of the window AND that exact tail probability (doubled for two tails)
  below `max_p_value`;
- unseen categories (categorical features): same count and share rule;
- a column the reference has but the window lacks is an issue on its own.

A `shared` feature (one value per cooperative or village) counts groups, not rows, in the range test:
k distinct values beyond the range among the window's distinct values, against as many reference ones.
When the largest cooperative gains a member, all its applicants are beyond the reference maximum of
the member count, yet that is one group moving one step, not a break.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from monitoring.psi import FeatureProfile, ReferenceProfile, as_float, categorical_codes


@dataclass(frozen=True)
class QualityRule:
    """Thresholds of the quality checks (see the module docstring)."""

    min_count: int = 10
    max_out_of_range_share: float = 0.005
    max_unseen_share: float = 0.005
    min_excess_missing_share: float = 0.01
    missing_z: float = 5.0
    max_p_value: float = 1e-4


def exceedance_p_value(k: int, n_current: int, n_reference: int) -> float:
    """P(at least k of n current rows beyond the extreme of m reference rows | no drift).

    Exact for continuous values: C(n, k) / C(n + m, k); ties only make it conservative.
    """
    if k <= 0:
        return 1.0
    if k > n_current:
        return 0.0
    log_p = sum(math.log((n_current - i) / (n_current + n_reference - i)) for i in range(k))
    return math.exp(log_p)


@dataclass(frozen=True)
class FeatureQuality:
    """One feature's quality in the current window, and the issues found."""

    name: str
    n_current: int
    missing_share_reference: float
    missing_share_current: float
    below_range: int
    above_range: int
    out_of_range_share: float
    unseen: int
    unseen_share: float
    column_absent: bool
    issues: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["issues"] = list(self.issues)
        return data


def _missing_issue(profile: FeatureProfile, missing: int, n: int, rule: QualityRule) -> bool:
    if n == 0:
        return False
    p_ref = profile.missing_share
    excess = missing / n - p_ref
    se = math.sqrt(max(p_ref * (1 - p_ref), 1e-12) * (1 / n + 1 / max(profile.n_reference, 1)))
    return (
        excess >= rule.min_excess_missing_share
        and excess * n >= rule.min_count
        and excess / se >= rule.missing_z
    )


def _beyond(present: npt.NDArray[np.float64], profile: FeatureProfile) -> tuple[int, int]:
    """How many of the (non-missing) values lie below and above the reference range."""
    if profile.minimum is None or profile.maximum is None:
        return 0, 0
    # A relative tolerance: aggregates summed in a different order differ in the last bits,
    # and a value equal to the reference max must not count as beyond it.
    slack = 1e-9 * max(abs(profile.minimum), abs(profile.maximum), 1.0)
    below = int(np.count_nonzero(present < profile.minimum - slack))
    above = int(np.count_nonzero(present > profile.maximum + slack))
    return below, above


def check_feature(
    profile: FeatureProfile,
    column: pd.Series | None,
    n_rows: int,
    rule: QualityRule,
    *,
    shared: bool = False,
) -> FeatureQuality:
    """Quality of one current column against its reference profile (`shared`: count groups)."""
    issues: list[str] = []
    if column is None:
        return FeatureQuality(
            profile.name, n_rows, profile.missing_share, 1.0, 0, 0, 0.0, 0, 0.0, True, ("column_absent",)
        )
    n = len(column)
    below = above = unseen = 0
    # The range test's sample: rows, or for a shared feature its distinct values (groups).
    tail_below = tail_above = 0
    tail_n, tail_m = n, profile.n_observed
    if profile.kind == "numeric":
        values = as_float(column)
        is_missing = np.isnan(values)
        present = values[~is_missing]
        below, above = _beyond(present, profile)
        tail_below, tail_above = below, above
        if shared:
            groups = np.unique(present)
            tail_below, tail_above = _beyond(groups, profile)
            tail_n, tail_m = int(groups.size), min(profile.n_distinct, int(groups.size))
    else:
        is_missing = column.isna().to_numpy()
        codes = categorical_codes(column, profile.categories, profile.other)
        unseen = int(np.count_nonzero(codes == profile.n_bins - 2))
    missing = int(np.count_nonzero(is_missing))
    out_share = (below + above) / n if n else 0.0
    unseen_share = unseen / n if n else 0.0
    if _missing_issue(profile, missing, n, rule):
        issues.append("missing_increase")
    tail_p = 2 * exceedance_p_value(max(tail_below, tail_above), tail_n, tail_m)
    if (
        tail_below + tail_above >= rule.min_count
        and out_share >= rule.max_out_of_range_share
        and tail_p <= rule.max_p_value
    ):
        issues.append("out_of_range")
    if unseen >= rule.min_count and unseen_share >= rule.max_unseen_share:
        issues.append("unseen_categories")
    return FeatureQuality(
        name=profile.name,
        n_current=n,
        missing_share_reference=profile.missing_share,
        missing_share_current=missing / n if n else 0.0,
        below_range=below,
        above_range=above,
        out_of_range_share=out_share,
        unseen=unseen,
        unseen_share=unseen_share,
        column_absent=False,
        issues=tuple(issues),
    )


def quality_checks(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    rule: QualityRule | None = None,
    *,
    shared: Collection[str] = (),
) -> dict[str, FeatureQuality]:
    """Quality of every profiled feature in a current window of feature rows."""
    rule = rule or QualityRule()
    n = len(current)
    return {
        name: check_feature(feature, current.get(name), n, rule, shared=name in shared)
        for name, feature in profile.features.items()
    }
