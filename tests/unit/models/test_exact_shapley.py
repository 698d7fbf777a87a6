"""The reason points are exact Shapley values: LightGBM's `pred_contrib` (what scoring uses) equals a
brute-force Shapley computation over the dumped trees, written here without LightGBM or shap.

shap's TreeExplainer on a LightGBM booster calls `pred_contrib` itself, so it cannot serve as the check.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.utils.exact_shapley import exact_shapley
from tests.utils.model_fixtures import fast_config, synthetic_training_set
from training.fit import fit_credit_model
from training.splits import time_split


@pytest.fixture(scope="module")
def model():
    training_set = synthetic_training_set(n=2500, seed=21)
    config = fast_config()
    split = time_split(training_set.applied_at, training_set.horizon, config.splits)
    fitted, _ = fit_credit_model(training_set, split, config)
    return fitted, training_set


def test_pred_contrib_equals_exact_shapley_values_of_the_dumped_trees(model) -> None:
    fitted, training_set = model
    x = fitted.matrix(training_set.features.head(300))  # includes NaN (thin files)
    assert np.isnan(x).any()
    dumped = fitted.booster.dump_model()
    decisions = {
        node["decision_type"]
        for tree in dumped["tree_info"]
        for node in _internal_nodes(tree["tree_structure"])
    }
    assert "<=" in decisions
    contrib = fitted.contributions(x)
    values, expected = exact_shapley(dumped, x)
    # every feature the trees split on gets a non-zero value somewhere: the check is not vacuous
    assert np.count_nonzero(np.abs(values).sum(axis=0)) >= 5
    np.testing.assert_allclose(contrib[:, :-1], values, rtol=0, atol=1e-9)
    np.testing.assert_allclose(contrib[:, -1], expected, rtol=0, atol=1e-9)
    # and both add up to the margin
    np.testing.assert_allclose(contrib.sum(axis=1), fitted.margin(x), rtol=0, atol=1e-9)


def test_exact_shapley_detects_a_wrong_contribution(model) -> None:
    """The comparison can fail: a perturbed tree leaf changes the exact values."""
    fitted, training_set = model
    x = fitted.matrix(training_set.features.head(50))
    dumped = fitted.booster.dump_model()
    leaf = _first_leaf(dumped["tree_info"][0]["tree_structure"])
    leaf["leaf_value"] += 0.5
    values, expected = exact_shapley(dumped, x)
    contrib = fitted.contributions(x)
    assert not np.allclose(np.c_[values, expected], contrib, rtol=0, atol=1e-9)


def _internal_nodes(node: dict) -> list[dict]:
    if "leaf_value" in node:
        return []
    return [node, *_internal_nodes(node["left_child"]), *_internal_nodes(node["right_child"])]


def _first_leaf(node: dict) -> dict:
    while "leaf_value" not in node:
        node = node["left_child"]
    return node


def test_exact_shapley_matches_pred_contrib_with_categorical_and_missing_splits() -> None:
    """Categorical splits and NaN routing follow LightGBM's rules (a booster trained here for it)."""
    import lightgbm as lgb

    rng = np.random.default_rng(3)
    n = 3000
    x = np.c_[rng.integers(0, 6, n).astype(float), rng.normal(size=n), rng.normal(size=n)]
    x[rng.random(n) < 0.15, 0] = np.nan
    x[rng.random(n) < 0.15, 1] = np.nan
    logit = np.where(np.isin(x[:, 0], [1, 4]), 1.0, -0.5) + np.nan_to_num(x[:, 1]) - 0.5 * x[:, 2]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {"objective": "binary", "num_leaves": 8, "min_data_in_leaf": 20, "verbose": -1, "seed": 1}
    data = lgb.Dataset(x, y, categorical_feature=[0], free_raw_data=False)
    booster = lgb.train(params, data, num_boost_round=30)
    dumped = booster.dump_model()
    decisions = {
        n["decision_type"] for t in dumped["tree_info"] for n in _internal_nodes(t["tree_structure"])
    }
    assert decisions == {"<=", "=="}
    rows = x[:400]
    values, expected = exact_shapley(dumped, rows)
    contrib = booster.predict(rows, pred_contrib=True)
    np.testing.assert_allclose(contrib[:, :-1], values, rtol=0, atol=1e-9)
    np.testing.assert_allclose(contrib[:, -1], expected, rtol=0, atol=1e-9)
