"""A lender's integrator gets the input rules right over real HTTP: loose types are refused, the key is
checked before the body, an oversized chunked upload is refused with 413, and the published OpenAPI
document says how to authenticate (issue 14, item 3)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.journeys.conftest import JourneyServer, JourneyWorld

LIMIT = 2_000_000  # the default `max_body_bytes` of the journey server
JSON = {"Content-Type": "application/json"}


def _applicant(world: JourneyWorld) -> dict[str, object]:
    return {
        "member_id": world.member_ids(1)[0],
        "amount_cny": 8000,
        "term_months": 12,
        "purpose": "livestock",
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"term_months": True}, "term_months"),
        ({"amount_cny": "5000"}, "amount_cny"),
        ({"applied_at": 0}, "applied_at"),
    ],
)
def test_loose_inputs_are_refused_naming_the_field(
    journey_world: JourneyWorld, journey_server: JourneyServer, change: dict[str, object], field: str
) -> None:
    with journey_server.client("score") as client:
        response = client.post("/v1/score", json={**_applicant(journey_world), **change})
        assert response.status_code == 422, response.text
        assert [p["field"] for p in response.json()["detail"]] == [field]
        # The same applicant with the values as JSON types and an ISO 8601 date-time is scored.
        scored = client.post(
            "/v1/score", json={**_applicant(journey_world), "applied_at": "2026-03-01T09:30:00+08:00"}
        )
        assert scored.status_code == 200, scored.text


def test_the_key_is_checked_before_a_malformed_body(journey_server: JourneyServer) -> None:
    malformed = b'{"member_id": '
    with journey_server.client("none") as anonymous:
        missing = anonymous.post("/v1/score", content=malformed, headers=JSON)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    with journey_server.client("read") as reader:
        forbidden = reader.post("/v1/score", content=malformed, headers=JSON)
    assert forbidden.status_code == 403
    assert "lacks the 'score' scope" in forbidden.json()["detail"]
    with journey_server.client("none") as bearer:
        allowed = bearer.post(
            "/v1/score",
            content=malformed,
            headers={**JSON, "Authorization": f"Bearer {journey_server.keys['score']}"},
        )
    assert allowed.status_code == 422
    assert allowed.json()["detail"][0]["type"] == "json_invalid"


def _chunked(total: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    """A JSON body of about `total` bytes as a generator: httpx sends it chunked, with no Content-Length."""
    yield b'{"events": ['
    row = b'{"event_id": "e"},'
    for _ in range(total // piece):
        yield row * (piece // len(row))
    yield b'{"event_id": "last"}]}'


def test_an_oversized_chunked_upload_is_413_and_a_keyless_one_401(journey_server: JourneyServer) -> None:
    with journey_server.client("ingest") as client:
        response = client.post("/v1/events", content=_chunked(LIMIT + 256 * 1024), headers=JSON)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert response.json() == {"detail": "request body too large"}
    with journey_server.client("none") as anonymous:
        keyless = anonymous.post("/v1/events", content=_chunked(LIMIT + 256 * 1024), headers=JSON)
    assert keyless.status_code == 401
    # A declared length over the limit is refused before anything is read.
    with journey_server.client("ingest") as client:
        declared = client.post("/v1/events", content=b" " * (LIMIT + 1), headers=JSON)
    assert declared.status_code == 413


def test_the_openapi_document_says_how_to_authenticate(journey_server: JourneyServer) -> None:
    document = httpx.get(f"{journey_server.url}/openapi.json", timeout=60).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKey"]["in"] == "header" and schemes["ApiKey"]["name"] == "X-API-Key"
    assert schemes["Bearer"]["scheme"] == "bearer"
    score = document["paths"]["/v1/score"]["post"]
    assert score["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert {"400", "401", "403", "413", "422", "429", "503"} <= set(score["responses"])
    assert "security" not in document["paths"]["/healthz"]["get"]
    review = document["paths"]["/v1/decisions/{request_id}/review"]["post"]
    assert "`override` replaces" in review["description"]
