"""Baselines: the WOE scorecard estimator and what the bureau-only model may see."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone

from features.catalog import default_registry
from models.spec import spec_from_registry
from training.baselines import WoeScorecard
from training.datasets import bureau_feature_names


def test_bureau_features_are_application_fields_and_loan_history_only() -> None:
    registry = default_registry()
    names = bureau_feature_names(spec_from_registry(registry))
    groups = {registry.by_name[n].reason_group for n in names}
    assert "has_prior_loan" in names and "application_amount_cny" in names
    assert groups <= {"repayment", "late_repayment", "evidence", "application"}
    cooperative_activity = {
        "deliveries",
        "inputs",
        "savings",
        "engagement",
        "mobile_payments",
        "green_practices",
    }
    assert not groups & cooperative_activity
    # the application ratios need delivery income or savings: a traditional lender has neither
    assert "application_amount_to_delivery_income_365d" not in names


def test_woe_scorecard_follows_the_estimator_contract() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    x = pd.DataFrame(
        {
            "late": rng.poisson(1.0, n).astype(float),
            "savings": rng.gamma(2.0, 300.0, n),
            "crop": rng.choice(["rice", "tea", "maize"], n),
        }
    )
    x.loc[rng.random(n) < 0.1, "savings"] = np.nan
    y = (rng.random(n) < 1 / (1 + np.exp(2.5 - 0.9 * x["late"]))).astype(int)
    scorecard = WoeScorecard(categorical=("crop",))
    assert clone(scorecard).get_params() == scorecard.get_params()
    assert scorecard.fit(x, y) is scorecard
    proba = scorecard.predict_proba(x)
    assert proba.shape == (n, 2) and np.allclose(proba.sum(axis=1), 1)
    assert set(np.unique(scorecard.predict(x))) <= {0, 1}
    assert scorecard.n_features_in_ == 3 and list(scorecard.classes_) == [0, 1]
    # it ranks: riskier (more late payments) gets a higher PD on average
    assert proba[x["late"] >= 3, 1].mean() > proba[x["late"] == 0, 1].mean()


def test_the_features_training_relies_on_are_declared_by_the_views() -> None:
    """A rename in the views must fail here, not silently drop the thin-file rule or a segment."""
    from models.policy import default_evidence_rule
    from training.config import PolicyConfig
    from training.datasets import BUREAU_FEATURES, TENURE_FEATURE, THIN_FILE_FEATURE

    registry = default_registry()
    evidence = {f.name for f in registry.features if f.reason_group == "evidence"}
    assert set(default_evidence_rule().features) <= evidence
    assert set(PolicyConfig().policy().evidence.features) <= evidence
    assert THIN_FILE_FEATURE in evidence
    assert {TENURE_FEATURE, *BUREAU_FEATURES} <= set(registry.by_name)
