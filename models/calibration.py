"""Platt (logit-linear) calibration of the booster margin.

Calibrated log-odds = slope * margin + intercept. Staying affine in the margin is what lets SHAP
contributions of the margin convert to score points that add up exactly; an isotonic or beta map
would not, so small data is met by fitting Platt on more out-of-sample margins (cross-fitting, in
`training.fit`), never by a non-affine map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
# Both are Platt: "cross_fitted_platt" was fitted on out-of-fold margins of the pre-OOT rows.
METHODS: Final = ("platt", "cross_fitted_platt")


@dataclass(frozen=True)
class PlattCalibration:
    """log-odds of default = slope * margin + intercept; slope must be positive (order preserved).

    `method` and `fitted_on` (rows, defaults, why this method) say how it was fitted; they do not
    change the map.
    """

    slope: float = 1.0
    intercept: float = 0.0
    method: str = "platt"
    fitted_on: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.slope > 0:
            raise ValueError(
                f"calibration slope {self.slope} is not positive: the booster ranks risk backwards "
                "on the calibration slice"
            )

    def log_odds(self, margin: FloatArray | float) -> FloatArray:
        """Calibrated log-odds of default."""
        return np.asarray(self.slope * np.asarray(margin, dtype=np.float64) + self.intercept)

    def pd(self, margin: FloatArray | float) -> FloatArray:
        """Calibrated probability of default."""
        return np.asarray(1.0 / (1.0 + np.exp(-self.log_odds(margin))))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the `calibration.json` artifact)."""
        return {
            "method": self.method,
            "slope": self.slope,
            "intercept": self.intercept,
            "fitted_on": dict(self.fitted_on),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlattCalibration:
        """Inverse of `to_dict`."""
        method = str(data.get("method", "platt"))
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}")
        return cls(
            slope=float(data["slope"]),
            intercept=float(data["intercept"]),
            method=method,
            fitted_on=dict(data.get("fitted_on") or {}),
        )

    def described(self, method: str, fitted_on: Mapping[str, Any]) -> PlattCalibration:
        """The same map, recording how it was fitted."""
        return PlattCalibration(self.slope, self.intercept, method=method, fitted_on=dict(fitted_on))


UNINFORMATIVE_SLOPE = 1e-9


def fit_platt(
    margin: FloatArray,
    defaulted: npt.ArrayLike,
    *,
    max_iter: int = 100,
    allow_uninformative: bool = False,
) -> PlattCalibration:
    """Fit slope and intercept by maximum likelihood (Newton's method on the 2-parameter logit).

    Unpenalised, as Platt intended; a tiny ridge only guards against a singular Hessian when the
    slice separates perfectly. A slope <= 0 means the margin ranks risk backwards (or not at all) on
    this slice: an error, unless `allow_uninformative` (for baselines), which then predicts the
    slice's default rate for everyone.
    """
    x = np.asarray(margin, dtype=np.float64)
    y = np.asarray(defaulted, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("margin and labels must be 1-d arrays of the same length")
    if not 0 < y.sum() < len(y):
        raise ValueError("calibration needs both defaults and non-defaults")
    design = np.column_stack([x, np.ones_like(x)])
    base = float(np.log(y.mean() / (1 - y.mean())))
    params = np.array([1.0, base - float(x.mean())])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(design @ params)))
        gradient = design.T @ (y - p)
        hessian = (design * (p * (1 - p))[:, None]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        params = params + step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    slope, intercept = float(params[0]), float(params[1])
    if slope <= 0 and allow_uninformative:
        return PlattCalibration(
            slope=UNINFORMATIVE_SLOPE, intercept=base - UNINFORMATIVE_SLOPE * float(x.mean())
        )
    return PlattCalibration(slope=slope, intercept=intercept)
