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
