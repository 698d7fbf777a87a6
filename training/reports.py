"""The credit committee's tables of a training run, computed on the out-of-time slice.

Each table is a plain function of arrays (so its arithmetic can be checked on a handful of rows) and
`analyst_report` assembles them for one `TrainingResult`:

- gains (deciles, riskiest first): count, bads, bad rate, cumulative capture of bads, lift;
- bad rate by grade, flagging a grade whose bad rate is below the better grade's before it (an
  order the grades should never break), with mean PD beside it (calibration by grade);
- KS, Gini, and AUC with a seeded bootstrap 95% interval;
- cutoff table: for candidate cutoff scores, approval rate, expected bad rate (mean PD of the
  approved) and observed bad rate among the approved;
- the policy's decisions (approve / review / decline) against the outcome (good / bad);
- the WOE scorecard baseline's bins: weight of evidence, information value, and points;
- importance as mean |points| per input, and PSI of each input between the training and OOT slices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.metrics import roc_auc

if TYPE_CHECKING:
    from training.baselines import WoeScorecard
    from training.pipeline import TrainingResult

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

AUC_RESAMPLES: Final = 500
DECISIONS: Final = ("approve", "review", "decline")


def _rate(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def decile_table(
    y: npt.ArrayLike, pd_: npt.ArrayLike, score: npt.ArrayLike, bins: int = 10
) -> list[dict[str, Any]]:
    """Gains table: `bins` equal-count groups by PD, riskiest first.

    Ties are broken by row order (stable sort), so every group has n // bins or n // bins + 1 rows.
    `capture` is the share of all bads in this and the riskier groups; `lift` is the group's bad rate
    over the overall bad rate, `cumulative_lift` the capture over the share of rows taken so far.
    """
    labels = np.asarray(y, dtype=np.int64)
    probs = np.asarray(pd_, dtype=np.float64)
    scores = np.asarray(score, dtype=np.float64)
    n, total_bads = len(labels), int(labels.sum())
    if n == 0:
        return []
    overall = total_bads / n
    order = np.argsort(-probs, kind="stable")
    rows: list[dict[str, Any]] = []
    taken = cumulative_bads = 0
    for number, chunk in enumerate(np.array_split(order, min(bins, n)), start=1):
        bads = int(labels[chunk].sum())
        taken += len(chunk)
        cumulative_bads += bads
        capture = _rate(cumulative_bads, total_bads)
        rows.append(
            {
                "decile": number,
                "n": len(chunk),
                "score_min": float(scores[chunk].min()),
                "score_max": float(scores[chunk].max()),
                "mean_pd": float(probs[chunk].mean()),
                "bads": bads,
                "bad_rate": bads / len(chunk),
                "cumulative_bads": cumulative_bads,
                "capture": capture,
                "lift": _rate(bads / len(chunk), overall),
                "cumulative_lift": _rate(capture, taken / n),
            }
        )
    return rows


def grade_table(
    y: npt.ArrayLike, pd_: npt.ArrayLike, grades: Sequence[str], order: Sequence[str]
) -> list[dict[str, Any]]:
    """Bad rate and mean PD per grade (`order`: best grade first), with the rank-order check.

    A grade `breaks_order` when its observed bad rate is lower than that of the nearest better grade
    holding applications: a worse grade must not default less. Empty grades are listed, not judged.
    """
    labels = np.asarray(y, dtype=np.int64)
    probs = np.asarray(pd_, dtype=np.float64)
    assigned = np.asarray(list(grades), dtype=object)
    n = len(labels)
    rows: list[dict[str, Any]] = []
    previous: float | None = None
    for grade in order:
        mask = assigned == grade
        count = int(mask.sum())
        bads = int(labels[mask].sum())
        bad_rate = _rate(bads, count)
        mean_pd = float(probs[mask].mean()) if count else math.nan
        breaks = count > 0 and previous is not None and bad_rate < previous
        if count:
            previous = bad_rate
        rows.append(
            {
                "grade": grade,
                "n": count,
                "share": _rate(count, n),
                "bads": bads,
                "bad_rate": bad_rate,
                "mean_pd": mean_pd,
                "calibration_gap": mean_pd - bad_rate if count else math.nan,
                "breaks_order": bool(breaks),
            }
        )
    return rows


def auc_interval(
    y: npt.ArrayLike,
    risk: npt.ArrayLike,
    *,
    resamples: int = AUC_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """AUC with a percentile bootstrap interval (rows resampled with replacement, seeded).

    Resamples that hold only one class have no AUC and are skipped; `resamples_used` says how many
    counted.
    """
    labels = np.asarray(y, dtype=np.int64)
    scores = np.asarray(risk, dtype=np.float64)
    point = roc_auc(labels, scores)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples if len(labels) else 0):
        rows = rng.integers(0, len(labels), len(labels))
        value = roc_auc(labels[rows], scores[rows])
        if not math.isnan(value):
            values.append(value)
    tail = (1 - level) / 2
    low, high = (
        (float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail)))
        if values
        else (math.nan, math.nan)
    )
    return {
        "auc": point,
        "low": low,
        "high": high,
        "level": level,
        "resamples": resamples,
        "resamples_used": len(values),
        "seed": seed,
    }


def candidate_cutoffs(score: npt.ArrayLike, grade_cuts: Sequence[float], steps: int = 10) -> list[float]:
    """The finite grade cut-offs and the whole-point score quantiles at 10%, 20%, ... 90%, highest first.

    A quantile within 2 points of a grade cut-off adds nothing to read and is left out.
    """
    scores = np.asarray(score, dtype=np.float64)
    grade = {float(c) for c in grade_cuts if math.isfinite(c)}
    quantiles: list[float] = np.quantile(scores, np.arange(1, steps) / steps).tolist() if len(scores) else []
    near = {float(round(q)) for q in quantiles if not any(abs(round(q) - c) <= 2 for c in grade)}
    return sorted(grade | near, reverse=True)


def cutoff_table(
    y: npt.ArrayLike, pd_: npt.ArrayLike, score: npt.ArrayLike, cutoffs: Sequence[float]
) -> list[dict[str, Any]]:
    """For each cutoff (approve at score >= cutoff): approval rate, expected and observed bad rate."""
    labels = np.asarray(y, dtype=np.int64)
    probs = np.asarray(pd_, dtype=np.float64)
    scores = np.asarray(score, dtype=np.float64)
    n, total_bads = len(labels), int(labels.sum())
    rows = []
    for cutoff in cutoffs:
        approved = scores >= cutoff
        count = int(approved.sum())
        bads = int(labels[approved].sum())
        rows.append(
            {
                "cutoff": float(cutoff),
                "approved": count,
                "approval_rate": _rate(count, n),
                "expected_bad_rate": float(probs[approved].mean()) if count else math.nan,
                "observed_bad_rate": _rate(bads, count),
                "bads_approved": bads,
                "bads_declined_share": _rate(total_bads - bads, total_bads),
            }
        )
    return rows


def decision_table(y: npt.ArrayLike, outcomes: Sequence[str]) -> list[dict[str, Any]]:
    """The policy's outcomes against the observed outcome: goods, bads, share and bad rate each."""
    labels = np.asarray(y, dtype=np.int64)
    decided = np.asarray(list(outcomes), dtype=object)
    n, total_bads = len(labels), int(labels.sum())
    rows = []
    for outcome in DECISIONS:
        mask = decided == outcome
        count = int(mask.sum())
        bads = int(labels[mask].sum())
        rows.append(
            {
                "decision": outcome,
                "goods": count - bads,
                "bads": bads,
                "n": count,
                "share": _rate(count, n),
                "bad_rate": _rate(bads, count),
                "share_of_bads": _rate(bads, total_bads),
            }
        )
    return rows


def importance_table(feature_points: FloatArray, names: Sequence[str]) -> list[dict[str, Any]]:
    """Mean |points| each input moves a score by, largest first (with the mean signed points)."""
    points = np.asarray(feature_points, dtype=np.float64)
    if points.size == 0:
        return []
    magnitude = np.abs(points).mean(axis=0)
    signed = points.mean(axis=0)
    rows = [
        {"feature": name, "mean_abs_points": float(magnitude[j]), "mean_points": float(signed[j])}
        for j, name in enumerate(names)
    ]
    return sorted(rows, key=lambda r: -r["mean_abs_points"])


def input_psi_table(train: pd.DataFrame, oot: pd.DataFrame, names: Sequence[str]) -> list[dict[str, Any]]:
    """PSI of each input, training slice as the reference and OOT as current (monitoring's binning)."""
    from monitoring.psi import ReferenceProfile, feature_psi

    if len(train) == 0 or len(oot) == 0:
        return []
    profile = ReferenceProfile.fit(train, list(names))
    results = feature_psi(profile, oot)
    rows = [
        {"feature": name, "psi": r.psi, "band": r.band, "noise_floor": r.noise_floor}
        for name, r in results.items()
    ]
    return sorted(rows, key=lambda r: -r["psi"])


def _bin_label(value: Any) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def woe_tables(scorecard: WoeScorecard, *, factor: float, offset: float) -> dict[str, Any]:
    """The WOE scorecard's bins with weight of evidence, IV and points, and IV per input.

    The scorecard's log-odds of default are `intercept + sum_j coef_j * WoE_j`; on the model's score
    scale (score = offset - factor * log-odds) a bin is worth `-factor * coef_j * WoE` points and the
    base is `offset - factor * intercept`.
    """
    process = scorecard.binning_
    names = [str(n) for n in process.get_support(names=True)]
    coefficients = dict(zip(names, np.asarray(scorecard.regression_.coef_).ravel(), strict=True))
    intercept = float(np.asarray(scorecard.regression_.intercept_).ravel()[0])
    bins: list[dict[str, Any]] = []
    values: list[dict[str, Any]] = []
    for name in names:
        table = process.get_binned_variable(name).binning_table.build()
        coefficient = float(coefficients[name])
        iv, occupied = 0.0, 0
        for index, row in table.iterrows():
            if index == "Totals":
                continue
            count = int(row["Count"])
            woe = float(row["WoE"]) if count else 0.0
            iv += float(row["IV"])
            occupied += count > 0
            bins.append(
                {
                    "feature": name,
                    "bin": _bin_label(row["Bin"]),
                    "count": count,
                    "share": float(row["Count (%)"]),
                    "goods": int(row["Non-event"]),
                    "bads": int(row["Event"]),
                    "bad_rate": float(row["Event rate"]) if count else math.nan,
                    "woe": woe,
                    "iv": float(row["IV"]),
                    "points": -factor * coefficient * woe,
                }
            )
        values.append({"feature": name, "iv": iv, "bins": occupied, "coefficient": coefficient})
    values.sort(key=lambda r: -r["iv"])
    return {"base_points": offset - factor * intercept, "iv": values, "bins": bins}


@dataclass
class AnalystReport:
    """Every table of one run (OOT unless a name says otherwise), JSON-ready through `to_dict`."""

    rows: int
    bads: int
    ks: float
    gini: float
    auc: dict[str, Any]
    deciles: list[dict[str, Any]]
    grades: list[dict[str, Any]]
    cutoffs: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    importance: list[dict[str, Any]]
    psi: list[dict[str, Any]]
    woe: dict[str, Any] | None
    validation_auc: dict[str, Any] | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    # Every contender's OOT headline row (AUC, approval at target, their 95% intervals).
    contenders: list[dict[str, Any]] = field(default_factory=list)
    target_bad_rate: float = 0.05

    @property
    def grade_order_breaks(self) -> list[str]:
        """Grades whose bad rate falls below the better grade's."""
        return [row["grade"] for row in self.grades if row["breaks_order"]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN -> None)."""
        ready: dict[str, Any] = _finite(
            {
                "slice": "oot",
                "rows": self.rows,
                "bads": self.bads,
                "ks": self.ks,
                "gini": self.gini,
                "auc": self.auc,
                "validation_auc": self.validation_auc,
                "deciles": self.deciles,
                "grades": self.grades,
                "grade_order_breaks": self.grade_order_breaks,
                "cutoffs": self.cutoffs,
                "policy": self.policy,
                "target_bad_rate": self.target_bad_rate,
                "contenders": self.contenders,
                "decisions": self.decisions,
                "importance": self.importance,
                "psi": self.psi,
                "woe": self.woe,
            }
        )
        return ready


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def analyst_report(result: TrainingResult, *, resamples: int = AUC_RESAMPLES) -> AnalystReport:
    """All tables of a training run on its OOT slice (AUC interval on validation too)."""
    model, split = result.model, result.split
    y = result.oot_label
    pd_ = result.oot_pds["model"]
    scores = model.scale.score_from_pd(pd_)
    features = result.oot_frame[model.feature_names]
    seed = result.config.booster.seed
    overall = result.evaluation.overall["model"]
    validation = split.masks["validation"]
    validation_auc = None
    if validation.any():
        validation_auc = auc_interval(
            result.training_set.label[validation],
            model.predict_pd(result.training_set.features.loc[validation]),
            resamples=resamples,
            seed=seed,
        )
    cuts = [c for _, c in model.scale.grades[:-1]]
    woe = None
    if result.scorecard is not None:
        woe = woe_tables(result.scorecard, factor=model.scale.factor, offset=model.scale.offset)
    train_features = result.training_set.features.loc[split.masks["train"], model.feature_names]
    return AnalystReport(
        rows=len(y),
        bads=int(y.sum()),
        ks=overall.ks,
        gini=overall.gini,
        auc=auc_interval(y, pd_, resamples=resamples, seed=seed),
        validation_auc=validation_auc,
        deciles=decile_table(y, pd_, scores),
        grades=grade_table(y, pd_, model.scale.grades_of(scores), [g for g, _ in model.scale.grades]),
        cutoffs=cutoff_table(y, pd_, scores, candidate_cutoffs(scores, cuts)),
        decisions=decision_table(y, [d.outcome for d in model.decisions(features, pd_)]),
        importance=importance_table(model.points(features).feature_points, model.feature_names),
        psi=input_psi_table(train_features, features, model.feature_names),
        woe=woe,
        policy={"approve_max_pd": model.policy.approve_max_pd, "decline_min_pd": model.policy.decline_min_pd},
        contenders=result.evaluation.headline(),
        target_bad_rate=result.evaluation.target_bad_rate,
    )
