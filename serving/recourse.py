"""Recourse on request in `/v1/score`: the response object, and how it is filled for one applicant.

`ScoreRequest.recourse = true` adds `recourse` to the answer: for a review or decline, the cheapest
actions that reach approval (`models.recourse`); for an approval, `not_needed`; `unavailable` when the
model or the applicant gives nothing to work from (a table-trained model, a member with no record).
The plan is computed in the request's worker thread and logged with the decision.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.recourse import NonCausal, RecoursePlan, RecourseUnavailableError
from serving.scoring import FeatureValues, Scorer


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecourseMove(_Out):
    """One model input an action changes: before and right after."""

    name: str
    description_zh: str
    description_en: str
    before: float | None
    after: float | None


class RecourseAction(_Out):
    """One step of the plan, with where the score stands once it (and every earlier step) is done."""

    action: str
    label_zh: str
    label_en: str
    units: float = Field(description="how much: CNY saved, trainings, practices, or months")
    unit_zh: str
    unit_en: str
    cost_cny: float = Field(description="declared cost: money spent or set aside, or working days valued")
    months: int
    causal: bool = Field(description="false: it changes the record, not the risk (offered only last)")
    instruction_zh: str
    instruction_en: str
    mechanism_zh: str
    mechanism_en: str
    moves: list[RecourseMove] = Field(description="the target values: each model input it moves")
    score_after: float
    pd_after: float
    decision_after: str


class Recourse(_Out):
    """What would change the decision (zh/en), computed exactly from the model."""

    status: Literal["not_needed", "found", "out_of_reach", "unavailable"]
    non_causal: Literal["drop", "last", "equal"]
    score: float | None = None
    pd: float | None = None
    decision: str | None = None
    target_score: float | None = Field(default=None, description="the approve cutoff, in points")
    target_pd: float | None = None
    actions: list[RecourseAction] = Field(default_factory=list)
    reached_score: float | None = None
    reached_pd: float | None = None
    reached_decision: str | None = None
    total_cost_cny: float = 0.0
    months: int = 0
    summary_zh: str = ""
    summary_en: str = ""
    notes: list[str] = Field(default_factory=list)
    lattice: int = 0
    evaluated: int = 0
    unavailable_actions: dict[str, str] = Field(default_factory=dict)


def recourse_payload(
    scorer: Scorer,
    features: FeatureValues,
    *,
    non_causal: Literal["drop", "last"],
    on_record: bool,
) -> dict[str, Any]:
    """The `recourse` object of one response (exactly `Recourse`'s JSON)."""
    if not on_record:
        return _unavailable(non_causal, "no cooperative record on file for this member: nothing to act on")
    try:
        plan: RecoursePlan = scorer.recourse_plan(features, non_causal=non_causal)
    except RecourseUnavailableError as error:
        return _unavailable(non_causal, str(error))
    return plan.to_dict()


def _unavailable(non_causal: NonCausal, why: str) -> dict[str, Any]:
    return Recourse(status="unavailable", non_causal=non_causal, notes=[why]).model_dump(mode="json")
