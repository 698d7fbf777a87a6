"""POST /v1/admin/reload: swap to the current champion without failing an in-flight request."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from starlette.concurrency import run_in_threadpool

from serving.deps import NO_MODEL, AdminKey, StateDep
from serving.featureset import FeatureSetMismatchError
from serving.schemas import ERROR_RESPONSES, ReloadResponse
from serving.state import served_problem

router = APIRouter(responses=ERROR_RESPONSES, prefix="/v1/admin", tags=["admin"])


@router.post("/reload", response_model=ReloadResponse)
async def reload_model(state: StateDep, _key: AdminKey) -> ReloadResponse:
    """Load and verify the champion, then swap it in; requests in flight finish on the old one.

    A champion that cannot score the online store's vectors (another feature-set version) never
    replaces one that can (409); swapped in for none or for another that cannot, it answers 503.
    """
    try:
        previous, current = await run_in_threadpool(state.models.reload)
    except FeatureSetMismatchError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the old model stays: {exc}") from exc
    except Exception as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"the champion could not be loaded, the old model stays: {exc}"
        ) from exc
    if current is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NO_MODEL)
    state.metrics.set_model(current.scorer.name, current.scorer.version)
    before = previous.scorer.version if previous else None
    live = await run_in_threadpool(state.online_store.live_generation)
    problem = served_problem(current.scorer, live.feature_set_version if live else None)
    if problem is not None:  # loaded, but it cannot score: say so rather than report success
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, problem)
    return ReloadResponse(
        previous_version=before,
        model_version=current.scorer.version,
        changed=before != current.scorer.version,
    )
