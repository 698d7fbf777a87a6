"""Annotated dependencies the routes take: app state, scoped API keys and the model in service."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from coopscore.settings import ApiKeyEntry, Scope
from serving.auth import Refusal, admit, presented_key
from serving.state import AppState, ServedModel

NO_MODEL = (
    "no champion model is loaded: train one with `coopscore retrain` (or `make run`), "
    "then POST /v1/admin/reload"
)


# Dependencies are `async def` on purpose: they do no I/O, and FastAPI would otherwise run each one in
# the threadpool (a thread hop per dependency per request, which costs more than the work itself).


async def get_state(request: Request) -> AppState:
    """The state built in the lifespan."""
    state: AppState = request.app.state.coopscore
    return state


StateDep = Annotated[AppState, Depends(get_state)]


# The two ways to present a key, declared as OpenAPI security schemes (auto_error off: `ScopeCheck`
# answers with our own 401 sentence and error shape).
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    auto_error=False,
    description="an API key (`coopscore keys create`)",
)
BEARER = HTTPBearer(
    scheme_name="Bearer", auto_error=False, description="the same API key as `Authorization: Bearer <key>`"
)


class ScopeCheck:
    """A dependency admitting only keys that carry `scope` (401 without a valid key, 403 without scope).

    `serving.guards.AuthGate` finds these on each route and applies the same rule before the body is
    read; this check still runs, so a route is never open if the gate is not installed."""

    def __init__(self, scope: Scope) -> None:
        self.scope: Scope = scope

    async def __call__(
        self,
        state: StateDep,
        x_api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    ) -> ApiKeyEntry:
        presented = presented_key(x_api_key, f"Bearer {bearer.credentials}" if bearer else None)
        admitted = admit(presented, state.settings.api_keys, self.scope)
        if isinstance(admitted, Refusal):
            raise HTTPException(admitted.status, admitted.detail, headers=admitted.headers or None)
        return admitted


def require_scope(scope: Scope) -> ScopeCheck:
    """The dependency for routes that need a key with `scope`."""
    return ScopeCheck(scope)


ScoreKey = Annotated[ApiKeyEntry, Depends(require_scope("score"))]
IngestKey = Annotated[ApiKeyEntry, Depends(require_scope("ingest"))]
ReadKey = Annotated[ApiKeyEntry, Depends(require_scope("read"))]
ReviewKey = Annotated[ApiKeyEntry, Depends(require_scope("review"))]
AdminKey = Annotated[ApiKeyEntry, Depends(require_scope("admin"))]


def served_model(state: AppState) -> ServedModel:
    """The model in service, or 503 saying why there is none (e.g. a refused signature) and how to
    get one. Callers hold a key: in production this is where they learn what `/readyz` won't say."""
    current = state.models.current
    if current is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, state.models.last_error or NO_MODEL)
    return current


async def _served_model(state: StateDep) -> ServedModel:
    return served_model(state)


ModelDep = Annotated[ServedModel, Depends(_served_model)]
