"""The front door: a request id on every answer, rate limits, and one JSON access-log line per request.

One pure ASGI layer, outside the routes, so a refused request (429) costs a header lookup and a hash
and never reaches routing or the body. The access log never holds a key, a query string or a raw path
(paths carry member ids): only the route template, the key's configured name, and on 401/403 the first
8 hex digits of the presented key's SHA-256 (enough to tell callers apart, useless to guess the key).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coopscore.settings import ApiKeyEntry, Settings
from serving.metrics import ServiceMetrics
from serving.ratelimit import Buckets, buckets_or_none, retry_after

ACCESS_LOGGER: Final = "coopscore.access"
access_log = logging.getLogger(ACCESS_LOGGER)

# Routes that need no key: a client over its failed-authentication budget may still probe them.
PUBLIC_PATHS: Final = frozenset({"/healthz", "/readyz", "/docs", "/redoc", "/openapi.json"})
_encode = json.JSONEncoder(separators=(",", ":")).encode


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current `sys.stderr` (test runners and servers swap it after start-up)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_access_log(enabled: bool) -> None:
    """Send `coopscore.access` lines to stderr as bare JSON, unless the operator configured the logger."""
    if not enabled:
        access_log.disabled = True
        return
    access_log.disabled = False
    if not access_log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.propagate = False
    if access_log.level == logging.NOTSET:
        access_log.setLevel(logging.INFO)


def key_fingerprint(presented: str) -> str:
    """The first 8 hex digits of the key's SHA-256: names a caller in logs without revealing the key."""
    return hashlib.sha256(presented.encode()).hexdigest()[:8]


def _presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key as `serving.deps.require_scope` reads it: X-API-Key, else Authorization: Bearer."""
    api_key = bearer = None
    for name, value in headers:
        if name == b"x-api-key":
            api_key = value
        elif name == b"authorization" and value[:7].lower() == b"bearer ":
            bearer = value[7:].strip()
    chosen = api_key if api_key is not None else bearer
    return chosen.decode("latin-1") if chosen else None


class AccessLayer:
    """Request ids, per-key and failed-authentication rate limits, and the JSON access log."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: ServiceMetrics) -> None:
        self.app = app
        self.keys: dict[str, ApiKeyEntry] = {entry.sha256: entry for entry in settings.api_keys}
        self.per_key: Buckets | None = buckets_or_none(
            settings.rate_limit_per_second, settings.rate_limit_burst
        )
        self.auth_failures: Buckets | None = buckets_or_none(
            settings.auth_failure_per_second, settings.auth_failure_burst
        )
        self.log = settings.access_log
        self._limited_key = metrics.rate_limited.labels(kind="key")
        self._limited_auth = metrics.rate_limited.labels(kind="auth_failure")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = os.urandom(16).hex()  # uuid4's 32 hex digits, at a fifth of its cost
        scope.setdefault("state", {})["request_id"] = request_id  # `request.state.request_id` in routes
        presented = _presented_key(scope["headers"])
        digest = hashlib.sha256(presented.encode()).hexdigest() if presented else None
        entry = self.keys.get(digest) if digest is not None else None
        client = scope["client"][0] if scope.get("client") else "-"
        status = 500
        refused = None
        if entry is not None and self.per_key is not None:
            wait = self.per_key.take(entry.name)
            if wait > 0:
                self._limited_key.inc()
                refused = (wait, f"API key {entry.name!r} is over its rate limit")
        elif entry is None and self.auth_failures is not None and scope["path"] not in PUBLIC_PATHS:
            wait = self.auth_failures.wait(client)
            if wait > 0:
                self._limited_auth.inc()
                refused = (wait, "too many failed authentications from this address")

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())],
                }
            await send(message)

        try:
            if refused is None:
                await self.app(scope, receive, answer)
            else:
                status = 429
                await _too_many(answer, refused[0], refused[1])
        finally:
            if status == 401 and self.auth_failures is not None:
                self.auth_failures.charge(client)
            if self.log:
                self._log(scope, request_id, status, started, client, entry, presented)

    def _log(
        self,
        scope: Scope,
        request_id: str,
        status: int,
        started: float,
        client: str,
        entry: ApiKeyEntry | None,
        presented: str | None,
    ) -> None:
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "request_id": request_id,
            "method": scope["method"],
            "route": getattr(scope.get("route"), "path", "unmatched"),
            "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "client": client,
            # A console page has no key header: its session's key name is left in the scope's state.
            "key": entry.name if entry is not None else scope.get("state", {}).get("console_key"),
            "key_fp": key_fingerprint(presented) if presented and status in (401, 403) else None,
        }
        access_log.info(_encode(line))


async def _too_many(send: Send, wait: float, why: str) -> None:
    seconds = retry_after(wait)
    body = json.dumps({"detail": f"{why}; retry after {seconds} s"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(seconds).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
