"""LightGBM `pred_contrib` (what scoring uses) equals shap.TreeExplainer on the same booster."""

from __future__ import annotations

import numpy as np
import pytest

from models.shap_check import tree_shap_values
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


def test_pred_contrib_equals_tree_explainer(model) -> None:
    fitted, training_set = model
    x = fitted.matrix(training_set.features.head(300))  # includes NaN (thin files)
    assert np.isnan(x).any()
    contrib = fitted.contributions(x)
    values, expected = tree_shap_values(fitted.booster, x)
    np.testing.assert_allclose(contrib[:, :-1], values, rtol=0, atol=1e-10)
    np.testing.assert_allclose(contrib[:, -1], expected, rtol=0, atol=1e-10)
    # and both add up to the margin
    np.testing.assert_allclose(contrib.sum(axis=1), fitted.margin(x), rtol=0, atol=1e-10)
