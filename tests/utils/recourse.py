"""Helpers for recourse tests: a small monotone catalogue model, consistent applicant rows, coarse action
grids, and an independent brute force over every combination of action sizes.

The brute force shares nothing with `features.catalog.levers` or `models.recourse` but the declarations:
it moves each feature with plain Python straight from the lever's meaning, recomputes derived and
request-time features with the point-in-time oracle's own formulas (`features.reference`), and scores
every combination with the booster.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from features.catalog import FeatureRegistry, default_registry
from features.reference import _application_values, _derived_value
from models.calibration import PlattCalibration
from models.credit_model import CreditModel
from models.policy import DecisionPolicy, default_evidence_rule
from models.scale import ScoreScale
from models.spec import spec_from_registry
from tests.utils.model_fixtures import synthetic_frame

Row = dict[str, float]


def consistent_rows(registry: FeatureRegistry, *, n: int, seed: int) -> list[Row]:
    """Synthetic applicants whose derived and request-time features agree with their inputs."""
    frame, _, _ = synthetic_frame(n=n, seed=seed, registry=registry)
    rng = np.random.default_rng(seed + 7)
    rows = []
    for record in frame.to_dict("records"):
        row = {k: float(v) for k, v in record.items()}
        amount = float(rng.choice([5000.0, 20000.0, 60000.0]))
        term = float(rng.choice([6.0, 12.0, 24.0]))
        rows.append(recompute(registry, row, amount, term))
    return rows


def recompute(registry: FeatureRegistry, row: Row, amount: float, term: float) -> Row:
    """Derived and request-time features from their inputs, with the oracle's formulas."""
    out = dict(row)
    for feature in registry.member_features:
        if feature.inputs and not feature.is_event_aggregate:
            out[feature.name] = float(_derived_value(feature, out))
    out.update({k: float(v) for k, v in _application_values(out, amount, term).items()})
    return out


def catalog_model(
    registry: FeatureRegistry | None = None,
    *,
    features: Sequence[str] | None = None,
    n: int = 3000,
    seed: int = 0,
    approve_quantile: float = 0.35,
) -> CreditModel:
    """A monotone LightGBM over the catalogue (or a subset), uncalibrated (margin = log-odds), with
    approve / decline cutoffs at PD quantiles of its own training rows and the default thin-file rule."""
    registry = registry or default_registry()
    spec = spec_from_registry(registry)
    if features is not None:
        spec = spec.subset(features)
    frame, defaulted, _ = synthetic_frame(n=n, seed=seed, registry=registry)
    x = frame[spec.names].to_numpy(dtype=np.float64)
    params = {
        "objective": "binary",
        "num_leaves": 8,
        "learning_rate": 0.1,
        "min_data_in_leaf": 20,
        "monotone_constraints": spec.monotone_constraints,
        "monotone_constraints_method": "basic",
        "verbose": -1,
        "seed": seed,
        "deterministic": True,
        "num_threads": 1,
    }
    booster = lgb.train(params, lgb.Dataset(x, label=defaulted), num_boost_round=60)
    pds = 1 / (1 + np.exp(-booster.predict(x, raw_score=True)))
    approve, decline = np.quantile(pds, [approve_quantile, 0.8])
    policy = DecisionPolicy(
        approve_max_pd=float(approve), decline_min_pd=float(decline), evidence=default_evidence_rule()
    )
    return CreditModel(booster, spec, PlattCalibration(), ScoreScale(), policy)


def coarse_registry(
    grids: Mapping[str, tuple[float, float, float]], registry: FeatureRegistry | None = None
) -> FeatureRegistry:
    """The catalogue with only the actions in `grids`, each on the grid (minimum, step, maximum)."""
    registry = registry or default_registry()
    actions = tuple(
        a.model_copy(
            update={"minimum": grids[a.name][0], "step": grids[a.name][1], "maximum": grids[a.name][2]}
        )
        for a in registry.actions
        if a.name in grids
    )
    features = tuple(
        f.model_copy(update={"levers": tuple(lv for lv in f.levers if lv.action in grids)})
        for f in registry.features
    )
    return FeatureRegistry(features=features, reason_groups=registry.reason_groups, actions=actions)


def moved_row(registry: FeatureRegistry, base: Row, units: Mapping[str, float]) -> Row:
    """The applicant after `units` of each action: every lever applied the obvious way, then the
    derived and request-time features recomputed from their inputs."""
    out = dict(base)
    for feature in registry.member_features:
        levers = [lv for lv in feature.levers if units.get(lv.action, 0.0) > 0]
        if not levers:
            continue
        value = base[feature.name]
        start = 0.0 if math.isnan(value) else value
        for lever in levers:
            u = units[lever.action]
            counted = u if lever.max_units is None else min(u, lever.max_units)
            scale = _scale(base, lever.scale_by)
            if lever.kind == "add":
                start += lever.fixed + lever.per_unit * scale * counted
            elif lever.kind == "at_least":
                start = max(start, lever.fixed + lever.per_unit * counted)
            else:
                start = lever.fixed
        out[feature.name] = start
    return recompute(registry, out, base["application_amount_cny"], base["application_term_months"])


def _scale(base: Row, names: tuple[str, ...]) -> float:
    """A lever's per-applicant scale: 1, a feature, or a ratio of two (infinite over zero)."""
    if not names:
        return 1.0
    if len(names) == 1:
        return base[names[0]]
    denominator = base[names[1]]
    return math.inf if denominator == 0 else base[names[0]] / denominator


@dataclass(frozen=True)
class BruteForce:
    """Every combination on the grids, scored: the cheapest approved one and the best score."""

    cost: float | None  # None: no combination is approved
    units: dict[str, float] | None
    best_score: float


def brute_force(
    model: CreditModel, registry: FeatureRegistry, base: Row, actions: Sequence[str]
) -> BruteForce:
    """The cheapest approved combination of sizes of `actions` (ties: fewer months, fewer actions)."""
    declared = [registry.action_by_name[a] for a in actions]
    usable = []
    for action in declared:
        scales = [lv.scale_by for f in registry.features for lv in f.levers if lv.action == action.name]
        if all(math.isfinite(_scale(base, s)) for s in scales):
            usable.append(action)
    grids = [(0.0, *a.grid()) for a in usable]
    combos = list(itertools.product(*grids))
    rows = [moved_row(registry, base, dict(zip([a.name for a in usable], c, strict=True))) for c in combos]
    margins = model.margin([[r[n] for n in model.feature_names] for r in rows])
    pds = model.calibration.pd(margins)
    scores = model.scale.score_from_pd(pds)
    best: tuple[float, int, int] | None = None
    best_units: dict[str, float] | None = None
    for combo, row, pd_ in zip(combos, rows, pds, strict=True):
        if model.decide(row, float(pd_)).outcome != "approve":
            continue
        cost = sum(u * a.cost_cny_per_unit for u, a in zip(combo, usable, strict=True))
        months = max(a.duration_months(u) for u, a in zip(combo, usable, strict=True)) if combo else 0
        key = (round(cost, 6), months, sum(u > 0 for u in combo))
        if best is None or key < best:
            best, best_units = key, {a.name: u for u, a in zip(combo, usable, strict=True) if u > 0}
    return BruteForce(
        cost=None if best is None else best[0], units=best_units, best_score=float(np.max(scores))
    )


def as_row(values: Mapping[str, Any]) -> Row:
    """A plain float row."""
    return {k: float(v) for k, v in values.items()}
