"""POST /v1/admin/reload: swap to the current champion without failing an in-flight request."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from starlette.concurrency import run_in_threadpool

from serving.deps import NO_MODEL, AdminKey, StateDep
from serving.schemas import ERROR_RESPONSES, ReloadResponse

router = APIRouter(responses=ERROR_RESPONSES, prefix="/v1/admin", tags=["admin"])


@router.post("/reload", response_model=ReloadResponse)
async def reload_model(state: StateDep, _key: AdminKey) -> ReloadResponse:
    """Load and verify the champion, then swap it in; requests in flight finish on the old one."""
    try:
        previous, current = await run_in_threadpool(state.models.reload)
    except Exception as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"the champion could not be loaded, the old model stays: {exc}"
        ) from exc
    if current is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NO_MODEL)
    state.metrics.set_model(current.scorer.name, current.scorer.version)
    before = previous.scorer.version if previous else None
    return ReloadResponse(
        previous_version=before,
        model_version=current.scorer.version,
        changed=before != current.scorer.version,
    )
