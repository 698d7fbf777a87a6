"""Population Stability Index: the credit team's drift measure, computed by our own vectorized numpy.

Binning (fixed once from the reference, then applied to every current window):
- numeric feature: the inner reference quantiles at 1/B, 2/B, ..., (B-1)/B (B = 10 by default) of the
  non-missing values, deduplicated, are the cut points; bins are right-closed, `(-inf, c1], (c1, c2],
  ..., (ck, +inf)`, so a point mass (all the zero counts, say) gets its own bin and values beyond the
  reference range fall in the end bins. Missing values (NaN) are a bin of their own, last.
- categorical feature (strings, booleans, pandas categories): one bin per reference category (the
  `max_categories` most frequent; rarer ones pooled in `__other__`), then one bin for categories never
  seen in the reference (`__unseen__`), then the missing bin.

PSI = sum over bins of (a - e) * ln(a / e), with e / a the reference / current shares of rows. A bin
that is empty on one side would make the log infinite, so every share is floored at `EPSILON` = 1e-4
(the convention Evidently and most credit teams use): a bin holding 1% of current rows that was empty
in the reference contributes (0.01 - 0.0001) * ln(100) = 0.046.

Bands: < 0.1 stable, 0.1-0.25 watch, > 0.25 shift.

Noise: with n current and m reference rows and no drift, PSI is approximately (1/n + 1/m) times a
chi-square with (bins - 1) degrees of freedom. `psi_noise_floor` returns its 99.9% quantile, so a small
window's PSI can be told apart from sampling noise (see `monitoring.drift` for the alarm rule).
That holds for independent rows. A feature whose value every member of a cooperative or village shares
(a peer default rate, a member count) takes one value per group: 300 applicants from 24 cooperatives
are 24 observations of it, so for these `shared` features n counts the window's distinct values
(groups) and m as many at most (a reference spread over a quarter sees each group at several values).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

EPSILON: Final = 1e-4
DEFAULT_BINS: Final = 10
MAX_CATEGORIES: Final = 50
PSI_WATCH: Final = 0.1
PSI_SHIFT: Final = 0.25
MISSING_LABEL: Final = "__missing__"
UNSEEN_LABEL: Final = "__unseen__"
OTHER_LABEL: Final = "__other__"

Band = Literal["stable", "watch", "shift"]
Kind = Literal["numeric", "categorical"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def psi_band(psi: float, *, watch: float = PSI_WATCH, shift: float = PSI_SHIFT) -> Band:
    """The credit team's band for one PSI value: stable (< 0.1), watch (0.1-0.25), shift (> 0.25)."""
    if psi > shift:
        return "shift"
    if psi >= watch:
        return "watch"
    return "stable"


def quantile_edges(values: npt.ArrayLike, bins: int = DEFAULT_BINS) -> FloatArray:
    """Inner cut points of `bins` equal-frequency bins of the non-missing values, deduplicated."""
    if bins < 2:
        raise ValueError("bins must be >= 2")
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return np.empty(0, dtype=np.float64)
    qs = np.quantile(x, np.arange(1, bins) / bins, method="linear")
    return np.unique(qs)


def numeric_codes(values: npt.ArrayLike, edges: FloatArray) -> IntArray:
    """Bin index of each value: 0..len(edges) for the right-closed bins, len(edges)+1 for missing."""
    x = np.asarray(values, dtype=np.float64)
    codes = np.searchsorted(edges, x, side="left").astype(np.int64)
    codes[np.isnan(x)] = len(edges) + 1
    return codes


def categorical_codes(
    values: Iterable[Any], categories: Sequence[str], other: Sequence[str] = ()
) -> IntArray:
    """Bin index of each value: its category, then `__other__` (when `other` pools rare reference
    categories), `__unseen__`, missing."""
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    missing = series.isna().to_numpy()
    labels = pd.Index(series.astype(str).to_numpy(dtype=object))
    pooled = len(other) > 0
    n_known = len(categories) + (1 if pooled else 0)
    codes = pd.Index(list(categories)).get_indexer(labels).astype(np.int64)
    if pooled:
        in_other = pd.Index(list(other)).get_indexer(labels) >= 0
        codes[(codes < 0) & in_other] = len(categories)
    codes[codes < 0] = n_known  # unseen
    codes[missing] = n_known + 1
    return codes


def proportions(codes: IntArray, n_bins: int) -> FloatArray:
    """Share of rows in each of `n_bins` bins (all zeros for an empty window)."""
    counts = np.bincount(codes, minlength=n_bins).astype(np.float64)
    total = counts.sum()
    return counts / total if total > 0 else counts


def psi_from_proportions(
    expected: npt.ArrayLike, actual: npt.ArrayLike, *, epsilon: float = EPSILON
) -> float:
    """PSI between reference (`expected`) and current (`actual`) bin shares, shares floored at epsilon."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def _chi2_quantile(dof: int, probability: float) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile (good to ~1% for dof >= 2)."""
    z = _normal_quantile(probability)
    k = float(max(dof, 1))
    return k * (1.0 - 2.0 / (9.0 * k) + z * math.sqrt(2.0 / (9.0 * k))) ** 3


def _normal_quantile(probability: float) -> float:
    """Standard normal quantile by bisection on erf (no scipy needed)."""
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < probability:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def psi_noise_floor(n_reference: int, n_current: int, n_bins: int, quantile: float = 0.999) -> float:
    """PSI that sampling noise alone exceeds with probability 1 - `quantile` (no drift)."""
    if n_reference <= 0 or n_current <= 0:
        return math.inf
    return _chi2_quantile(max(n_bins - 1, 1), quantile) * (1.0 / n_current + 1.0 / n_reference)


@dataclass(frozen=True)
class FeatureProfile:
    """A feature's reference bins and statistics: everything needed to score a current window."""

    name: str
    kind: Kind
    reference_proportions: tuple[float, ...]
    n_reference: int
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    other: tuple[str, ...] = ()  # rare reference categories, pooled in `__other__`
    minimum: float | None = None
    maximum: float | None = None
    missing_share: float = 0.0
    n_distinct: int = 0  # distinct non-missing reference values (groups, for a shared feature)

    @property
    def n_bins(self) -> int:
        """Number of bins, the missing bin included."""
        return len(self.reference_proportions)

    @property
    def n_observed(self) -> int:
        """Reference rows with a value (not missing)."""
        return round(self.n_reference * (1.0 - self.missing_share))

    def bin_labels(self) -> list[str]:
        """Readable label of each bin, in order."""
        if self.kind == "categorical":
            pooled = [OTHER_LABEL] if self.other else []
            return [*self.categories, *pooled, UNSEEN_LABEL, MISSING_LABEL]
        bounds = [-math.inf, *self.edges, math.inf]
        return [f"({lo:g}, {hi:g}]" for lo, hi in itertools.pairwise(bounds)] + [MISSING_LABEL]

    def codes(self, values: Any) -> IntArray:
        """Bin index of each current value."""
        if self.kind == "numeric":
            return numeric_codes(values, np.asarray(self.edges, dtype=np.float64))
        return categorical_codes(values, self.categories, self.other)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "kind": self.kind,
            "reference_proportions": list(self.reference_proportions),
            "n_reference": self.n_reference,
            "edges": list(self.edges),
            "categories": list(self.categories),
            "other": list(self.other),
            "minimum": self.minimum,
            "maximum": self.maximum,
            "missing_share": self.missing_share,
            "n_distinct": self.n_distinct,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureProfile:
        """Inverse of `to_dict`."""
        return cls(
            name=str(data["name"]),
            kind=data["kind"],
            reference_proportions=tuple(float(p) for p in data["reference_proportions"]),
            n_reference=int(data["n_reference"]),
            edges=tuple(float(e) for e in data.get("edges", ())),
            categories=tuple(str(c) for c in data.get("categories", ())),
            other=tuple(str(c) for c in data.get("other", ())),
            minimum=None if data.get("minimum") is None else float(data["minimum"]),
            maximum=None if data.get("maximum") is None else float(data["maximum"]),
            missing_share=float(data.get("missing_share", 0.0)),
            n_distinct=int(data.get("n_distinct", 0)),
        )


def is_numeric_column(column: pd.Series) -> bool:
    """Numeric features are binned by quantiles; booleans, strings and categories by value."""
    dtype = column.dtype
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def as_float(column: pd.Series) -> FloatArray:
    """A numeric column as float64 with NaN for missing (nullable integer columns included)."""
    return np.asarray(pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))


def _numeric_profile(name: str, values: FloatArray, bins: int) -> FeatureProfile:
    edges = quantile_edges(values, bins)
    present = values[~np.isnan(values)]
    n_bins = len(edges) + 2
    return FeatureProfile(
        name=name,
        kind="numeric",
        reference_proportions=tuple(proportions(numeric_codes(values, edges), n_bins).tolist()),
        n_reference=len(values),
        edges=tuple(edges.tolist()),
        minimum=float(present.min()) if present.size else None,
        maximum=float(present.max()) if present.size else None,
        missing_share=float(np.isnan(values).mean()) if len(values) else 0.0,
        n_distinct=int(np.unique(present).size),
    )


def _categorical_profile(name: str, column: pd.Series, max_categories: int) -> FeatureProfile:
    present = column.dropna().astype(str)
    counts = present.value_counts()
    kept = sorted(str(c) for c in counts.index[:max_categories])
    other = tuple(sorted(str(c) for c in counts.index[max_categories:]))
    codes = categorical_codes(column, kept, other)
    n_bins = len(kept) + (1 if other else 0) + 2
    return FeatureProfile(
        name=name,
        kind="categorical",
        reference_proportions=tuple(proportions(codes, n_bins).tolist()),
        n_reference=len(column),
        categories=tuple(kept),
        other=other,
        missing_share=float(column.isna().mean()) if len(column) else 0.0,
        n_distinct=int(present.nunique()),
    )


@dataclass(frozen=True)
class ReferenceProfile:
    """Fitted reference bins for every monitored feature (fit once per model version, reuse)."""

    features: dict[str, FeatureProfile]
    n_rows: int
    bins: int = DEFAULT_BINS
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        reference: pd.DataFrame,
        columns: Sequence[str] | None = None,
        *,
        bins: int = DEFAULT_BINS,
        max_categories: int = MAX_CATEGORIES,
    ) -> ReferenceProfile:
        """Fix each feature's bins from the reference rows (numeric vs categorical from the dtype)."""
        names = list(columns) if columns is not None else list(reference.columns)
        missing = [c for c in names if c not in reference.columns]
        if missing:
            raise ValueError(f"reference lacks columns {missing}")
        profiles: dict[str, FeatureProfile] = {}
        for name in names:
            column = reference[name]
            if is_numeric_column(column):
                profiles[name] = _numeric_profile(name, as_float(column), bins)
            else:
                profiles[name] = _categorical_profile(name, column, max_categories)
        return cls(features=profiles, n_rows=len(reference), bins=bins)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored beside each report)."""
        return {
            "n_rows": self.n_rows,
            "bins": self.bins,
            "features": [p.to_dict() for p in self.features.values()],
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        """Inverse of `to_dict`."""
        profiles = [FeatureProfile.from_dict(p) for p in data["features"]]
        return cls(
            features={p.name: p for p in profiles},
            n_rows=int(data["n_rows"]),
            bins=int(data.get("bins", DEFAULT_BINS)),
            extra=dict(data.get("extra", {})),
        )


@dataclass(frozen=True)
class FeaturePSI:
    """One feature's PSI against its reference bins, with the sample sizes behind it."""

    name: str
    psi: float
    band: Band
    n_reference: int
    n_current: int
    noise_floor: float
    current_proportions: tuple[float, ...]
    groups: tuple[int, int] | None = None  # (reference, current) distinct values of a shared feature


def current_proportions(profile: FeatureProfile, column: pd.Series | None, n_rows: int) -> FloatArray:
    """Bin shares of a current column (a column absent from the window counts as all missing)."""
    if column is None:
        shares = np.zeros(profile.n_bins)
        if n_rows:
            shares[-1] = 1.0
        return shares
    values: Any = as_float(column) if profile.kind == "numeric" else column
    return proportions(profile.codes(values), profile.n_bins)


def distinct_values(column: pd.Series | None) -> int:
    """Distinct non-missing values of a column (0 when absent)."""
    return 0 if column is None else int(column.nunique(dropna=True))


def feature_psi(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    *,
    noise_quantile: float = 0.999,
    watch: float = PSI_WATCH,
    shift: float = PSI_SHIFT,
    shared: Collection[str] = (),
) -> dict[str, FeaturePSI]:
    """PSI of every profiled feature in a current window of feature rows.

    For the `shared` features (one value per cooperative or village) the noise floor counts distinct
    values on each side instead of rows (see the module docstring).
    """
    n = len(current)
    results: dict[str, FeaturePSI] = {}
    for name, feature in profile.features.items():
        column = current.get(name)
        shares = current_proportions(feature, column, n)
        value = psi_from_proportions(feature.reference_proportions, shares) if n else 0.0
        groups: tuple[int, int] | None = None
        n_ref_eff, n_cur_eff = feature.n_reference, n
        if name in shared:
            # The reference's distinct values are the same groups seen at several times, not more
            # groups: it holds no more of them than the window does.
            n_groups = distinct_values(column)
            groups = (min(feature.n_distinct, n_groups), n_groups)
            n_ref_eff, n_cur_eff = groups
        results[name] = FeaturePSI(
            name=name,
            psi=value,
            band=psi_band(value, watch=watch, shift=shift),
            n_reference=feature.n_reference,
            n_current=n,
            noise_floor=psi_noise_floor(n_ref_eff, n_cur_eff, feature.n_bins, noise_quantile),
            current_proportions=tuple(shares.tolist()),
            groups=groups,
        )
    return results


def psi(reference: npt.ArrayLike, current: npt.ArrayLike, bins: int = DEFAULT_BINS) -> float:
    """PSI of one numeric variable (e.g. the score), bins from the reference quantiles."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    edges = quantile_edges(ref, bins)
    n_bins = len(edges) + 2
    return psi_from_proportions(
        proportions(numeric_codes(ref, edges), n_bins), proportions(numeric_codes(cur, edges), n_bins)
    )
