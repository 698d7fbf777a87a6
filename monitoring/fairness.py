"""Fairness audits: approval, equal opportunity, error and calibration by protected group (fairlearn).

`audit_fairness` takes one row per application (PD, decision or approved flag, nullable `defaulted`,
optional score) and a set of group columns (`protected_groups` builds them from the member profiles),
and returns a `FairnessAudit`: per attribute and group, fairlearn `MetricFrame` point estimates with
bootstrap 95% intervals, the four-fifths approval-ratio screen, and flags against `FairnessThresholds`.
Groups with fewer than `min_group_size` applications (or, for outcome metrics, labelled applications)
are reported as "too small to judge": they neither pass nor fail.

`explain_gaps` adds, for flagged attributes, mean reason-group points by group
(`CreditModel.group_points`) and a proxy scan (`proxy_scan`): how well each model feature alone
separates each protected group: strength max(AUC, 1 - AUC) with a direction, strongest first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate

from monitoring.bands import group_order
from monitoring.proxies import Direction, ProxySignal, rank_auc, single_column_proxy

if TYPE_CHECKING:
    from models.credit_model import CreditModel

FloatArray = npt.NDArray[np.float64]

AGE_BANDS: Final = (("<25", 25), ("25-40", 40), ("40-60", 60), ("60+", math.inf))
UNKNOWN: Final = "unknown"
TOO_SMALL: Final = "too small to judge"
# Attributes built by `protected_groups`; "file" (thin/thick) is reported but is not protected.
PROTECTED_GROUP_COLUMNS: Final = (
    "gender",
    "age_band",
    "returning_youth",
    "left_behind_woman",
    "county",
    "gender_x_age_band",
)
FILE_COLUMN: Final = "file"
METRICS: Final = (
    "approval_rate",
    "approval_ratio",
    "approval_if_repaid",
    "approval_if_defaulted",
    "auc",
    "mean_pd",
    "default_rate",
    "calibration_gap",
    "mean_score",
)


@dataclass(frozen=True)
class FairnessThresholds:
    """Flag rules; None switches a rule off."""

    min_approval_ratio: float | None = 0.8  # four-fifths screen vs the most-favoured group
    max_equal_opportunity_difference: float | None = 0.05  # approval-if-repaid: best group - this group
    max_calibration_gap: float | None = 0.02  # |mean PD - observed default rate| per group
    # Flag only when the 95% bootstrap interval lies wholly beyond the limit (needs n_boot > 0);
    # off by default: the point estimate decides, as the promotion gate does.
    require_ci: bool = False

    def to_dict(self) -> dict[str, float | bool | None]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class GroupMetrics:
    """One group's metrics (NaN where undefined or not judged) and 95% bootstrap intervals."""

    attribute: str
    group: str
    n: int
    n_labelled: int
    judged: bool  # enough applications to judge approval
    outcomes_judged: bool  # enough labelled applications to judge outcome metrics
    values: dict[str, float]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """'judged' or 'too small to judge'."""
        return "judged" if self.judged else TOO_SMALL

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN as None)."""
        return {
            "attribute": self.attribute,
            "group": self.group,
            "n": self.n,
            "n_labelled": self.n_labelled,
            "status": self.status,
            "outcomes_judged": self.outcomes_judged,
            "values": {k: _num(v) for k, v in self.values.items()},
            "ci": {k: [_num(lo), _num(hi)] for k, (lo, hi) in self.ci.items()},
        }


@dataclass(frozen=True)
class FairnessFlag:
    """A judged group that breaks a threshold."""

    attribute: str
    group: str
    metric: str
    value: float
    threshold: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class AttributeAudit:
    """All groups of one attribute, the most-favoured group and the summary differences."""

    attribute: str
    groups: list[GroupMetrics]
    reference_group: str | None  # highest approval rate among judged groups
    approval_ratio_min: float
    equal_opportunity_difference: float  # max - min approval-if-repaid over outcome-judged groups

    def group(self, name: str) -> GroupMetrics:
        """One group by name."""
        for g in self.groups:
            if g.group == name:
                return g
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "attribute": self.attribute,
            "reference_group": self.reference_group,
            "approval_ratio_min": _num(self.approval_ratio_min),
            "equal_opportunity_difference": _num(self.equal_opportunity_difference),
            "groups": [g.to_dict() for g in self.groups],
        }


@dataclass
class FairnessAudit:
    """The result of `audit_fairness`."""

    attributes: dict[str, AttributeAudit]
    flags: list[FairnessFlag]
    thresholds: FairnessThresholds
    min_group_size: int
    n: int
    n_labelled: int
    n_boot: int
    explanations: dict[str, Any] = field(default_factory=dict)
    # Protected attributes the audited model takes as inputs (a table trained with
    # --protected-input): every report of this audit says so.
    protected_inputs: list[str] = field(default_factory=list)
    # The offers' audit by group (`monitoring.offer_fairness.OfferAudit.to_dict`), where the source
    # holds offers; its flags are among `flags`.
    offers: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        """True when no judged group breaks a threshold."""
        return not self.flags

    def too_small(self) -> list[tuple[str, str, int]]:
        """(attribute, group, n) of every group too small to judge."""
        return [
            (a.attribute, g.group, g.n) for a in self.attributes.values() for g in a.groups if not g.judged
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "passed": self.passed,
            "n": self.n,
            "n_labelled": self.n_labelled,
            "min_group_size": self.min_group_size,
            "n_boot": self.n_boot,
            "thresholds": self.thresholds.to_dict(),
            "flags": [f.to_dict() for f in self.flags],
            "too_small": [{"attribute": a, "group": g, "n": n} for a, g, n in self.too_small()],
            "attributes": {k: v.to_dict() for k, v in self.attributes.items()},
            "explanations": self.explanations,
            "protected_inputs": list(self.protected_inputs),
            "warnings": protected_input_warnings(self.protected_inputs),
            "offers": self.offers,
        }


def protected_input_warnings(names: Sequence[str]) -> list[str]:
    """One line per protected attribute that is also a model input."""
    return [
        f"{name} is a protected attribute AND a model input (--protected-input): the model scores on "
        f"it directly, so gaps by {name} are partly by design"
        for name in names
    ]


def model_protected_inputs(model: CreditModel | None, attributes: Sequence[str] = ()) -> list[str]:
    """Protected attributes `model` takes as inputs: those its spec records (`--protected-input`)
    plus any audited attribute that is one of its input columns."""
    if model is None:
        return []
    recorded = model.spec.protected_inputs
    named = [a for a in attributes if a in model.spec.index and a not in recorded]
    return [*recorded, *named]


def _num(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


# --------------------------------------------------------------------------------------------------
# Group columns from the member profile
# --------------------------------------------------------------------------------------------------


def age_band(birth_year: pd.Series, at: pd.Series) -> pd.Series:
    """Age band (<25, 25-40, 40-60, 60+) at `at` (a timestamp per row); 'unknown' when missing."""
    years = pd.to_datetime(at, utc=True).dt.year.to_numpy(dtype=np.float64)
    age = years - pd.to_numeric(birth_year, errors="coerce").to_numpy(dtype=np.float64)
    labels = np.full(len(age), UNKNOWN, dtype=object)
    lower = -math.inf
    for label, upper in AGE_BANDS:
        labels[(age >= lower) & (age < upper)] = label
        lower = upper
    return pd.Series(labels, index=birth_year.index, dtype=object)


def _labels(series: pd.Series) -> pd.Series:
    out = series.astype(object).where(series.notna(), UNKNOWN)
    return out.map(lambda v: str(v).lower() if isinstance(v, bool | np.bool_) else str(v))


def protected_groups(
    profiles: pd.DataFrame,
    applications: pd.DataFrame,
    *,
    thin_file: pd.Series | None = None,
) -> pd.DataFrame:
    """Group columns per application from `member_profiles` + applications (`member_id`, `applied_at`).

    Returns a frame aligned with `applications` (same index) with `application_id` (when given),
    gender, age_band (age at application), returning_youth, left_behind_woman, county,
    gender_x_age_band and `file` (thin/thick: from `thin_file` (bool, True = thin), else from a
    `has_prior_loan` column of `applications` when present). Members without a profile are 'unknown'.
    """
    profile = profiles.drop_duplicates("member_id", keep="last").set_index("member_id")
    joined = profile.reindex(applications["member_id"].to_numpy())
    joined.index = applications.index
    out = pd.DataFrame(index=applications.index)
    if "application_id" in applications:
        out["application_id"] = applications["application_id"].astype(str)
    out["gender"] = _labels(joined["gender"])
    out["age_band"] = age_band(joined["birth_year"], applications["applied_at"])
    out["returning_youth"] = _labels(joined["returning_youth"])
    out["left_behind_woman"] = _labels(joined["left_behind_woman"])
    out["county"] = _labels(joined["county_id"])
    out["gender_x_age_band"] = out["gender"] + " x " + out["age_band"]
    if thin_file is None and "has_prior_loan" in applications:
        thin_file = pd.to_numeric(applications["has_prior_loan"], errors="coerce").fillna(0) <= 0
    if thin_file is not None:
        out[FILE_COLUMN] = np.where(np.asarray(thin_file, dtype=bool), "thin", "thick")
    return out


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------


# ROC AUC by ranks (ties averaged); NaN with one class only. One implementation, in `proxies`.
fast_auc = rank_auc


def _safe_rate(metric: Any) -> Any:
    """A fairlearn rate (y_true 1 = repaid, y_pred 1 = approved) that is NaN when undefined."""

    def rate(y_true: Any, y_pred: Any) -> float:
        y = np.asarray(y_true)
        needed = 1 if metric is true_positive_rate else 0
        if not (y == needed).any():
            return math.nan
        return float(metric(y_true, y_pred, pos_label=1))

    return rate


def _auc_metric(y_true: Any, y_pred: Any) -> float:
    return fast_auc(np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.float64))


def _mean_pred(y_true: Any, y_pred: Any) -> float:
    return float(np.mean(y_pred)) if len(y_pred) else math.nan


def _mean_true(y_true: Any, y_pred: Any) -> float:
    return float(np.mean(y_true)) if len(y_true) else math.nan


def approved_from_decisions(decisions: pd.Series) -> npt.NDArray[np.bool_]:
    """approve -> True; review / decline -> False (review is not an approval)."""
    return np.asarray(decisions.astype(str).str.lower().eq("approve").to_numpy(), dtype=np.bool_)


def _boot_stats(
    rng: np.random.Generator,
    n_boot: int,
    approved: npt.NDArray[np.bool_],
    labelled: npt.NDArray[np.bool_],
    defaulted: npt.NDArray[np.int64],
    pd_: FloatArray,
    score: FloatArray | None,
) -> dict[str, FloatArray]:
    """Bootstrap replicates of one group's metrics (resampling the group's applications)."""
    n = len(approved)
    keys = ("approval_rate", "approval_if_repaid", "approval_if_defaulted", "auc", "calibration_gap")
    out = {k: np.full(n_boot, np.nan) for k in keys}
    if score is not None:
        out["mean_score"] = np.full(n_boot, np.nan)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        a = approved[idx]
        out["approval_rate"][b] = a.mean()
        if score is not None:
            out["mean_score"][b] = np.nanmean(score[idx])
        lab = labelled[idx]
        if not lab.any():
            continue
        y, a_l, p = defaulted[idx][lab], a[lab], pd_[idx][lab]
        repaid = y == 0
        if repaid.any():
            out["approval_if_repaid"][b] = a_l[repaid].mean()
        if (~repaid).any():
            out["approval_if_defaulted"][b] = a_l[~repaid].mean()
        out["auc"][b] = fast_auc(y, p)
        out["calibration_gap"][b] = p.mean() - y.mean()
    return out


def _ci(values: FloatArray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return (math.nan, math.nan)
    lo, hi = np.quantile(finite, [0.025, 0.975])
    return (float(lo), float(hi))


def _audit_attribute(
    name: str,
    labels: pd.Series,
    *,
    approved: npt.NDArray[np.bool_],
    labelled: npt.NDArray[np.bool_],
    defaulted: npt.NDArray[np.int64],
    pd_: FloatArray,
    score: FloatArray | None,
    min_group_size: int,
    n_boot: int,
    rng: np.random.Generator,
) -> AttributeAudit:
    groups_arr = labels.astype(str).to_numpy()
    selection = MetricFrame(
        metrics={"approval_rate": selection_rate},
        y_true=approved.astype(np.int64),
        y_pred=approved.astype(np.int64),
        sensitive_features=pd.Series(groups_arr, name=name),
    ).by_group
    repaid = (1 - defaulted[labelled]).astype(np.int64)
    outcome_groups = pd.Series(groups_arr[labelled], name=name)
    by_outcome: pd.DataFrame | None = None
    by_pd: pd.DataFrame | None = None
    if labelled.any():
        by_outcome = MetricFrame(
            metrics={
                "approval_if_repaid": _safe_rate(true_positive_rate),
                "approval_if_defaulted": _safe_rate(false_positive_rate),
            },
            y_true=repaid,
            y_pred=approved[labelled].astype(np.int64),
            sensitive_features=outcome_groups,
        ).by_group
        by_pd = MetricFrame(
            metrics={"auc": _auc_metric, "mean_pd": _mean_pred, "default_rate": _mean_true},
            y_true=defaulted[labelled],
            y_pred=pd_[labelled],
            sensitive_features=outcome_groups,
        ).by_group
    names = sorted(np.unique(groups_arr).tolist(), key=group_order)
    counts = {g: int((groups_arr == g).sum()) for g in names}
    labelled_counts = {g: int(((groups_arr == g) & labelled).sum()) for g in names}
    judged = {g: counts[g] >= min_group_size for g in names}
    outcomes_judged = {g: labelled_counts[g] >= min_group_size for g in names}
    rates = {g: float(selection.loc[g, "approval_rate"]) for g in names}
    candidates = {g: r for g, r in rates.items() if judged[g]}
    reference = max(candidates, key=lambda g: candidates[g]) if candidates else None
    ref_rate = candidates[reference] if reference is not None else math.nan
    boots: dict[str, dict[str, FloatArray]] = {}
    if n_boot > 0:
        for g in names:
            if not judged[g]:
                continue
            mask = groups_arr == g
            boots[g] = _boot_stats(
                rng,
                n_boot,
                approved[mask],
                labelled[mask],
                defaulted[mask],
                pd_[mask],
                None if score is None else score[mask],
            )
    results: list[GroupMetrics] = []
    for g in names:
        values: dict[str, float] = {k: math.nan for k in METRICS}
        values["approval_rate"] = rates[g]
        if reference is not None and ref_rate > 0:
            values["approval_ratio"] = rates[g] / ref_rate
        if by_outcome is not None and by_pd is not None and g in by_outcome.index:
            for k in ("approval_if_repaid", "approval_if_defaulted"):
                values[k] = float(by_outcome.loc[g, k])
            for k in ("auc", "mean_pd", "default_rate"):
                values[k] = float(by_pd.loc[g, k])
            values["calibration_gap"] = values["mean_pd"] - values["default_rate"]
        if score is not None:
            chosen = score[groups_arr == g]
            values["mean_score"] = float(np.nanmean(chosen)) if np.isfinite(chosen).any() else math.nan
        ci: dict[str, tuple[float, float]] = {}
        if g in boots:
            for k, reps in boots[g].items():
                ci[k] = _ci(reps)
            if reference is not None and reference in boots:
                ref_reps = boots[reference]["approval_rate"]
                with np.errstate(divide="ignore", invalid="ignore"):
                    ci["approval_ratio"] = _ci(boots[g]["approval_rate"] / ref_reps)
        results.append(
            GroupMetrics(name, g, counts[g], labelled_counts[g], judged[g], outcomes_judged[g], values, ci)
        )
    ratios = [
        r.values["approval_ratio"] for r in results if r.judged and not math.isnan(r.values["approval_ratio"])
    ]
    tprs = [
        r.values["approval_if_repaid"]
        for r in results
        if r.judged and r.outcomes_judged and not math.isnan(r.values["approval_if_repaid"])
    ]
    return AttributeAudit(
        attribute=name,
        groups=results,
        reference_group=reference,
        approval_ratio_min=min(ratios) if ratios else math.nan,
        equal_opportunity_difference=(max(tprs) - min(tprs)) if len(tprs) >= 2 else math.nan,
    )


def _flags(attribute: AttributeAudit, thresholds: FairnessThresholds) -> list[FairnessFlag]:
    flags: list[FairnessFlag] = []
    judged_tpr = [
        g.values["approval_if_repaid"]
        for g in attribute.groups
        if g.judged and g.outcomes_judged and not math.isnan(g.values["approval_if_repaid"])
    ]
    best_tpr = max(judged_tpr) if len(judged_tpr) >= 2 else math.nan
    for g in attribute.groups:
        if not g.judged:
            continue
        v = g.values
        where = f"{attribute.attribute}={g.group} (n={g.n})"
        limit = thresholds.min_approval_ratio
        ratio_hi = g.ci.get("approval_ratio", (math.nan, math.nan))[1]
        sure = not thresholds.require_ci or (
            limit is not None and not math.isnan(ratio_hi) and ratio_hi < limit
        )
        if limit is not None and not math.isnan(v["approval_ratio"]) and v["approval_ratio"] < limit and sure:
            flags.append(
                FairnessFlag(
                    attribute.attribute,
                    g.group,
                    "approval_ratio",
                    v["approval_ratio"],
                    limit,
                    f"{where}: approval rate {v['approval_rate']:.1%} is {v['approval_ratio']:.2f} of "
                    f"{attribute.reference_group}'s (< {limit})",
                )
            )
        if not g.outcomes_judged:
            continue
        limit = thresholds.max_equal_opportunity_difference
        gap = best_tpr - v["approval_if_repaid"]
        tpr_hi = g.ci.get("approval_if_repaid", (math.nan, math.nan))[1]
        sure = not thresholds.require_ci or (
            not math.isnan(tpr_hi) and limit is not None and best_tpr - tpr_hi > limit
        )
        if limit is not None and not math.isnan(gap) and gap > limit and sure:
            flags.append(
                FairnessFlag(
                    attribute.attribute,
                    g.group,
                    "equal_opportunity_difference",
                    gap,
                    limit,
                    f"{where}: approval rate among borrowers who repaid {v['approval_if_repaid']:.1%} is "
                    f"{gap:.1%} below the best group's (> {limit:.1%})",
                )
            )
        limit = thresholds.max_calibration_gap
        cal = v["calibration_gap"]
        cal_lo, cal_hi = g.ci.get("calibration_gap", (math.nan, math.nan))
        sure = not thresholds.require_ci or (
            limit is not None and not math.isnan(cal_lo) and (cal_lo > limit or cal_hi < -limit)
        )
        if limit is not None and not math.isnan(cal) and abs(cal) > limit and sure:
            flags.append(
                FairnessFlag(
                    attribute.attribute,
                    g.group,
                    "calibration_gap",
                    cal,
                    limit,
                    f"{where}: mean PD {v['mean_pd']:.1%} vs observed default rate "
                    f"{v['default_rate']:.1%} (gap {cal:+.1%}, limit {limit:.1%})",
                )
            )
    return flags


def audit_fairness(
    frame: pd.DataFrame,
    *,
    pd_col: str = "pd",
    decision_col: str | None = "decision",
    approved_col: str | None = None,
    label_col: str = "defaulted",
    score_col: str | None = None,
    groups: Mapping[str, pd.Series] | pd.DataFrame,
    min_group_size: int = 100,
    n_boot: int = 200,
    seed: int = 0,
    thresholds: FairnessThresholds | None = None,
    protected_inputs: Sequence[str] = (),
) -> FairnessAudit:
    """Audit one set of decisions by group; see the module doc.

    Args:
        frame: one row per application.
        pd_col: predicted PD column.
        decision_col: approve / review / decline column (used when `approved_col` is None).
        approved_col: boolean approved column (takes precedence over `decision_col`).
        label_col: `defaulted` (0/1/bool, NaN when not yet observed).
        score_col: optional score column (mean score by group).
        groups: attribute name -> group labels, aligned with `frame` by position.
        min_group_size: groups smaller than this are reported but not judged.
        n_boot: bootstrap replicates for the 95% intervals (0: none).
        seed: bootstrap seed.
        thresholds: flag rules (default `FairnessThresholds()`).
        protected_inputs: protected attributes the model takes as inputs (flagged in the audit;
            `model_protected_inputs` finds them).
    """
    thresholds = thresholds or FairnessThresholds()
    if approved_col is not None:
        approved = np.asarray(frame[approved_col].fillna(False).astype(bool).to_numpy(), dtype=np.bool_)
    elif decision_col is not None:
        approved = approved_from_decisions(frame[decision_col])
    else:
        raise ValueError("give decision_col or approved_col")
    pd_ = pd.to_numeric(frame[pd_col], errors="coerce").to_numpy(dtype=np.float64)
    raw_label = pd.to_numeric(frame[label_col].astype(object), errors="coerce").to_numpy(dtype=np.float64)
    labelled = np.isfinite(raw_label) & np.isfinite(pd_)
    defaulted = np.where(labelled, raw_label, 0).astype(np.int64)
    score = (
        None if score_col is None else pd.to_numeric(frame[score_col], errors="coerce").to_numpy(np.float64)
    )
    columns = {str(c): groups[c] for c in groups} if isinstance(groups, pd.DataFrame) else dict(groups)
    rng = np.random.default_rng(seed)
    attributes: dict[str, AttributeAudit] = {}
    flags: list[FairnessFlag] = []
    for name, series in columns.items():
        values = pd.Series(np.asarray(series, dtype=object))
        if len(values) != len(frame):
            raise ValueError(f"group column {name!r} has {len(values)} rows, frame has {len(frame)}")
        audit = _audit_attribute(
            name,
            _labels(values),
            approved=approved,
            labelled=labelled,
            defaulted=defaulted,
            pd_=pd_,
            score=score,
            min_group_size=min_group_size,
            n_boot=n_boot,
            rng=rng,
        )
        attributes[name] = audit
        flags.extend(_flags(audit, thresholds))
    return FairnessAudit(
        attributes=attributes,
        flags=flags,
        thresholds=thresholds,
        min_group_size=min_group_size,
        n=len(frame),
        n_labelled=int(labelled.sum()),
        n_boot=n_boot,
        protected_inputs=list(protected_inputs),
    )


# --------------------------------------------------------------------------------------------------
# Explaining gaps
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proxy:
    """How well one feature alone separates one group from the rest of its attribute, and which way."""

    feature: str
    attribute: str
    group: str
    auc: float  # raw: 0.0 is a perfect inverse proxy, not "no signal"
    direction: Direction = "higher"
    category: str | None = None  # a text feature: the category where the group is most common

    @property
    def strength(self) -> float:
        """max(AUC, 1 - AUC): 0.5 = no information, 1.0 = a perfect proxy (either way)."""
        return max(self.auc, 1.0 - self.auc)

    @property
    def describe(self) -> str:
        """Which way it points, e.g. 'higher values → female' or "category 'tea' → female"."""
        return ProxySignal(self.auc, self.direction, self.category).describe(self.group)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the raw AUC kept beside strength and direction)."""
        return {**asdict(self), "strength": self.strength, "describe": self.describe}


def numeric_feature(series: pd.Series) -> FloatArray:
    """Numbers as they are; text as category codes; missing below every value (missingness counts)."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    else:
        codes, _ = pd.factorize(series.astype(object), sort=True)
        values = codes.astype(np.float64)
        values[codes < 0] = np.nan
    finite = values[np.isfinite(values)]
    floor = (finite.min() - 1.0) if len(finite) else 0.0
    return np.where(np.isfinite(values), values, floor)


def proxy_scan(
    features: pd.DataFrame,
    groups: Mapping[str, pd.Series] | pd.DataFrame,
    *,
    min_group_size: int = 100,
    top: int = 10,
) -> list[Proxy]:
    """Strongest single-feature proxies of protected groups, best first.

    For each attribute and each of its groups with enough support (one against the rest; a binary
    attribute is scanned once), each feature alone: numbers by value, text by the group's share per
    category (`monitoring.proxies`); ranked by max(AUC, 1 - AUC); 'unknown' groups are skipped.
    """
    columns = {str(c): groups[c] for c in groups} if isinstance(groups, pd.DataFrame) else dict(groups)
    found: list[Proxy] = []
    for attribute, series in columns.items():
        labels = _labels(pd.Series(np.asarray(series, dtype=object))).to_numpy()
        levels = [g for g in sorted(set(labels.tolist())) if g != UNKNOWN]
        levels = [
            g for g in levels if min_group_size <= int((labels == g).sum()) <= len(labels) - min_group_size
        ]
        if len(levels) == 2 and set(levels) == set(labels.tolist()):
            # one scan is enough for a binary attribute: name it by the smaller group (the one a
            # gap is usually about, e.g. left_behind_woman=true)
            levels = [min(levels, key=lambda g: int((labels == g).sum()))]
        for level in levels:
            y = (labels == level).astype(np.int64)
            for feature in features.columns:
                signal = single_column_proxy(features[feature].reset_index(drop=True), y)
                if signal is not None:
                    found.append(
                        Proxy(str(feature), attribute, level, signal.auc, signal.direction, signal.category)
                    )
    found.sort(key=lambda p: p.strength, reverse=True)
    return found[:top]


def group_points_by_group(
    model: CreditModel, features: pd.DataFrame, labels: pd.Series | Sequence[Any]
) -> pd.DataFrame:
    """Mean score points of each reason group (columns) by group (rows)."""
    points, names = model.group_points(features)
    table = pd.DataFrame(points, columns=names)
    table["_group"] = _labels(pd.Series(np.asarray(labels, dtype=object))).to_numpy()
    return table.groupby("_group").mean()


def explain_gaps(
    audit: FairnessAudit,
    *,
    features: pd.DataFrame,
    groups: Mapping[str, pd.Series] | pd.DataFrame,
    model: CreditModel | None = None,
    top_proxies: int = 10,
) -> dict[str, Any]:
    """For each flagged attribute: reason-group points by group (with a model) and top proxies.

    The result is also stored in `audit.explanations` (and so in the JSON report).
    """
    columns = {str(c): groups[c] for c in groups} if isinstance(groups, pd.DataFrame) else dict(groups)
    flagged = sorted({f.attribute for f in audit.flags})
    out: dict[str, Any] = {}
    model_features = features[model.feature_names] if model is not None else features
    for attribute in flagged:
        entry: dict[str, Any] = {
            "flags": [f.message for f in audit.flags if f.attribute == attribute],
            "proxies": [
                p.to_dict()
                for p in proxy_scan(
                    model_features,
                    {attribute: columns[attribute]},
                    min_group_size=audit.min_group_size,
                    top=top_proxies,
                )
            ],
        }
        if model is not None:
            table = group_points_by_group(model, model_features, columns[attribute])
            entry["reason_group_points"] = {
                str(g): {str(k): round(float(v), 3) for k, v in row.items()} for g, row in table.iterrows()
            }
        out[attribute] = entry
    audit.explanations = out
    return out
