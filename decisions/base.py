"""The decision log's interfaces: what a record is, what readers may ask, what the writer adds.

Two roles, kept apart on purpose. The writer (`DecisionLogWriter`) belongs to the server: it makes
every scored request durable before its response is sent and stores reviews and outcomes. Readers
(`DecisionLogReader`) are what monitoring, audits and the CLI use: queries only, so opening one costs
a connection and nothing else (no writer thread, no write lock). A writer can read too: the server
answers idempotent replays and `GET /v1/decisions/{id}` from the log it writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Self


@dataclass(frozen=True)
class DecisionRecord:
    """One scored request as logged."""

    request_id: str
    application_id: str
    member_id: str
    created_at: datetime
    model_name: str
    model_version: str
    pd: float
    score: float
    grade: str
    decision: str
    application: dict[str, Any]
    # Numbers (None when missing); a table-trained model's categorical column as its level (text).
    features: dict[str, float | str | None]
    reasons: list[dict[str, Any]]
    response: dict[str, Any]
    latency_ms: float
    idempotency_key: str | None = None
    body_sha256: str | None = None
    # The response exactly as sent, when the caller has already encoded it (saves encoding it twice).
    response_json: str | None = None
    # Who asked: the calling API key's name (never the key). Idempotency keys are unique per caller.
    caller: str = ""
    # What identifies the served model: the SHA-256 of its artifact manifest (set by the server).
    model_digest: str | None = None
    # A subsidy to reserve in the same transaction as this row, and the profile reads to log with it.
    subsidy: SubsidyClaim | None = None
    # The offer made with the decision (None: no offer) and the pricing policy that priced it.
    offer: dict[str, Any] | None = None
    pricing_policy_version: str | None = None
    pricing_policy_digest: str | None = None

    def row(self) -> tuple[object, ...]:
        """The `decisions` row (in `ROW_COLUMNS` order): JSON columns and the inputs hash computed here,
        in the caller's thread, not the writer's."""
        return (
            self.request_id,
            self.application_id,
            self.member_id,
            self.created_at.isoformat(),
            self.model_name,
            self.model_version,
            self.pd,
            self.score,
            self.grade,
            self.decision,
            dumps(self.application),
            dumps(self.features),
            dumps(self.reasons),
            self.response_json if self.response_json is not None else dumps(self.response),
            self.latency_ms,
            self.idempotency_key,
            self.body_sha256,
            self.caller,
            self.model_digest,
            inputs_hash(self.features),
            None if self.offer is None else dumps(self.offer),
            self.pricing_policy_version,
            self.pricing_policy_digest,
        )


# -- interest-subsidy programmes -------------------------------------------------------------------


@dataclass(frozen=True)
class ReservationRequest:
    """One programme's subsidy an approved application may take, if its county's budget for the period,
    the period's loss ceiling and the member's one subsidy per period allow. Money in whole fen."""

    programme_id: str
    programme_version: int
    period: str
    county_id: str
    member_id: str
    subsidy_fen: int
    expected_loss_fen: int
    expires_at: datetime


Refusal = Literal["budget_exhausted", "loss_ceiling_reached", "already_subsidised"]


@dataclass(frozen=True)
class ReservationOutcome:
    """What the writer decided inside the decision's transaction: the reservation made (or none), and
    why each candidate tried before it was refused."""

    granted: ReservationRequest | None
    refused: tuple[tuple[str, Refusal], ...] = ()


@dataclass(frozen=True)
class ProfileUse:
    """A protected member-profile field read by a programme's eligibility rule for one decision
    (targeting, never scoring): logged in the decision's transaction for auditors."""

    programme_id: str
    programme_version: int
    rule: str
    field: str


@dataclass(frozen=True)
class BudgetLine:
    """A county's budget for one period of a programme (the writer's running gate), in fen."""

    programme_id: str
    period: str
    county_id: str
    budget_fen: int


@dataclass(frozen=True)
class LossCeilingLine:
    """A programme period's ceiling on the expected loss of its subsidised loans, in fen."""

    programme_id: str
    period: str
    ceiling_fen: int


@dataclass
class SubsidyClaim:
    """A decision's subsidy, settled by the writer in the transaction that stores the decision row.

    The writer tries `candidates` in order and reserves the first that fits (none may fit), then calls
    `respond` with the outcome for the response JSON to store and send; it sets `outcome` and
    `response_json` before the decision's future resolves. A row that turns out to be an idempotent
    duplicate reserves nothing. `profile_uses` are logged with the row whether or not a candidate fits.
    """

    candidates: tuple[ReservationRequest, ...]
    respond: Callable[[ReservationOutcome], str]
    profile_uses: tuple[ProfileUse, ...] = ()
    outcome: ReservationOutcome | None = field(default=None, init=False)
    response_json: str | None = field(default=None, init=False)


ReservationAction = Literal["accept", "decline"]


class ReservationStateError(ValueError):
    """A reservation that cannot take the action asked (e.g. declining one that expired)."""


class DecisionLogUnavailableError(ConnectionError):
    """The configured decision log cannot be reached (a database server down or refusing): the
    message is one line naming the backend URL with its password redacted."""


# The columns `DecisionRecord.row` fills, in its order.
ROW_COLUMNS: tuple[str, ...] = (
    "request_id",
    "application_id",
    "member_id",
    "created_at",
    "model_name",
    "model_version",
    "pd",
    "score",
    "grade",
    "decision",
    "application",
    "features",
    "reasons",
    "response",
    "latency_ms",
    "idempotency_key",
    "body_sha256",
    "caller",
    "model_digest",
    "inputs_hash",
    "offer",
    "pricing_policy_version",
    "pricing_policy_digest",
)

# The columns of `DecisionLogReader.audit_rows` (and of `coopscore decisions export`), in order.
AUDIT_COLUMNS: tuple[str, ...] = (
    "request_id",
    "created_at",
    "caller",
    "model_name",
    "model_version",
    "model_digest",
    "feature_set_version",
    "inputs_hash",
    "decision",
    "pd",
    "score",
    "grade",
    "reasons",
    "review_decision",
    "review_action",
    "reviewer",
    "reviewed_by_key",
    "review_reason",
    "reviewed_at",
    "outcome_defaulted",
    "outcome_observed_at",
    "outcome_reported_at",
    "pricing_policy_version",
    "pricing_policy_digest",
    "offer",
)

# The logged offer's terms in `DecisionLogReader.latest_decisions` (what a subsidy is priced on).
OFFER_TERMS: tuple[str, ...] = ("offer_principal_cny", "offer_annual_rate", "offer_term_months")
# The columns of `DecisionLogReader.offer_rows`: what each decision offered, for the offers' audit.
OFFER_ROW_COLUMNS: tuple[str, ...] = (
    "request_id",
    "offer_annual_rate",
    "offer_limit_cny",
    "offer_principal_cny",
    "subsidy_status",
    "subsidy_programme_id",
    "recourse_status",
    "recourse_cost_cny",
    "recourse_months",
)


@dataclass(frozen=True)
class StoredResponse:
    """The response kept for an idempotency key, and the hash of the body it answered."""

    body_sha256: str | None
    response: dict[str, Any]
    # Logged before callers were recorded (caller ''): replayed only for the same body, never a conflict.
    legacy: bool = False


def dumps(value: object) -> str:
    """Compact JSON as stored in the log's JSON columns (non-ASCII kept, unknown types as str)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def inputs_hash(features: dict[str, float | str | None]) -> str:
    """SHA-256 of the canonical JSON of the features the model scored (keys sorted, compact, UTF-8):
    an auditor recomputes it from the row's `features` column to show the inputs were not altered."""
    canonical = json.dumps(features, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# A thin file, for the review queue: fewer than 12 months since the member's first activity record
# (`history_months`) or fewer than 12 activity records in the last year (`event_count_365d`), as the
# logged feature vector says; a vector holding neither (a new member, or a model without them) counts
# as thin too. A score on so little record is the least certain, so a person looks at it.
THIN_FILE_LIMITS: Final[tuple[tuple[str, float], ...]] = (
    ("history_months", 12.0),
    ("event_count_365d", 12.0),
)
# Why a decision is in the review queue (`review_queue` rows' `queue`), in order of urgency.
QUEUE_REASONS: Final = ("requested", "flagged", "declined", "thin")


class DecisionLogReader(ABC):
    """Read-only queries on the decision log."""

    @abstractmethod
    def by_idempotency_key(self, caller: str, key: str) -> StoredResponse | None:
        """The response stored for this caller's idempotency key, if any (else one logged under the
        key before callers were recorded, marked `legacy`)."""

    @abstractmethod
    def get(self, request_id: str) -> dict[str, Any] | None:
        """One decision with its reviews and its review requests (`review_requests`)."""

    @abstractmethod
    def review_queue(self, limit: int = 50) -> list[dict[str, Any]]:
        """Decisions nobody has reviewed yet that a person should see: declines the applicant asked to
        have reviewed, decisions flagged for review, other declines, and thin files (any decision, see
        `THIN_FILE_LIMITS`); requested first, then newest. Rows: request_id, member_id, created_at,
        score, grade, decision, `queue` (the `QUEUE_REASONS` that apply) and `requested_at`."""

    @abstractmethod
    def member_decisions(self, member_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """A member's latest decisions with their latest reviewed decision (the console's member view)."""

    @abstractmethod
    def request_ids(self) -> set[str]:
        """Every logged request id (used by durability checks)."""

    @abstractmethod
    def feature_rows(
        self, since: datetime | None = None, until: datetime | None = None, last: int | None = None
    ) -> list[dict[str, Any]]:
        """Logged feature vectors with request_id, application_id, member_id, pd, score, decision,
        time and the vector's as-of time (`features_as_of`, when the online store computed it),
        newest first, for drift and fairness monitoring."""

    @abstractmethod
    def offer_rows(self) -> list[dict[str, Any]]:
        """Per logged decision (`OFFER_ROW_COLUMNS`): its offer's rate, limit and principal, the
        subsidy status it answered (reserved, not_eligible, budget_exhausted, ...) and programme, and
        the recourse it answered when asked for (status, total cost, months); None where absent."""

    @abstractmethod
    def outcome_rows(self) -> dict[str, int]:
        """application_id -> observed default (0/1) from POST /v1/outcomes, for fairness audits."""

    @abstractmethod
    def versions_by_application(self) -> dict[str, str]:
        """application_id -> model version of its latest logged decision (audits filter by version)."""

    @abstractmethod
    def audit_rows(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """One row per decision logged in [since, until), oldest first, for auditors: request id,
        time, caller, model name/version/digest, feature-set version, inputs hash, decision, PD,
        score, grade, reasons (JSON text), the latest review, the observed outcome, the pricing
        policy's version and digest and the offer (JSON text). Never the features themselves, the
        application, or any key material."""

    @abstractmethod
    def latest_decisions(self, features: tuple[str, ...]) -> list[dict[str, Any]]:
        """Each application's latest decision, for a batch subsidy allocation: request_id,
        application_id, member_id, created_at, applied_at, amount_cny, term_months, pd, `decision`
        (the final word: the latest review's, else the model's), the logged offer's terms
        (`OFFER_TERMS`: offer_principal_cny, offer_annual_rate, offer_term_months; None without an
        offer) and the named `features` as scored."""

    @abstractmethod
    def programme_reservations(self, programme_id: str, now: datetime) -> list[dict[str, Any]]:
        """Every subsidy reservation of the programme: request_id, member_id, county_id, period,
        subsidy_fen, expected_loss_fen, created_at, expires_at and the status as of `now`
        (reserved, accepted, released or expired: a reservation past its expiry is expired even
        before the writer sweeps it)."""

    @abstractmethod
    def programme_profile_uses(self, programme_id: str) -> list[dict[str, Any]]:
        """How often the programme's rules read protected profile fields online: rule, field,
        count, first and last use (aggregates: never a person)."""

    def close(self) -> None:  # noqa: B027 (optional hook; readers without resources need nothing)
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DecisionLogWriter(DecisionLogReader):
    """The server's side of the log: durable appends, reviews and outcomes, plus every query."""

    @abstractmethod
    def submit(self, record: DecisionRecord) -> Future[StoredResponse | None]:
        """Queue a record; the future resolves once it is durable.

        It resolves to None when the row was written, or to the response already stored under the
        same idempotency key (a concurrent duplicate), in which case nothing new was written.
        """

    @abstractmethod
    def submit_many(self, records: list[DecisionRecord]) -> list[Future[StoredResponse | None]]:
        """`submit` for several records, queued together so they share as few commits as possible."""

    async def append(self, record: DecisionRecord) -> StoredResponse | None:
        """Await durability of one record (see `submit`)."""
        return await asyncio.wrap_future(self.submit(record))

    @abstractmethod
    def add_review(
        self,
        request_id: str,
        reviewer: str,
        action: str,
        final_decision: str,
        reason: str,
        *,
        reviewed_by_key: str,
    ) -> dict[str, Any]:
        """Record a human review beside the automated decision (both are kept): `reviewer` as the
        person wrote it, `reviewed_by_key` the name of the API key that sent it."""

    @abstractmethod
    def add_review_request(self, request_id: str, note: str, *, requested_by_key: str) -> dict[str, Any]:
        """Record that the applicant asked for a human review of this decision (PIPL art. 24), with
        their words (`note`) and the name of the API key that recorded it: request_id, note,
        requested_by_key, created_at. The decision is then first in the review queue."""

    @abstractmethod
    def add_outcomes(self, outcomes: list[tuple[str, bool, datetime]]) -> tuple[int, int]:
        """Store observed outcomes; returns (stored, linked to a logged decision)."""

    @abstractmethod
    def register_programme(self, budgets: list[BudgetLine], ceilings: list[LossCeilingLine]) -> None:
        """Set a programme's budget lines and loss ceilings (a new version may change them; what is
        already reserved stays counted)."""

    @abstractmethod
    def settle_reservation(
        self, programme_id: str, request_id: str, action: ReservationAction, reason: str
    ) -> dict[str, Any] | None:
        """The applicant accepted the offer (its subsidy is kept and no longer expires) or declined it
        (its budget is released). Returns the reservation as now stored, or None when there is none.

        Raises:
            ReservationStateError: the reservation is no longer open to that action.
        """

    @abstractmethod
    def close(self) -> None:
        """Flush what is queued, then release threads, locks and connections."""
