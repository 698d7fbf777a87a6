"""Exact Shapley values of a LightGBM booster, computed from its dumped trees by brute force.

An independent check of `pred_contrib`: shap's TreeExplainer on a LightGBM booster calls that same
function, so comparing the two proves nothing. Here each tree is read from `dump_model()` and its
Shapley values are the textbook sum over every subset of the features the tree splits on, with the
value function TreeSHAP defines (features in the subset follow the row's path; the others average the
children by their training counts). Trees of a few leaves split on few features, so 2^M subsets stay
cheap; values add up over trees.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Node = dict[str, Any]

# LightGBM treats |x| <= kZeroThreshold as zero for missing_type "Zero".
_ZERO = 1e-35


def _goes_left(node: Node, column: FloatArray) -> BoolArray:
    """LightGBM's routing rule for one split (numerical `<=` or categorical `==`), per row."""
    missing = str(node["missing_type"])
    nan = np.isnan(column)
    if node["decision_type"] == "==":
        categories = {int(c) for c in str(node["threshold"]).split("||")}
        # A NaN goes right when missing values are their own category, else it counts as category 0.
        values = np.where(nan, 0.0, column)
        left = np.isin(np.trunc(values).astype(np.int64), list(categories)) & (values >= 0)
        if missing == "NaN":
            left &= ~nan
        return np.asarray(left, dtype=np.bool_)
    values = np.where(nan & (missing != "NaN"), 0.0, column)
    threshold = float(node["threshold"])
    compared = values <= threshold
    if missing == "Zero":
        is_missing = np.abs(values) <= _ZERO
    elif missing == "NaN":
        is_missing = np.isnan(values)
    else:
        is_missing = np.zeros(len(values), dtype=np.bool_)
    return np.asarray(np.where(is_missing, bool(node["default_left"]), compared), dtype=np.bool_)


def _count(node: Node) -> float:
    return float(node["leaf_count"] if "leaf_value" in node else node["internal_count"])


def _value(node: Node, x: FloatArray, known: frozenset[int]) -> FloatArray:
    """Expected tree output per row when only the features in `known` are known (TreeSHAP's v(S))."""
    if "leaf_value" in node:
        return np.full(len(x), float(node["leaf_value"]))
    left, right = node["left_child"], node["right_child"]
    feature = int(node["split_feature"])
    if feature in known:
        return np.where(_goes_left(node, x[:, feature]), _value(left, x, known), _value(right, x, known))
    total = _count(node)
    return (_count(left) * _value(left, x, known) + _count(right) * _value(right, x, known)) / total


def _features(node: Node) -> set[int]:
    if "leaf_value" in node:
        return set()
    return {int(node["split_feature"])} | _features(node["left_child"]) | _features(node["right_child"])


def exact_shapley(dumped: dict[str, Any], x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Shapley values (rows, features) of the raw margin, and the expected value per row."""
    n_features = int(dumped["max_feature_idx"]) + 1
    values = np.zeros((len(x), n_features))
    expected = np.zeros(len(x))
    for tree in dumped["tree_info"]:
        root = tree["tree_structure"]
        used = sorted(_features(root))
        m = len(used)
        # v(S) for every subset S of the tree's features, computed once.
        v = {
            frozenset(chosen): _value(root, x, frozenset(chosen))
            for size in range(m + 1)
            for chosen in combinations(used, size)
        }
        expected += v[frozenset()]
        for i in used:
            others = [f for f in used if f != i]
            for size in range(m):
                weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
                for chosen in combinations(others, size):
                    subset = frozenset(chosen)
                    values[:, i] += weight * (v[subset | {i}] - v[subset])
    return values, expected
