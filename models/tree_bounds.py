"""The booster's trees, read once for recourse: split thresholds per feature, and a bound on the margin.

`lowest_margin` answers "how low can the margin go if each feature may take any value in an
interval, or be missing?": per tree, the smallest leaf among those a point of the box can reach
(LightGBM's split rule: `value <= threshold` goes left; a missing value goes the split's default way,
or is read as 0 where the split has no missing handling). Its sum over the trees is a bound no point
of the box goes below, so when it is above the approve cutoff, no combination of actions inside the
box reaches approval: recourse can say so without scoring the combinations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class _Node:
    """One split (`feature >= 0`) or leaf (`feature == -1`, `value`) of a tree, children by position."""

    feature: int
    threshold: float
    left: int
    right: int
    default_left: bool
    missing: str  # LightGBM's missing_type: "None" (missing read as 0), "Zero" or "NaN"
    categorical: bool
    value: float


def _flatten(root: dict[str, Any]) -> list[_Node]:
    nodes: list[_Node] = []

    def add(node: dict[str, Any]) -> int:
        at = len(nodes)
        if "split_feature" not in node:
            nodes.append(_Node(-1, math.nan, -1, -1, False, "None", False, float(node["leaf_value"])))
            return at
        nodes.append(_Node(0, 0.0, -1, -1, False, "None", False, 0.0))  # placeholder, filled below
        left, right = add(node["left_child"]), add(node["right_child"])
        nodes[at] = _Node(
            int(node["split_feature"]),
            float(node["threshold"]) if node.get("decision_type", "<=") == "<=" else math.nan,
            left,
            right,
            bool(node.get("default_left", True)),
            str(node.get("missing_type", "None")),
            node.get("decision_type", "<=") != "<=",
            0.0,
        )
        return at

    add(root)
    return nodes


class TreeBounds:
    """Split thresholds and margin bounds of one LightGBM booster (`width` input features)."""

    def __init__(self, booster: Any, width: int) -> None:
        dump = booster.dump_model()
        self._trees = [_flatten(tree["tree_structure"]) for tree in dump["tree_info"]]
        found: list[set[float]] = [set() for _ in range(width)]
        for tree in self._trees:
            for node in tree:
                if node.feature >= 0:
                    # A categorical split: every distinct value may be its own side.
                    found[node.feature].add(math.inf if node.categorical else node.threshold)
        self.thresholds = [np.array(sorted(t), dtype=np.float64) for t in found]

    def lowest_margin(self, low: FloatArray, high: FloatArray, missing: BoolArray) -> float:
        """The lowest margin any point of the box can get: feature `j` in [low[j], high[j]] (an empty
        interval, low > high, when it can only be missing), or missing where `missing[j]`."""
        total = 0.0
        for tree in self._trees:
            best = math.inf
            stack = [0]
            while stack:
                node = tree[stack.pop()]
                if node.feature < 0:
                    best = min(best, node.value)
                    continue
                go_left, go_right = self._sides(
                    node, low[node.feature], high[node.feature], missing[node.feature]
                )
                if go_left:
                    stack.append(node.left)
                if go_right:
                    stack.append(node.right)
            total += best
        return total

    @staticmethod
    def _sides(node: _Node, low: float, high: float, missing: bool) -> tuple[bool, bool]:
        """Whether some value of [low, high] (or missing) goes left, and whether some goes right."""
        if node.categorical:
            return True, True
        present = low <= high
        left = present and low <= node.threshold
        right = present and high > node.threshold
        default = (node.default_left, not node.default_left)
        if node.missing == "Zero" and present and low <= 0.0 <= high:
            left, right = left or default[0], right or default[1]
        if missing:
            if node.missing == "None":  # read as 0
                left, right = left or node.threshold >= 0.0, right or node.threshold < 0.0
            else:
                left, right = left or default[0], right or default[1]
        return left, right
