"""The console over HTTP (no browser): sign-in cookie flags, CSP, CSRF refusal, scope refusal."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from serving.console.routes import CSP
from tests.utils.api import Keys

ClientFactory = Callable[..., TestClient]


def _no_champion(_settings: object) -> None:
    return None


def _signed_in(client: TestClient, key: str) -> str:
    response = client.post("/console/login", data={"api_key": key}, follow_redirects=False)
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; https requests get Secure
    assert key not in cookie
    assert response.headers["content-security-policy"] == CSP
    return cookie


def test_a_bad_key_is_refused_with_401(client_factory: ClientFactory) -> None:
    client = client_factory(_no_champion)
    response = client.post("/console/login", data={"api_key": "cs_wrong"}, follow_redirects=False)
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert response.headers["content-security-policy"] == CSP


def test_pages_need_a_session_and_the_scope(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(_no_champion)
    assert client.get("/console/score", follow_redirects=False).status_code == 303
    _signed_in(client, keys.by_scope["score"])
    assert client.get("/console/score").status_code == 200
    refused = client.get("/console/reviews")
    assert refused.status_code == 403 and "review" in refused.text
    refused = client.get("/console/onboarding")  # the data officer's page needs `ingest`
    assert refused.status_code == 403 and "ingest" in refused.text


def test_a_form_without_its_csrf_token_is_refused(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(_no_champion)
    _signed_in(client, keys.by_scope["score"])
    form = {"member_id": "m1", "amount_cny": "5000", "term_months": "12", "purpose": "livestock"}
    assert client.post("/console/score", data={**form, "csrf": "forged"}).status_code == 403
    assert client.post("/console/score", data=form).status_code == 403
    request = {"note": "please review", "csrf": "forged"}
    assert client.post(f"/console/review-request/{'0' * 32}", data=request).status_code == 403


def test_pages_carry_no_script_and_load_nothing_from_elsewhere(
    client_factory: ClientFactory, keys: Keys
) -> None:
    client = client_factory(_no_champion)
    _signed_in(client, keys.all_scopes)
    for path in (
        "/console/login",
        "/console/score",
        "/console/reviews",
        "/console/member",
        "/console/monitoring",
        "/console/onboarding",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<script" not in page.text and " style=" not in page.text, path
        assert "http://" not in page.text and "https://" not in page.text, path  # nothing from elsewhere
