"""POST /v1/outcomes: observed defaults, linked to the decisions they judge."""

from __future__ import annotations

from fastapi import APIRouter

from serving.deps import IngestKey, StateDep
from serving.schemas import ERROR_RESPONSES, OutcomesRequest, OutcomesResponse

router = APIRouter(responses=ERROR_RESPONSES, prefix="/v1/outcomes", tags=["outcomes"])


@router.post("", response_model=OutcomesResponse)
def post_outcomes(body: OutcomesRequest, state: StateDep, _key: IngestKey) -> OutcomesResponse:
    """Store outcomes (one per application; a later report replaces an earlier one)."""
    stored, linked = state.decision_log.add_outcomes(
        [(o.application_id, o.defaulted, o.observed_at) for o in body.outcomes]
    )
    return OutcomesResponse(stored=stored, linked_to_decisions=linked)
