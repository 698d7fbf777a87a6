"""POST /v1/score and /v1/score/batch: PD, score, grade, decision and reasons, logged before replying.

The hot path makes one thread hop: the worker thread reads the member's vector, scores, builds and
encodes the response once, and queues the decision-log row; the event loop then only awaits the group
commit that makes that row durable and sends the bytes already encoded. The response is built as a
plain dict in exactly the shape of `ScoreResponse` (which stays the documented `response_model`; a test
checks the two agree), so it is not validated and serialized a second time. Its reasons are the model's
own `models.reasons.Reason` objects, dumped as they are.

A model trained on a lender's table reads no online vector: the applicant's values come in the
request's `features`, checked against the model's stored spec (`serving.inline`) in the same thread
hop. The event-log hot path only tests that `features` is absent.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse

from coopscore.settings import ApiKeyEntry
from decisions.base import DecisionRecord, StoredResponse
from features.online.base import MemberVector
from models.offers import quote_application
from models.pricing import LoadedPricingPolicy
from serving.deps import StateDep, require_scope, served_model
from serving.inline import InlineApplicant, inline_applicant
from serving.programmes import ProgrammeDesk, attach_subsidy
from serving.recourse import recourse_payload
from serving.schemas import (
    ERROR_RESPONSES,
    BatchScoreRequest,
    BatchScoreResponse,
    ScoreRequest,
    ScoreResponse,
)
from serving.scoring import Scored, Scorer, applicant_vector, applicant_vectors, json_safe
from serving.state import AppState, ServedModel, served_problem

# Auth runs before anything else, so an unauthenticated caller learns nothing about service state.
# The routes take the same dependency as a parameter (solved once per request: FastAPI caches it) for
# the key's name, the decision's caller.
_score_scope = require_scope("score")
router = APIRouter(
    responses=ERROR_RESPONSES,
    prefix="/v1/score",
    tags=["score"],
    dependencies=[Depends(_score_scope)],
)
Caller = Annotated[ApiKeyEntry, Depends(_score_scope)]

NEW_MEMBER_NOTE = "new member: no cooperative history on file, scored on peer signals alone"
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=128, pattern=r"^[\x21-\x7e]+$")
]
JSON = "application/json"
P = ParamSpec("P")
T = TypeVar("T")


async def _in_pool(state: AppState, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run CPU-bound work on the scoring threads (lighter than anyio's threadpool, and bounded)."""
    return await asyncio.get_running_loop().run_in_executor(
        state.scoring_pool, functools.partial(fn, *args, **kwargs)
    )


def _body_sha(body: ScoreRequest) -> str:
    dumped = body.model_dump(mode="json")
    # Left out at their defaults, so a body's hash is what it was before these fields existed.
    for name, default in (
        ("features", None),
        ("allow_out_of_range", False),
        ("recourse", False),
        ("recourse_non_causal", "drop"),
    ):
        if dumped[name] == default:
            del dumped[name]
    canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _unknown_member(member_id: str) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND,
        f"member {member_id!r} has no feature vector in the online store; check the id, "
        "or send allow_new_member=true to score on peer signals alone (the decision is then review)",
    )


def _check_feature_set(scorer: Scorer, vectors: Sequence[MemberVector | None]) -> None:
    """503 when a vector read is of another feature-set version than the model's (a string compare
    per vector: the store may have switched generations since the model was loaded or checked)."""
    expected = scorer.feature_set_version
    if not expected:  # exempt (table-trained)
        return
    for vector in vectors:
        if vector is not None and vector.feature_set_version != expected:
            problem = served_problem(scorer, vector.feature_set_version)
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, problem)


def _member_row(scorer: Scorer, vector: MemberVector | None) -> dict[str, float]:
    return dict(vector.features) if vector is not None else dict.fromkeys(scorer.feature_names, math.nan)


def _iso(value: datetime) -> str:
    """ISO 8601 as pydantic writes it (UTC as `Z`), so the response is exactly `ScoreResponse`'s JSON."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _encode(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@dataclass(frozen=True)
class _Decided:
    """One scored application: the encoded response, and the future of its decision-log row."""

    content: str
    decision: str
    score: float
    body_sha: str | None
    logged: Future[StoredResponse | None]
    record: DecisionRecord

    def final_content(self) -> str:
        """The response as logged: with a subsidy claim, the writer encoded it with the outcome."""
        return final_content(self.content, self.record)


def final_content(content: str, record: DecisionRecord) -> str:
    """`content`, or the response the writer built when it settled the record's subsidy claim."""
    claim = record.subsidy
    return claim.response_json if claim is not None and claim.response_json is not None else content


def _decision(
    body: ScoreRequest,
    scored: Scored,
    served: ServedModel,
    vector: MemberVector | None,
    features: Mapping[str, float | str | None],
    *,
    caller: str,
    started: float,
    pricing: LoadedPricingPolicy,
    idempotency_key: str | None = None,
    body_sha: str | None = None,
    request_id: str | None = None,
    programmes: ProgrammeDesk | None = None,
) -> tuple[str, DecisionRecord]:
    """The response (fields and order of `ScoreResponse`, encoded once) and its decision-log record.
    `request_id` is the HTTP request's (the access log's and `X-Request-ID`'s); a batch item gets its own.
    The offer is priced by `pricing` on the features scored (`models.offers`)."""
    scored_at = datetime.now(UTC)
    quote = quote_application(
        pricing,
        decision=scored.decision,
        pd=scored.pd,
        amount_cny=body.amount_cny,
        term_months=body.term_months,
        features=features,
    )
    request_id = request_id or uuid.uuid4().hex
    application_id = body.application_id or f"app-{request_id[:16]}"
    reasons = [r.model_dump() for r in scored.reasons]  # the model's `Reason`, as JSON
    payload: dict[str, Any] = {
        "request_id": request_id,
        "application_id": application_id,
        "member_id": body.member_id,
        "pd": scored.pd,
        "score": scored.score,
        "grade": scored.grade,
        "decision": scored.decision,
        "decision_notes": scored.decision_notes,
        "reasons": reasons,
        "base_points": scored.base_points,
        "group_points": scored.group_points if body.explain == "all" else None,
        "model_name": served.scorer.name,
        "model_version": served.scorer.version,
        "features_as_of": _iso(vector.as_of) if vector is not None else None,
        "feature_set_version": vector.feature_set_version if vector is not None else None,
        "scored_at": _iso(scored_at),
        "offer": quote.offer,
        "no_offer": quote.no_offer,
        "recourse": None,
        "subsidy": None,
    }
    if body.recourse:  # computed here, in the worker thread, and logged with the decision
        on_record = vector is not None or served.scorer.table_spec is not None
        payload["recourse"] = recourse_payload(
            served.scorer, features, non_causal=body.recourse_non_causal, on_record=on_record
        )
    claim = None
    if programmes is not None:  # the subsidy object; an approval's is settled by the writer
        claim = attach_subsidy(
            programmes,
            payload,
            member_id=body.member_id,
            applied_at=body.applied_at,
            amount_cny=body.amount_cny,
            term_months=body.term_months,
            features=features,
            scored_at=scored_at,
            encode=_encode,
        )
    content = _encode(payload)
    # Inline values are the decision's `features`, not repeated in the application.
    application = body.model_dump(
        mode="json",
        exclude={
            "explain",
            "allow_new_member",
            "features",
            "allow_out_of_range",
            "recourse",
            "recourse_non_causal",
        },
    )
    application["applied_at"] = application["applied_at"] or payload["scored_at"]
    application["application_id"] = application_id
    record = DecisionRecord(
        request_id=request_id,
        application_id=application_id,
        member_id=body.member_id,
        created_at=scored_at,
        model_name=served.scorer.name,
        model_version=served.scorer.version,
        pd=scored.pd,
        score=scored.score,
        grade=scored.grade,
        decision=scored.decision,
        application=application,
        features=dict(features),
        reasons=reasons,
        response=payload,
        latency_ms=(time.perf_counter() - started) * 1000,
        idempotency_key=idempotency_key,
        body_sha256=body_sha,
        response_json=content,
        caller=caller,
        model_digest=served.scorer.digest or None,
        subsidy=claim,
        offer=quote.offer,
        pricing_policy_version=pricing.version,
        pricing_policy_digest=pricing.digest,
    )
    return content, record


def _decide(
    state: AppState,
    served: ServedModel,
    body: ScoreRequest,
    caller: str,
    idempotency_key: str | None,
    started: float,
    request_id: str | None = None,
) -> _Decided | JSONResponse:
    """Everything CPU-bound for one application, in a worker thread; ends by queueing its log row.
    `caller` is the API key's name: it is logged, and idempotency keys are looked up per caller."""
    # The body hash only matters for an idempotent request: skip it on the plain hot path.
    body_sha = _body_sha(body) if idempotency_key is not None else None
    if idempotency_key is not None:
        stored = state.decision_log.by_idempotency_key(caller, idempotency_key)
        # A key logged before callers were recorded replays only its own body (a retry across the
        # upgrade); another body under it is some other client's request and gets its own decision.
        if stored is not None and not (stored.legacy and stored.body_sha256 != body_sha):
            return _replay(stored.body_sha256, body_sha, stored.response)
    if body.features is not None or body.allow_out_of_range or served.scorer.table_spec is not None:
        return _decide_inline(state, served, body, caller, idempotency_key, body_sha, started, request_id)
    [vector] = state.online_store.online_read([body.member_id])
    _check_feature_set(served.scorer, [vector])
    if vector is None and not body.allow_new_member:
        raise _unknown_member(body.member_id)
    features = applicant_vector(
        _member_row(served.scorer, vector), amount_cny=body.amount_cny, term_months=body.term_months
    )
    scored = served.scorer.score_one(features, force_review=None if vector is not None else NEW_MEMBER_NOTE)
    content, record = _decision(
        body,
        scored,
        served,
        vector,
        json_safe(features),
        caller=caller,
        started=started,
        pricing=state.pricing,
        idempotency_key=idempotency_key,
        body_sha=body_sha,
        request_id=request_id,
        programmes=state.programmes,
    )
    return _Decided(
        content, scored.decision, scored.score, body_sha, state.decision_log.submit(record), record
    )


def _inline_applicants(
    served: ServedModel, items: Sequence[ScoreRequest], batch: bool
) -> list[InlineApplicant]:
    """Every item's inline values checked against the served model's spec; one 422 naming every bad
    field (a batch fails whole, before anything is scored or logged)."""
    spec = served.scorer.table_spec
    applicants: list[InlineApplicant] = []
    problems: list[dict[str, str]] = []
    for i, item in enumerate(items):
        prefix = f"applications.{i}." if batch else ""
        applicant, found = inline_applicant(
            spec, item.features, allow_out_of_range=item.allow_out_of_range, prefix=prefix
        )
        problems += found
        if applicant is not None:
            applicants.append(applicant)
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, problems)
    return applicants


def _decide_inline(
    state: AppState,
    served: ServedModel,
    body: ScoreRequest,
    caller: str,
    idempotency_key: str | None,
    body_sha: str | None,
    started: float,
    request_id: str | None = None,
) -> _Decided:
    """A table-trained model's decision on the applicant's inline values (the online store is not read)."""
    [applicant] = _inline_applicants(served, [body], batch=False)
    scored = served.scorer.score_one(applicant.features, force_review=applicant.review_note())
    content, record = _decision(
        body,
        scored,
        served,
        None,
        applicant.features,
        caller=caller,
        started=started,
        pricing=state.pricing,
        idempotency_key=idempotency_key,
        body_sha=body_sha,
        request_id=request_id,
        programmes=state.programmes,
    )
    return _Decided(
        content, scored.decision, scored.score, body_sha, state.decision_log.submit(record), record
    )


async def score_application(
    state: AppState,
    served: ServedModel,
    body: ScoreRequest,
    caller: str,
    idempotency_key: str | None,
    request_id: str | None = None,
) -> Response:
    """Score one application for `caller` (an API key's name) and make its decision durable; replays
    the answer stored under the caller's idempotency key."""
    started = time.perf_counter()
    # Scoring is CPU-bound: keep it off the event loop (one hop for all of it).
    decided = await _in_pool(
        state, _decide, state, served, body, caller, idempotency_key, started, request_id
    )
    if isinstance(decided, Response):
        return decided
    duplicate = await asyncio.wrap_future(decided.logged)  # the group commit holding this row
    if duplicate is not None:  # a concurrent request with the same key was logged first
        return _replay(duplicate.body_sha256, decided.body_sha, duplicate.response)
    state.metrics.decisions.labels(decision=decided.decision).inc()
    state.metrics.scores.observe(decided.score)
    return Response(decided.final_content(), media_type=JSON)


def _replay(stored_sha: str | None, body_sha: str | None, response: dict[str, Any]) -> JSONResponse:
    if stored_sha != body_sha:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            [{"field": "Idempotency-Key", "problem": "this key was already used with a different body"}],
        )
    return JSONResponse(response, headers={"Idempotent-Replayed": "true"})


@router.post("", response_model=ScoreResponse, summary="Score one applicant")
async def score(
    key: Caller,
    body: ScoreRequest,
    state: StateDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """PD, score, grade, decision and the reasons that lowered the score (zh/en).

    A model trained on a lender's table (`coopscore train --table`) scores the applicant's values
    sent in `features` instead of the member's online vector: they are checked against the columns,
    types, categories and ranges it was trained on (422 naming each bad `features.<column>`), and its
    reasons are named by the table's columns. An event-log model refuses `features` (422).

    The decision records the calling API key's name. An `Idempotency-Key` is the caller's own: a
    retry with the same body replays the stored answer, another body is a 422, and another client
    using the same key gets its own decision.
    """
    # Looked up here, not as a dependency, so a malformed request gets its 422 even without a model.
    # The access layer's request id (X-Request-ID, the access log) is the decision's request id.
    request_id = getattr(request.state, "request_id", None)
    return await score_application(state, served_model(state), body, key.name, idempotency_key, request_id)


def _decide_batch(
    state: AppState, served: ServedModel, items: Sequence[ScoreRequest], caller: str, started: float
) -> tuple[list[str], list[DecisionRecord], list[Future[StoredResponse | None]]]:
    """Score every item with one online-store read and one model call; queue all rows together."""
    if served.scorer.table_spec is not None or any(
        item.features is not None or item.allow_out_of_range for item in items
    ):
        return _decide_batch_inline(state, served, items, caller, started)
    vectors = state.online_store.online_read([item.member_id for item in items])
    _check_feature_set(served.scorer, vectors)  # before anything is logged: the batch fails whole
    for item, vector in zip(items, vectors, strict=True):
        if vector is None and not item.allow_new_member:
            raise _unknown_member(item.member_id)  # before anything is logged: the batch fails whole
    features = applicant_vectors(
        [_member_row(served.scorer, v) for v in vectors],
        amount_cny=[item.amount_cny for item in items],
        term_months=[item.term_months for item in items],
    )
    scored = served.scorer.score_many(
        features, force_review=[None if v is not None else NEW_MEMBER_NOTE for v in vectors]
    )
    contents: list[str] = []
    records: list[DecisionRecord] = []
    for item, one, vector, row in zip(items, scored, vectors, features, strict=True):
        content, record = _decision(
            item,
            one,
            served,
            vector,
            json_safe(row),
            caller=caller,
            started=started,
            programmes=state.programmes,
            pricing=state.pricing,
        )
        contents.append(content)
        records.append(record)
    return contents, records, state.decision_log.submit_many(records)


def _decide_batch_inline(
    state: AppState, served: ServedModel, items: Sequence[ScoreRequest], caller: str, started: float
) -> tuple[list[str], list[DecisionRecord], list[Future[StoredResponse | None]]]:
    """`_decide_batch` for a table-trained model: every item's inline values, one model call."""
    applicants = _inline_applicants(served, items, batch=True)
    scored = served.scorer.score_many(
        [a.features for a in applicants], force_review=[a.review_note() for a in applicants]
    )
    contents: list[str] = []
    records: list[DecisionRecord] = []
    for item, one, applicant in zip(items, scored, applicants, strict=True):
        content, record = _decision(
            item,
            one,
            served,
            None,
            applicant.features,
            caller=caller,
            started=started,
            programmes=state.programmes,
            pricing=state.pricing,
        )
        contents.append(content)
        records.append(record)
    return contents, records, state.decision_log.submit_many(records)


@router.post("/batch", response_model=BatchScoreResponse, summary="Score several applicants")
async def score_batch(key: Caller, body: BatchScoreRequest, state: StateDep) -> Response:
    """Each item is scored and logged as one decision; unknown members fail the whole batch (404)."""
    cap = state.settings.max_batch_items
    if len(body.applications) > cap:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            [{"field": "applications", "problem": f"at most {cap} applications per batch"}],
        )
    served = served_model(state)
    started = time.perf_counter()
    contents, records, logged = await _in_pool(
        state, _decide_batch, state, served, body.applications, key.name, started
    )
    await asyncio.gather(*(asyncio.wrap_future(f) for f in logged))  # every row durable
    for record in records:
        state.metrics.decisions.labels(decision=record.decision).inc()
        state.metrics.scores.observe(record.score)
    contents = [final_content(c, r) for c, r in zip(contents, records, strict=True)]
    return Response('{"results":[' + ",".join(contents) + "]}", media_type=JSON)
