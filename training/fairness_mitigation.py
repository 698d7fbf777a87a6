"""Mitigation when the fairness gate fails: name the proxy features behind a gap, refit without them.

A proxy is a feature that both *identifies* a flagged group (alone it separates the group from the
rest of its attribute: |AUC - 0.5| >= `min_strength`) and *costs* that group points (its mean score
points are lower for the group than for the rest by at least `min_points_gap`). On the proxy-trap
world these are the delivery and land features: a left-behind woman's records are partly filed under
another household's id, so they undercount her activity while her repayment is no worse.

`drop_proxies` refits the model without them (one candidate model, same splits and config); the
retraining job registers it as a new challenger and runs the gates again. `compare_mitigations` in
`training.fairness_gates` adds fairlearn's `ThresholdOptimizer` for comparison (it needs the
protected attribute at decision time, so it is never deployed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from models.credit_model import CreditModel
from monitoring.fairness import UNKNOWN, FairnessFlag, fast_auc, numeric_feature
from training.config import TrainingConfig
from training.datasets import TrainingSet
from training.fairness_gates import UNREGISTERED, FairnessGate, JudgedAudit, compare_mitigations
from training.fit import fit_credit_model
from training.gates import GateContext
from training.metrics import roc_auc
from training.pipeline import TrainingResult, train_and_evaluate


@dataclass(frozen=True)
class ProxyFeature:
    """A feature that identifies a flagged group and lowers its scores."""

    feature: str
    attribute: str
    group: str
    auc: float  # the feature alone: this group vs the rest of the attribute
    points_gap: float  # mean score points of the feature: group minus the rest (< 0 costs the group)

    @property
    def strength(self) -> float:
        """|AUC - 0.5|: how well the feature alone names the group."""
        return abs(self.auc - 0.5)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "strength": self.strength}


def find_proxy_features(
    model: CreditModel,
    features: pd.DataFrame,
    groups: Mapping[str, pd.Series],
    flags: Sequence[FairnessFlag],
    *,
    min_strength: float = 0.1,
    min_points_gap: float = 1.0,
) -> list[ProxyFeature]:
    """The model features to neutralise for the flagged groups, the costliest first.

    Args:
        model: the model whose decisions were flagged.
        features: the audited rows (model columns at least), aligned with `groups` by position.
        groups: attribute -> group labels per row.
        flags: the audit's flags; each flagged (attribute, group) is scanned once.
        min_strength: |AUC - 0.5| a feature needs to count as identifying the group.
        min_points_gap: score points the feature must cost the group on average.
    """
    x = features[model.feature_names].reset_index(drop=True)
    feature_points = model.points(x).feature_points
    encoded = {name: numeric_feature(x[name]) for name in model.feature_names}
    found: dict[str, ProxyFeature] = {}
    for attribute, group in sorted({(f.attribute, f.group) for f in flags}):
        if group == UNKNOWN or attribute not in groups:
            continue
        labels = np.asarray(pd.Series(np.asarray(groups[attribute], dtype=object)).astype(str))
        inside = labels == group
        rest = ~inside & (labels != UNKNOWN)
        if not inside.any() or not rest.any():
            continue
        gaps = feature_points[inside].mean(axis=0) - feature_points[rest].mean(axis=0)
        y = inside[inside | rest].astype(np.int64)
        for j, name in enumerate(model.feature_names):
            if gaps[j] > -min_points_gap:
                continue
            auc = fast_auc(y, encoded[name][inside | rest])
            if math.isnan(auc) or abs(auc - 0.5) < min_strength:
                continue
            candidate = ProxyFeature(name, attribute, group, float(auc), float(gaps[j]))
            if name not in found or candidate.points_gap < found[name].points_gap:
                found[name] = candidate
    return sorted(found.values(), key=lambda p: p.points_gap)


def without_features(training_set: TrainingSet, dropped: Sequence[str]) -> TrainingSet:
    """The same training set with `dropped` taken out of the model's inputs."""
    unknown = sorted(set(dropped) - set(training_set.spec.names))
    if unknown:
        raise KeyError(f"not model features: {unknown}")
    kept = [n for n in training_set.spec.names if n not in set(dropped)]
    if not kept:
        raise ValueError("dropping every feature leaves nothing to train on")
    return replace(training_set, spec=training_set.spec.subset(kept))


@dataclass
class ProxyRefit:
    """A model refitted without the proxy features named for a failed fairness gate."""

    proxies: list[ProxyFeature]
    dropped: list[str]
    result: TrainingResult | None  # None when no proxy was found (nothing to refit)
    auc_before: float
    auc_after: float | None
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def auc_cost(self) -> float | None:
        """OOT AUC given up by dropping the proxies."""
        return None if self.auc_after is None else self.auc_before - self.auc_after

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "proxies": [p.to_dict() for p in self.proxies],
            "dropped": self.dropped,
            "auc_before": self.auc_before,
            "auc_after": self.auc_after,
            "auc_cost": self.auc_cost,
            "rounds": self.rounds,
        }


def refit_without_proxies(
    result: TrainingResult,
    judged: JudgedAudit,
    gate: FairnessGate,
    config: TrainingConfig,
    *,
    max_rounds: int = 4,
    min_strength: float = 0.1,
    min_points_gap: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> ProxyRefit:
    """Name the proxies behind `judged`'s flags on the OOT rows, refit without them, and repeat on
    the refit while the gate still fails (a model denied one proxy leans on the next one: on the
    household proxy-trap world, dropping the savings-deposit features moved the gap to the savings
    balance). Stops when the gate passes, no proxy is left, or after `max_rounds`; the last refit
    is then trained and evaluated in full."""
    before = _oot_auc(result)
    oot = result.oot_frame
    label = result.oot_label
    training_set, model, flagged = result.training_set, result.model, judged
    found: list[ProxyFeature] = []
    rounds: list[dict[str, Any]] = []
    for number in range(1, max_rounds + 1):
        proxies = find_proxy_features(
            model,
            oot,
            flagged.groups,
            flagged.audit.flags,
            min_strength=min_strength,
            min_points_gap=min_points_gap,
        )
        if not proxies:
            break
        found.extend(proxies)
        training_set = without_features(training_set, [p.feature for p in proxies])
        if progress is not None:
            progress(f"mitigation round {number}: refit without {len(found)} proxy features")
        model, _ = fit_credit_model(training_set, result.split, config)
        verdict = gate(GateContext(challenger=model, oot=oot))
        flagged = gate.audits[UNREGISTERED]
        rounds.append(
            {
                "round": number,
                "dropped": [p.feature for p in proxies],
                "oot_auc": roc_auc(label, model.predict_pd(oot)),
                "fairness_passed": verdict.passed,
                "flags": [f.message for f in flagged.audit.flags],
            }
        )
        if verdict.passed:
            break
    dropped = [p.feature for p in found]
    if not dropped:
        return ProxyRefit(found, dropped, None, before, None, rounds)
    refit = train_and_evaluate(training_set, config, progress=progress)
    return ProxyRefit(found, dropped, refit, before, _oot_auc(refit), rounds)


def most_flagged_attribute(judged: JudgedAudit) -> str:
    """The protected attribute with the most flags (ties: the first flagged)."""
    counts: dict[str, int] = {}
    for flag in judged.audit.flags:
        counts[flag.attribute] = counts.get(flag.attribute, 0) + 1
    return max(counts, key=lambda a: counts[a])


def _oot_auc(result: TrainingResult) -> float:
    return roc_auc(result.oot_label, result.oot_pds["model"])


def threshold_optimizer_comparison(
    result: TrainingResult,
    gate: FairnessGate,
    attribute: str,
    config: TrainingConfig,
) -> list[dict[str, Any]]:
    """fairlearn's ThresholdOptimizer on `attribute` beside the baseline, for the report only: it
    needs the protected attribute at decision time, which the service never has."""
    groups = gate.aligned(result.training_set.ids).reset_index(drop=True)
    compared = compare_mitigations(
        result.training_set,
        groups,
        config=config,
        threshold_attribute=attribute,
        baseline=result.model,
        min_group_size=gate.min_group_size,
        thresholds=gate.thresholds,
    )
    return [c.to_dict() for c in compared]
