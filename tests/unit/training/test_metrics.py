"""Metrics against scikit-learn and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from training.metrics import (
    approval_rate_at_bad_rate,
    binary_metrics,
    expected_calibration_error,
    ks_statistic,
    roc_auc,
)


def test_auc_brier_logloss_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.5, 3000)
    y = (rng.random(3000) < p).astype(int)
    p[::7] = p[0]  # ties
    m = binary_metrics(y, p)
    assert m.auc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m.gini == pytest.approx(2 * m.auc - 1)
    assert m.brier == pytest.approx(brier_score_loss(y, p))
    assert m.log_loss == pytest.approx(log_loss(y, p))


def test_ks_perfect_and_random() -> None:
    y = np.array([0, 0, 0, 1, 1])
    assert ks_statistic(y, np.array([0.1, 0.2, 0.3, 0.8, 0.9])) == pytest.approx(1.0)
    assert np.isnan(ks_statistic(np.zeros(4), np.arange(4)))


def test_ece_of_calibrated_and_shifted_pds() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.0, 0.2, 200_000)
    y = (rng.random(len(p)) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.003
    assert expected_calibration_error(y, p + 0.05) == pytest.approx(0.05, abs=0.003)


def test_approval_rate_at_bad_rate() -> None:
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    p = np.arange(8) / 10  # lowest PD first: 0,0,0,1 -> bad rate 25 % after four
    assert approval_rate_at_bad_rate(y, p, 0.0) == pytest.approx(3 / 8)
    assert approval_rate_at_bad_rate(y, p, 0.25) == pytest.approx(5 / 8)  # 1 bad in 5 = 20 %
    assert approval_rate_at_bad_rate(np.ones(3), np.arange(3), 0.1) == 0.0


def test_one_class_gives_nan_auc() -> None:
    m = binary_metrics(np.zeros(10, dtype=int), np.linspace(0.1, 0.2, 10))
    assert np.isnan(m.auc) and m.defaults == 0
