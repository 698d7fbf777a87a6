"""Annotated dependencies the routes take: app state, scoped API keys and the model in service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from coopscore.settings import ApiKeyEntry, Scope
from serving.auth import find_key
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


def require_scope(scope: Scope) -> Callable[..., Awaitable[ApiKeyEntry]]:
    """A dependency admitting only keys that carry `scope` (401 without a valid key, 403 without scope)."""

    async def check(
        state: StateDep,
        x_api_key: Annotated[str | None, Header(max_length=256)] = None,
        authorization: Annotated[str | None, Header(max_length=300)] = None,
    ) -> ApiKeyEntry:
        presented = x_api_key
        if presented is None and authorization and authorization.lower().startswith("bearer "):
            presented = authorization[7:].strip()
        if not presented:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing API key: send it as X-API-Key or Authorization: Bearer",
                headers={"WWW-Authenticate": "Bearer"},
            )
        entry = find_key(presented, state.settings.api_keys)
        if entry is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "invalid API key", headers={"WWW-Authenticate": "Bearer"}
            )
        if scope not in entry.scopes:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"API key {entry.name!r} lacks the {scope!r} scope"
            )
        return entry

    return check


ScoreKey = Annotated[ApiKeyEntry, Depends(require_scope("score"))]
IngestKey = Annotated[ApiKeyEntry, Depends(require_scope("ingest"))]
ReadKey = Annotated[ApiKeyEntry, Depends(require_scope("read"))]
AdminKey = Annotated[ApiKeyEntry, Depends(require_scope("admin"))]


def served_model(state: AppState) -> ServedModel:
    """The model in service, or 503 saying how to get one."""
    current = state.models.current
    if current is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NO_MODEL)
    return current


async def _served_model(state: StateDep) -> ServedModel:
    return served_model(state)


ModelDep = Annotated[ServedModel, Depends(_served_model)]
