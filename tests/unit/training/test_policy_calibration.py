"""Cutoffs from the lender's target and calibration on small data, on real models fitted to
generated lender tables (1,000 and 2,000 rows): the cutoff meets its target on the slice it was
chosen on, the approval share is the one asked for, an unreachable target names the best value,
cross-fitted calibration keeps points exactly additive, and a failed ECE gate says why."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from models.credit_model import CreditModel
from models.cutoffs import TargetNotMetError
from simulator.lender_table import write_lender_table
from tests.utils.tables import LENDER_TABLE_OPTIONS
from training.config import BoosterConfig, CalibrationConfig, PolicyConfig, TrainingConfig
from training.datasets import TrainingSet, table_training_set
from training.fit import fit_credit_model
from training.gates import CalibrationGate, GateContext
from training.pipeline import TrainingResult, train_and_evaluate
from training.splits import TimeSplit, time_split


@cache
def _table_set(rows: int, folder: str) -> TrainingSet:
    path = write_lender_table(Path(folder) / f"lender-{rows}.csv", rows)
    return table_training_set(
        path, **LENDER_TABLE_OPTIONS, protected=("gender",), monotone={"late_payments": 1}
    )


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[int, TrainingSet]:
    folder = str(tmp_path_factory.mktemp("tables"))
    return {rows: _table_set(rows, folder) for rows in (1000, 2000)}


def _split(training_set: TrainingSet, config: TrainingConfig) -> TimeSplit:
    return time_split(training_set.applied_at, training_set.horizon, config.splits)


def _fit(training_set: TrainingSet, config: TrainingConfig) -> tuple[CreditModel, TimeSplit]:
    split = _split(training_set, config)
    model, _ = fit_credit_model(training_set, split, config)
    return model, split


def _slice_outcome(model: CreditModel, training_set: TrainingSet, mask: np.ndarray) -> tuple[float, float]:
    """(approval share, bad rate among approved) of the model's own decisions on the masked rows."""
    frame = training_set.features.loc[mask]
    outcomes = np.array([d.outcome for d in model.decisions(frame)])
    approved = outcomes == "approve"
    return float(approved.mean()), float(training_set.label[mask][approved].mean())


PLATT = CalibrationConfig(method="platt")
# The cutoffs are judged on the calibration slice with the stored model's own PDs: keep it held out.
HELD_OUT = BoosterConfig(refit_on_calibration=False)


def test_target_bad_rate_cutoff_meets_the_target_on_its_slice_and_is_the_largest(
    tables: dict[int, TrainingSet],
) -> None:
    ts = tables[2000]
    config = TrainingConfig(
        target_bad_rate=0.08, calibration=PLATT, booster=HELD_OUT
    )  # mode auto -> target on a table
    model, split = _fit(ts, config)
    selection = model.policy.selection
    assert selection["mode"] == "target_bad_rate" and selection["target"] == 0.08
    assert "auto" in selection["why"] and selection["slice"] == "calibration"
    cal = split.masks["calibration"]
    share, bad_rate = _slice_outcome(model, ts, cal)
    assert bad_rate <= 0.08 and share > 0.2  # the target is met, and it approves a real share
    assert share == pytest.approx(selection["achieved"]["slice"]["approval_rate"])
    # The largest such cutoff: approving the next riskier applicant breaks the target.
    pd_ = model.predict_pd(ts.features.loc[cal])
    y = ts.label[cal]
    riskier = np.sort(np.unique(pd_[pd_ > model.policy.approve_max_pd]))
    assert len(riskier) and y[pd_ <= riskier[0]].mean() > 0.08
    # The review band: the next 20% of applicants go to review, the rest are declined.
    review = selection["achieved"]["slice"]["review_rate"]
    assert review == pytest.approx(0.2, abs=1.5 / cal.sum())
    assert model.policy.approve_max_pd < model.policy.decline_min_pd < 1.0


def test_target_approval_rate_approves_that_share(tables: dict[int, TrainingSet]) -> None:
    ts = tables[2000]
    policy = PolicyConfig(mode="target_approval_rate", target_approval_rate=0.5, review_band=0.1)
    model, split = _fit(ts, TrainingConfig(policy=policy, calibration=PLATT, booster=HELD_OUT))
    cal = split.masks["calibration"]
    share, _ = _slice_outcome(model, ts, cal)
    assert 0.5 - 2 / cal.sum() <= share <= 0.5
    achieved = model.policy.selection["achieved"]["slice"]
    assert achieved["review_rate"] == pytest.approx(0.1, abs=1.5 / cal.sum())


def test_an_unreachable_target_says_so_with_the_best_achievable(tables: dict[int, TrainingSet]) -> None:
    ts = tables[2000]
    config = TrainingConfig(
        target_bad_rate=0.01,
        policy=PolicyConfig(mode="target_bad_rate"),
        calibration=PLATT,
        booster=HELD_OUT,
    )
    with pytest.raises(TargetNotMetError) as caught:
        _fit(ts, config)
    message = str(caught.value)
    assert "target bad rate 1.0% among approved cannot be met on the calibration slice" in message
    assert "the lowest achievable, approving at least 100 applicants, is " in message
    assert "--target-bad-rate" in message and "\n" not in message


def test_fixed_policy_stays_for_the_event_log_and_on_request(tables: dict[int, TrainingSet]) -> None:
    assert PolicyConfig().resolved("event_log").mode == "fixed"
    assert PolicyConfig().resolved("table").mode == "target_bad_rate"
    model, _ = _fit(
        tables[2000], TrainingConfig(policy=PolicyConfig(mode="fixed"), calibration=PLATT, booster=HELD_OUT)
    )
    assert (model.policy.approve_max_pd, model.policy.decline_min_pd) == (0.05, 0.25)
    assert model.policy.selection["mode"] == "fixed"


def test_chosen_cutoffs_and_calibration_travel_with_the_saved_model(
    tables: dict[int, TrainingSet], tmp_path: Path
) -> None:
    result = train_and_evaluate(tables[1000], TrainingConfig(target_bad_rate=0.1))
    model = result.model
    assert set(model.policy.selection["achieved"]) == {"slice", "oot"}  # OOT added by the pipeline
    model.save(tmp_path / "model")
    loaded = CreditModel.load(tmp_path / "model")
    assert loaded.policy.approve_max_pd == model.policy.approve_max_pd
    assert loaded.policy.decline_min_pd == model.policy.decline_min_pd
    assert loaded.policy.selection == model.policy.selection
    assert loaded.calibration.to_dict() == model.calibration.to_dict()


def test_small_calibration_slice_is_cross_fitted_and_points_stay_additive(
    tables: dict[int, TrainingSet],
) -> None:
    ts = tables[1000]
    config = TrainingConfig(policy=PolicyConfig(mode="fixed"))  # calibration auto
    model, split = _fit(ts, config)
    cal_defaults = int(ts.label[split.masks["calibration"]].sum())
    assert cal_defaults < config.calibration.min_slice_defaults
    fitted = model.calibration.fitted_on
    assert model.calibration.method == "cross_fitted_platt"
    pre_oot = ~split.masks["oot"]
    assert fitted["rows"] == int(pre_oot.sum()) and fitted["defaults"] == int(ts.label[pre_oot].sum())
    assert fitted["calibration_slice_defaults"] == cal_defaults and str(cal_defaults) in fitted["why"]
    frame = ts.features.loc[split.masks["oot"]]
    points = model.points(frame)
    score = model.score(frame)
    np.testing.assert_allclose(points.base_points + points.feature_points.sum(axis=1), score, atol=1e-9)
    for i, row in enumerate(frame.head(20).to_dict("records")):  # the per-applicant serving path
        explanation = model.explain(row)
        total = explanation.base_points + math.fsum(explanation.group_points.values())
        assert total == pytest.approx(explanation.score, abs=1e-9)
        assert explanation.score == pytest.approx(score[i], abs=1e-9)


def test_a_large_calibration_slice_keeps_plain_platt(tables: dict[int, TrainingSet]) -> None:
    config = TrainingConfig(calibration=CalibrationConfig(min_slice_defaults=10))
    model, _ = _fit(tables[2000], config)
    assert model.calibration.method == "platt"
    assert "34 defaults >= 10" in model.calibration.fitted_on["why"]


def _result(ts: TrainingSet) -> TrainingResult:
    return train_and_evaluate(ts, TrainingConfig(policy=PolicyConfig(mode="fixed")))


def test_failed_ece_gate_on_a_small_oot_slice_carries_the_interval_and_advice(
    tables: dict[int, TrainingSet],
) -> None:
    result = _result(tables[1000])
    gate = CalibrationGate(max_ece=0.02)
    judged = gate(GateContext(challenger=result.model, oot=result.oot_frame))
    rows, defaults = len(result.oot_frame), int(result.oot_label.sum())
    assert not judged.passed
    low, high = judged.details["ece_ci95"]
    assert low <= judged.details["ece"] <= high
    assert f"(95% CI {low:.3f}-{high:.3f}) on {rows:,} rows, {defaults:,} defaults > 0.02" in judged.reason
    # 110 OOT rows: even a perfectly calibrated model shows an ECE far above 0.02 here.
    assert judged.details["ece_if_perfectly_calibrated"] > 0.02
    assert judged.details["diagnosis"] == "too_little_data"
    assert "too little OOT data to judge" in judged.reason and "--oot-months" in judged.reason


def test_failed_ece_gate_on_miscalibrated_pds_says_recalibrate(tables: dict[int, TrainingSet]) -> None:
    result = _result(tables[2000])
    model = result.model
    calibration = model.calibration
    shifted = type(calibration)(
        calibration.slope, calibration.intercept + 1.5, calibration.method, calibration.fitted_on
    )
    off = CreditModel(model.booster, model.spec, shifted, model.scale, model.policy)
    judged = CalibrationGate(max_ece=0.02)(GateContext(challenger=off, oot=result.oot_frame))
    assert not judged.passed and judged.details["diagnosis"] == "miscalibrated"
    assert judged.details["ece_ci95"][0] > 0.02
    assert "PDs are off" in judged.reason and "too high" in judged.reason
    assert "recalibrate (fitted on" in judged.reason and "--calibration-months" in judged.reason
    # The limit itself is unchanged: the honest model on the same rows is judged by the same rule.
    honest = CalibrationGate(max_ece=0.02)(GateContext(challenger=model, oot=result.oot_frame))
    assert honest.passed == (honest.details["ece"] <= 0.02)


def test_an_unmet_default_target_on_a_table_uses_the_best_achievable_and_says_so(
    tables: dict[int, TrainingSet],
) -> None:
    # No policy mode given (auto): the table's default target is ours, not the lender's.
    model, _ = _fit(tables[2000], TrainingConfig(target_bad_rate=0.01, calibration=PLATT, booster=HELD_OUT))
    selection = model.policy.selection
    assert selection["target_met"] is False and selection["requested_target"] == 0.01
    assert selection["target"] > 0.01
    assert (
        "no policy target was given and the default target_bad_rate 1.0% cannot be met"
        in (selection["warning"])
    )
    assert f"using the best achievable, {selection['target']:.1%}" in selection["warning"]
    assert selection["achieved"]["slice"]["bad_rate_approved"] <= selection["target"] + 1e-12
    assert selection["achieved"]["slice"]["approved"] >= 20


def test_the_booster_learns_the_calibration_slice_after_calibrating_on_it(
    tables: dict[int, TrainingSet],
) -> None:
    # Platt is fitted on the slice while it is held out, then the booster is refit with it.
    ts = tables[2000]
    config = TrainingConfig(
        calibration=CalibrationConfig(min_slice_defaults=10),
        booster=BoosterConfig(refit_on_calibration=True),
    )
    model, split = _fit(ts, config)
    assert model.calibration.method == "platt"
    assert "refit with that slice" in model.calibration.fitted_on["margins"]
    held_out_config = TrainingConfig(
        calibration=CalibrationConfig(min_slice_defaults=10),
        booster=HELD_OUT,
    )
    held_out, _ = _fit(ts, held_out_config)
    # The same calibration (fitted on the same held-out margins), a different stored booster.
    pair = (model.calibration, held_out.calibration)
    assert [(c.slope, c.intercept) for c in pair] == [(pair[1].slope, pair[1].intercept)] * 2
    cal = ts.features.loc[split.masks["calibration"]]
    assert not np.allclose(model.predict_pd(cal), held_out.predict_pd(cal))
