"""Fairness promotion gate: a challenger that treats a protected group unfairly on OOT is not promoted.

`FairnessGate` has the `training.gates.Gate` interface (`name`, `__call__(GateContext) -> GateResult`),
so it is appended to `default_gates(...)`. It scores the challenger's own OOT rows, takes the policy's
decisions (approve vs review/decline), and runs `monitoring.fairness.audit_fairness` on the protected
groups, failing when any judged group breaks a threshold (approval-rate ratio vs the most-favoured
group, equal-opportunity difference, per-group calibration gap). Groups under `min_group_size` OOT
applications are not judged.

The training pipeline never carries protected attributes (they are not model inputs), so the gate takes
them at construction: a frame of group columns keyed by application id (`application_id` column or
index), e.g. from `monitoring.fairness.protected_groups(member_profiles, applications)`; it is joined to
the OOT rows on `_application_id`. `FairnessGate.from_profiles(profiles, applications)` does both.
The retraining job passes it as:

    gates = [*default_gates(config.gates), FairnessGate.from_profiles(profiles, applications)]
    retrain(source, config=config, ..., gates=gates)

where `profiles` is the restricted `member_profiles` table and `applications` the applications table
(`application_id`, `member_id`, `applied_at`). OOT rows without a profile fall in group 'unknown'.
A model trained on a table brings its own groups: the `_segment_*` columns (its `--protected`
columns) of its stored OOT rows, so no profile table is needed. With no protected columns at all the
gate is reported as skipped ("no protected columns"), never silently absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator

from models.credit_model import CreditModel
from monitoring.fairness import (
    PROTECTED_GROUP_COLUMNS,
    UNKNOWN,
    FairnessAudit,
    FairnessThresholds,
    audit_fairness,
    protected_groups,
)
from training.config import GateConfig, TrainingConfig
from training.datasets import TrainingSet
from training.fit import fit_credit_model
from training.gates import Gate, GateContext, GateResult, default_gates
from training.metrics import roc_auc
from training.pipeline import OOT_ID, stored_segments
from training.splits import time_split

FloatArray = npt.NDArray[np.float64]
UNREGISTERED = ""  # the `FairnessGate.audits` key of a model that is not in the registry (yet)


@dataclass(frozen=True)
class JudgedAudit:
    """A gate's audit of one challenger and the OOT group labels it used (aligned by position)."""

    audit: FairnessAudit
    groups: dict[str, pd.Series]


@dataclass(frozen=True, eq=False)
class FairnessGate:
    """Fail when any protected group with enough OOT support breaks a fairness threshold."""

    # Group columns keyed by application id (column `application_id` or index), for models trained
    # on the event log; None when there is no member-profile table. A model trained on a table
    # brings its own groups: the `_segment_*` (its --protected) columns of its stored OOT rows.
    groups: pd.DataFrame | None = None
    thresholds: FairnessThresholds = field(default_factory=FairnessThresholds)
    min_group_size: int = 100
    attributes: tuple[str, ...] | None = None  # default: the protected columns present in `groups`
    min_coverage: float = 0.5  # share of OOT rows that must have protected attributes
    n_boot: int = 0  # bootstrap intervals in the details (slow; the verdict uses point estimates)
    name: str = "fairness"
    # The last audit per judged model version, with its group labels, for reports and mitigation.
    audits: dict[str, JudgedAudit] = field(default_factory=dict, repr=False)

    @classmethod
    def from_profiles(
        cls, profiles: pd.DataFrame, applications: pd.DataFrame, **options: Any
    ) -> FairnessGate:
        """Build the group columns from `member_profiles` + applications."""
        return cls(protected_groups(profiles, applications), **options)

    def aligned(self, application_ids: Sequence[Any] | npt.NDArray[Any]) -> pd.DataFrame:
        """Group columns for these application ids, in their order ('unknown' without a profile)."""
        keyed = self._keyed()
        attributes = self._attributes(keyed)
        return keyed.reindex(pd.Index(application_ids).astype(str))[attributes].fillna(UNKNOWN)

    def _keyed(self) -> pd.DataFrame:
        frame = self.groups
        if frame is None:
            raise ValueError("this fairness gate has no member-profile groups")
        if "application_id" in frame.columns:
            frame = frame.set_index("application_id")
        frame.index = frame.index.astype(str)
        return frame[~frame.index.duplicated(keep="last")]

    def _attributes(self, frame: pd.DataFrame) -> list[str]:
        if self.attributes is not None:
            missing = [a for a in self.attributes if a not in frame.columns]
            if missing:
                raise KeyError(f"protected group columns missing: {missing}")
            return list(self.attributes)
        return [c for c in PROTECTED_GROUP_COLUMNS if c in frame.columns]

    def _skipped(self, reason: str) -> GateResult:
        """Nothing to judge: visible in the record (never silently absent), and not blocking."""
        return GateResult(self.name, True, reason, {"attributes": []}, skipped=True)

    def __call__(self, context: GateContext) -> GateResult:
        """Audit the challenger's OOT decisions by protected group (its own segment columns for a
        model trained on a table, the member-profile groups otherwise)."""
        oot = context.oot
        table_model = not context.challenger.catalog_feature_set
        segments = stored_segments(oot) if table_model else pd.DataFrame()
        attributes = [a for a in segments.columns if self.attributes is None or a in self.attributes]
        if attributes:  # trained on a table with --protected: its own protected columns
            joined = segments
        elif self.groups is None:
            return self._skipped(
                "no protected columns: the model was trained on a table without --protected"
                if table_model
                else "no protected columns: there is no member_profiles table to take groups from"
            )
        else:
            if OOT_ID not in oot.columns:
                return GateResult(
                    self.name, False, f"OOT rows carry no {OOT_ID}: cannot join protected groups"
                )
            keyed = self._keyed()
            attributes = self._attributes(keyed)
            if not attributes:
                return GateResult(self.name, False, "no protected group columns given")
            joined = keyed.reindex(oot[OOT_ID].astype(str).to_numpy())
            if table_model and not joined[attributes].notna().any(axis=None):
                return self._skipped(
                    "no protected columns: the model was trained on a table without --protected and "
                    "none of its OOT applications has a member profile"
                )
        coverage = float(joined[attributes].notna().all(axis=1).mean()) if len(joined) else 0.0
        details: dict[str, Any] = {"coverage": coverage, "attributes": attributes, "rows": len(oot)}
        if coverage < self.min_coverage:
            return GateResult(
                self.name,
                False,
                f"only {coverage:.0%} of OOT applications have protected attributes "
                f"(need {self.min_coverage:.0%})",
                details,
            )
        pds = context.challenger_pd
        outcomes = [d.outcome for d in context.challenger.decisions(oot, pds=pds)]
        frame = pd.DataFrame(
            {
                "pd": pds,
                "decision": outcomes,
                "defaulted": context.label,
                "score": context.challenger.scale.score_from_pd(pds),
            }
        )
        groups = {a: joined[a].fillna(UNKNOWN).reset_index(drop=True) for a in attributes}
        audit = audit_fairness(
            frame,
            pd_col="pd",
            decision_col="decision",
            label_col="defaulted",
            score_col="score",
            groups=groups,
            min_group_size=self.min_group_size,
            n_boot=self.n_boot,
            thresholds=self.thresholds,
        )
        details.update(
            {
                "thresholds": self.thresholds.to_dict(),
                "min_group_size": self.min_group_size,
                "approval_rate": float(np.mean(np.asarray(outcomes) == "approve")) if outcomes else None,
                "flags": [f.to_dict() for f in audit.flags],
                "too_small": [f"{a}={g} (n={n})" for a, g, n in audit.too_small()],
                "approval_ratio_min": {
                    a: audit.attributes[a].to_dict()["approval_ratio_min"] for a in attributes
                },
                "equal_opportunity_difference": {
                    a: audit.attributes[a].to_dict()["equal_opportunity_difference"] for a in attributes
                },
            }
        )
        version = context.challenger.identity.version if context.challenger.identity else UNREGISTERED
        self.audits[version] = JudgedAudit(audit, groups)
        judged = sum(1 for a in audit.attributes.values() for g in a.groups if g.judged)
        if audit.flags:
            shown = "; ".join(f.message for f in audit.flags[:5])
            more = f" (+{len(audit.flags) - 5} more)" if len(audit.flags) > 5 else ""
            return GateResult(
                self.name, False, f"{len(audit.flags)} fairness flag(s): {shown}{more}", details
            )
        return GateResult(
            self.name,
            True,
            f"{judged} protected groups judged, none breaks a threshold "
            f"({len(audit.too_small())} too small to judge)",
            details,
        )


def gates_with_fairness(groups: pd.DataFrame, config: GateConfig | None = None, **options: Any) -> list[Gate]:
    """`default_gates(config)` plus a `FairnessGate(groups, **options)`."""
    return [*default_gates(config), FairnessGate(groups, **options)]


# --------------------------------------------------------------------------------------------------
# Mitigation: compare, never applied automatically
# --------------------------------------------------------------------------------------------------


@dataclass
class MitigationResult:
    """One candidate's OOT ranking power and fairness (`auc_cost` = baseline AUC - this AUC)."""

    name: str
    auc: float
    auc_cost: float
    approval_rate: float
    audit: FairnessAudit
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "name": self.name,
            "auc": self.auc,
            "auc_cost": self.auc_cost,
            "approval_rate": self.approval_rate,
            "passed": self.audit.passed,
            "flags": [f.message for f in self.audit.flags],
            "approval_ratio_min": {k: v.approval_ratio_min for k, v in self.audit.attributes.items()},
            "equal_opportunity_difference": {
                k: v.equal_opportunity_difference for k, v in self.audit.attributes.items()
            },
            "note": self.note,
        }


class _ScoreEstimator(BaseEstimator):  # type: ignore[misc]
    """A fitted sklearn face for a CreditModel: decision_function = 1 - PD (higher = safer)."""

    def __init__(self, model: CreditModel | None = None) -> None:
        self.model = model

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def fit(self, x: Any, y: Any = None) -> _ScoreEstimator:
        return self

    def decision_function(self, x: Any) -> FloatArray:
        assert self.model is not None
        return np.asarray(1.0 - self.model.predict_pd(x), dtype=np.float64)


def _audit_model(
    name: str,
    model: CreditModel,
    features: pd.DataFrame,
    label: npt.NDArray[np.int64],
    groups: dict[str, pd.Series],
    baseline_auc: float | None,
    **audit_options: Any,
) -> MitigationResult:
    pds = model.predict_pd(features)
    outcomes = [d.outcome for d in model.decisions(features, pds=pds)]
    frame = pd.DataFrame({"pd": pds, "decision": outcomes, "defaulted": label})
    audit = audit_fairness(frame, groups=groups, **audit_options)
    auc = roc_auc(label, pds)
    approved = float(np.mean(np.asarray(outcomes) == "approve"))
    cost = 0.0 if baseline_auc is None else baseline_auc - auc
    return MitigationResult(name, auc, cost, approved, audit)


def compare_mitigations(
    training_set: TrainingSet,
    groups: pd.DataFrame,
    *,
    config: TrainingConfig,
    drop_features: Sequence[str] = (),
    threshold_attribute: str | None = None,
    threshold_constraint: str = "true_positive_rate_parity",
    baseline: CreditModel | None = None,
    min_group_size: int = 100,
    thresholds: FairnessThresholds | None = None,
) -> list[MitigationResult]:
    """Baseline vs mitigations on the OOT slice, each with its AUC cost and fairness audit.

    Args:
        training_set: the labelled applications.
        groups: group columns aligned with `training_set` rows by position.
        config: training config (splits, booster) used for every refit.
        drop_features: proxy features to neutralise: a model is refitted without them.
        threshold_attribute: when given, fairlearn `ThresholdOptimizer` (prefit on the baseline's
            PD, fitted on the calibration slice) picks per-group approval thresholds for this
            attribute. Comparison only: it needs the protected attribute at decision time.
        threshold_constraint: the ThresholdOptimizer constraint.
        baseline: an already fitted model (default: fit one with every feature).
        min_group_size: as in `audit_fairness`.
        thresholds: as in `audit_fairness`.
    """
    from fairlearn.postprocessing import ThresholdOptimizer

    split = time_split(training_set.applied_at, training_set.horizon, config.splits)
    oot, calibration = split.masks["oot"], split.masks["calibration"]
    features = training_set.features.reset_index(drop=True)
    label = np.asarray(training_set.label, dtype=np.int64)
    aligned = groups.reset_index(drop=True)
    oot_groups = {str(c): aligned.loc[oot, c].reset_index(drop=True) for c in aligned.columns}
    options: dict[str, Any] = {"min_group_size": min_group_size, "n_boot": 0, "thresholds": thresholds}
    if baseline is None:
        baseline, _ = fit_credit_model(training_set, split, config)
    oot_x = features.loc[oot].reset_index(drop=True)
    results = [_audit_model("baseline", baseline, oot_x, label[oot], oot_groups, None, **options)]
    base_auc = results[0].auc
    if drop_features:
        kept = [n for n in training_set.spec.names if n not in set(drop_features)]
        dropped, _ = fit_credit_model(training_set, split, config, spec=training_set.spec.subset(kept))
        result = _audit_model(
            "drop " + ", ".join(drop_features), dropped, oot_x, label[oot], oot_groups, base_auc, **options
        )
        result.note = "refitted without the named proxy features"
        results.append(result)
    if threshold_attribute is not None:
        optimizer = ThresholdOptimizer(
            estimator=_ScoreEstimator(baseline),
            constraints=threshold_constraint,
            objective="balanced_accuracy_score",
            predict_method="decision_function",
            prefit=True,
        )
        cal_x = features.loc[calibration].reset_index(drop=True)
        optimizer.fit(
            cal_x,
            1 - label[calibration],  # positive = repaid = approve
            sensitive_features=aligned.loc[calibration, threshold_attribute].astype(str).to_numpy(),
        )
        approved = optimizer.predict(
            oot_x, sensitive_features=oot_groups[threshold_attribute].astype(str).to_numpy(), random_state=0
        )
        pds = baseline.predict_pd(oot_x)
        frame = pd.DataFrame({"pd": pds, "approved": np.asarray(approved) == 1, "defaulted": label[oot]})
        audit = audit_fairness(
            frame, approved_col="approved", decision_col=None, groups=oot_groups, **options
        )
        results.append(
            MitigationResult(
                f"ThresholdOptimizer({threshold_constraint}) on {threshold_attribute}",
                base_auc,
                0.0,
                float(frame["approved"].mean()),
                audit,
                note="same PDs, per-group thresholds: uses the protected attribute at decision time",
            )
        )
    return results
