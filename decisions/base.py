"""The decision log's interfaces: what a record is, what readers may ask, what the writer adds.

Two roles, kept apart on purpose. The writer (`DecisionLogWriter`) belongs to the server: it makes
every scored request durable before its response is sent and stores reviews and outcomes. Readers
(`DecisionLogReader`) are what monitoring, audits and the CLI use: queries only, so opening one costs
a connection and nothing else (no writer thread, no write lock). A writer can read too: the server
answers idempotent replays and `GET /v1/decisions/{id}` from the log it writes.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self


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

    def row(self) -> tuple[object, ...]:
        """The `decisions` row: JSON columns encoded here, in the caller's thread, not the writer's."""
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
        )


@dataclass(frozen=True)
class StoredResponse:
    """The response kept for an idempotency key, and the hash of the body it answered."""

    body_sha256: str
    response: dict[str, Any]


def dumps(value: object) -> str:
    """Compact JSON as stored in the log's JSON columns (non-ASCII kept, unknown types as str)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class DecisionLogReader(ABC):
    """Read-only queries on the decision log."""

    @abstractmethod
    def by_idempotency_key(self, key: str) -> StoredResponse | None:
        """The stored response for an idempotency key, if any."""

    @abstractmethod
    def get(self, request_id: str) -> dict[str, Any] | None:
        """One decision with its reviews."""

    @abstractmethod
    def request_ids(self) -> set[str]:
        """Every logged request id (used by durability checks)."""

    @abstractmethod
    def feature_rows(
        self, since: datetime | None = None, until: datetime | None = None, last: int | None = None
    ) -> list[dict[str, Any]]:
        """Logged feature vectors with pd, score, time and the vector's as-of time (`features_as_of`,
        when the online store computed it), newest first, for drift and fairness monitoring."""

    @abstractmethod
    def outcome_rows(self) -> dict[str, int]:
        """application_id -> observed default (0/1) from POST /v1/outcomes, for fairness audits."""

    @abstractmethod
    def versions_by_application(self) -> dict[str, str]:
        """application_id -> model version of its latest logged decision (audits filter by version)."""

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
        self, request_id: str, reviewer: str, action: str, final_decision: str, reason: str
    ) -> dict[str, Any]:
        """Record a human review beside the automated decision (both are kept)."""

    @abstractmethod
    def add_outcomes(self, outcomes: list[tuple[str, bool, datetime]]) -> tuple[int, int]:
        """Store observed outcomes; returns (stored, linked to a logged decision)."""

    @abstractmethod
    def close(self) -> None:
        """Flush what is queued, then release threads, locks and connections."""
