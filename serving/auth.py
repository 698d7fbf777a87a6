"""API keys with scopes: only SHA-256 digests are configured; keys are compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from coopscore.settings import ApiKeyEntry

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
