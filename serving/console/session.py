"""Console sessions: a signed cookie holding the SHA-256 of the API key (never the key), its expiry and
a CSRF token. The signing secret is `console_secret`; unset, each process draws its own, so several
workers need COOPSCORE_CONSOLE_SECRET set (a session signed by one would be refused by another)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from coopscore.settings import ApiKeyEntry, Settings

COOKIE = "cs_console"


@dataclass(frozen=True)
class Session:
    """A signed-in console user: the key's digest, when the session ends, and its CSRF token."""

    key_sha256: str
    expires_at: float
    csrf: str


class SessionSigner:
    """Encode and check session cookies with HMAC-SHA256."""

    def __init__(self, settings: Settings) -> None:
        configured = settings.console_secret
        secret = configured.get_secret_value() if configured is not None else secrets.token_hex(32)
        self._secret = secret.encode()
        self.minutes = settings.console_session_minutes

    def _mac(self, payload: bytes) -> str:
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest()

    def issue(self, key_sha256: str, now: float | None = None) -> tuple[str, Session]:
        """A new session for the key with this digest: the cookie value and the session."""
        session = Session(key_sha256, (now or time.time()) + self.minutes * 60, secrets.token_urlsafe(24))
        payload = json.dumps(
            {"k": session.key_sha256, "e": session.expires_at, "c": session.csrf}, separators=(",", ":")
        ).encode()
        body = base64.urlsafe_b64encode(payload).decode()
        return f"{body}.{self._mac(payload)}", session

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie, or None when it is absent, forged, malformed or expired."""
        if not cookie or "." not in cookie:
            return None
        body, mac = cookie.rsplit(".", 1)
        try:
            payload = base64.urlsafe_b64decode(body.encode())
        except ValueError:
            return None
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = json.loads(payload)
            session = Session(str(data["k"]), float(data["e"]), str(data["c"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires_at <= (now or time.time()):
            return None
        return session


def session_key(session: Session, entries: tuple[ApiKeyEntry, ...]) -> ApiKeyEntry | None:
    """The configured key a session stands for (None once the key is removed from settings)."""
    match = None
    for entry in entries:
        if hmac.compare_digest(entry.sha256, session.key_sha256):
            match = entry
    return match


def csrf_ok(session: Session, sent: str | None) -> bool:
    """Whether a form carried this session's CSRF token."""
    return bool(sent) and hmac.compare_digest(session.csrf, sent or "")
