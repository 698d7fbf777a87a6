"""Declared-direction check: sweep each constrained feature over a grid, others held fixed.

Shared by the training fit (which falls back to LightGBM's strict "basic" monotone method when the
faster "intermediate" one lets a wrong-way step through) and the promotion gate (which refuses such a
model). A feature that raises risk (+1) must never lower the margin; one that lowers risk (-1) must
never raise it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from models.spec import ModelSpec

FloatArray = npt.NDArray[np.float64]


def direction_violations(
    risk: Callable[[FloatArray], FloatArray],
    base: FloatArray,
    spec: ModelSpec,
    *,
    grid: int = 11,
    tolerance: float = 1e-9,
) -> list[str]:
    """Constrained features (as `name (+1)`) whose sweep moves `risk` the wrong way on some row.

    Args:
        risk: rows -> a quantity that rises with risk (margin or PD; for a score pass its negative).
        base: encoded model rows to sweep (a few hundred are plenty).
        spec: the model spec (declared directions, column order).
        grid: sweep points per feature, at the quantiles of its non-missing values in `base`.
        tolerance: steps smaller than this are rounding, not violations.
    """
    violations: list[str] = []
    for feature in spec.constrained:
        j = spec.index[feature.name]
        values = base[:, j][~np.isnan(base[:, j])]
        points = np.unique(np.quantile(values, np.linspace(0, 1, grid))) if len(values) else np.array([])
        if len(points) < 2:
            points = np.array([0.0, 1.0]) if not len(values) else np.array([values.min(), values.min() + 1.0])
        swept = np.repeat(base, len(points), axis=0)
        swept[:, j] = np.tile(points, len(base))
        moved = np.asarray(risk(swept), dtype=np.float64).reshape(len(base), len(points))
        steps = np.diff(moved, axis=1) * feature.direction  # +1 feature: risk must not fall
        if (steps < -tolerance).any():
            violations.append(f"{feature.name} ({feature.direction:+d})")
    return violations
