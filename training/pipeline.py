"""One training run without storage: split, fit the model and the baselines, evaluate out of time.

`train_and_evaluate` turns a `TrainingSet` into a `TrainingResult` (the model, how it was fitted, the
OOT comparison, the OOT rows the promotion gates re-score, and the reference sample for drift). It
touches no store; `training.tracking` logs and registers the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.artifacts import REFERENCE_APPLIED_AT, REFERENCE_PD, REFERENCE_SCORE
from models.credit_model import CreditModel
from training.baselines import WoeScorecard, feature_ceiling_pd, fit_bureau_model, fit_scorecard
from training.config import TrainingConfig
from training.datasets import InsufficientDataError, TrainingSet
from training.evaluation import EvaluationReport, evaluate
from training.fit import FitReport, fit_credit_model, with_oot_outcome
from training.splits import SLICES, TimeSplit, time_split

FloatArray = npt.NDArray[np.float64]
Progress = Callable[[str], None]

# Columns of the stored OOT frame besides the features (names no feature can have: leading "_").
OOT_LABEL: Final = "_defaulted"
OOT_ID: Final = "_application_id"
OOT_APPLIED_AT: Final = "_applied_at"
OOT_SEGMENT_PREFIX: Final = "_segment_"
# The WOE scorecard's OOT PDs, stored at training time so the scorecard gate can judge at promotion
# (the scorecard itself is not stored). Versions trained before it lack the column.
OOT_SCORECARD_PD: Final = "_pd_scorecard"
# Fewest recent applications for a reference sample: a drift window needs as many (monitoring's
# default `min_rows`); with fewer, the sample falls back to the latest labelled applications.
REFERENCE_MIN_ROWS: Final = 200


@dataclass
class TrainingResult:
    """Everything a training run produced, before it is logged."""

    model: CreditModel
    fit: FitReport
    split: TimeSplit
    evaluation: EvaluationReport
    oot_frame: pd.DataFrame
    reference_sample: pd.DataFrame
    training_set: TrainingSet
    config: TrainingConfig
    oot_pds: dict[str, FloatArray]
    bureau_fit: FitReport | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    scorecard: WoeScorecard | None = None  # the WOE baseline, for the analyst's WOE/IV table

    @property
    def oot_label(self) -> npt.NDArray[np.int64]:
        """OOT outcomes (1 = defaulted)."""
        return self.training_set.label[self.split.masks["oot"]]


def check_sufficient(training_set: TrainingSet, split: TimeSplit, config: TrainingConfig) -> None:
    """Refuse to train when a slice is too small to fit, calibrate or evaluate honestly."""
    if len(training_set) < config.min_labels:
        raise InsufficientDataError(
            f"only {len(training_set)} labelled applications (need {config.min_labels})"
        )
    for name in SLICES:
        mask = split.masks[name]
        defaults = int(training_set.label[mask].sum())
        if defaults < config.min_defaults_per_slice or defaults == int(mask.sum()):
            raise InsufficientDataError(
                f"{name} slice {split.describe()[name]} has {int(mask.sum())} applications and "
                f"{defaults} defaults (need >= {config.min_defaults_per_slice} defaults and some repaid)"
            )


@contextmanager
def _timed(seconds: dict[str, float], stage: str, progress: Progress | None) -> Iterator[None]:
    if progress is not None:
        progress(stage)
    began = time.perf_counter()
    yield
    seconds[stage] = round(time.perf_counter() - began, 3)


def oot_frame(training_set: TrainingSet, mask: npt.NDArray[np.bool_]) -> pd.DataFrame:
    """OOT features with label, id, time and segments: what the promotion gates re-score."""
    frame = training_set.features.loc[mask].reset_index(drop=True).copy()
    clash = [c for c in frame.columns if c.startswith("_")]
    if clash:
        raise ValueError(f"feature names may not start with '_': {clash}")
    frame[OOT_LABEL] = training_set.label[mask]
    frame[OOT_ID] = training_set.ids[mask]
    frame[OOT_APPLIED_AT] = training_set.applied_at[mask].reset_index(drop=True)
    for column in training_set.segments.columns:
        frame[OOT_SEGMENT_PREFIX + column] = training_set.segments.loc[mask, column].to_numpy()
    return frame


def stored_segments(oot: pd.DataFrame) -> pd.DataFrame:
    """The segment columns of a stored OOT frame, named without their `_segment_` prefix.

    For a model trained on a table these are exactly its `--protected` columns (as audit groups).
    """
    columns = [c for c in oot.columns if str(c).startswith(OOT_SEGMENT_PREFIX)]
    segments = oot[columns].astype(str).reset_index(drop=True)
    segments.columns = [str(c)[len(OOT_SEGMENT_PREFIX) :] for c in columns]
    return segments


def reference_sample(
    training_set: TrainingSet, split: TimeSplit, model: CreditModel, rows: int, seed: int
) -> pd.DataFrame:
    """Up to `rows` applications with PD and score: the drift monitor's picture of normal inputs.

    The applications of the quarter before the as-of time when the training set has at least
    `REFERENCE_MIN_ROWS` of them (the event log does): the population the model meets once deployed.
    Otherwise (a lender's table has labelled rows only) the most recent labelled ones, OOT then
    calibration.
    """
    recent = training_set.recent
    if recent is not None and len(recent) >= REFERENCE_MIN_ROWS:
        features, applied_at = recent.features, recent.applied_at
        chosen = np.arange(len(recent))
    else:
        features, applied_at = training_set.features, training_set.applied_at
        chosen = np.flatnonzero(split.masks["oot"] | split.masks["calibration"])
    if len(chosen) > rows:
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, size=rows, replace=False))
    frame = features.iloc[chosen][model.feature_names].reset_index(drop=True)
    pd_ = model.predict_pd(frame)
    frame[REFERENCE_PD] = pd_
    frame[REFERENCE_SCORE] = model.scale.score_from_pd(pd_)
    frame[REFERENCE_APPLIED_AT] = applied_at.iloc[chosen].reset_index(drop=True)
    return frame


def train_and_evaluate(
    training_set: TrainingSet, config: TrainingConfig, *, progress: Progress | None = None
) -> TrainingResult:
    """Split by time, fit model + baselines, and compare them on the OOT slice."""
    seconds: dict[str, float] = {}
    split = time_split(training_set.applied_at, training_set.horizon, config.splits)
    check_sufficient(training_set, split, config)
    with _timed(seconds, "fit model", progress):
        model, fit = fit_credit_model(training_set, split, config)
    oot = split.masks["oot"]
    oot_features = training_set.features.loc[oot]
    pds: dict[str, FloatArray] = {"model": model.predict_pd(oot_features)}
    with_oot_outcome(model, oot_features, pds["model"], training_set.label[oot])
    with _timed(seconds, "fit baselines", progress):
        if training_set.truth_pd is not None:
            pds["oracle"] = training_set.truth_pd[oot]
            ceiling = feature_ceiling_pd(training_set, split, config)
            if ceiling is not None:
                pds["feature_ceiling"] = ceiling[oot]
        scorecard = fit_scorecard(training_set, split)
        pds["scorecard"] = scorecard.predict_proba(oot_features)[:, 1]
        bureau = fit_bureau_model(training_set, split, config)
        bureau_fit = None
        if bureau is not None:
            bureau_model, bureau_fit = bureau
            pds["bureau"] = bureau_model.predict_pd(oot_features)
    with _timed(seconds, "evaluate", progress):
        report = evaluate(
            training_set.label[oot],
            pds,
            training_set.segments.loc[oot].reset_index(drop=True),
            thin_segment=training_set.thin_segment,
            target_bad_rate=config.target_bad_rate,
            bins=config.ece_bins,
            resamples=config.interval_resamples,
            seed=config.booster.seed,
        )
        frame = oot_frame(training_set, oot)
        frame[OOT_SCORECARD_PD] = pds["scorecard"]
        sample = reference_sample(
            training_set, split, model, config.reference_sample_rows, config.booster.seed
        )
    return TrainingResult(
        model=model,
        fit=fit,
        split=split,
        evaluation=report,
        oot_frame=frame,
        reference_sample=sample,
        training_set=training_set,
        config=config,
        oot_pds=pds,
        bureau_fit=bureau_fit,
        seconds=seconds,
        scorecard=scorecard,
    )


def summary_metrics(result: TrainingResult) -> dict[str, Any]:
    """Headline numbers of a run (for the JSON summary and the version tags)."""
    overall = result.evaluation.overall["model"]
    thin = (result.evaluation.thin or {}).get("model")
    return {
        "oot_auc": overall.auc,
        "oot_ece": overall.ece,
        "oot_thin_auc": thin.auc if thin else None,
        "oot_rows": overall.n,
        "oot_defaults": overall.defaults,
        "target_bad_rate": result.evaluation.target_bad_rate,
        "best_iteration": result.fit.best_iteration,
        "calibration": result.model.calibration.to_dict(),
        "policy": dict(result.model.policy.selection),
    }
