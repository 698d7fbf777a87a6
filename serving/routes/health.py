"""Liveness and readiness: the only routes that need no API key."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.deps import NO_MODEL, StateDep
from serving.schemas import HealthResponse, ReadyResponse
from serving.state import served_problem

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse)
def healthz() -> HealthResponse:
    """The process is up."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
def readyz(state: StateDep) -> ReadyResponse | JSONResponse:
    """Ready when a verified champion is loaded and the online store holds vectors it can score
    (of the feature-set version it was trained on); a table-trained champion needs no vectors. In
    production the body is only `{"ready": true|false}`."""
    current = state.models.current
    live = state.online_store.live_generation()
    if current is not None and current.scorer.table_spec is not None:
        # Trained on a table: it scores the values sent inline and never reads the online store.
        detail = (
            f"serving {current.scorer.name} v{current.scorer.version}, trained on a table: applicants' "
            "values are sent inline in `features` (the online store is not read)"
        )
        if current.signing_note:
            detail = f"{detail}; {current.signing_note}"
        if state.settings.production:
            return JSONResponse({"ready": True})
        return ReadyResponse(
            ready=True, model_version=current.scorer.version, online_store=live is not None, detail=detail
        )
    problem = (
        served_problem(current.scorer, live.feature_set_version)
        if current is not None and live is not None
        else None
    )
    ready = current is not None and live is not None and problem is None
    if current is None:
        detail = state.models.last_error or NO_MODEL
    elif live is None:
        detail = "the online store is empty: run `coopscore features materialize`"
    elif problem is not None:
        detail = problem
    else:
        detail = (
            f"serving {current.scorer.name} v{current.scorer.version}; {live.member_count} members online"
        )
    if problem is None and current is not None and current.signing_note:  # dev without a key
        detail = f"{detail}; {current.signing_note}"
    if state.settings.production:
        # Unauthenticated: in production it says only ready or not (no version, counts or errors).
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)
    body = ReadyResponse(
        ready=ready,
        model_version=current.scorer.version if current else None,
        online_store=live is not None,
        detail=detail,
    )
    return body if ready else JSONResponse(body.model_dump(mode="json"), status_code=503)
