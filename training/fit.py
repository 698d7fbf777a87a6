"""Fitting the credit model: monotone LightGBM with early stopping, then Platt calibration.

The booster learns on the training slice and stops early on the validation slice; its margin is
calibrated on the calibration slice, which neither of them saw. Monotone constraints come from the
spec (the views' declared directions); LightGBM handles missing values natively.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from models.calibration import fit_platt
from models.credit_model import CreditModel, encode_frame
from models.monotone import direction_violations
from models.spec import ModelSpec
from training.config import TrainingConfig
from training.datasets import TrainingSet
from training.splits import TimeSplit

FloatArray = npt.NDArray[np.float64]
MONOTONE_CHECK_ROWS = 300  # training rows swept for wrong-way steps after fitting


@dataclass(frozen=True)
class FitReport:
    """How the booster was fitted."""

    best_iteration: int
    rounds_trained: int
    validation_logloss: float  # at the best round, before any refit
    constrained_features: int
    refit_on_validation: bool
    monotone_method: str | None = None  # the LightGBM method that produced the stored booster

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "best_iteration": self.best_iteration,
            "rounds_trained": self.rounds_trained,
            "validation_logloss": self.validation_logloss,
            "constrained_features": self.constrained_features,
            "refit_on_validation": self.refit_on_validation,
            "monotone_method": self.monotone_method,
        }


def _matrix(spec: ModelSpec, training_set: TrainingSet, mask: npt.NDArray[np.bool_]) -> FloatArray:
    """Model matrix of the masked rows, encoded exactly as the model encodes them at scoring time."""
    return encode_frame(spec, training_set.features.loc[mask])


def fit_credit_model(
    training_set: TrainingSet,
    split: TimeSplit,
    config: TrainingConfig,
    *,
    spec: ModelSpec | None = None,
    baseline: bool = False,
) -> tuple[CreditModel, FitReport]:
    """Fit booster (train, early-stopped on validation; then refit on both unless configured off)
    and Platt calibration (calibration slice).

    `spec` restricts the inputs (e.g. the bureau-only baseline); default: every feature of the set.
    A `baseline` whose margin carries no information on the calibration slice predicts its default
    rate; the model itself is refused in that case.
    """
    spec = spec or training_set.spec
    y = training_set.label
    params = config.booster.lightgbm_params()
    constraints = spec.monotone_constraints
    if any(constraints):
        params["monotone_constraints"] = constraints
    categorical: list[int] | Literal["auto"] = spec.categorical_indices or "auto"
    booster, best, rounds, validation_logloss = _fit_booster(
        params, spec, training_set, split, config, categorical
    )
    method = str(params.get("monotone_constraints_method", "basic"))
    if any(constraints) and method != "basic":
        # LightGBM's faster monotone methods have let small wrong-way steps through (issues
        # #5358, #6155 for "advanced"; we saw one from "intermediate" on a 200k world). A lender
        # must be able to say "a larger loan never improves your score": refit with the strict
        # "basic" method when the sweep finds any violation on training rows.
        train_rows = np.flatnonzero(split.masks["train"])
        picked = train_rows[np.linspace(0, len(train_rows) - 1, MONOTONE_CHECK_ROWS).astype(np.int64)]
        sample = encode_frame(spec, training_set.features.iloc[np.unique(picked)])
        if direction_violations(lambda x: booster.predict(x, raw_score=True), sample, spec):
            method = "basic"
            params = {**params, "monotone_constraints_method": method}
            booster, best, rounds, validation_logloss = _fit_booster(
                params, spec, training_set, split, config, categorical
            )
    x_cal = _matrix(spec, training_set, split.masks["calibration"])
    margin = np.asarray(booster.predict(x_cal, raw_score=True), dtype=np.float64)
    calibration = fit_platt(margin, y[split.masks["calibration"]], allow_uninformative=baseline)
    model = CreditModel(
        booster=booster,
        spec=spec,
        calibration=calibration,
        scale=config.scale.scale(),
        policy=config.policy.policy(),
    )
    report = FitReport(
        best_iteration=best,
        rounds_trained=rounds,
        validation_logloss=validation_logloss,
        constrained_features=sum(1 for c in constraints if c),
        refit_on_validation=config.booster.refit_on_validation,
        monotone_method=method if any(constraints) else None,
    )
    return model, report


def _fit_booster(
    params: dict[str, Any],
    spec: ModelSpec,
    training_set: TrainingSet,
    split: TimeSplit,
    config: TrainingConfig,
    categorical: list[int] | Literal["auto"],
) -> tuple[Any, int, int, float]:
    """Train with early stopping on validation, then refit on train + validation (unless configured
    off) or keep the trees up to the best round. Returns (booster, best round, rounds, logloss)."""
    import lightgbm as lgb

    y = training_set.label
    train_data = lgb.Dataset(
        _matrix(spec, training_set, split.masks["train"]),
        label=y[split.masks["train"]],
        feature_name=spec.names,
        categorical_feature=categorical,
        free_raw_data=True,
    )
    valid_data = lgb.Dataset(
        _matrix(spec, training_set, split.masks["validation"]),
        label=y[split.masks["validation"]],
        reference=train_data,
        categorical_feature=categorical,
    )
    booster = lgb.train(
        params,
        train_data,
        num_boost_round=config.booster.max_rounds,
        valid_sets=[valid_data],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(config.booster.early_stopping_rounds, verbose=False)],
    )
    best = int(booster.best_iteration or booster.current_iteration())
    rounds = booster.current_iteration()
    validation_logloss = float(booster.best_score["validation"]["binary_logloss"])
    if config.booster.refit_on_validation:
        # The validation slice chose the number of rounds; now let it teach too (small files
        # are short of defaults). Calibration and OOT stay unseen.
        both = split.masks["train"] | split.masks["validation"]
        refit_data = lgb.Dataset(
            _matrix(spec, training_set, both),
            label=y[both],
            feature_name=spec.names,
            categorical_feature=categorical,
        )
        booster = lgb.train(params, refit_data, num_boost_round=best)
    else:
        # Keep only the trees up to the best iteration: the stored model is what was validated.
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    return booster, best, rounds, validation_logloss
