"""GET /v1/monitoring/drift and its HTML report: the latest `coopscore monitor drift` result."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.responses import FileResponse

from monitoring.monitor import latest_drift_report_path, latest_drift_summary
from serving.deps import StateDep, require_scope
from serving.schemas import ERROR_RESPONSES

router = APIRouter(
    responses=ERROR_RESPONSES,
    prefix="/v1/monitoring",
    tags=["monitoring"],
    dependencies=[Depends(require_scope("read"))],
)
NO_CHECK = "no drift check has run yet: run `coopscore monitor drift --window 30d`"


@router.get("/drift", response_model=dict[str, Any])
def drift_summary(state: StateDep) -> dict[str, Any]:
    """Per-feature PSI and band, overall status and the top shifted features."""
    summary = latest_drift_summary(state.settings.data_dir)
    if summary is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_CHECK)
    return summary


@router.get("/drift/report", response_class=FileResponse, responses={200: {"content": {"text/html": {}}}})
def drift_report(state: StateDep) -> FileResponse:
    """The full HTML report (our summary and plots, then Evidently's)."""
    path = latest_drift_report_path(state.settings.data_dir)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_CHECK)
    return FileResponse(path, media_type="text/html")
