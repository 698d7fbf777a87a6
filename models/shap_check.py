"""The one module that talks to SHAP: the summary plot of score points.

Scoring never calls SHAP: LightGBM's own `pred_contrib` computes exact TreeSHAP values in C++. A test
checks them against a brute-force Shapley computation over the dumped trees (shap's TreeExplainer on a
LightGBM booster calls `pred_contrib` itself, so it could not serve as that check).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


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
