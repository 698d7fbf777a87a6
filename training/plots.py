"""Run plots (matplotlib, Agg backend, PNG): ROC, calibration, score distribution, KS, SHAP summary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from training.evaluation import CONTENDERS

if TYPE_CHECKING:
    from models.credit_model import CreditModel

FloatArray = npt.NDArray[np.float64]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path, *, dpi: int = 110) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    _pyplot().close(figure)
    return path


def roc_plot(y: npt.NDArray[np.int64], pds: Mapping[str, FloatArray], path: Path) -> Path:
    """ROC curves of every contender on the OOT set."""
    from sklearn.metrics import roc_curve

    from training.metrics import roc_auc

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 6))
    for name, pd_ in pds.items():
        fpr, tpr, _ = roc_curve(y, pd_)
        axis.plot(fpr, tpr, label=f"{CONTENDERS.get(name, name)} (AUC {roc_auc(y, pd_):.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axis.set(xlabel="false positive rate (payers flagged)", ylabel="true positive rate (defaults caught)")
    axis.set_title("ROC, out-of-time")
    axis.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def calibration_plot(y: npt.NDArray[np.int64], pd_: FloatArray, path: Path, *, bins: int = 10) -> Path:
    """Reliability diagram over equal-count PD bins."""
    order = np.argsort(pd_, kind="stable")
    groups = [g for g in np.array_split(order, min(bins, len(order))) if len(g)]
    predicted = [float(pd_[g].mean()) for g in groups]
    observed = [float(y[g].mean()) for g in groups]
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 6))
    top = max([*predicted, *observed, 0.01]) * 1.1
    axis.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1, label="perfect")
    axis.plot(predicted, observed, marker="o", label="model")
    axis.set(xlabel="mean predicted PD", ylabel="observed default rate", xlim=(0, top), ylim=(0, top))
    axis.set_title("Calibration, out-of-time (equal-count bins)")
    axis.legend(loc="upper left")
    return _save(figure, path)


def score_distribution_plot(
    scores: FloatArray, y: npt.NDArray[np.int64], path: Path, *, cuts: list[float]
) -> Path:
    """Score histograms of payers and defaulters, with the grade cut-offs."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    edges = np.linspace(np.floor(scores.min()) - 1, np.ceil(scores.max()) + 1, 40)
    axis.hist(scores[y == 0], bins=edges, alpha=0.6, density=True, label="repaid")
    axis.hist(scores[y == 1], bins=edges, alpha=0.6, density=True, label="defaulted")
    for cut in cuts:
        axis.axvline(cut, color="grey", linestyle=":", linewidth=1)
    axis.set(xlabel="score", ylabel="density")
    axis.set_title("Score distribution, out-of-time (dotted: grade cut-offs)")
    axis.legend()
    return _save(figure, path)


def ks_plot(scores: FloatArray, y: npt.NDArray[np.int64], path: Path) -> Path:
    """Cumulative share of defaulters and payers below each score; KS is the widest gap."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    bads = np.cumsum(y[order] == 1) / max(int((y == 1).sum()), 1)
    goods = np.cumsum(y[order] == 0) / max(int((y == 0).sum()), 1)
    gap = bads - goods
    at = int(np.argmax(gap))
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot(sorted_scores, bads, label="defaulted")
    axis.plot(sorted_scores, goods, label="repaid")
    axis.vlines(sorted_scores[at], goods[at], bads[at], color="red", label=f"KS {gap[at]:.3f}")
    axis.set(xlabel="score", ylabel="cumulative share")
    axis.set_title("KS, out-of-time")
    axis.legend()
    return _save(figure, path)


def shap_summary(model: CreditModel, features: Any, path: Path) -> Path:
    """SHAP summary of the score points each feature contributes on a sample of OOT rows."""
    from models.shap_check import summary_plot

    x = model.matrix(features)
    points = model.points(x).feature_points
    return summary_plot(points, x, model.feature_names, path)


def write_plots(
    directory: Path,
    *,
    y: npt.NDArray[np.int64],
    pds: Mapping[str, FloatArray],
    scores: FloatArray,
    model: CreditModel,
    shap_rows: Any,
    bins: int,
) -> list[Path]:
    """Every run plot into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    cuts = [c for _, c in model.scale.grades[:-1]]
    return [
        roc_plot(y, pds, directory / "roc.png"),
        calibration_plot(y, pds["model"], directory / "calibration.png", bins=bins),
        score_distribution_plot(scores, y, directory / "score_distribution.png", cuts=cuts),
        ks_plot(scores, y, directory / "ks.png"),
        shap_summary(model, shap_rows, directory / "shap_summary.png"),
    ]
