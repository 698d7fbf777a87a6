"""Baselines trained in every run, so the model is always judged against something simpler.

- WOE scorecard: optbinning's `BinningProcess` (optimal monotone bins, weight of evidence) followed
  by a logistic regression: the classic bank scorecard.
- Bureau-only: the same LightGBM pipeline restricted to what a traditional lender sees (the
  application's fields and the formal/cooperative loan record); on thin files it knows almost nothing.
- Oracle (simulated worlds only, when the truth folder is passed): the true PD itself.
- Feature ceiling (with the truth too): a booster fitted to the true log-odds on the training slice,
  i.e. the most the features could carry with unlimited labels.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from models.credit_model import CreditModel
from training.config import TrainingConfig
from training.datasets import TrainingSet
from training.fit import FitReport, fit_credit_model
from training.splits import TimeSplit

FloatArray = npt.NDArray[np.float64]


class WoeScorecard(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Weight-of-evidence binning + logistic regression (scikit-learn estimator contract).

    Args:
        max_n_prebins: pre-bins per variable before the optimal merge.
        min_prebin_size: smallest pre-bin, as a share of rows.
        inverse_l2: inverse L2 strength (C) of the logistic regression.
        categorical: names of categorical columns.
        n_jobs: parallel binning jobs.
    """

    def __init__(
        self,
        max_n_prebins: int = 10,
        min_prebin_size: float = 0.02,
        inverse_l2: float = 1.0,
        categorical: tuple[str, ...] = (),
        n_jobs: int = 1,
    ) -> None:
        self.max_n_prebins = max_n_prebins
        self.min_prebin_size = min_prebin_size
        self.inverse_l2 = inverse_l2
        self.categorical = categorical
        self.n_jobs = n_jobs

    @staticmethod
    def _frame(x: Any) -> pd.DataFrame:
        if isinstance(x, pd.DataFrame):
            return x
        array = np.asarray(x)
        return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])

    def fit(self, x: Any, y: Any) -> WoeScorecard:
        """Bin every column on (x, y), then fit the regression on the WOE values."""
        from optbinning import BinningProcess
        from sklearn.linear_model import LogisticRegression
        from sklearn.utils.multiclass import type_of_target

        frame = self._frame(x)
        labels = np.asarray(y)
        if type_of_target(labels) != "binary":
            raise ValueError("WoeScorecard needs a binary target")
        self.classes_ = np.unique(labels)
        encoded = (labels == self.classes_[-1]).astype(np.int64)
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        self.binning_ = BinningProcess(
            list(frame.columns),
            categorical_variables=[c for c in self.categorical if c in frame.columns] or None,
            max_n_prebins=self.max_n_prebins,
            min_prebin_size=self.min_prebin_size,
            n_jobs=self.n_jobs,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            woe = self.binning_.fit_transform(frame, encoded, metric="woe")
        self.regression_ = LogisticRegression(C=self.inverse_l2, max_iter=2000).fit(woe, encoded)
        return self

    def _woe(self, x: Any) -> Any:
        frame = self._frame(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.binning_.transform(frame[list(self.feature_names_in_)], metric="woe")

    def decision_function(self, x: Any) -> FloatArray:
        """Log-odds of the positive class."""
        return np.asarray(self.regression_.decision_function(self._woe(x)), dtype=np.float64)

    def predict_proba(self, x: Any) -> FloatArray:
        """Class probabilities, columns in `classes_` order."""
        return np.asarray(self.regression_.predict_proba(self._woe(x)), dtype=np.float64)

    def predict(self, x: Any) -> Any:
        """Most likely class."""
        return self.classes_[(self.predict_proba(x)[:, 1] >= 0.5).astype(np.int64)]


def fit_scorecard(training_set: TrainingSet, split: TimeSplit) -> WoeScorecard:
    """WOE scorecard on train + validation (it needs no early stopping)."""
    rows = split.masks["train"] | split.masks["validation"]
    categorical = tuple(f.name for f in training_set.spec.features if f.kind == "categorical")
    scorecard = WoeScorecard(categorical=categorical)
    return scorecard.fit(training_set.features.loc[rows], training_set.label[rows])


def fit_bureau_model(
    training_set: TrainingSet, split: TimeSplit, config: TrainingConfig
) -> tuple[CreditModel, FitReport] | None:
    """The credit pipeline on bureau-visible features only (None when the set defines none)."""
    if not training_set.bureau_features:
        return None
    spec = training_set.spec.subset(training_set.bureau_features)
    return fit_credit_model(training_set, split, config, spec=spec, baseline=True)


def feature_ceiling_pd(
    training_set: TrainingSet, split: TimeSplit, config: TrainingConfig
) -> FloatArray | None:
    """PD on every row from a booster fitted to the TRUE log-odds on the training rows (truth only)."""
    if training_set.truth_pd is None:
        return None
    import lightgbm as lgb

    from models.credit_model import encode_frame

    true_pd = np.clip(training_set.truth_pd, 1e-9, 1 - 1e-9)
    target = np.log(true_pd / (1 - true_pd))
    rows = split.masks["train"] | split.masks["validation"]
    x = encode_frame(training_set.spec, training_set.features)
    params = {
        "objective": "regression",
        "num_leaves": 15,
        "learning_rate": 0.03,
        "min_child_samples": 30,
        "feature_fraction": 0.7,
        "seed": config.booster.seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }
    booster = lgb.train(params, lgb.Dataset(x[rows], label=target[rows]), num_boost_round=400)
    log_odds = np.asarray(booster.predict(x), dtype=np.float64)
    return np.asarray(1 / (1 + np.exp(-log_odds)))
