"""Interest-subsidy programmes: the running budget of one, and the applicant's answer to an offer.

`GET /v1/programmes/{id}` gives budget used and left by period and county, expected loss against the
ceiling, reach by group (aggregates only) and how often the rules read protected profile fields.
`POST /v1/programmes/{id}/reservations/{request_id}` records that the applicant accepted the offer
(its subsidy is kept) or declined it (its budget goes back at once).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from starlette.concurrency import run_in_threadpool

from decisions.base import ReservationStateError
from models.programmes.programme import LoadedProgramme
from serving.deps import ReadKey, ScoreKey, StateDep
from serving.programmes import ProgrammeDesk, programme_status
from serving.schemas import ERROR_RESPONSES, ProgrammeStatusResponse, ReservationAction, ReservationResponse
from serving.state import AppState

router = APIRouter(responses=ERROR_RESPONSES, prefix="/v1/programmes", tags=["programmes"])
ProgrammeId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
RequestId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


def _programme(state: AppState, programme_id: str) -> tuple[ProgrammeDesk, LoadedProgramme]:
    desk = state.programmes
    loaded = desk.get(programme_id) if desk is not None else None
    if desk is None or loaded is None:
        running = ", ".join(p.programme.id for p in desk.programmes) if desk else "none"
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no programme {programme_id!r} on this server (running: {running})"
        )
    return desk, loaded


@router.get("/{programme_id}", response_model=ProgrammeStatusResponse)
async def get_programme(programme_id: ProgrammeId, state: StateDep, _key: ReadKey) -> ProgrammeStatusResponse:
    """Budget used and left, expected loss, reach by group and county, and protected reads counted."""
    desk, loaded = _programme(state, programme_id)
    now = datetime.now(UTC)

    def read() -> ProgrammeStatusResponse:
        rows = state.decision_log.programme_reservations(programme_id, now)
        uses = state.decision_log.programme_profile_uses(programme_id)
        return ProgrammeStatusResponse.model_validate(programme_status(desk, loaded, rows, uses, now))

    return await run_in_threadpool(read)


@router.post("/{programme_id}/reservations/{request_id}", response_model=ReservationResponse)
async def settle_reservation(
    programme_id: ProgrammeId, request_id: RequestId, body: ReservationAction, state: StateDep, _key: ScoreKey
) -> ReservationResponse:
    """The applicant accepted the offer (the subsidy is kept and no longer expires) or declined it
    (the budget is released at once). Repeating the same answer changes nothing; 409 when the
    reservation can no longer take it (e.g. accepting one that expired)."""
    _programme(state, programme_id)
    reason = body.reason or (
        "offer accepted" if body.action == "accept" else "offer declined by the applicant"
    )
    try:
        found = await run_in_threadpool(
            state.decision_log.settle_reservation, programme_id, request_id, body.action, reason
        )
    except ReservationStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    if found is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no reservation {request_id!r} in programme {programme_id!r}"
        )
    hidden = ("subsidy_fen", "expected_loss_fen", "county_id")  # the county is a protected attribute
    kept = {k: v for k, v in found.items() if k not in hidden}
    return ReservationResponse(**kept, amount_cny=found["subsidy_fen"] / 100.0)
