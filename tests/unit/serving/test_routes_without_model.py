"""Routes that work, or fail clearly, before any model is trained; auth on every route."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from features.contracts import LOAN_PURPOSES
from serving.schemas import Purpose
from tests.utils.api import Keys, fill_online_store
from tests.utils.feeds import event_row

ClientFactory = Callable[..., TestClient]

# (method, path, scope, body, status with the right key and no model): every route but health needs a
# key with its scope, and with it gets the route's own answer (503 no model, 404 nothing yet, 422 body).
GUARDED = [
    (
        "post",
        "/v1/score",
        "score",
        {"member_id": "m1", "amount_cny": 5000, "term_months": 12, "purpose": "livestock"},
        503,
    ),
    ("post", "/v1/score/batch", "score", {"applications": []}, 422),
    ("get", "/v1/members/m1/features", "read", None, 404),
    ("post", "/v1/events", "ingest", {"events": [{}]}, 200),
    ("post", "/v1/outcomes", "ingest", {"outcomes": []}, 422),
    ("get", "/v1/model", "read", None, 503),
    ("post", "/v1/admin/reload", "admin", None, 503),
    (
        "post",
        f"/v1/decisions/{'0' * 32}/review",
        "review",
        {"reviewer": "x", "action": "confirm", "reason": "ok"},
        422,
    ),
    ("get", f"/v1/decisions/{'0' * 32}", "read", None, 404),
    ("get", "/metrics", "read", None, 200),
    ("get", "/v1/monitoring/drift", "read", None, 404),
    ("get", "/v1/monitoring/drift/report", "read", None, 404),
    ("get", "/v1/audits/fairness", "read", None, 404),
]


def no_champion(_settings: object) -> None:
    """The registry state of a fresh install: nothing trained yet."""
    return None


@pytest.mark.parametrize(
    ("method", "path", "scope", "body", "status"), GUARDED, ids=[f"{m} {p}" for m, p, *_ in GUARDED]
)
def test_every_route_needs_a_key_with_its_scope(
    client_factory: ClientFactory, keys: Keys, method: str, path: str, scope: str, body: object, status: int
) -> None:
    client = client_factory(no_champion)
    call = getattr(client, method)
    kwargs = {"json": body} if body is not None else {}
    missing = call(path, **kwargs)
    assert missing.status_code == 401, missing.text
    assert "API key" in missing.json()["detail"]
    wrong = call(path, headers={"X-API-Key": "cs_not-a-real-key"}, **kwargs)
    assert wrong.status_code == 401
    other_scope = next(s for s in keys.by_scope if s != scope)
    forbidden = call(path, headers=keys.header(other_scope), **kwargs)
    assert forbidden.status_code == 403
    assert scope in forbidden.json()["detail"]
    allowed = call(path, headers={"Authorization": f"Bearer {keys.by_scope[scope]}"}, **kwargs)
    assert allowed.status_code == status, allowed.text


def test_an_admin_key_may_review(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(no_champion)
    body = {"reviewer": "x", "action": "confirm", "reason": "checked"}
    response = client.post(f"/v1/decisions/{'0' * 32}/review", json=body, headers=keys.header("admin"))
    assert response.status_code == 404  # admitted (admin implies review); there is no such decision
    refused = client.post(f"/v1/decisions/{'0' * 32}/review", json=body, headers=keys.header("read"))
    assert refused.status_code == 403


def test_health_needs_no_key_and_readiness_says_why_not_ready(client_factory: ClientFactory) -> None:
    client = client_factory(no_champion)
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert "coopscore retrain" in ready.json()["detail"]


def test_score_without_a_model_is_503_with_how_to_train(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(no_champion)
    response = client.post(
        "/v1/score",
        json={"member_id": "m1", "amount_cny": 5000, "term_months": 12, "purpose": "livestock"},
        headers=keys.header("score"),
    )
    assert response.status_code == 503
    assert "retrain" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"member_id": "m1", "amount_cny": -5, "term_months": 12, "purpose": "livestock"}, "amount_cny"),
        ({"member_id": "m1", "amount_cny": 5, "term_months": 0, "purpose": "livestock"}, "term_months"),
        ({"member_id": "m1", "amount_cny": 5, "term_months": 6, "purpose": "casino"}, "purpose"),
        ({"member_id": "m 1", "amount_cny": 5, "term_months": 6, "purpose": "trade"}, "member_id"),
        ({"member_id": "m1", "amount_cny": 5, "term_months": 6, "purpose": "trade", "gender": "f"}, "gender"),
        ({"amount_cny": 5, "term_months": 6, "purpose": "trade"}, "member_id"),
    ],
)
def test_bad_score_requests_are_422_naming_the_field(
    client_factory: ClientFactory, keys: Keys, body: dict[str, object], field: str
) -> None:
    client = client_factory(no_champion)
    response = client.post("/v1/score", json=body, headers=keys.header("score"))
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["detail"]]


def test_malformed_json_is_422_not_500(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(no_champion)
    response = client.post(
        "/v1/score",
        content=b'{"member_id": ',
        headers={**keys.header("score"), "Content-Type": "application/json"},
    )
    assert response.status_code == 422


def test_body_size_limit(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(no_champion, max_body_bytes=2048)
    big = {"events": [event_row(event_id=f"e{i}") for i in range(50)]}
    response = client.post("/v1/events", json=big, headers=keys.header("ingest"))
    assert response.status_code == 413


def test_events_are_validated_deduped_and_errors_returned_per_row(
    client_factory: ClientFactory, keys: Keys
) -> None:
    client = client_factory(no_champion)
    good = [event_row(event_id=f"api-{i}") for i in range(5)]
    bad = event_row(event_id="api-bad", amount_cny="12,5元")
    response = client.post(
        "/v1/events", json={"events": [*good, bad, good[0]]}, headers=keys.header("ingest")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["received"], body["accepted"], body["duplicates"], body["quarantined"]) == (7, 5, 1, 1)
    assert body["errors"] == [{"index": 5, "event_id": "api-bad", "reasons": ["amount_cny: not a number"]}]
    again = client.post("/v1/events", json={"events": good}, headers=keys.header("ingest")).json()
    assert (again["accepted"], again["duplicates"]) == (0, 5)


def test_events_cap(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(no_champion, max_events_per_request=3)
    events = [event_row(event_id=f"e{i}") for i in range(4)]
    response = client.post("/v1/events", json={"events": events}, headers=keys.header("ingest"))
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "events"


def test_member_features_from_the_online_store(client_factory: ClientFactory, keys: Keys, tmp_path) -> None:
    from tests.utils.api import make_settings

    fill_online_store(
        make_settings(tmp_path, keys),
        ("savings_balance", "tenure_months"),
        {"m1": [120.0, float("nan")]},
        feature_set_version="test-v1",
    )
    client = client_factory(no_champion)
    found = client.get("/v1/members/m1/features", headers=keys.header("read"))
    assert found.status_code == 200
    assert found.json()["features"] == {"savings_balance": 120.0, "tenure_months": None}
    assert found.json()["feature_set_version"] == "test-v1"
    missing = client.get("/v1/members/nobody/features", headers=keys.header("read"))
    assert missing.status_code == 404


def test_outcomes_are_stored(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(no_champion)
    body = {"outcomes": [{"application_id": "a1", "defaulted": True, "observed_at": "2026-01-01T00:00:00Z"}]}
    response = client.post("/v1/outcomes", json=body, headers=keys.header("ingest"))
    assert response.json() == {"stored": 1, "linked_to_decisions": 0}


def test_docs_can_be_switched_off(client_factory: ClientFactory) -> None:
    assert client_factory(no_champion).get("/openapi.json").status_code == 200
    assert client_factory(no_champion, docs_enabled=False).get("/openapi.json").status_code == 404


def test_metrics_exposition(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(no_champion)
    client.get("/healthz")
    text = client.get("/metrics", headers=keys.header("read")).text
    assert 'coopscore_requests_total{method="GET",route="/healthz",status="200"}' in text


def test_purposes_match_the_contract() -> None:
    from typing import get_args

    assert set(get_args(Purpose)) == set(LOAN_PURPOSES)


def test_drift_routes_serve_the_latest_check(client_factory: ClientFactory, keys: Keys, tmp_path) -> None:
    import numpy as np
    import pandas as pd

    from monitoring.monitor import run_drift_check

    client = client_factory(no_champion)
    assert client.get("/v1/monitoring/drift", headers=keys.header("read")).status_code == 404
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(
        {"savings_balance": rng.normal(100, 10, 3000), "score": rng.normal(600, 20, 3000)}
    )
    current = pd.DataFrame({"savings_balance": rng.normal(160, 10, 3000), "score": rng.normal(600, 20, 3000)})
    run_drift_check(reference, current, data_dir=tmp_path / "data", evidently=False)
    summary = client.get("/v1/monitoring/drift", headers=keys.header("read")).json()
    assert summary["status"] == "drift"
    report = client.get("/v1/monitoring/drift/report", headers=keys.header("read"))
    assert report.status_code == 200 and "text/html" in report.headers["content-type"]
    metrics = client.get("/metrics", headers=keys.header("read")).text
    assert 'coopscore_feature_psi{feature="savings_balance"}' in metrics
