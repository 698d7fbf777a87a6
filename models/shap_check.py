"""The one module that talks to SHAP: exact TreeSHAP values for a booster, and the summary plot.

Scoring never calls SHAP: LightGBM's own `pred_contrib` computes the same TreeSHAP values in C++
(a test checks they agree exactly). SHAP is used to verify that, and to draw the summary plot.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import lightgbm as lgb

FloatArray = npt.NDArray[np.float64]


def tree_shap_values(booster: lgb.Booster, x: FloatArray) -> tuple[FloatArray, float]:
    """SHAP values of the booster's margin (rows, features) and the expected value, via TreeExplainer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shap's deprecation and output-format notices
        import shap

        explainer = shap.TreeExplainer(booster)
        values = np.asarray(explainer.shap_values(x), dtype=np.float64)
    if values.ndim == 3:  # (rows, features, outputs) for multi-output models
        values = values[:, :, -1]
    expected = np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)[-1]
    return values, float(expected)


def summary_plot(
    points: FloatArray, x: FloatArray, feature_names: Sequence[str], path: Path, *, max_display: int = 20
) -> Path:
    """SHAP summary (beeswarm) of score points per feature, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import shap

        shap.summary_plot(
            points,
            x,
            feature_names=list(feature_names),
            max_display=max_display,
            show=False,
            plot_size=(9, 7),
        )
    figure = plt.gcf()
    figure.axes[0].set_xlabel("score points (negative: lowers the score)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
