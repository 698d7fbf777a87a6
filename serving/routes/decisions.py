"""Decisions: read one, and let a human confirm or override it (both are kept)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status

from serving import reviews
from serving.deps import ReadKey, ReviewKey, ScoreKey, StateDep
from serving.schemas import ERROR_RESPONSES, ReviewRequest, ReviewRequestIn, ReviewRequestOut, ReviewResponse

router = APIRouter(responses=ERROR_RESPONSES, prefix="/v1/decisions", tags=["decisions"])
RequestId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


@router.get("/{request_id}", response_model=dict[str, Any])
def get_decision(request_id: RequestId, state: StateDep, _key: ReadKey) -> dict[str, Any]:
    """The logged response and every human review of it (the reviewer as written and the name of
    the API key that sent the review, `reviewed_by_key`)."""
    found = state.decision_log.get(request_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision {request_id!r}")
    return found


@router.post("/{request_id}/review", response_model=ReviewResponse, status_code=201)
def review(request_id: RequestId, body: ReviewRequest, state: StateDep, key: ReviewKey) -> ReviewResponse:
    """A reviewer confirms or overrides an automated decision, with a reason (PIPL art. 24).

    `confirm` keeps the automated decision (a `decision` sent with it is ignored); `override` replaces
    it with `decision`, which it requires (422 without). Every review is kept in order beside the
    automated decision (GET /v1/decisions/{request_id}), with the name of the key that sent it (scope
    `review`; `admin` implies it) beside the reviewer's own name.
    """
    stored = reviews.review_decision(
        state,
        request_id,
        reviewer=body.reviewer,
        action=body.action,
        decision=body.decision,
        reason=body.reason,
        key_name=key.name,
    )
    return ReviewResponse(**stored)  # the person and the key apart, as the log keeps them


@router.post("/{request_id}/review-request", response_model=ReviewRequestOut, status_code=201)
def request_review(
    request_id: RequestId, body: ReviewRequestIn, state: StateDep, key: ScoreKey
) -> ReviewRequestOut:
    """The declined applicant asks for a human review (PIPL art. 24); the officer who scored them records
    it (scope `score`). The decline goes first in the review queue. 404 without such a decision; 409
    when it is not a decline (an approval needs no review; a `review` decision is queued already)."""
    stored = reviews.request_review(state, request_id, note=body.note, key_name=key.name)
    return ReviewRequestOut(**stored)
