"""The trees as recourse reads them: the split thresholds, and a margin bound that holds over a box."""

from __future__ import annotations

import numpy as np
import pytest

from features.catalog import default_registry
from features.catalog.levers import ActionMoves
from models.tree_bounds import TreeBounds
from tests.utils.recourse import catalog_model, consistent_rows


@pytest.fixture(scope="module")
def model():
    return catalog_model(seed=2)


def test_a_box_of_single_points_gives_the_booster_margin_exactly(model) -> None:
    bounds = TreeBounds(model.booster, len(model.feature_names))
    rows = consistent_rows(default_registry(), n=50, seed=9)
    x = np.array([[r[n] for n in model.feature_names] for r in rows])
    x[::3, :5] = np.nan  # missing values take the splits' default ways
    exact = model.booster.predict(x, raw_score=True)
    for row, margin in zip(x, exact, strict=True):
        missing = np.isnan(row)
        low = np.where(missing, np.inf, row)
        high = np.where(missing, -np.inf, row)
        assert bounds.lowest_margin(low, high, missing) == pytest.approx(margin, abs=1e-9)


def test_the_bound_is_never_above_any_point_of_the_box(model) -> None:
    bounds = TreeBounds(model.booster, len(model.feature_names))
    registry = default_registry()
    rng = np.random.default_rng(1)
    for row in consistent_rows(registry, n=20, seed=4):
        moves = ActionMoves(registry, row, [a.name for a in registry.actions])
        maxima = np.array([a.maximum for a in moves.actions])
        levels = np.round(rng.uniform(0, 1, (300, len(maxima))) * maxima)
        x = moves.apply(levels)[:, [moves.index[n] for n in model.feature_names]]
        margins = model.booster.predict(x, raw_score=True)
        missing = np.isnan(x).any(axis=0)
        present = np.where(np.isnan(x), np.nan, x)
        low = np.array([np.nanmin(c) if (~np.isnan(c)).any() else np.inf for c in present.T])
        high = np.array([np.nanmax(c) if (~np.isnan(c)).any() else -np.inf for c in present.T])
        assert bounds.lowest_margin(low, high, missing) <= margins.min() + 1e-12


def test_thresholds_are_every_split_of_the_feature(model) -> None:
    bounds = TreeBounds(model.booster, len(model.feature_names))
    dumped = model.booster.dump_model()["tree_info"]
    seen: set[tuple[int, float]] = set()
    stack = [t["tree_structure"] for t in dumped]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            seen.add((node["split_feature"], node["threshold"]))
            stack += [node["left_child"], node["right_child"]]
    assert {(j, t) for j, ts in enumerate(bounds.thresholds) for t in ts} == seen
