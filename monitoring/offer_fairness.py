"""Fairness of offers by group: the rate and limit each group is offered given its risk, who receives
the interest subsidies, and what a declined member must do to be approved.

- **Rate and limit given PD band.** A group's offers are compared with everyone else's in the same PD
  band, so a group that is riskier on the whole does not look treated worse for that alone (direct
  standardisation): rate gap = Σ_b w_b (mean rate of the group in b − mean rate of the others in b),
  limit ratio = Σ_b w_b · mean limit of the group in b / Σ_b w_b · mean limit of the others in b,
  w_b the group's share of its offers in band b. What is left is the green discount, the term and
  affordability (income and savings on record): a gap says where to look, not that the model sees
  the group.
- **Subsidy share against eligible share.** Among applications eligible for a subsidy when they were
  scored (granted, or refused for budget or loss ceiling), the group's share of the subsidies granted
  divided by its share of the eligible (1: subsidies follow eligibility).
- **Recourse for declined members.** The plan's declared cost and time (median over plans found),
  and the share for whom no plan within the declared actions reaches approval.

Every figure carries a 95% bootstrap interval (rows resampled with replacement). Groups under the
audit's minimum size are shown, not judged. Inputs use the decision log's names (`OFFER_COLUMNS`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from monitoring.fairness import FairnessFlag

if TYPE_CHECKING:
    from models.credit_model import CreditModel

FloatArray = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

# Upper edges of the PD bands offers are compared within (the last band is PD ≥ 0.20).
PD_BAND_EDGES: Final = (0.02, 0.05, 0.10, 0.20)
OFFER_COLUMNS: Final = (
    "offer_annual_rate",
    "offer_limit_cny",
    "subsidy_status",
    "recourse_status",
    "recourse_cost_cny",
    "recourse_months",
)
# Subsidy statuses of an application the programme's rules admitted (granted, or refused for money).
ELIGIBLE: Final = ("reserved", "budget_exhausted", "loss_ceiling_reached")
GRANTED: Final = "reserved"
FOUND: Final = "found"
ANSWERED: Final = (FOUND, "out_of_reach")  # a recourse search that ran (not: unavailable)
METRICS: Final = (
    "mean_rate",
    "rate_gap_given_pd",
    "mean_limit_cny",
    "limit_ratio_given_pd",
    "eligible_share",
    "subsidised_share",
    "subsidy_ratio",
    "recourse_found_share",
    "recourse_median_cost_cny",
    "recourse_median_months",
    "recourse_cost_ratio",
)


@dataclass(frozen=True)
class OfferThresholds:
    """Flag rules on offers; None switches a rule off. Off by default for recourse cost: it follows
    savings and training on record, and is reported for the centres' capacity building."""

    max_rate_gap: float | None = 0.005  # 50 bp above the others in the same PD bands
    min_limit_ratio: float | None = 0.8
    min_subsidy_ratio: float | None = 0.8
    max_recourse_cost_ratio: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class OfferGroup:
    """One group's offer figures and their 95% intervals."""

    attribute: str
    group: str
    n: int
    n_offers: int
    n_eligible: int
    n_subsidised: int
    n_declined: int
    judged: bool
    values: dict[str, float]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN as None)."""
        return {
            "attribute": self.attribute,
            "group": self.group,
            "n": self.n,
            "n_offers": self.n_offers,
            "n_eligible": self.n_eligible,
            "n_subsidised": self.n_subsidised,
            "n_declined": self.n_declined,
            "status": "judged" if self.judged else "too small to judge",
            "values": {k: _num(v) for k, v in self.values.items()},
            "ci": {k: [_num(lo), _num(hi)] for k, (lo, hi) in self.ci.items()},
        }


@dataclass
class OfferAudit:
    """Offer figures by attribute and group, the flags they raise, and what the inputs held."""

    groups: dict[str, list[OfferGroup]]
    flags: list[FairnessFlag]
    thresholds: OfferThresholds
    counts: dict[str, int]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "pd_bands": [f"{lo:.0%}–{hi:.0%}" for lo, hi in _bands()],
            "thresholds": self.thresholds.to_dict(),
            "counts": self.counts,
            "notes": self.notes,
            "flags": [f.to_dict() for f in self.flags],
            "attributes": {k: [g.to_dict() for g in v] for k, v in self.groups.items()},
        }


def _num(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _bands() -> list[tuple[float, float]]:
    return list(itertools.pairwise((0.0, *PD_BAND_EDGES, 1.0)))


def pd_band(pd_: FloatArray) -> npt.NDArray[np.int64]:
    """Index of each PD's band (`PD_BAND_EDGES`)."""
    return np.searchsorted(np.asarray(PD_BAND_EDGES), pd_, side="right").astype(np.int64)


@dataclass(frozen=True)
class _Rows:
    """The audit's arrays, aligned by row."""

    band: npt.NDArray[np.int64]
    rate: FloatArray  # NaN: no offer
    limit: FloatArray
    eligible: Mask
    granted: Mask
    declined: Mask
    planned: Mask  # declined with a plan found
    recourse_known: Mask  # declined with a recourse answer (found or out of reach)
    cost: FloatArray
    months: FloatArray


def _standardised(values: FloatArray, band: npt.NDArray[np.int64], mine: Mask) -> tuple[float, float]:
    """(Σ_b w_b mean_b(group), Σ_b w_b mean_b(others)) over the bands both sides have offers in."""
    has = np.isfinite(values)
    n_bands = len(PD_BAND_EDGES) + 1
    inside, outside = has & mine, has & ~mine
    n_in = np.bincount(band[inside], minlength=n_bands).astype(np.float64)
    n_out = np.bincount(band[outside], minlength=n_bands).astype(np.float64)
    both = (n_in > 0) & (n_out > 0)
    if not both.any():
        return math.nan, math.nan
    sum_in = np.bincount(band[inside], weights=values[inside], minlength=n_bands)
    sum_out = np.bincount(band[outside], weights=values[outside], minlength=n_bands)
    w = n_in[both] / n_in[both].sum()
    return float(w @ (sum_in[both] / n_in[both])), float(w @ (sum_out[both] / n_out[both]))


def _median(values: FloatArray) -> float:
    return float(np.median(values)) if len(values) else math.nan


def _share(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def _values(rows: _Rows, mine: Mask) -> dict[str, float]:
    """One group's figures (`METRICS`)."""
    rate_in, rate_out = _standardised(rows.rate, rows.band, mine)
    limit_in, limit_out = _standardised(rows.limit, rows.band, mine)
    eligible_share = _share(int((rows.eligible & mine).sum()), int(rows.eligible.sum()))
    subsidised_share = _share(int((rows.granted & mine).sum()), int(rows.granted.sum()))
    known = rows.recourse_known & mine
    return {
        "mean_rate": float(np.nanmean(rows.rate[mine])) if np.isfinite(rows.rate[mine]).any() else math.nan,
        "rate_gap_given_pd": rate_in - rate_out,
        "mean_limit_cny": (
            float(np.nanmean(rows.limit[mine])) if np.isfinite(rows.limit[mine]).any() else math.nan
        ),
        "limit_ratio_given_pd": limit_in / limit_out if limit_out else math.nan,
        "eligible_share": eligible_share,
        "subsidised_share": subsidised_share,
        "subsidy_ratio": subsidised_share / eligible_share if eligible_share else math.nan,
        "recourse_found_share": _share(int((rows.planned & mine).sum()), int(known.sum())),
        "recourse_median_cost_cny": _median(rows.cost[rows.planned & mine]),
        "recourse_median_months": _median(rows.months[rows.planned & mine]),
        "recourse_cost_ratio": _median(rows.cost[rows.planned & mine]) / others
        if (others := _median(rows.cost[rows.planned & ~mine]))
        else math.nan,
    }


def _take(rows: _Rows, index: npt.NDArray[np.int64]) -> _Rows:
    return _Rows(**{name: getattr(rows, name)[index] for name in rows.__dataclass_fields__})


def _rows(frame: pd.DataFrame, pd_col: str, decision_col: str) -> _Rows:
    def numbers(column: str) -> FloatArray:
        if column not in frame:
            return np.full(len(frame), np.nan)
        return pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)

    def text(column: str) -> pd.Series:
        if column not in frame:
            return pd.Series("", index=frame.index)
        return frame[column].astype(object).where(frame[column].notna(), "").astype(str).str.lower()

    pd_ = numbers(pd_col)
    subsidy, recourse = text("subsidy_status"), text("recourse_status")
    declined = text(decision_col).eq("decline").to_numpy()
    return _Rows(
        band=pd_band(np.nan_to_num(pd_, nan=1.0)),
        rate=np.where(np.isfinite(pd_), numbers("offer_annual_rate"), np.nan),
        limit=np.where(np.isfinite(pd_), numbers("offer_limit_cny"), np.nan),
        eligible=subsidy.isin(ELIGIBLE).to_numpy(),
        granted=subsidy.eq(GRANTED).to_numpy(),
        declined=declined,
        planned=declined & recourse.eq(FOUND).to_numpy(),
        recourse_known=declined & recourse.isin(ANSWERED).to_numpy(),
        cost=numbers("recourse_cost_cny"),
        months=numbers("recourse_months"),
    )


def audit_offers(
    frame: pd.DataFrame,
    groups: pd.DataFrame,
    *,
    pd_col: str = "pd",
    decision_col: str = "decision",
    min_group_size: int = 100,
    n_boot: int = 200,
    seed: int = 0,
    thresholds: OfferThresholds | None = None,
    notes: list[str] | None = None,
) -> OfferAudit:
    """Offer figures by group for every group column of `groups` (aligned with `frame` by position)."""
    thresholds = thresholds or OfferThresholds()
    rows = _rows(frame.reset_index(drop=True), pd_col, decision_col)
    rng = np.random.default_rng(seed)
    n = len(frame)
    boots = [rng.integers(0, n, n) for _ in range(n_boot)] if n else []
    audit = OfferAudit(
        {},
        [],
        thresholds,
        {
            "applications": n,
            "offers": int(np.isfinite(rows.rate).sum()),
            "subsidy_eligible": int(rows.eligible.sum()),
            "subsidised": int(rows.granted.sum()),
            "declined": int(rows.declined.sum()),
            "declined_with_recourse": int(rows.recourse_known.sum()),
            "declined_with_plan": int(rows.planned.sum()),
        },
        list(notes or []),
    )
    for name in groups.columns:
        labels = groups[name].astype(str).to_numpy()
        found: list[OfferGroup] = []
        for group in sorted(set(labels)):
            mine = labels == group
            values = _values(rows, mine)
            ci: dict[str, tuple[float, float]] = {}
            if boots:
                draws = [_values(_take(rows, b), mine[b]) for b in boots]
                for metric in values:
                    sample = np.array([d[metric] for d in draws], dtype=np.float64)
                    sample = sample[np.isfinite(sample)]
                    if len(sample) >= max(10, n_boot // 2):
                        lo, hi = np.quantile(sample, [0.025, 0.975])
                        ci[metric] = (float(lo), float(hi))
            found.append(
                OfferGroup(
                    str(name),
                    str(group),
                    int(mine.sum()),
                    int(np.isfinite(rows.rate[mine]).sum()),
                    int((rows.eligible & mine).sum()),
                    int((rows.granted & mine).sum()),
                    int((rows.declined & mine).sum()),
                    int(mine.sum()) >= min_group_size,
                    values,
                    ci,
                )
            )
        audit.groups[str(name)] = found
        audit.flags += [f for g in found if g.judged for f in _flags(g, thresholds, min_group_size)]
    return audit


def _flags(group: OfferGroup, t: OfferThresholds, min_size: int) -> list[FairnessFlag]:
    """The offer rules a group breaks (point estimates, as the approval rules), each judged only on
    enough of its own cases: offers for rate and limit, eligible applications for subsidies,
    declines for recourse."""
    rules: list[tuple[str, float | None, int, Callable[[float, float], bool], str]] = [
        ("rate_gap_given_pd", t.max_rate_gap, group.n_offers, lambda v, lim: v > lim,
         "pays {v:+.2%} a year more than others in the same PD bands (limit {lim:+.2%})"),
        ("limit_ratio_given_pd", t.min_limit_ratio, group.n_offers, lambda v, lim: v < lim,
         "is offered {v:.0%} of the limit others in the same PD bands get (limit {lim:.0%})"),
        ("subsidy_ratio", t.min_subsidy_ratio, group.n_eligible, lambda v, lim: v < lim,
         "receives subsidies at {v:.2f}× its share of the eligible (limit {lim:.2f})"),
        ("recourse_cost_ratio", t.max_recourse_cost_ratio, group.n_declined, lambda v, lim: v > lim,
         "needs recourse costing {v:.2f}× the others' median (limit {lim:.2f})"),
    ]  # fmt: skip
    flags = []
    for metric, limit, cases, breaks, text in rules:
        value = group.values.get(metric, math.nan)
        if limit is not None and cases >= min_size and math.isfinite(value) and breaks(value, limit):
            message = f"{group.attribute}={group.group} " + text.format(v=value, lim=limit)
            flags.append(FairnessFlag(group.attribute, group.group, metric, value, limit, message))
    return flags


def recourse_for_declined(
    frame: pd.DataFrame,
    model: CreditModel,
    *,
    decision_col: str = "decision",
    limit: int = 2000,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[str]]:
    """Recourse plans for declined rows that have none logged, from the model's exact search over
    its own inputs (up to `limit` rows, a seeded sample beyond that). Returns `frame` with the
    recourse columns filled where computed, and notes saying how many and from where."""
    from models.recourse import RecourseEngine, RecourseUnavailableError

    out = frame.copy()
    for column in ("recourse_status", "recourse_cost_cny", "recourse_months"):
        if column not in out:
            out[column] = np.nan
    out["recourse_status"] = out["recourse_status"].astype(object)
    declined = out[decision_col].astype(str).str.lower().eq("decline")
    logged = declined & out["recourse_status"].notna()
    todo = np.flatnonzero((declined & ~logged).to_numpy())
    notes = [f"recourse logged with {int(logged.sum()):,} of {int(declined.sum()):,} declines"]
    if not len(todo):
        return out, notes
    try:
        engine = RecourseEngine(model)
    except RecourseUnavailableError as error:
        return out, [*notes, f"recourse not computed for the other declines: {error}"]
    if len(todo) > limit:
        todo = np.sort(np.random.default_rng(seed).choice(todo, size=limit, replace=False))
        notes.append(f"recourse computed for a seeded sample of {limit:,} declines without one logged")
    missing = [c for c in model.feature_names if c not in out]
    if missing:
        return out, [*notes, f"recourse not computed: the rows lack model inputs {missing[:5]}"]
    inputs = out[list(model.feature_names)]
    plans = [engine.plan({str(k): v for k, v in inputs.iloc[int(position)].items()}) for position in todo]
    index = out.index[todo]
    out.loc[index, "recourse_status"] = [p.status for p in plans]
    out.loc[index, "recourse_cost_cny"] = [p.total_cost_cny for p in plans]
    out.loc[index, "recourse_months"] = [float(p.months) for p in plans]
    notes.append(f"recourse computed by the model for {len(todo):,} declines")
    return out, notes
