"""Strict inputs, the key checked before the body, 413 for chunked bodies, and the OpenAPI document that
declares all of it (issue 14, item 3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.deps import ScoreKey
from tests.unit.serving.test_routes_without_model import GUARDED, no_champion
from tests.utils.api import Keys, make_settings

ClientFactory = Callable[..., TestClient]
APPLICANT = {"member_id": "m1", "amount_cny": 5000, "term_months": 12, "purpose": "livestock"}
REVIEW = f"/v1/decisions/{'0' * 32}/review"
PUBLIC = {"/healthz", "/readyz"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"term_months": True}, "term_months"),  # would be scored as a 1-month loan
        ({"term_months": 12.0}, "term_months"),
        ({"term_months": "12"}, "term_months"),
        ({"amount_cny": "5000"}, "amount_cny"),
        ({"amount_cny": True}, "amount_cny"),
        ({"applied_at": 0}, "applied_at"),  # would be 1970-01-01
        ({"applied_at": 1_780_000_000}, "applied_at"),
        ({"applied_at": "0"}, "applied_at"),
        ({"applied_at": "yesterday"}, "applied_at"),
        ({"allow_new_member": 1}, "allow_new_member"),
        ({"allow_new_member": "true"}, "allow_new_member"),
        ({"allow_out_of_range": "yes"}, "allow_out_of_range"),
    ],
)
def test_score_inputs_are_strict(
    client_factory: ClientFactory, keys: Keys, change: dict[str, object], field: str
) -> None:
    client = client_factory(no_champion)
    response = client.post("/v1/score", json={**APPLICANT, **change}, headers=keys.header("score"))
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["field"] == field
    assert set(problem) == {"field", "problem", "type"}  # the FieldProblem shape


def test_batch_items_are_strict_and_named_by_position(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(no_champion)
    body = {"applications": [APPLICANT, {**APPLICANT, "term_months": True}]}
    response = client.post("/v1/score/batch", json=body, headers=keys.header("score"))
    assert response.status_code == 422
    assert [p["field"] for p in response.json()["detail"]] == ["applications.1.term_months"]


@pytest.mark.parametrize(
    "change",
    [
        {"amount_cny": 5000.5},  # an integer or a fraction: both JSON numbers
        {"applied_at": "2026-03-01T09:30:00+08:00"},
        {"applied_at": "2026-03-01T01:30:00Z"},
        {"applied_at": "2026-03-01"},
    ],
)
def test_legitimate_json_still_passes(
    client_factory: ClientFactory, keys: Keys, change: dict[str, object]
) -> None:
    client = client_factory(no_champion)
    response = client.post("/v1/score", json={**APPLICANT, **change}, headers=keys.header("score"))
    assert response.status_code == 503, response.text  # past validation: no model to score with


@pytest.mark.parametrize(
    ("outcome", "field"),
    [
        ({"defaulted": 1}, "outcomes.0.defaulted"),
        ({"defaulted": "false"}, "outcomes.0.defaulted"),
        ({"observed_at": 0}, "outcomes.0.observed_at"),
    ],
)
def test_outcome_inputs_are_strict(
    client_factory: ClientFactory, keys: Keys, outcome: dict[str, object], field: str
) -> None:
    client = client_factory(no_champion)
    good = {"application_id": "a1", "defaulted": False, "observed_at": "2026-03-01T00:00:00Z"}
    assert client.post("/v1/outcomes", json={"outcomes": [good]}, headers=keys.header("ingest")).json() == {
        "stored": 1,
        "linked_to_decisions": 0,
    }
    response = client.post(
        "/v1/outcomes", json={"outcomes": [{**good, **outcome}]}, headers=keys.header("ingest")
    )
    assert response.status_code == 422
    assert [p["field"] for p in response.json()["detail"]] == [field]


MALFORMED = b'{"member_id": '


@pytest.mark.parametrize(
    ("path", "scope"), [("/v1/score", "score"), ("/v1/events", "ingest"), (REVIEW, "review")]
)
def test_the_key_is_checked_before_the_body_is_parsed(
    client_factory: ClientFactory, keys: Keys, path: str, scope: str
) -> None:
    client = client_factory(no_champion)
    json_type = {"Content-Type": "application/json"}
    missing = client.post(path, content=MALFORMED, headers=json_type)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.json() == {"detail": "missing API key: send it as X-API-Key or Authorization: Bearer"}
    invalid = client.post(path, content=MALFORMED, headers={**json_type, "X-API-Key": "cs_nope"})
    assert invalid.status_code == 401
    assert invalid.json() == {"detail": "invalid API key"}
    other = next(s for s in keys.by_scope if s != scope)
    forbidden = client.post(path, content=MALFORMED, headers={**json_type, **keys.header(other)})
    assert forbidden.status_code == 403
    assert forbidden.json() == {"detail": f"API key '{other}-only' lacks the '{scope}' scope"}
    allowed = client.post(path, content=MALFORMED, headers={**json_type, **keys.header(scope)})
    assert allowed.status_code == 422  # only now is the body read
    assert allowed.json()["detail"][0]["type"] == "json_invalid"


def _chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    """A JSON body sent without Content-Length (httpx sends a generator chunked)."""
    yield b'{"events": ['
    sent = 0
    while sent < total:
        yield b'{"event_id": "e"},' * (size // 18)
        sent += size
    yield b'{"event_id": "last"}]}'


def test_a_chunked_body_over_the_limit_is_413_after_the_key(
    client_factory: ClientFactory, keys: Keys
) -> None:
    client = client_factory(no_champion, max_body_bytes=4096)
    response = client.post("/v1/events", content=_chunks(20_000), headers=keys.header("ingest"))
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"detail": "request body too large"}
    keyless = client.post("/v1/events", content=_chunks(20_000))
    assert keyless.status_code == 401  # the key first: a keyless caller learns nothing from its body
    # Under the limit, a chunked body is read whole and handled as usual.
    small = client.post(
        "/v1/events",
        content=_chunks(1_000),
        headers={**keys.header("ingest"), "Content-Type": "application/json"},
    )
    assert small.status_code == 200, small.text
    assert small.json()["received"] > 1


def test_a_declared_length_over_the_limit_is_413_after_the_key(
    client_factory: ClientFactory, keys: Keys
) -> None:
    client = client_factory(no_champion, max_body_bytes=2048)
    body = {"applications": [APPLICANT] * 100}
    assert client.post("/v1/score/batch", json=body).status_code == 401
    assert client.post("/v1/score/batch", json=body, headers=keys.header("read")).status_code == 403
    response = client.post("/v1/score/batch", json=body, headers=keys.header("score"))
    assert response.status_code == 413
    assert response.json() == {"detail": "request body too large"}


@pytest.fixture
def openapi(client_factory: ClientFactory) -> dict[str, Any]:
    document: dict[str, Any] = client_factory(no_champion).get("/openapi.json").json()
    return document


def test_openapi_declares_the_key_and_bearer_schemes(openapi: dict[str, Any]) -> None:
    assert openapi["components"]["securitySchemes"] == {
        "ApiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "an API key (`coopscore keys create`)",
        },
        "Bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "the same API key as `Authorization: Bearer <key>`",
        },
    }
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            if path in PUBLIC:
                assert "security" not in operation, (method, path)
            else:
                assert operation["security"] == [{"ApiKey": []}, {"Bearer": []}], (method, path)
                # The key is a security scheme, not an ordinary header parameter.
                names = {p["name"].lower() for p in operation.get("parameters", [])}
                assert not names & {"x-api-key", "authorization"}, (method, path)


def test_openapi_documents_every_status_a_route_returns(openapi: dict[str, Any]) -> None:
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            if path in PUBLIC:
                continue
            documented = set(operation["responses"])
            # the gate, a body that cannot be decoded, the size cap, the rate limit, validation
            assert {"400", "401", "403", "413", "422", "429"} <= documented, (method, path)
    # Each route's own answer in the route table of test_routes_without_model is documented too.
    for method, path, _scope, _body, status in GUARDED:
        template = path.replace("m1", "{member_id}").replace("0" * 32, "{request_id}")
        assert str(status) in openapi["paths"][template][method]["responses"], (method, path, status)
    assert "503" in openapi["paths"]["/readyz"]["get"]["responses"]


def test_openapi_describes_the_review_override_rule(openapi: dict[str, Any]) -> None:
    review = openapi["paths"]["/v1/decisions/{request_id}/review"]["post"]
    assert "`override` replaces" in review["description"]
    assert "which it requires (422 without)" in review["description"]


def test_a_review_decision_is_one_of_the_three_words(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(no_champion)
    typed = client.post(
        REVIEW,
        json={"reviewer": "li", "action": "override", "decision": True, "reason": "checked"},
        headers=keys.header("admin"),
    )
    assert typed.status_code == 422
    assert [p["field"] for p in typed.json()["detail"]] == ["decision"]


def test_refusals_at_the_gate_are_counted_by_route(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(no_champion)
    for _ in range(2):
        assert client.post("/v1/outcomes", content=MALFORMED).status_code == 401
    exposition = client.get("/metrics", headers=keys.header("read")).text
    counted = [
        line
        for line in exposition.splitlines()
        if line.startswith("coopscore_requests_total{") and 'route="/v1/outcomes"' in line
    ]
    assert len(counted) == 1 and 'status="401"' in counted[0] and counted[0].endswith(" 2.0"), counted


def test_the_route_dependency_still_checks_the_key_without_the_gate(keys: Keys, tmp_path: Path) -> None:
    app = FastAPI()  # no guards installed: the dependency alone must refuse

    @app.post("/only-scored")
    async def only_scored(key: ScoreKey) -> dict[str, str]:
        return {"name": key.name}

    with TestClient(app) as client:
        app.state.coopscore = type("State", (), {"settings": make_settings(tmp_path, keys)})()
        assert client.post("/only-scored").status_code == 401
        assert client.post("/only-scored", headers=keys.header("read")).status_code == 403
        bearer = {"Authorization": f"Bearer {keys.by_scope['score']}"}
        assert client.post("/only-scored", headers=bearer).json() == {"name": "score-only"}


def test_an_undecodable_body_is_400_as_documented_and_401_without_a_key(
    client_factory: ClientFactory, keys: Keys
) -> None:
    client = client_factory(no_champion)
    json_type = {"Content-Type": "application/json"}
    assert client.post("/v1/score", content=b"\xff\xfe\x00", headers=json_type).status_code == 401
    response = client.post(
        "/v1/score", content=b"\xff\xfe\x00", headers={**json_type, **keys.header("score")}
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "There was an error parsing the body"}
