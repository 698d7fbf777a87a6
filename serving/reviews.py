"""One path for a human review of a decision (PIPL art. 24), used by the API route and the console."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import HTTPException, status

from serving.state import AppState

Decision = Literal["approve", "review", "decline"]


def review_decision(
    state: AppState,
    request_id: str,
    *,
    reviewer: str,
    action: Literal["confirm", "override"],
    decision: Decision | None,
    reason: str,
    key_name: str,
) -> dict[str, Any]:
    """Confirm or override a logged decision, with a reason, under the reviewing key's name.

    404 when there is no such decision; 422 when an override names no new decision. `confirm` keeps
    the automated decision (a `decision` sent with it is ignored)."""
    found = state.decision_log.get(request_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision {request_id!r}")
    if action == "override" and decision is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            [{"field": "decision", "problem": "an override needs the new decision"}],
        )
    final = decision if action == "override" and decision else found["decision"]
    return state.decision_log.add_review(
        request_id, reviewer, action, final, reason, reviewed_by_key=key_name
    )


def request_review(state: AppState, request_id: str, *, note: str, key_name: str) -> dict[str, Any]:
    """Record the applicant's request for a human review of a decline (404: no such decision; 409: the
    decision is not a decline)."""
    found = state.decision_log.get(request_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision {request_id!r}")
    if found["decision"] != "decline":
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"decision {request_id} is {found['decision']!r}: only a decline is sent for review on request",
        )
    return state.decision_log.add_review_request(request_id, note, requested_by_key=key_name)
