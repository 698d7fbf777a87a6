"""Request and response models of the score API: inputs forbid unknown fields, outputs are explicit."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from features.contracts import ID_PATTERN as _ID
from models.offers import NoOffer, Offer
from models.reasons import Reason
from models.recourse import RecoursePlan

# Mirrors features.contracts.LOAN_PURPOSES (a test keeps them equal).
Purpose = Literal["farm_inputs", "livestock", "equipment", "processing", "trade", "other"]


MAX_INLINE_FEATURES = 500
# One inline value: a number for a numeric column, text for a categorical one, null when unknown.
ColumnName = Annotated[str, Field(min_length=1, max_length=200)]
InlineValue = float | int | Annotated[str, Field(max_length=500)] | bool | None


def _iso_8601_only(value: object) -> object:
    """A date-time comes as an ISO 8601 string (JSON has no date-time type): never a number or a bool,
    which pydantic would otherwise read as Unix seconds."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or _ISO_8601.fullmatch(value) is None:
        raise PydanticCustomError(
            "datetime_iso_8601",
            "Input should be an ISO 8601 date-time string, e.g. 2026-03-01T09:30:00+08:00",
        )
    return value


_ISO_8601 = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?)?"
)
# Parsed leniently (`strict=False`) once the validator has checked it is an ISO 8601 string.
IsoDatetime = Annotated[datetime, Field(strict=False), BeforeValidator(_iso_8601_only)]


class _In(BaseModel):
    """Request bodies: unknown fields refused, and numbers, booleans and date-times taken only as
    themselves (no true as 1, no "5000" as 5000, no 0 as 1970-01-01; an integer is a valid float)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScoreRequest(_In):
    """One applicant: who they are and what they ask for."""

    member_id: str = Field(pattern=_ID, description="cooperative member id")
    amount_cny: float = Field(gt=0, le=5_000_000, description="amount requested, yuan")
    term_months: int = Field(ge=1, le=120, description="loan term in months")
    purpose: Purpose
    applied_at: IsoDatetime | None = Field(default=None, description="defaults to now (UTC); ISO 8601")
    application_id: str | None = Field(default=None, pattern=_ID, description="generated when absent")
    explain: Literal["top", "all"] = Field(
        default="top", description='"all" adds every reason group\'s points (they sum to score)'
    )
    allow_new_member: bool = Field(
        default=False, description="score an unknown member on peer signals alone (sent to review)"
    )
    features: dict[ColumnName, InlineValue] | None = Field(
        default=None,
        max_length=MAX_INLINE_FEATURES,
        description="a table-trained model only (and required by one): the applicant's value for each "
        "column the model was trained on, by the table's own column names (null where unknown, if the "
        "column had missing values in training); checked against the model's stored spec, and the "
        "online store is not read. An event-log model refuses it (422)",
        examples=[
            {
                "age": 41,
                "monthly_income": 2300,
                "land_mu": 6.5,
                "late_payments": 1,
                "loan_amount": 12000,
                "crop": "tea",
            }
        ],
    )
    allow_out_of_range: bool = Field(
        default=False,
        description="with `features`: score numbers outside the range seen in training instead of "
        "refusing them (422); the decision is then review, with a note naming them",
    )
    recourse: bool = Field(default=False, description="add `recourse`: what would change the decision")
    recourse_non_causal: Literal["drop", "last"] = Field(
        default="drop",
        description="drop: only actions that change the risk; last: record-only actions too when no "
        "causal plan reaches approval",
    )


class BatchScoreRequest(_In):
    """Several applicants scored in one call (capped by settings)."""

    applications: list[ScoreRequest] = Field(min_length=1)


class LocalText(_Out):
    """A people-facing text in both languages."""

    zh: str
    en: str


class SubsidyOffer(_Out):
    """An interest subsidy for this application: reserved from a county's budget in the same
    transaction as the decision, or why not. Never names a protected attribute."""

    status: Literal[
        "reserved",
        "not_approved",
        "not_eligible",
        "budget_exhausted",
        "loss_ceiling_reached",
        "already_subsidised",
    ]
    programme_id: str | None
    programme_version: int | None
    programme_name: LocalText | None
    period: str | None
    share: float | None = Field(description="share of the loan's total interest the programme pays")
    annual_rate: float | None = Field(description="the annual rate the interest is computed at")
    rate_source: Literal["offer", "programme_reference_rate"] | None = Field(
        description="where the rate comes from: the loan's offer (its principal, rate and term), or the "
        "programme's reference rate on the amount asked (no offer, or subsidy.interest_at reference_rate)"
    )
    interest_cny: float | None = Field(description="total interest of equal monthly instalments, yuan")
    amount_cny: float | None = Field(description="the subsidy reserved, yuan")
    expires_at: datetime | None = Field(description="the reservation is released if not accepted by then")
    message: LocalText


class ScoreResponse(_Out):
    """The decision for one application, with its reasons."""

    request_id: str
    application_id: str
    member_id: str
    pd: float = Field(description="calibrated probability of default within 12 months")
    score: float
    grade: Literal["A", "B", "C", "D", "E"]
    decision: Literal["approve", "review", "decline"]
    decision_notes: list[str] = Field(description="why the policy chose this decision")
    reasons: list[Reason] = Field(description="top reasons that lowered the score")
    base_points: float
    group_points: dict[str, float] | None = Field(
        default=None, description='with explain="all": points of every reason group'
    )
    model_name: str
    model_version: str
    features_as_of: datetime | None
    feature_set_version: str | None
    scored_at: datetime
    recourse: RecoursePlan | None = Field(default=None, description='with "recourse": true')
    subsidy: SubsidyOffer | None = Field(
        default=None, description="the interest subsidy (贴息), when the server runs subsidy programmes"
    )
    offer: Offer | None = Field(
        default=None, description="approve or review: limit, rate and its parts, payment (zh/en names)"
    )
    no_offer: NoOffer | None = Field(default=None, description="why there is no offer (e.g. a decline)")


class BatchScoreResponse(_Out):
    """Responses in request order."""

    results: list[ScoreResponse]


class MemberFeaturesResponse(_Out):
    """A member's online feature vector."""

    member_id: str
    as_of: datetime
    feature_set_version: str
    features: dict[str, float | None]


class EventsRequest(_In):
    """Raw events as a cooperative app would push them (the wide event layout, values as sent)."""

    events: list[dict[str, Any]] = Field(min_length=1)


class RowError(_Out):
    """Why one submitted row was set aside."""

    index: int
    event_id: str | None
    reasons: list[str]


class EventsResponse(_Out):
    """What ingestion did with the pushed rows."""

    batch_id: str
    received: int
    accepted: int
    duplicates: int
    quarantined: int
    errors: list[RowError]


class OutcomeIn(_In):
    """An observed loan outcome for an application."""

    application_id: str = Field(pattern=_ID)
    defaulted: bool = Field(description="90+ days past due within 12 months")
    observed_at: IsoDatetime = Field(description="ISO 8601")


class OutcomesRequest(_In):
    outcomes: list[OutcomeIn] = Field(min_length=1, max_length=10_000)


class OutcomesResponse(_Out):
    stored: int
    linked_to_decisions: int


class ReviewRequest(_In):
    """A human reviewer confirms or overrides an automated decision (PIPL art. 24)."""

    reviewer: str = Field(min_length=1, max_length=128)
    action: Literal["confirm", "override"]
    decision: Literal["approve", "review", "decline"] | None = Field(
        default=None, description="the new decision; required to override"
    )
    reason: str = Field(min_length=3, max_length=2_000)


class ReviewRequestIn(_In):
    """The applicant asks for a human review of a decision (PIPL art. 24), as an officer records it."""

    note: str = Field(
        min_length=3, max_length=2_000, description="what the applicant said, in their words (or a summary)"
    )


class ReviewRequestOut(_Out):
    request_id: str
    note: str
    requested_by_key: str = Field(description="the name of the API key that recorded it (never the key)")
    created_at: datetime


class ReviewResponse(_Out):
    review_id: int
    request_id: str
    reviewer: str = Field(description="the reviewer's name, as sent")
    reviewed_by_key: str = Field(description="the name of the API key that sent the review (never the key)")
    action: str
    final_decision: str
    reason: str
    created_at: datetime


class ModelResponse(_Out):
    """The champion in service."""

    model_name: str
    model_version: str
    loaded_at: datetime
    metadata: dict[str, Any]
    model_card: str | None
    # Signature verified at load (False: unsigned, allowed only in development; see signing_note).
    signed: bool = False
    signature_key_id: str | None = None
    signing_note: str | None = None
    model_digest: str | None = None


class ReloadResponse(_Out):
    previous_version: str | None
    model_version: str
    changed: bool


class HealthResponse(_Out):
    status: Literal["ok"]


class ReadyResponse(_Out):
    ready: bool
    model_version: str | None
    online_store: bool
    detail: str


class FairnessAuditResponse(_Out):
    """The latest stored fairness audit: headline fields, then the audit exactly as stored."""

    created_at: datetime | None = Field(description="when the audit ran")
    passed: bool | None = Field(description="true when no judged group breaks a threshold")
    source: str | None = Field(description="what was audited (decision log, OOT set, a file)")
    model_name: str | None
    model_version: str | None
    flags: list[dict[str, Any]] = Field(description="groups that break a threshold, with the metric")
    audit: dict[str, Any] = Field(
        description="the whole audit: thresholds, metrics and 95% intervals by attribute and group, "
        "groups too small to judge, explanations of flagged gaps"
    )


class CountyUse(_Out):
    """One county's budget in a period and what is committed from it."""

    county_id: str
    budget_cny: float
    used_cny: float = Field(description="reserved and accepted subsidies")
    left_cny: float
    households: int


class GroupReach(_Out):
    """Households subsidised in one group (an aggregate: never a person)."""

    attribute: Literal["gender", "age_band", "returning_youth", "left_behind_woman"]
    group: str
    households: int
    share: float = Field(description="of the households subsidised in the period")


class PeriodUse(_Out):
    """A programme period: budget used and left, expected loss against its ceiling, reach."""

    period: str
    start: date
    end: date
    budget_cny: float
    used_cny: float = Field(description="reserved + accepted")
    left_cny: float
    reserved_cny: float = Field(description="offers not yet accepted (released if declined or expired)")
    accepted_cny: float
    expected_loss_cny: float
    loss_ceiling_cny: float
    households: int
    released: int = Field(
        description="reservations given back: offer declined, or decision changed on review"
    )
    expired: int
    counties: list[CountyUse]
    groups: list[GroupReach]


class ProfileUseCount(_Out):
    """How often a rule read a protected profile field online (targeting, logged per decision)."""

    rule: str
    field: str
    count: int
    first_used_at: datetime | None
    last_used_at: datetime | None


class ProgrammeStatusResponse(_Out):
    """A subsidy programme's running budget, as the decision log holds it now."""

    programme_id: str
    programme_version: int
    name: LocalText
    sha256: str = Field(description="SHA-256 of the programme file the server runs")
    as_of: datetime
    share: float
    reference_annual_rate: float
    reservation_days: int
    periods: list[PeriodUse]
    profile_uses: list[ProfileUseCount]


class ReservationAction(_In):
    """The applicant's answer to an offer with a subsidy."""

    action: Literal["accept", "decline"]
    reason: str | None = Field(default=None, min_length=1, max_length=500)


class ReservationResponse(_Out):
    """One subsidy reservation as stored (no protected attribute)."""

    request_id: str
    application_id: str
    member_id: str
    programme_id: str
    programme_version: int
    period: str
    amount_cny: float
    status: Literal["reserved", "accepted", "released", "expired"]
    created_at: datetime
    expires_at: datetime
    settled_at: datetime | None
    settled_reason: str | None


class FieldProblem(_Out):
    """One invalid input."""

    field: str
    problem: str
    type: str | None = None


class ErrorResponse(_Out):
    """Every error: a sentence, or the fields and their problems."""

    detail: str | list[FieldProblem]


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "the body could not be decoded"),
        (401, "missing or invalid API key"),
        (403, "the key lacks the scope"),
        (404, "not found: an unknown member or decision, or nothing stored yet"),
        (409, "conflict: e.g. a reload that would swap in a champion that cannot score"),
        (413, "request body too large"),
        (422, "invalid input: the fields and their problems"),
        (429, "too many requests: the caller's rate limit is reached"),
        (503, "no model loaded, or it cannot score the online store's vectors"),
    )
}
