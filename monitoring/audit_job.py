"""One fairness audit as a job: load the model (if any), assemble the inputs, audit, explain, store.

`coopscore audit fairness` parses its options, calls `run_fairness_audit` and prints the stored
payload; the job's `passed` decides the exit code (0 passed, 3 flagged). Problems a person can fix
raise `monitoring.audit_inputs.AuditInputError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.audit_inputs import AuditInputError, DecisionColumns, OotInputs, audit_inputs

if TYPE_CHECKING:
    from coopscore.settings import Settings
    from models.credit_model import CreditModel
    from monitoring.fairness import FairnessThresholds
    from monitoring.fairness_report import StoredAudit


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
) -> FairnessAuditRun:
    """Audit decisions by protected group and store the audit under `<data_dir>/audits/<stamp>/`.

    When gaps are flagged, the inputs' feature columns are scanned for proxies (and the model, if
    given, explains the gaps by its reason-group points).
    """
    from monitoring.fairness import audit_fairness, explain_gaps
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
    )
    if audit.flags and inputs.features is not None:
        explain_gaps(audit, features=inputs.features, groups=inputs.groups, model=model)
    stored = write_fairness_audit(
        audit, data_dir or settings.data_dir, context={"source": inputs.source, **context}
    )
    return FairnessAuditRun(stored, audit.passed)
