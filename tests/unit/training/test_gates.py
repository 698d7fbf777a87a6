"""Promotion gates on in-memory models: AUC vs champion on the same rows, calibration, directions."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.calibration import PlattCalibration
from models.credit_model import CreditModel
from models.spec import FeatureSpec, ModelSpec, ReasonGroupSpec
from training.gates import (
    AucGate,
    CalibrationGate,
    DirectionGate,
    GateContext,
    GateResult,
    default_gates,
    run_gates,
)
from training.pipeline import OOT_LABEL


def _data(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    late = rng.poisson(1.0, n).astype(float)
    savings = rng.gamma(2.0, 500.0, n)
    noise = rng.normal(size=n)
    risk = -3 + 0.8 * late - 0.001 * savings
    y = (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(int)
    return pd.DataFrame({"late_count": late, "savings": savings, "noise": noise}), y


def _model(directions: dict[str, int], frame: pd.DataFrame, y: np.ndarray, *, constrain: bool) -> CreditModel:
    names = list(frame.columns)
    spec = ModelSpec(
        features=tuple(FeatureSpec(n, direction=directions.get(n, 0), reason_group="g") for n in names),
        reason_groups=(ReasonGroupSpec("g", "组", "group"),),
        source="table",
    )
    params = {"objective": "binary", "num_leaves": 7, "verbosity": -1, "num_threads": 1, "seed": 1}
    if constrain:
        params["monotone_constraints"] = spec.monotone_constraints
        params["monotone_constraints_method"] = "intermediate"
    booster = lgb.train(params, lgb.Dataset(frame.to_numpy(), y), 80)
    return CreditModel(booster, spec, PlattCalibration(1.0, 0.0))


@pytest.fixture(scope="module")
def oot() -> pd.DataFrame:
    frame, y = _data(seed=1)
    return frame.assign(**{OOT_LABEL: y})


@pytest.fixture(scope="module")
def good() -> CreditModel:
    frame, y = _data(seed=0)
    return _model({"late_count": 1, "savings": -1}, frame, y, constrain=True)


def test_no_champion_passes_the_auc_gate(good, oot) -> None:
    result = AucGate()(GateContext(challenger=good, oot=oot))
    assert result.passed and "no champion" in result.reason


def test_a_worse_challenger_fails_the_auc_gate(good, oot) -> None:
    frame, y = _data(seed=0)
    shuffled = np.random.default_rng(3).permutation(y)
    worse = _model({}, frame, shuffled, constrain=False)
    result = AucGate(max_drop=0.005)(GateContext(challenger=worse, oot=oot, champion=good))
    assert not result.passed
    assert result.details["champion_auc"] > result.details["challenger_auc"] + 0.005
    # the same model against itself passes: same rows, same AUC
    assert AucGate()(GateContext(challenger=good, oot=oot, champion=good)).passed


def test_champion_that_needs_missing_features_cannot_be_compared(good, oot) -> None:
    frame, y = _data(seed=0)
    challenger = _model({"late_count": 1, "savings": -1}, frame.drop(columns=["noise"]), y, constrain=True)
    result = AucGate()(GateContext(challenger=challenger, oot=oot.drop(columns=["noise"]), champion=good))
    assert not result.passed and "noise" in result.reason


def test_calibration_gate(good, oot) -> None:
    context = GateContext(challenger=good, oot=oot)
    assert CalibrationGate(max_ece=0.02)(context).passed
    shifted = CreditModel(good.booster, good.spec, PlattCalibration(1.0, 1.5))
    failed = CalibrationGate(max_ece=0.02)(GateContext(challenger=shifted, oot=oot))
    assert not failed.passed and failed.details["ece"] > 0.02


def test_direction_gate_catches_a_feature_moving_the_wrong_way(oot) -> None:
    frame, y = _data(seed=0)
    # declared: more savings lowers risk; but the unconstrained booster is trained on reversed data
    reversed_y = (
        np.random.default_rng(2).random(len(y)) < 1 / (1 + np.exp(3 - 0.002 * frame["savings"]))
    ).astype(int)
    unconstrained = _model({"late_count": 1, "savings": -1}, frame, reversed_y, constrain=False)
    result = DirectionGate(rows=100)(GateContext(challenger=unconstrained, oot=oot))
    assert not result.passed and any("savings" in v for v in result.details["violations"])


def test_direction_gate_passes_a_constrained_model(good, oot) -> None:
    result = DirectionGate(rows=100)(GateContext(challenger=good, oot=oot))
    assert result.passed and result.details["checked"] == 2


def test_gates_are_a_list_one_can_extend(good, oot) -> None:
    class AlwaysFails:
        name = "fairness_placeholder"

        def __call__(self, context: GateContext) -> GateResult:
            return GateResult(self.name, False, "not yet audited")

    class Crashes:
        name = "crashes"

        def __call__(self, context: GateContext) -> GateResult:
            raise RuntimeError("boom")

    gates = [*default_gates(), AlwaysFails(), Crashes()]
    results = run_gates(GateContext(challenger=good, oot=oot), gates)
    assert [r.gate for r in results] == [
        "oot_auc",
        "calibration",
        "directions",
        "scorecard",
        "fairness_placeholder",
        "crashes",
    ]
    assert not results[-1].passed and "boom" in results[-1].reason


def test_direction_sweep_on_a_hand_made_risk_function() -> None:
    from models.monotone import direction_violations

    spec = ModelSpec(
        features=(
            FeatureSpec("amount", direction=1, reason_group="g"),
            FeatureSpec("savings", direction=-1, reason_group="g"),
            FeatureSpec("free", direction=0, reason_group="g"),
        ),
        reason_groups=(ReasonGroupSpec("g", "组", "group"),),
        source="table",
    )
    base = np.column_stack([np.linspace(1, 100, 50), np.linspace(0, 10, 50), np.zeros(50)])
    base[::7, 1] = np.nan  # missing values are kept, not swept over

    def dip(x: np.ndarray) -> np.ndarray:
        # rises with amount except for a 0.1 dip between 40 and 60; falls with savings; free ignored
        return 0.01 * x[:, 0] - 0.1 * ((x[:, 0] > 40) & (x[:, 0] < 60)) - 0.2 * x[:, 1] + np.sin(x[:, 2])

    assert direction_violations(dip, base, spec, grid=21) == ["amount (+1)"]
    assert direction_violations(dip, base, spec, grid=21, tolerance=0.1) == []
    assert direction_violations(lambda x: 0.01 * x[:, 0] + 0.2 * x[:, 1], base, spec) == ["savings (-1)"]


def test_fit_records_the_monotone_method_it_kept() -> None:
    from tests.utils.model_fixtures import SMALL_FEATURES, fast_config, synthetic_training_set
    from training.fit import fit_credit_model
    from training.splits import time_split

    training_set = synthetic_training_set(n=3000, seed=4, features=SMALL_FEATURES)
    config = fast_config()
    split = time_split(training_set.applied_at, training_set.horizon, config.splits)
    model, report = fit_credit_model(training_set, split, config)
    assert report.monotone_method in ("intermediate", "basic")
    assert report.to_dict()["monotone_method"] == report.monotone_method
    assert DirectionGate(rows=200)(
        GateContext(challenger=model, oot=training_set.features.assign(**{OOT_LABEL: training_set.label}))
    ).passed
