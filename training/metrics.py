"""Credit-risk metrics of a PD vector against observed defaults.

AUC and Gini (ranking), KS (separation), Brier and log loss (accuracy of probabilities), expected
calibration error over equal-count bins (calibration where the applicants are, not where the bins
are empty), and the approval rate a lender could afford at a target bad rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Metrics:
    """Metrics of one model on one set of applications (NaN where undefined)."""

    n: int
    defaults: int
    default_rate: float
    mean_pd: float
    auc: float
    gini: float
    ks: float
    brier: float
    log_loss: float
    ece: float
    approval_rate: float  # share approvable (lowest PD first) keeping the bad rate <= target

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN -> None)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def roc_auc(y: npt.ArrayLike, risk: npt.ArrayLike) -> float:
    """ROC AUC (ties count half); NaN without both classes."""
    labels = np.asarray(y, dtype=np.int64)
    scores = np.asarray(risk, dtype=np.float64)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def ks_statistic(y: npt.ArrayLike, risk: npt.ArrayLike) -> float:
    """Kolmogorov-Smirnov: the largest gap between the defaulters' and payers' cumulative shares."""
    labels = np.asarray(y, dtype=np.int64)
    if labels.sum() == 0 or labels.sum() == len(labels):
        return float("nan")
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, np.asarray(risk, dtype=np.float64))
    return float(np.max(tpr - fpr))


def expected_calibration_error(y: npt.ArrayLike, pd_: npt.ArrayLike, bins: int = 10) -> float:
    """Sum over equal-count PD bins of (bin share) x |mean PD - default rate|."""
    labels = np.asarray(y, dtype=np.float64)
    probs = np.asarray(pd_, dtype=np.float64)
    if len(labels) == 0:
        return float("nan")
    order = np.argsort(probs, kind="stable")
    error = 0.0
    for chunk in np.array_split(order, min(bins, len(order))):
        if len(chunk):
            error += len(chunk) / len(order) * abs(float(probs[chunk].mean()) - float(labels[chunk].mean()))
    return error


def ece_interval(
    y: npt.ArrayLike, pd_: npt.ArrayLike, bins: int = 10, *, n_boot: int = 200, seed: int = 0
) -> tuple[float, float, float]:
    """ECE's bias-corrected percentile-bootstrap 95% interval, and the median ECE a perfectly calibrated model
    would show on these PDs (labels drawn from the PDs themselves): the slice's noise floor.

    On a few hundred rows the floor alone can exceed a 0.02 limit, so a failed gate can be noise.
    """
    labels = np.asarray(y, dtype=np.float64)
    probs = np.asarray(pd_, dtype=np.float64)
    if len(labels) == 0 or n_boot == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n = len(labels)
    resampled = []
    for _ in range(n_boot):
        pick = rng.integers(0, n, n)
        resampled.append(expected_calibration_error(labels[pick], probs[pick], bins))
    floor = [
        expected_calibration_error((rng.random(n) < probs).astype(np.float64), probs, bins)
        for _ in range(n_boot)
    ]
    # ECE is biased upward, and more so on a resample (duplicates look like miscalibration): a raw
    # percentile interval can sit wholly above the estimate. Shift it back by the bootstrap's bias.
    observed = expected_calibration_error(labels, probs, bins)
    bias = float(np.mean(resampled)) - observed
    low, high = np.percentile(resampled, [2.5, 97.5]) - bias
    return max(0.0, float(low)), max(0.0, float(high)), float(np.median(floor))


def approval_rate_at_bad_rate(y: npt.ArrayLike, pd_: npt.ArrayLike, target_bad_rate: float) -> float:
    """Largest share of applicants, taken lowest PD first, whose observed bad rate stays <= target."""
    labels = np.asarray(y, dtype=np.float64)
    if len(labels) == 0:
        return float("nan")
    order = np.argsort(np.asarray(pd_, dtype=np.float64), kind="stable")
    bad_rate = np.cumsum(labels[order]) / np.arange(1, len(labels) + 1)
    within = np.flatnonzero(bad_rate <= target_bad_rate)
    return float((within[-1] + 1) / len(labels)) if len(within) else 0.0


def binary_metrics(
    y: npt.ArrayLike, pd_: npt.ArrayLike, *, target_bad_rate: float = 0.05, bins: int = 10
) -> Metrics:
    """All metrics of a PD vector."""
    labels = np.asarray(y, dtype=np.int64)
    probs = np.clip(np.asarray(pd_, dtype=np.float64), 1e-12, 1 - 1e-12)
    n = len(labels)
    if n == 0:
        nan = float("nan")
        return Metrics(0, 0, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    auc = roc_auc(labels, probs)
    log_loss = float(-np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs)))
    return Metrics(
        n=n,
        defaults=int(labels.sum()),
        default_rate=float(labels.mean()),
        mean_pd=float(probs.mean()),
        auc=auc,
        gini=2 * auc - 1 if not math.isnan(auc) else float("nan"),
        ks=ks_statistic(labels, probs),
        brier=float(np.mean((probs - labels) ** 2)),
        log_loss=log_loss,
        ece=expected_calibration_error(labels, probs, bins),
        approval_rate=approval_rate_at_bad_rate(labels, probs, target_bad_rate),
    )


def contender_intervals(
    y: npt.ArrayLike,
    pds: Mapping[str, npt.ArrayLike],
    *,
    target_bad_rate: float,
    resamples: int,
    seed: int = 0,
) -> dict[str, dict[str, tuple[float, float]]]:
    """Percentile 95% bootstrap intervals of AUC and of the approval rate at the target bad rate, per
    contender. Every contender is judged on the same resampled applications, so their intervals
    differ by the PDs alone; PDs are clipped as `binary_metrics` clips them before ranking."""
    labels = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, len(labels), size=len(labels)) for _ in range(resamples if len(labels) else 0)]
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    for name, pd_ in pds.items():
        probs = np.clip(np.asarray(pd_, dtype=np.float64), 1e-12, 1 - 1e-12)
        aucs = [roc_auc(labels[i], probs[i]) for i in samples]
        approvals = [approval_rate_at_bad_rate(labels[i], probs[i], target_bad_rate) for i in samples]
        counted = [a for a in aucs if not math.isnan(a)]  # one-class resamples have no AUC
        nan = (math.nan, math.nan)
        auc = tuple(float(v) for v in np.percentile(counted, [2.5, 97.5])) if counted else nan
        approval = tuple(float(v) for v in np.percentile(approvals, [2.5, 97.5])) if approvals else nan
        intervals[name] = {"auc": (auc[0], auc[1]), "approval_rate": (approval[0], approval[1])}
    return intervals
