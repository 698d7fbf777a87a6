"""GET /v1/audits/fairness: the latest stored fairness audit (`coopscore audit fairness` or the gate)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status

from monitoring.fairness_report import latest_fairness_audit
from serving.deps import StateDep, require_scope
from serving.schemas import ERROR_RESPONSES, FairnessAuditResponse

router = APIRouter(
    responses=ERROR_RESPONSES,
    prefix="/v1/audits",
    tags=["audits"],
    dependencies=[Depends(require_scope("read"))],
)
NO_AUDIT = (
    "no fairness audit has been stored yet: run `coopscore audit fairness --data decision-log` "
    "(or retrain: the promotion gate stores one)"
)
# Where the audit's files sit on the server: of no use to an API client, so not shown.
_SERVER_ONLY = ("outputs",)


@router.get("/fairness", response_model=FairnessAuditResponse, summary="The latest fairness audit")
def fairness_audit(state: StateDep) -> FairnessAuditResponse:
    """Approval ratio, equal opportunity and calibration by protected group (aggregates only), with
    the flags raised and the explanations of flagged gaps, as stored by the latest audit."""
    stored = latest_fairness_audit(state.settings.data_dir)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_AUDIT)
    audit = {k: v for k, v in stored.items() if k not in _SERVER_ONLY}
    flags = audit.get("flags")
    return FairnessAuditResponse(
        created_at=_when(audit.get("created_at")),
        passed=audit.get("passed") if isinstance(audit.get("passed"), bool) else None,
        source=_text(audit.get("source")),
        model_name=_text(audit.get("model_name")),
        model_version=_text(audit.get("model_version")),
        flags=[f for f in flags if isinstance(f, dict)] if isinstance(flags, list) else [],
        audit=audit,
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
