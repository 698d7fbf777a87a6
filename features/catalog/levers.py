"""How member actions move one applicant's features, all else equal: the `Lever` declarations, vectorized.

`ActionMoves` takes an applicant's feature row (member vector plus request-time features) and the
actions a plan may use, and returns the feature rows after any combination of action sizes: each
lever moves its feature, derived features (ratios, differences, trends, flags) are recomputed from
their inputs with the views' semantics, and request-time features from the moved income and savings
with the one shared `application_features`. A feature no chosen action touches keeps its stored value
bit for bit, so doing nothing reproduces the row exactly. Recourse (`models.recourse`) searches over
these rows; the simulator checks in the world what they assume ("right after the action, nothing
else changed").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from features.catalog.request import application_features
from features.catalog.schema import Action, Feature, FeatureRegistry, Lever

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Inputs of the request-time features (`application_features` reads these two member features).
_APPLICATION_INPUTS = ("delivery_amount_365d", "savings_balance")


def derive(feature: Feature, a: FloatArray, b: FloatArray | None = None) -> FloatArray:
    """A derived feature from its inputs' columns, with the views' semantics (NaN where undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if feature.aggregation == "is_positive":
            return np.asarray(a > 0, dtype=np.float64)
        assert b is not None
        if feature.aggregation == "difference":
            return np.asarray(a - b)
        if feature.aggregation == "ratio":
            defined = (b != 0) & ~np.isnan(b)
            return np.where(defined, a / np.where(defined, b, 1.0), np.nan)
        if feature.aggregation == "trend":
            total = a + b
            defined = (total != 0) & ~np.isnan(total)
            return np.where(defined, (a - b) / np.where(defined, total, 1.0), np.nan)
    raise ValueError(f"feature {feature.name!r}: {feature.aggregation} is not a derived aggregation")


@dataclass(frozen=True)
class _BoundLever:
    """A lever of one available action on one feature, with the applicant's own scale resolved."""

    action: int  # column of the action in the levels matrix
    lever: Lever
    scale: float


class ActionMoves:
    """The feature rows of one applicant after any sizes of the given actions (see module docstring).

    `actions` lists the actions a plan may use; those this applicant cannot do are left out of
    `actions` (e.g. delivering "at your usual size" with no delivery on record): `unavailable` says
    which and why. Columns of a levels matrix follow `actions`.
    """

    def __init__(self, registry: FeatureRegistry, row: Mapping[str, Any], actions: Sequence[str]) -> None:
        self.registry = registry
        self.names = registry.names
        self.index = {name: i for i, name in enumerate(self.names)}
        self.base = np.array([_number(row.get(name)) for name in self.names], dtype=np.float64)
        self.unavailable: dict[str, str] = {}
        usable: list[Action] = []
        for name in actions:
            action = registry.action_by_name[name]
            missing = self._missing_scale(name)
            if missing:
                self.unavailable[name] = f"needs {missing} on record"
            else:
                usable.append(action)
        self.actions: tuple[Action, ...] = tuple(usable)
        column = {a.name: j for j, a in enumerate(self.actions)}
        self._levers: dict[int, list[_BoundLever]] = {}
        moved_by: dict[int, set[int]] = {}
        for f in registry.member_features:
            for lever in f.levers:
                if lever.action in column:
                    i = self.index[f.name]
                    self._levers.setdefault(i, []).append(
                        _BoundLever(column[lever.action], lever, self._scale(lever))
                    )
                    moved_by.setdefault(i, set()).add(column[lever.action])
        # Derived and request-time features move with their inputs.
        self._derived: list[tuple[int, Feature, tuple[int, ...]]] = []
        for f in registry.features:
            if f.is_event_aggregate or not f.inputs:
                continue
            inputs = tuple(self.index[n] for n in f.inputs)
            sources = set().union(*(moved_by.get(i, set()) for i in inputs))
            if sources:
                moved_by[self.index[f.name]] = sources
                if not f.is_application:
                    self._derived.append((self.index[f.name], f, inputs))
        self.moved_by: dict[int, frozenset[int]] = {i: frozenset(s) for i, s in moved_by.items()}
        self._sources = {i: sorted(s) for i, s in moved_by.items()}
        self._application = [
            self.index[f.name] for f in registry.application_features if self.index[f.name] in moved_by
        ]

    def _scale(self, lever: Lever) -> float:
        values = [self.base[self.index[n]] for n in lever.scale_by]
        if not values:
            return 1.0
        return float(values[0]) if len(values) == 1 else float(values[0] / values[1])

    def _missing_scale(self, action: str) -> str:
        """The first scale an action's levers need that this applicant lacks ('' when none)."""
        for f in self.registry.member_features:
            for lever in f.levers:
                if lever.action == action and lever.scale_by:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        scale = self._scale(lever)
                    if not math.isfinite(scale):
                        return " / ".join(lever.scale_by)
        return ""

    # ---- rows ----

    def single(self, action: int, units: Sequence[float] | FloatArray) -> FloatArray:
        """A levels matrix with `units` of one action (by column) and none of the others."""
        values = np.asarray(units, dtype=np.float64)
        levels = np.zeros((len(values), len(self.actions)))
        levels[:, action] = values
        return levels

    def apply(self, levels: FloatArray) -> FloatArray:
        """Feature rows (registry order) after each row of `levels` (units per action column)."""
        out = np.repeat(self.base[None, :], levels.shape[0], axis=0)
        for i, values in self.moved(levels).items():
            out[:, i] = values
        return out

    def moved(self, levels: FloatArray) -> dict[int, FloatArray]:
        """Only the columns the actions can move (registry index -> values per row of `levels`): what
        `apply` writes over the stored row; much less work when a few columns are all one needs."""
        rows = levels.shape[0]
        active = levels > 0
        acting = set(np.flatnonzero(active.any(axis=0)).tolist())
        out: dict[int, FloatArray] = {}
        for i, levers in self._levers.items():
            bound = [b for b in levers if b.action in acting]
            if not bound:
                continue
            kind = bound[0].lever.kind
            touched = active[:, [b.action for b in bound]].any(axis=1)
            before = self.base[i]
            if kind == "set":
                out[i] = np.where(touched, bound[0].lever.fixed, before)
                continue
            start = 0.0 if math.isnan(before) else before
            if kind == "add":
                total = np.zeros(rows)
                for b in bound:
                    total += np.where(active[:, b.action], self._amount(b, levels[:, b.action]), 0.0)
                out[i] = np.where(touched, start + total, before)
            else:  # at_least
                floor = np.full(rows, -np.inf)
                for b in bound:
                    floor = np.where(
                        active[:, b.action], np.maximum(floor, self._amount(b, levels[:, b.action])), floor
                    )
                out[i] = np.where(touched, np.maximum(start, floor), before)

        def column(i: int) -> FloatArray:
            return out[i] if i in out else np.full(rows, self.base[i])

        for i, feature, inputs in self._derived:
            if acting.isdisjoint(self._sources[i]):
                continue
            moving = active[:, self._sources[i]].any(axis=1)
            second = column(inputs[1]) if len(inputs) > 1 else None
            out[i] = np.where(moving, derive(feature, column(inputs[0]), second), self.base[i])
        application = [i for i in self._application if not acting.isdisjoint(self._sources[i])]
        if application:
            derived = application_features(
                {name: column(self.index[name]) for name in _APPLICATION_INPUTS},
                amount_cny=self.base[self.index["application_amount_cny"]],
                term_months=self.base[self.index["application_term_months"]],
            )
            for i in application:
                moving = active[:, self._sources[i]].any(axis=1)
                out[i] = np.where(moving, derived[self.names[i]], self.base[i])
        return out

    @staticmethod
    def _amount(bound: _BoundLever, units: FloatArray) -> FloatArray:
        """What a lever adds (or the floor it sets) for these units of its action."""
        lever = bound.lever
        counted = units if lever.max_units is None else np.minimum(units, lever.max_units)
        return np.asarray(lever.fixed + lever.per_unit * bound.scale * counted)


def _number(value: Any) -> float:
    """A feature value as a float; None (missing) as NaN."""
    return math.nan if value is None else float(value)


__all__ = ["ActionMoves", "BoolArray", "FloatArray", "derive"]
