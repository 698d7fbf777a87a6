"""Request guards that run before a route reads the body: the API key first, then the body size.

A caller without a valid key learns nothing from its body (401/403 even when it is malformed or too
large), and a body over the limit is refused with 413 whether it declares a Content-Length or is sent
chunked, without reading more than the limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coopscore.settings import Scope as KeyScope
from coopscore.settings import Settings
from serving.auth import Refusal, admit, presented_key
from serving.deps import ScopeCheck

TOO_LARGE = "request body too large"


def install_request_guards(app: FastAPI, settings: Settings) -> None:
    """Add the key gate outside the body-size limit (so a keyless caller gets 401 before any 413)."""
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthGate, routes=app.router.routes, settings=settings)


def _required_scope(dependant: Dependant) -> KeyScope | None:
    """The scope a route's `ScopeCheck` dependency asks for (its own or its router's), if any."""
    stack = [dependant]
    while stack:
        node = stack.pop()
        if isinstance(node.call, ScopeCheck):
            return node.call.scope
        stack.extend(node.dependencies)
    return None


class AuthGate:
    """Apply each route's key rule (`serving.auth.admit`) from the headers alone, before the route
    parses the body. Unmatched paths, public routes and other methods pass through unchanged."""

    def __init__(self, app: ASGIApp, routes: Iterable[BaseRoute], settings: Settings) -> None:
        self.app = app
        self.routes = routes  # the app's list: routes are read when a request comes, not at build time
        self.settings = settings
        self._scopes: dict[int, KeyScope | None] = {}

    def _scope_of(self, route: BaseRoute) -> KeyScope | None:
        key = id(route)
        if key not in self._scopes:
            self._scopes[key] = _required_scope(route.dependant) if isinstance(route, APIRoute) else None
        return self._scopes[key]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        required: KeyScope | None = None
        for route in self.routes:
            match, child = route.matches(scope)
            if match == Match.FULL:
                required = self._scope_of(route)
                scope.update(child)  # what the router would set: the route's template labels metrics
                break
        if required is not None:
            headers = dict(scope.get("headers", []))
            presented = presented_key(_text(headers.get(b"x-api-key")), _text(headers.get(b"authorization")))
            admitted = admit(presented, self.settings.api_keys, required)
            if isinstance(admitted, Refusal):
                body = json.dumps({"detail": admitted.detail}).encode()
                extra = [(k.lower().encode(), v.encode()) for k, v in admitted.headers.items()]
                await send_json(send, admitted.status, body, extra)
                return
        await self.app(scope, receive, send)


def _text(raw: bytes | None) -> str | None:
    return raw.decode("latin-1") if raw is not None else None


class BodySizeLimit:
    """Refuse request bodies over the limit (413): a declared Content-Length before anything is read,
    a chunked body as soon as the bytes received pass the limit.

    The body is gathered here (at most the limit) and handed on whole: a limit hit while the route
    itself was reading would surface as FastAPI's 400 "error parsing the body", not as 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await send_json(send, 413, _TOO_LARGE_BODY)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away mid-body: pass that on
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_json(send, 413, _TOO_LARGE_BODY)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


_TOO_LARGE_BODY = json.dumps({"detail": TOO_LARGE}).encode()


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that returns `messages` first, then whatever the server sends next (a disconnect)."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer with a JSON body straight from the ASGI layer (the app's `{"detail": ...}` shape)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
