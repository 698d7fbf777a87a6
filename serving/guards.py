"""Request guards that run before a route reads the body: the API key first, then the body size.

A caller without a valid key learns nothing from its body (401/403 even when it is malformed or too
large), and a body over the limit is refused with 413 whether it declares a Content-Length or is sent
chunked, without reading more than the limit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import RouteContext, iter_route_contexts
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


def protected_routes(routes: Sequence[BaseRoute]) -> list[tuple[RouteContext, KeyScope]]:
    """Every route (with its routers' prefixes and dependencies) that needs a key, and the scope."""
    found = []
    for context in iter_route_contexts(routes):
        dependant = getattr(context, "dependant", None)
        required = _required_scope(dependant) if isinstance(dependant, Dependant) else None
        if required is not None:
            found.append((context, required))
    return found


class AuthGate:
    """Apply each route's key rule (`serving.auth.admit`) from the headers alone, before the route
    parses the body. Unmatched paths, public routes and other methods pass through unchanged."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], settings: Settings) -> None:
        self.app = app
        self.routes = routes  # the app's list, read at the first request (every router is included)
        self.settings = settings
        self._protected: list[tuple[RouteContext, KeyScope]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._protected is None:
            self._protected = protected_routes(self.routes)
        for context, required in self._protected:
            if context.matches(scope)[0] != Match.FULL:
                continue
            headers = dict(scope.get("headers", []))
            presented = presented_key(_text(headers.get(b"x-api-key")), _text(headers.get(b"authorization")))
            admitted = admit(presented, self.settings.api_keys, required)
            if isinstance(admitted, Refusal):
                scope["route"] = context  # the request metrics label the refusal with the route's path
                body = json.dumps({"detail": admitted.detail}, separators=(",", ":")).encode()
                extra = [(k.lower().encode(), v.encode()) for k, v in admitted.headers.items()]
                await send_json(send, admitted.status, body, extra)
                return
            break
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


_TOO_LARGE_BODY = json.dumps({"detail": TOO_LARGE}, separators=(",", ":")).encode()


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
