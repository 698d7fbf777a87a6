"""The fairness promotion gate on an in-memory model: refuses an unfair challenger, passes a fair one."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.calibration import PlattCalibration
from models.credit_model import CreditModel
from models.policy import DecisionPolicy
from models.spec import FeatureSpec, ModelSpec, ReasonGroupSpec
from monitoring.fairness import audit_fairness, explain_gaps
from training.fairness_gates import FairnessGate, gates_with_fairness
from training.gates import GateContext, run_gates
from training.pipeline import OOT_ID, OOT_LABEL

N = 4000


def _world(seed: int, shift_b: float) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(features, defaulted, group): group b's recorded `x` is shifted towards risk by `shift_b`."""
    rng = np.random.default_rng(seed)
    group = np.where(rng.random(N) < 0.5, "a", "b")
    x = rng.normal(0.0, 1.0, N) + np.where(group == "b", shift_b, 0.0)
    pd_ = 1 / (1 + np.exp(-(-2.5 + 1.2 * x)))
    y = (rng.random(N) < pd_).astype(np.int64)
    return pd.DataFrame({"x": x, "noise": rng.normal(size=N)}), y, group


@pytest.fixture(scope="module")
def model() -> CreditModel:
    frame, y, _ = _world(0, 0.0)
    spec = ModelSpec(
        features=(
            FeatureSpec("x", direction=1, reason_group="risk"),
            FeatureSpec("noise", direction=0, reason_group="other"),
        ),
        reason_groups=(ReasonGroupSpec("risk", "风险", "risk"), ReasonGroupSpec("other", "其他", "other")),
        source="table",
    )
    params = {"objective": "binary", "num_leaves": 7, "verbosity": -1, "num_threads": 1, "seed": 1}
    params["monotone_constraints"] = spec.monotone_constraints
    booster = lgb.train(params, lgb.Dataset(frame.to_numpy(), y), 60)
    provisional = CreditModel(booster, spec, PlattCalibration(1.0, 0.0))
    # approve the safest ~half of a population without the shift
    threshold = float(np.quantile(provisional.predict_pd(frame), 0.5))
    policy = DecisionPolicy(approve_max_pd=threshold, decline_min_pd=0.9)
    return CreditModel(booster, spec, PlattCalibration(1.0, 0.0), policy=policy)


def _context(model: CreditModel, shift_b: float) -> tuple[GateContext, pd.DataFrame]:
    frame, y, group = _world(1, shift_b)
    ids = [f"A{i:05d}" for i in range(N)]
    oot = frame.copy()
    oot[OOT_LABEL] = y
    oot[OOT_ID] = ids
    groups = pd.DataFrame({"application_id": ids, "gender": group})
    return GateContext(challenger=model, oot=oot), groups


def test_gate_refuses_a_model_that_approves_one_group_at_060_of_the_other(model: CreditModel) -> None:
    context, groups = _context(model, shift_b=0.5)
    gate = FairnessGate(groups)
    result = gate(context)
    assert not result.passed
    ratio_flags = [f for f in result.details["flags"] if f["metric"] == "approval_ratio"]
    assert [f["group"] for f in ratio_flags] == ["b"]
    assert 0.5 < ratio_flags[0]["value"] < 0.7
    assert "gender=b" in result.reason and "approval rate" in result.reason
    # appended to the default gates: the run records the failure by name
    results = run_gates(context, gates_with_fairness(groups))
    assert [r.gate for r in results][-1] == "fairness" and not results[-1].passed


def test_gate_passes_when_groups_are_treated_alike(model: CreditModel) -> None:
    context, groups = _context(model, shift_b=0.0)
    result = FairnessGate(groups)(context)
    assert result.passed, result.reason
    assert result.details["coverage"] == 1.0


def test_gate_does_not_judge_small_groups_and_needs_coverage(model: CreditModel) -> None:
    context, groups = _context(model, shift_b=0.5)
    # b is unfair but too small to judge at this size
    result = FairnessGate(groups, min_group_size=N)(context)
    assert result.passed, result.reason
    assert any(entry.startswith("gender=b") for entry in result.details["too_small"])
    missing = FairnessGate(groups.iloc[: N // 4])(context)
    assert not missing.passed and "protected attributes" in missing.reason


def test_explain_gaps_points_at_the_shifted_feature(model: CreditModel) -> None:
    context, groups = _context(model, shift_b=0.5)
    pds = model.predict_pd(context.oot)
    frame = pd.DataFrame(
        {"pd": pds, "decision": [d.outcome for d in model.decisions(context.oot, pds=pds)]}
    ).assign(defaulted=context.label)
    group_cols = {"gender": groups["gender"]}
    audit = audit_fairness(frame, groups=group_cols, n_boot=0)
    explained = explain_gaps(audit, features=context.oot, groups=group_cols, model=model)
    entry = explained["gender"]
    assert entry["proxies"][0]["feature"] == "x"
    points = entry["reason_group_points"]
    assert points["b"]["risk"] < points["a"]["risk"]  # b loses its points on the shifted feature


def test_mitigations_report_auc_cost_and_fairness() -> None:
    from dataclasses import replace

    from tests.utils.model_fixtures import SMALL_FEATURES, fast_config, synthetic_training_set
    from training.fairness_gates import compare_mitigations

    training_set = synthetic_training_set(n=4000, seed=2, features=SMALL_FEATURES)
    rng = np.random.default_rng(9)
    woman = rng.random(len(training_set)) < 0.4
    features = training_set.features.copy()
    # deliveries recorded under someone else's name: a proxy, not a difference in behaviour
    features.loc[woman, "delivery_amount_365d"] = features.loc[woman, "delivery_amount_365d"] * 0.05
    skewed = replace(training_set, features=features)
    groups = pd.DataFrame({"left_behind_woman": np.where(woman, "true", "false")})
    results = compare_mitigations(
        skewed,
        groups,
        config=fast_config(),
        drop_features=["delivery_amount_365d"],
        threshold_attribute="left_behind_woman",
    )
    names = [r.name for r in results]
    assert names[0] == "baseline" and names[1] == "drop delivery_amount_365d"
    assert names[2].startswith("ThresholdOptimizer")
    base, dropped, optimized = results
    assert dropped.auc_cost == pytest.approx(base.auc - dropped.auc)
    ratio = "approval_ratio_min"
    assert dropped.to_dict()[ratio]["left_behind_woman"] > base.to_dict()[ratio]["left_behind_woman"]
    assert optimized.to_dict()["auc"] == base.auc
