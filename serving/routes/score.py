"""POST /v1/score and /v1/score/batch: PD, score, grade, decision and reasons, logged before replying."""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from features.online.base import MemberVector
from serving.decision_log import DecisionRecord
from serving.deps import StateDep, require_scope, served_model
from serving.schemas import (
    ERROR_RESPONSES,
    BatchScoreRequest,
    BatchScoreResponse,
    ReasonOut,
    ScoreRequest,
    ScoreResponse,
)
from serving.scoring import Scored, Scorer, applicant_vector, json_safe
from serving.state import AppState, ServedModel

# Auth runs before anything else, so an unauthenticated caller learns nothing about service state.
router = APIRouter(
    responses=ERROR_RESPONSES,
    prefix="/v1/score",
    tags=["score"],
    dependencies=[Depends(require_scope("score"))],
)

NEW_MEMBER_NOTE = "new member: no cooperative history on file, scored on peer signals alone"
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=128, pattern=r"^[\x21-\x7e]+$")
]


def _body_sha(body: ScoreRequest) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _member_vector(state: AppState, body: ScoreRequest) -> MemberVector | None:
    [vector] = state.online_store.online_read([body.member_id])
    if vector is None and not body.allow_new_member:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"member {body.member_id!r} has no feature vector in the online store; check the id, "
            "or send allow_new_member=true to score on peer signals alone (the decision is then review)",
        )
    return vector


def _score(
    scorer: Scorer, vector: MemberVector | None, body: ScoreRequest
) -> tuple[Scored, dict[str, float]]:
    member = dict(vector.features) if vector is not None else dict.fromkeys(scorer.feature_names, math.nan)
    features = applicant_vector(member, amount_cny=body.amount_cny, term_months=body.term_months)
    scored = scorer.score_one(features, force_review=None if vector is not None else NEW_MEMBER_NOTE)
    return scored, features


def _response(
    body: ScoreRequest, scored: Scored, served: ServedModel, vector: MemberVector | None, application_id: str
) -> ScoreResponse:
    return ScoreResponse(
        request_id=uuid.uuid4().hex,
        application_id=application_id,
        member_id=body.member_id,
        pd=scored.pd,
        score=scored.score,
        grade=scored.grade,  # type: ignore[arg-type]
        decision=scored.decision,  # type: ignore[arg-type]
        decision_notes=scored.decision_notes,
        reasons=[
            ReasonOut(code=r.code, points=r.points, text_zh=r.text_zh, text_en=r.text_en, features=r.features)
            for r in scored.reasons
        ],
        base_points=scored.base_points,
        group_points=scored.group_points if body.explain == "all" else None,
        model_name=served.scorer.name,
        model_version=served.scorer.version,
        features_as_of=vector.as_of if vector is not None else None,
        feature_set_version=vector.feature_set_version if vector is not None else None,
        scored_at=datetime.now(UTC),
    )


async def score_application(
    state: AppState, served: ServedModel, body: ScoreRequest, idempotency_key: str | None
) -> ScoreResponse | JSONResponse:
    """Score one application and make its decision durable; replays a stored idempotent answer."""
    started = time.perf_counter()
    # The body hash only matters for an idempotent request: skip it on the plain hot path.
    body_sha = _body_sha(body) if idempotency_key is not None else None
    if idempotency_key is not None:
        stored = state.decision_log.by_idempotency_key(idempotency_key)
        if stored is not None:
            return _replay(stored.body_sha256, body_sha, stored.response)
    vector = _member_vector(state, body)
    # Scoring is CPU-bound: keep it off the event loop.
    scored, features = await run_in_threadpool(_score, served.scorer, vector, body)
    application_id = body.application_id or f"app-{uuid.uuid4().hex[:16]}"
    response = _response(body, scored, served, vector, application_id)
    payload = response.model_dump(mode="json")
    application = body.model_dump(mode="json", exclude={"explain", "allow_new_member"})
    application["applied_at"] = application["applied_at"] or payload["scored_at"]
    application["application_id"] = application_id
    record = DecisionRecord(
        request_id=response.request_id,
        application_id=application_id,
        member_id=body.member_id,
        created_at=response.scored_at,
        model_name=response.model_name,
        model_version=response.model_version,
        pd=response.pd,
        score=response.score,
        grade=response.grade,
        decision=response.decision,
        application=application,
        features=json_safe(features),
        reasons=[r.model_dump() for r in response.reasons],
        response=payload,
        latency_ms=(time.perf_counter() - started) * 1000,
        idempotency_key=idempotency_key,
        body_sha256=body_sha,
    )
    duplicate = await state.decision_log.append(record)
    if duplicate is not None:  # a concurrent request with the same key was logged first
        return _replay(duplicate.body_sha256, body_sha, duplicate.response)
    state.metrics.decisions.labels(decision=response.decision).inc()
    state.metrics.scores.observe(response.score)
    return response


def _replay(stored_sha: str | None, body_sha: str | None, response: dict[str, Any]) -> JSONResponse:
    if stored_sha != body_sha:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            [{"field": "Idempotency-Key", "problem": "this key was already used with a different body"}],
        )
    return JSONResponse(response, headers={"Idempotent-Replayed": "true"})


@router.post("", response_model=ScoreResponse, summary="Score one applicant")
async def score(
    body: ScoreRequest,
    state: StateDep,
    idempotency_key: IdempotencyKey = None,
) -> ScoreResponse | JSONResponse:
    """PD, score, grade, decision and the reasons that lowered the score (zh/en)."""
    # Looked up here, not as a dependency, so a malformed request gets its 422 even without a model.
    return await score_application(state, served_model(state), body, idempotency_key)


@router.post("/batch", response_model=BatchScoreResponse, summary="Score several applicants")
async def score_batch(body: BatchScoreRequest, state: StateDep) -> BatchScoreResponse:
    """Each item is scored and logged as one decision; unknown members fail the whole batch (404)."""
    cap = state.settings.max_batch_items
    if len(body.applications) > cap:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            [{"field": "applications", "problem": f"at most {cap} applications per batch"}],
        )
    served = served_model(state)
    results = []
    for item in body.applications:
        result = await score_application(state, served, item, None)
        assert isinstance(result, ScoreResponse)
        results.append(result)
    return BatchScoreResponse(results=results)
