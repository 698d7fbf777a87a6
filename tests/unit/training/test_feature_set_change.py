"""A champion trained on another feature-set version is not compared like-for-like: the AUC gate is
skipped with its reason, the absolute gates decide, and a kept champion that cannot serve says so."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.calibration import PlattCalibration
from models.credit_model import CreditModel
from models.spec import FeatureSpec, ModelSpec, ReasonGroupSpec, SpecSource
from training import job
from training.gates import AucGate, GateContext, GateResult, default_gates, run_gates
from training.job import ExitCode, JobSummary
from training.pipeline import OOT_LABEL
from training.promotion import PromotionResult
from training.tracking import RegisteredRun

OLD, NEW = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"


def _data(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    late = rng.poisson(1.0, n).astype(float)
    savings = rng.gamma(2.0, 500.0, n)
    risk = -3 + 0.8 * late - 0.001 * savings
    y = (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(int)
    return pd.DataFrame({"late_count": late, "savings": savings}), y


def _model(version: str, *, source: SpecSource = "feature_views", shuffle: bool = False) -> CreditModel:
    frame, y = _data()
    if shuffle:  # a model that learned nothing: far worse than any real champion
        y = np.random.default_rng(3).permutation(y)
    spec = ModelSpec(
        features=tuple(FeatureSpec(n, direction=0, reason_group="g") for n in frame.columns),
        reason_groups=(ReasonGroupSpec("g", "组", "group"),),
        source=source,
        feature_set_version=version,
    )
    params = {"objective": "binary", "num_leaves": 7, "verbosity": -1, "num_threads": 1, "seed": 1}
    booster = lgb.train(params, lgb.Dataset(frame.to_numpy(), y), 40)
    return CreditModel(booster, spec, PlattCalibration(1.0, 0.0))


@pytest.fixture(scope="module")
def oot() -> pd.DataFrame:
    frame, y = _data(seed=1)
    return frame.assign(**{OOT_LABEL: y})


def test_a_champion_of_another_feature_set_is_not_compared(oot: pd.DataFrame) -> None:
    # Even a challenger that learned nothing is not judged against it: the comparison is meaningless.
    result = AucGate()(GateContext(challenger=_model(NEW, shuffle=True), oot=oot, champion=_model(OLD)))
    assert result.skipped and result.passed and result.verdict == "skipped"
    assert "not compared" in result.reason and OLD in result.reason and NEW in result.reason
    assert result.details["champion_feature_set"] == OLD
    assert result.details["challenger_feature_set"] == NEW
    assert "champion_auc" not in result.details
    assert result.to_dict()["skipped"] is True


def test_the_same_feature_set_is_still_compared(oot: pd.DataFrame) -> None:
    result = AucGate()(GateContext(challenger=_model(NEW, shuffle=True), oot=oot, champion=_model(NEW)))
    assert not result.skipped and not result.passed and "champion_auc" in result.details


def test_table_trained_models_are_compared_as_before(oot: pd.DataFrame) -> None:
    # A table model's version is its table's checksum: it changes with every new table, not with
    # feature semantics, so it never makes the comparison skip.
    challenger = _model("table-2", source="table", shuffle=True)
    result = AucGate()(
        GateContext(challenger=challenger, oot=oot, champion=_model("table-1", source="table"))
    )
    assert not result.skipped and not result.passed


def test_the_absolute_gates_still_decide(oot: pd.DataFrame) -> None:
    context = GateContext(challenger=_model(NEW), oot=oot, champion=_model(OLD))
    results = {r.gate: r for r in run_gates(context, default_gates())}
    assert results["oot_auc"].skipped
    assert not results["calibration"].skipped and not results["directions"].skipped


def _result(status: str, champion_set: str | None, gates: list[GateResult]) -> PromotionResult:
    return PromotionResult(
        model_name="m",
        status=status,  # type: ignore[arg-type]
        challenger_version="2",
        champion_before="1",
        champion_after="2" if status == "promoted" else "1",
        gates=gates,
        challenger_feature_set=NEW,
        champion_feature_set=champion_set,
    )


SKIPPED = GateResult("oot_auc", True, "not compared: other feature set", skipped=True)
FAILED = GateResult("calibration", False, "ECE 0.05 > 0.02")


def test_a_kept_champion_of_another_feature_set_says_it_cannot_serve() -> None:
    kept = _result("kept", OLD, [SKIPPED, FAILED])
    note = kept.kept_champion_cannot_serve
    assert note is not None and "v1" in note and "503" in note and "coopscore promote --version 2" in note
    assert kept.to_dict()["kept_champion_cannot_serve"] == note
    assert kept.to_dict()["feature_sets"] == {"challenger": NEW, "champion": OLD}
    assert kept.reasons == [
        "oot_auc: skipped - not compared: other feature set",
        "calibration: FAIL - ECE 0.05 > 0.02",
    ]
    assert _result("kept", NEW, [FAILED]).kept_champion_cannot_serve is None
    assert _result("kept", "", [FAILED]).kept_champion_cannot_serve is None  # table-trained champion
    assert _result("promoted", OLD, [SKIPPED]).kept_champion_cannot_serve is None


@pytest.mark.parametrize("status", ["kept", "promoted"])
def test_the_job_summary_records_the_skip_and_the_stale_champion(
    status: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gates = [SKIPPED, FAILED] if status == "kept" else [SKIPPED]
    outcome = _result(status, OLD, gates)
    monkeypatch.setattr(job, "promote", lambda *args, **kwargs: outcome)
    summary = JobSummary(status="registered", exit_code=0, model_name="m")
    registered = RegisteredRun(
        run_id="r", model_name="m", version="2", model_uri="models:/m/2", training_key="k"
    )
    job._promote(summary, registered, "sqlite:///x.db", "m", None, job.TrainingConfig(), None)
    assert "oot_auc: skipped - not compared: other feature set" in summary.message
    assert summary.promotion is not None and summary.promotion["gates"][0]["skipped"] is True
    if status == "kept":
        assert summary.exit_code == ExitCode.KEPT
        assert "calibration: FAIL" in summary.message
        assert f"but {outcome.kept_champion_cannot_serve}" in summary.message
    else:
        assert summary.exit_code == ExitCode.PROMOTED and "cannot" not in summary.message
