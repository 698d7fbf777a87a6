"""Recourse on request in `/v1/score`: how the `recourse` object is filled for one applicant.

`ScoreRequest.recourse = true` adds `recourse` (the model's own `models.recourse.RecoursePlan`) to the
answer: for a review or decline, the cheapest actions that reach approval; for an approval,
`not_needed`; `unavailable` when the model or the applicant gives nothing to work from (a
table-trained model, a member with no record). The plan is computed in the request's worker thread
and logged with the decision.
"""

from __future__ import annotations

from typing import Any

from models.recourse import NonCausal, RecoursePlan, RecourseUnavailableError
from serving.scoring import FeatureValues, Scorer


def recourse_payload(
    scorer: Scorer,
    features: FeatureValues,
    *,
    non_causal: NonCausal,
    on_record: bool,
) -> dict[str, Any]:
    """The `recourse` object of one response (exactly `RecoursePlan`'s JSON)."""
    if not on_record:
        return _unavailable(non_causal, "no cooperative record on file for this member: nothing to act on")
    try:
        plan = scorer.recourse_plan(features, non_causal=non_causal)
    except RecourseUnavailableError as error:
        return _unavailable(non_causal, str(error))
    return plan.to_dict()


def _unavailable(non_causal: NonCausal, why: str) -> dict[str, Any]:
    return RecoursePlan(status="unavailable", non_causal=non_causal, notes=(why,)).to_dict()
