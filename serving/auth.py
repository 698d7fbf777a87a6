"""API keys with scopes: only SHA-256 digests are configured; keys are compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from coopscore.settings import ApiKeyEntry, Scope

KEY_PREFIX = "cs_"


def hash_key(key: str) -> str:
    """SHA-256 hex digest of an API key (what settings store)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key (shown to its owner once)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def find_key(presented: str, entries: Iterable[ApiKeyEntry]) -> ApiKeyEntry | None:
    """The configured entry whose digest matches the presented key, if any."""
    digest = hash_key(presented)
    match = None
    for entry in entries:
        # Compare against every entry so the time taken does not reveal which one matched.
        if hmac.compare_digest(digest, entry.sha256):
            match = entry
    return match


@dataclass(frozen=True)
class Refusal:
    """Why a request's key is refused: the status (401 or 403), the sentence and the headers to send."""

    status: int
    detail: str
    headers: dict[str, str] = field(default_factory=dict)


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    """The key a caller sent: the X-API-Key header, else an `Authorization: Bearer` token."""
    if x_api_key:
        return x_api_key
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def key_has_scope(entry: ApiKeyEntry, scope: Scope) -> bool:
    """Whether the key carries `scope`; `admin` implies `review` (an administrator may review)."""
    return scope in entry.scopes or (scope == "review" and "admin" in entry.scopes)


def admit(presented: str | None, entries: Iterable[ApiKeyEntry], scope: Scope) -> ApiKeyEntry | Refusal:
    """The key's entry when it is valid and carries `scope`; otherwise the refusal (401, then 403).

    One rule for the request gate (before the body is read) and the route dependency (after)."""
    if not presented:
        return Refusal(401, "missing API key: send it as X-API-Key or Authorization: Bearer", _CHALLENGE)
    entry = find_key(presented, entries)
    if entry is None:
        return Refusal(401, "invalid API key", _CHALLENGE)
    if not key_has_scope(entry, scope):
        return Refusal(403, f"API key {entry.name!r} lacks the {scope!r} scope")
    return entry
