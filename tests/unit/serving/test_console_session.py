"""Console sessions: signed, expiring, never holding the key; CSRF tokens bound to the session."""

from __future__ import annotations

from coopscore.settings import ApiKeyEntry, Settings
from serving.auth import hash_key
from serving.console.session import SessionSigner, csrf_ok, session_key

KEY = "cs_example-key-for-the-session-test"


def _settings(**extra: object) -> Settings:
    entry = ApiKeyEntry(name="officer", sha256=hash_key(KEY), scopes=("score",))
    return Settings(api_keys=(entry,), console_session_minutes=10, **extra)  # type: ignore[arg-type]


def test_a_session_round_trips_without_the_key() -> None:
    settings = _settings()
    signer = SessionSigner(settings)
    cookie, session = signer.issue(hash_key(KEY), now=1000.0)
    assert KEY not in cookie
    read = signer.read(cookie, now=1000.0 + 599)
    assert read == session
    entry = session_key(read, settings.api_keys)
    assert entry is not None and entry.name == "officer"


def test_expired_forged_or_foreign_sessions_are_refused() -> None:
    signer = SessionSigner(_settings())
    cookie, _ = signer.issue(hash_key(KEY), now=1000.0)
    assert signer.read(cookie, now=1000.0 + 601) is None  # expired after console_session_minutes
    body, mac = cookie.rsplit(".", 1)
    assert signer.read(f"{body}.{'0' * len(mac)}", now=1000.0) is None  # forged signature
    assert signer.read(body[:-4] + "AAAA." + mac, now=1000.0) is None  # tampered payload
    assert signer.read("garbage", now=1000.0) is None
    assert SessionSigner(_settings()).read(cookie, now=1000.0) is None  # another process's random secret


def test_a_configured_secret_is_shared_by_workers() -> None:
    secret = "s" * 40
    one, two = (
        SessionSigner(_settings(console_secret=secret)),
        SessionSigner(_settings(console_secret=secret)),
    )
    cookie, session = one.issue(hash_key(KEY), now=50.0)
    assert two.read(cookie, now=51.0) == session


def test_csrf_token_must_match_the_session() -> None:
    signer = SessionSigner(_settings())
    _, session = signer.issue(hash_key(KEY))
    _, other = signer.issue(hash_key(KEY))
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, other.csrf)
    assert not csrf_ok(session, "")
    assert not csrf_ok(session, None)


def test_a_removed_key_ends_its_sessions() -> None:
    signer = SessionSigner(_settings())
    cookie, _ = signer.issue(hash_key(KEY), now=1.0)
    session = signer.read(cookie, now=2.0)
    assert session is not None
    assert session_key(session, ()) is None
