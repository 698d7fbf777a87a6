"""One fairness audit as a job: load the model (if any), assemble the inputs, audit, explain, store.

`coopscore audit fairness` parses its options, calls `run_fairness_audit` and prints the stored
payload; the job's `passed` decides the exit code (0 passed, 3 flagged). Problems a person can fix
raise `monitoring.audit_inputs.AuditInputError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.audit_inputs import AuditInputError, AuditInputs, DecisionColumns, OotInputs, audit_inputs

if TYPE_CHECKING:
    from coopscore.settings import Settings
    from models.credit_model import CreditModel
    from monitoring.fairness import FairnessThresholds
    from monitoring.fairness_report import StoredAudit
    from monitoring.offer_fairness import OfferAudit, OfferThresholds


@dataclass(frozen=True)
class FairnessAuditRun:
    """The stored audit (its payload is what the command prints) and whether every judged group passed."""

    stored: StoredAudit
    passed: bool


def load_audit_model(
    model_ref: str, settings: Settings, model_name: str | None = None
) -> tuple[CreditModel, dict[str, Any]]:
    """The registered model `model_ref` (alias or version) of `model_name` (default: the settings')
    and the audit context naming it."""
    from models.registry import ArtifactIntegrityError, UnknownModelError, check_model_name, load_model

    name = model_name or settings.model_name
    try:
        check_model_name(settings.tracking_uri, name)
        model = load_model(model_ref, settings.tracking_uri, model_name=name)
    except UnknownModelError as error:
        raise AuditInputError(str(error)) from error
    except (KeyError, ArtifactIntegrityError) as error:
        raise AuditInputError(f"cannot load model {model_ref!r}: {error}") from error
    identity = model.identity
    return model, {"model_name": name, "model_version": identity and identity.version}


def run_fairness_audit(
    settings: Settings,
    *,
    data: str,
    model_ref: str | None,
    protected: list[str],
    profiles: Path | None,
    columns: DecisionColumns,
    thresholds: FairnessThresholds,
    min_group_size: int,
    n_boot: int,
    seed: int,
    data_dir: Path | None = None,
    oot: OotInputs | None = None,
    model_name: str | None = None,
    offer_thresholds: OfferThresholds | None = None,
    recourse_limit: int = 2000,
) -> FairnessAuditRun:
    """Audit decisions by protected group and store the audit under `<data_dir>/audits/<stamp>/`.

    When gaps are flagged, the inputs' feature columns are scanned for proxies (and the model, if
    given, explains the gaps by its reason-group points). Where the source holds offers (the
    decision log), they are audited by group too (`monitoring.offer_fairness`); declines without a
    logged recourse plan get one from the model, when given (up to `recourse_limit` of them).
    """
    from monitoring.fairness import audit_fairness, explain_gaps, model_protected_inputs
    from monitoring.fairness_report import write_fairness_audit

    model = None
    context: dict[str, Any] = {}
    if model_ref is not None:
        model, context = load_audit_model(model_ref, settings, model_name)
    inputs = audit_inputs(
        data,
        model_ref=model_ref,
        model=model,
        settings=settings,
        protected=protected,
        profiles=profiles,
        columns=columns,
        oot=oot,
    )
    audit = audit_fairness(
        inputs.frame,
        pd_col=inputs.pd_col,
        decision_col=inputs.decision_col,
        approved_col=inputs.approved_col,
        label_col=inputs.label_col,
        score_col=inputs.score_col,
        groups=inputs.groups,
        min_group_size=min_group_size,
        n_boot=n_boot,
        seed=seed,
        thresholds=thresholds,
        protected_inputs=model_protected_inputs(model, [str(c) for c in inputs.groups.columns]),
    )
    if inputs.offers is not None:
        offers = _audit_offers(
            inputs, model, min_group_size=min_group_size, n_boot=n_boot, seed=seed,
            thresholds=offer_thresholds, recourse_limit=recourse_limit,
        )  # fmt: skip
        audit.offers = offers.to_dict()
        audit.flags.extend(offers.flags)
    if audit.flags and inputs.features is not None:
        explain_gaps(audit, features=inputs.features, groups=inputs.groups, model=model)
    stored = write_fairness_audit(
        audit, data_dir or settings.data_dir, context={"source": inputs.source, **context}
    )
    return FairnessAuditRun(stored, audit.passed)


def _audit_offers(
    inputs: AuditInputs,
    model: CreditModel | None,
    *,
    min_group_size: int,
    n_boot: int,
    seed: int,
    thresholds: OfferThresholds | None,
    recourse_limit: int,
) -> OfferAudit:
    """The offers' audit of `inputs` (which hold offers), recourse for declines filled by `model`."""
    import pandas as pd

    from monitoring.offer_fairness import audit_offers, recourse_for_declined

    assert inputs.offers is not None
    decision = inputs.decision_col if inputs.decision_col in inputs.frame else None
    kept = [c for c in (inputs.pd_col, decision) if c is not None]
    frame = pd.concat(
        [inputs.frame[kept].reset_index(drop=True), inputs.offers.reset_index(drop=True)], axis=1
    )
    notes: list[str] = []
    if decision is None:
        notes.append("no decision column: declines and their recourse are not audited")
    elif model is not None and inputs.features is not None:
        with_features = pd.concat([frame, inputs.features.reset_index(drop=True)], axis=1)
        with_features, notes = recourse_for_declined(
            with_features, model, decision_col=decision, limit=recourse_limit, seed=seed
        )
        frame = with_features[frame.columns]
    else:
        notes.append("recourse only as logged: pass --model to compute it for every decline")
    return audit_offers(
        frame,
        inputs.groups.drop(columns=["application_id"], errors="ignore"),
        pd_col=inputs.pd_col,
        decision_col=decision or inputs.pd_col,
        min_group_size=min_group_size,
        n_boot=n_boot,
        seed=seed,
        thresholds=thresholds,
        notes=notes,
    )
