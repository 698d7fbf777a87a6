"""Fitting the credit model: monotone LightGBM with early stopping, Platt calibration, cutoffs.

The booster learns on the training slice and stops early on the validation slice; its margin is
calibrated on the calibration slice, which neither of them saw. When that slice holds too few
defaults to fit even Platt's two parameters well, calibration is cross-fitted: boosters of the final
configuration fitted on folds of the pre-OOT rows give every one of those rows an out-of-fold margin,
and Platt is fitted on all of them (still affine in the margin, so score points stay additive).
Decision cutoffs are then fixed PDs, or chosen from the lender's target on the calibration slice.
Monotone constraints come from the spec; LightGBM handles missing values natively.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from models.calibration import PlattCalibration, fit_platt
from models.credit_model import CreditModel, encode_frame
from models.cutoffs import TargetNotMetError, choose_cutoffs, outcome_rates
from models.monotone import direction_violations
from models.policy import DecisionPolicy, EvidenceRule
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
    refit_on_calibration: bool = False
    additive: bool = False
    monotone_method: str | None = None  # the LightGBM method that produced the stored booster

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "best_iteration": self.best_iteration,
            "rounds_trained": self.rounds_trained,
            "validation_logloss": self.validation_logloss,
            "constrained_features": self.constrained_features,
            "refit_on_validation": self.refit_on_validation,
            "refit_on_calibration": self.refit_on_calibration,
            "additive": self.additive,
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
    if config.booster.additive:
        # One input per tree: the margin is a sum of one-input shape functions.
        params["interaction_constraints"] = [[i] for i in range(len(spec.names))]
    categorical: list[int] | Literal["auto"] = spec.categorical_indices or "auto"
    booster, best, rounds, validation_logloss, margin = _fit_booster(
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
            booster, best, rounds, validation_logloss, margin = _fit_booster(
                params, spec, training_set, split, config, categorical
            )
    calibration, held_out = _calibrate(
        margin, params, spec, training_set, split, config, categorical, best, baseline=baseline
    )
    # Cutoffs are chosen on the rows calibration was judged on, with PDs out of the booster's fit.
    evidence = config.policy.policy().evidence.restricted_to(set(spec.names))
    rows, held_margin, held_slice = held_out
    policy = choose_policy(
        config,
        training_set.fingerprint.source,
        calibration.pd(held_margin),
        y[rows],
        judgeable(evidence, training_set.features.iloc[rows]),
        slice_name=held_slice,
        baseline=baseline,
    )
    model = CreditModel(
        booster=booster,
        spec=spec,
        calibration=calibration,
        scale=config.scale.scale(),
        policy=policy,
    )
    report = FitReport(
        best_iteration=best,
        rounds_trained=rounds,
        validation_logloss=validation_logloss,
        constrained_features=sum(1 for c in constraints if c),
        refit_on_validation=config.booster.refit_on_validation,
        refit_on_calibration=config.booster.refit_on_calibration,
        additive=config.booster.additive,
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
) -> tuple[Any, int, int, float, FloatArray]:
    """Train with early stopping on validation, then refit on train + validation (unless configured
    off) or keep the trees up to the best round; with `refit_on_calibration`, refit once more on the
    calibration slice too. Returns (booster, best round, rounds, logloss, calibration margins): the
    margins on the calibration slice of the last booster that had not seen it."""
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

    def refit(mask: npt.NDArray[np.bool_]) -> Any:
        data = lgb.Dataset(
            _matrix(spec, training_set, mask),
            label=y[mask],
            feature_name=spec.names,
            categorical_feature=categorical,
        )
        return lgb.train(params, data, num_boost_round=best)

    learned = split.masks["train"]
    if config.booster.refit_on_validation:
        # The validation slice chose the number of rounds; now let it teach too (small files
        # are short of defaults). Calibration and OOT stay unseen.
        learned = learned | split.masks["validation"]
        booster = refit(learned)
    else:
        # Keep only the trees up to the best iteration: the stored model is what was validated.
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    x_cal = _matrix(spec, training_set, split.masks["calibration"])
    margin = np.asarray(booster.predict(x_cal, raw_score=True), dtype=np.float64)
    if config.booster.refit_on_calibration and split.masks["calibration"].any():
        # The latest pre-OOT months teach the most about the applicants to come. Calibration is
        # fitted on the held-out margins above, from the same configuration and round count.
        booster = refit(learned | split.masks["calibration"])
    return booster, best, rounds, validation_logloss, margin


def _calibrate(
    margin: FloatArray,
    params: dict[str, Any],
    spec: ModelSpec,
    training_set: TrainingSet,
    split: TimeSplit,
    config: TrainingConfig,
    categorical: list[int] | Literal["auto"],
    rounds: int,
    *,
    baseline: bool,
) -> tuple[PlattCalibration, tuple[npt.NDArray[np.int64], FloatArray, str]]:
    """Platt on the calibration slice, or cross-fitted Platt when that slice is short of defaults
    (`config.calibration`); the result records the method and why. Also
    returns the rows it was fitted on with their out-of-fit margins and the name of those rows
    (where the policy's cutoffs are chosen)."""
    y_cal = training_set.label[split.masks["calibration"]]
    rows, defaults = len(y_cal), int(y_cal.sum())
    settings = config.calibration
    method = settings.method
    if method == "auto":
        small = defaults < settings.min_slice_defaults
        method = "cross_fitted_platt" if small else "platt"
        why = (
            f"auto: the calibration slice has {defaults} defaults "
            f"{'<' if small else '>='} {settings.min_slice_defaults}"
        )
    else:
        why = f"configured: calibration.method = {method}"
    slice_facts = {"calibration_slice_rows": rows, "calibration_slice_defaults": defaults, "why": why}
    if method == "platt":
        fitted = fit_platt(margin, y_cal, allow_uninformative=baseline)
        facts = {"slice": "calibration", "rows": rows, "defaults": defaults, **slice_facts}
        if config.booster.refit_on_calibration:
            facts["margins"] = (
                "of the booster fitted before the calibration slice; the stored booster was then "
                "refit with that slice, same configuration and round count"
            )
        return fitted.described("platt", facts), (
            np.flatnonzero(split.masks["calibration"]),
            margin,
            "calibration",
        )
    oof_rows, oof_margin, oof_label = cross_fitted_margins(
        params, spec, training_set, split, categorical, rounds, settings.folds, config.booster.seed
    )
    fitted = fit_platt(oof_margin, oof_label, allow_uninformative=baseline)
    described = fitted.described(
        "cross_fitted_platt",
        {
            "slice": "out-of-fold margins of the pre-OOT rows (train, validation, calibration)",
            "rows": len(oof_label),
            "defaults": int(oof_label.sum()),
            "folds": settings.folds,
            "fold_assignment": "stratified by label, seeded (every fold holds defaults)",
            "rounds": rounds,
            **slice_facts,
        },
    )
    return described, (oof_rows, oof_margin, "out-of-fold pre-OOT")


def cross_fitted_margins(
    params: dict[str, Any],
    spec: ModelSpec,
    training_set: TrainingSet,
    split: TimeSplit,
    categorical: list[int] | Literal["auto"],
    rounds: int,
    folds: int,
    seed: int,
) -> tuple[npt.NDArray[np.int64], FloatArray, npt.NDArray[np.int64]]:
    """Row positions, out-of-fold margins and labels of every pre-OOT row: `folds` boosters with
    the final booster's parameters and round count, each fitted on the other folds.

    Folds are stratified by label (not by time): on small data a time-ordered fold can hold a
    handful of defaults or none. The price is that the fitted intercept reflects the whole pre-OOT
    default rate rather than the latest months'; the OOT slice stays untouched either way.
    """
    import lightgbm as lgb

    rows = np.flatnonzero(split.masks["train"] | split.masks["validation"] | split.masks["calibration"])
    y = training_set.label[rows].astype(np.int64)
    x = encode_frame(spec, training_set.features.iloc[rows])
    fold = np.empty(len(rows), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for value in (0, 1):
        members = rng.permutation(np.flatnonzero(y == value))
        fold[members] = np.arange(len(members)) % folds
    margin = np.empty(len(rows), dtype=np.float64)
    for k in range(folds):
        held = fold == k
        data = lgb.Dataset(x[~held], label=y[~held], feature_name=spec.names, categorical_feature=categorical)
        booster = lgb.train(params, data, num_boost_round=rounds)
        margin[held] = np.asarray(booster.predict(x[held], raw_score=True), dtype=np.float64)
    return rows, margin, y


def judgeable(evidence: EvidenceRule, frame: Any) -> npt.NDArray[np.bool_]:
    """Rows with enough evidence for the policy to judge them (thin files always go to review)."""
    if evidence.is_empty():
        return np.ones(len(frame), dtype=bool)
    columns = [n for n in evidence.features if n in frame.columns]
    records = frame[columns].to_dict("records")
    return np.array([not evidence.shortfalls(r) for r in records], dtype=bool)


def choose_policy(
    config: TrainingConfig,
    source: str,
    pd_: FloatArray,
    defaulted: npt.NDArray[Any],
    judgeable_rows: npt.NDArray[np.bool_],
    *,
    slice_name: str = "calibration",
    baseline: bool = False,
) -> DecisionPolicy:
    """The decision policy: fixed PDs, or cutoffs from the lender's target on held-out rows.

    The rows are the calibration slice (the latest pre-OOT rows the booster was not fitted on: with
    `refit_on_validation` it has learned the validation slice, so PDs there flatter it), or, with
    cross-fitted calibration, every pre-OOT row's out-of-fold PD: a small table's calibration slice
    is too few applicants to place a cutoff, and a booster refit on that slice has learned it.
    Raises `TargetNotMetError` naming the best value."""
    policy_config = config.policy.resolved(source)
    base = policy_config.policy()
    mode = policy_config.mode
    data = "a lender table" if source == "table" else "the " + source.replace("_", " ") + " data"
    why = (
        f"policy.mode auto on {data}: {mode}"
        if config.policy.mode == "auto"
        else f"configured: policy.mode = {mode}"
    )
    if baseline or mode == "fixed":
        achieved = outcome_rates(pd_, defaulted, judgeable_rows, base.approve_max_pd, base.decline_min_pd)
        selection = {
            "mode": "fixed",
            "why": why,
            "slice": slice_name,
            "approve_max_pd": base.approve_max_pd,
            "decline_min_pd": base.decline_min_pd,
            "achieved": {"slice": achieved},
        }
        return DecisionPolicy(base.approve_max_pd, base.decline_min_pd, base.evidence, selection)
    target = config.target_bad_rate if mode == "target_bad_rate" else policy_config.target_approval_rate
    assert target is not None  # the config's validator ties target_approval_rate to its mode
    kwargs: dict[str, Any] = {
        "mode": "target_bad_rate" if mode == "target_bad_rate" else "target_approval_rate",
        "review_band": policy_config.review_band,
        "slice_name": slice_name,
    }
    shortfall = None
    try:
        choice = choose_cutoffs(pd_, defaulted, judgeable_rows, target=target, **kwargs)
    except TargetNotMetError as error:
        # A target the lender gave is theirs to change (exit 2, one line). The implicit default of a
        # table is ours: use the best achievable bad rate, and say so wherever the cutoffs are shown.
        if config.policy.mode != "auto" or error.best is None:
            raise
        shortfall = (
            f"no policy target was given and the default target_bad_rate {target:.1%} cannot be met: "
            f"{error}; using the best achievable, {error.best:.1%}"
        )
        target = error.best
        choice = choose_cutoffs(pd_, defaulted, judgeable_rows, target=target, **kwargs)
    selection = {
        "mode": mode,
        "why": why,
        "target": target,
        "review_band": policy_config.review_band,
        "slice": slice_name,
        "slice_reason": "PDs out of the booster's fit: "
        + (
            "the latest pre-OOT rows (with refit_on_validation the booster learned the validation slice)"
            if slice_name == "calibration"
            else "each pre-OOT row scored by a fold booster that did not see it (cross-fitted calibration)"
        ),
        "approve_max_pd": choice.approve_max_pd,
        "decline_min_pd": choice.decline_min_pd,
        "achieved": {"slice": choice.outcome},
        "target_met": shortfall is None,
    }
    if shortfall is not None:
        selection.update(requested_target=config.target_bad_rate, warning=shortfall)
    return DecisionPolicy(choice.approve_max_pd, choice.decline_min_pd, base.evidence, selection)


def with_oot_outcome(
    model: CreditModel, oot_features: Any, oot_pd: FloatArray, oot_label: npt.NDArray[Any]
) -> None:
    """Record what the model's cutoffs achieve on the OOT rows in its policy's selection."""
    policy = model.policy
    rows = judgeable(policy.evidence, oot_features)
    achieved = outcome_rates(oot_pd, oot_label, rows, policy.approve_max_pd, policy.decline_min_pd)
    selection = dict(policy.selection)
    selection["achieved"] = {**dict(selection.get("achieved") or {}), "oot": achieved}
    model.policy = DecisionPolicy(policy.approve_max_pd, policy.decline_min_pd, policy.evidence, selection)
